package image_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"strings"
	"testing/fstest"
	"time"

	"github.com/u-root/u-root/pkg/cpio"
	"github.com/wwboot/wwboot/image"
)

// Build a boot image from any fs.FS into any io.Writer.
func ExampleBuild() {
	tree := fstest.MapFS{
		"etc/motd":  {Data: []byte("node1\n"), Mode: 0o644},
		"sbin/init": {Data: []byte("#!/bin/sh\nexec sh\n"), Mode: 0o755},
	}
	var out bytes.Buffer
	res, err := image.Build(context.Background(), &out, tree, image.Options{
		Compression: image.Zstd,
		Progress: func(p image.Progress) {
			if p.Done {
				fmt.Printf("archived %d entries, %d bytes of content\n", p.Files, p.Bytes)
			}
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Size == int64(out.Len()), len(res.SHA256))
	// Output:
	// archived 4 entries, 24 bytes of content
	// true 64
}

// Write an initramfs by hand, as the overlay package does: parent
// directories are added, owners kept, and the archive ends 4-byte aligned so
// it can be concatenated with others.
func ExampleWriter() {
	var buf bytes.Buffer
	w := image.NewWriter(&buf, image.WriterOptions{})
	when := time.Unix(1700000000, 0)
	if err := w.WriteFile("etc/sysconfig/network", 0o644, 0, 0, when, []byte("HOSTNAME=n1\n")); err != nil {
		log.Fatal(err)
	}
	if err := w.WriteSymlink("etc/localtime", "/usr/share/zoneinfo/UTC", 0, 0, when); err != nil {
		log.Fatal(err)
	}
	if err := w.Close(); err != nil {
		log.Fatal(err)
	}
	rr := cpio.Newc.Reader(bytes.NewReader(buf.Bytes()))
	for {
		rec, err := rr.ReadRecord()
		if err == io.EOF || rec.Name == cpio.Trailer {
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s %o\n", rec.Name, rec.Mode)
	}
	fmt.Println("aligned:", buf.Len()%4 == 0)
	// Output:
	// etc 40755
	// etc/sysconfig 40755
	// etc/sysconfig/network 100644
	// etc/localtime 120777
	// aligned: true
}

// Rank the kernels of a tree.
func ExampleFindKernels() {
	tree := fstest.MapFS{
		"boot/vmlinuz-6.1.0-9-amd64":                   {Data: []byte("k")},
		"boot/vmlinuz-6.1.0-13-amd64":                  {Data: []byte("k")},
		"boot/vmlinuz-0-rescue-0123456789":             {Data: []byte("k")},
		"lib/modules/6.2.0-1.el9.x86_64+debug/vmlinuz": {Data: []byte("k")},
	}
	ks, err := image.FindKernels(tree)
	if err != nil {
		log.Fatal(err)
	}
	for _, k := range ks {
		fmt.Println(strings.TrimSpace(k.Version + " " + k.Path + " " + k.Skipped))
	}
	// Output:
	// 6.1.0-13-amd64 boot/vmlinuz-6.1.0-13-amd64
	// 6.1.0-9-amd64 boot/vmlinuz-6.1.0-9-amd64
	// 6.2.0-1.el9.x86_64+debug lib/modules/6.2.0-1.el9.x86_64+debug/vmlinuz debug
	// 0-rescue-0123456789 boot/vmlinuz-0-rescue-0123456789 rescue
}
