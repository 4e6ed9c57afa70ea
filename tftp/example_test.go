package tftp_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing/fstest"

	ptftp "github.com/pin/tftp/v3"

	"github.com/wwboot/wwboot/tftp"
)

// Serve a file tree on loopback and fetch a file from it.
func ExampleServer() {
	files := fstest.MapFS{"ipxe/boot.ipxe": {Data: []byte("#!ipxe\nchain http://10.0.0.1/ipxe/${mac}\n")}}
	srv := &tftp.Server{FS: files} // Logger, Metrics: optional

	conn, err := tftp.ListenPacket(context.Background(), "udp4", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background(), conn) }()

	c, _ := ptftp.NewClient(conn.LocalAddr().String())
	wt, err := c.Receive("ipxe/boot.ipxe", "octet")
	if err != nil {
		fmt.Println(err)
		return
	}
	var buf bytes.Buffer
	_, _ = wt.WriteTo(&buf)
	fmt.Print(buf.String())

	_, err = c.Receive("../etc/passwd", "octet")
	fmt.Println(strings.TrimRight(err.Error(), "\x00")) // pin/tftp's client keeps the NUL

	_ = srv.Shutdown(context.Background())
	fmt.Println(<-done)
	// Output:
	// #!ipxe
	// chain http://10.0.0.1/ipxe/${mac}
	// code: 2, message: access violation: unsafe path
	// tftp: server closed
}

func ExampleCleanPath() {
	for _, name := range []string{"undionly.kpxe", "./ipxe//snponly.efi", "../etc/passwd", "/warewulf/ipxe-snponly-x86_64.efi"} {
		clean, err := tftp.CleanPath(name)
		fmt.Printf("%q %q %v\n", name, clean, err)
	}
	// Output:
	// "undionly.kpxe" "undionly.kpxe" <nil>
	// "./ipxe//snponly.efi" "ipxe/snponly.efi" <nil>
	// "../etc/passwd" "" unsafe TFTP path "../etc/passwd": '..' element
	// "/warewulf/ipxe-snponly-x86_64.efi" "warewulf/ipxe-snponly-x86_64.efi" <nil>
}
