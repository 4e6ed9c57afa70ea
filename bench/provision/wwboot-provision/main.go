// Command wwboot-provision is the server side of bench/provision/run.sh: the
// provisioning handler over an in-memory inventory of -nodes nodes (MACs
// 52:54:00:XX:XX:XX counting from 1) that all boot one image file, served on
// -addr until SIGINT/SIGTERM.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/wwboot/wwboot/image"
	"github.com/wwboot/wwboot/nodedb"
	"github.com/wwboot/wwboot/provision"
)

// fixedImage is an image store holding one image file.
type fixedImage struct{ meta image.Meta }

func (f fixedImage) Lookup(_ context.Context, name string) (image.Meta, error) {
	if name != f.meta.Name {
		return image.Meta{}, image.ErrNotFound
	}
	return f.meta, nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:9873", "HTTP listen address")
	nodes := flag.Int("nodes", 10000, "nodes in the inventory")
	file := flag.String("image", "", "image file every node boots")
	prof := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	if *prof != "" {
		f, err := os.Create(*prof)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer pprof.StopCPUProfile()
		}
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := run(log, *addr, *nodes, *file); err != nil {
		fmt.Fprintln(os.Stderr, "wwboot-provision:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func run(log *slog.Logger, addr string, n int, file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	h := sha256.New()
	size, err := io.Copy(h, f)
	f.Close()
	if err != nil {
		return err
	}
	meta := image.Meta{Name: "bench", Path: file, KernelPath: file, Size: size, SHA256: hex.EncodeToString(h.Sum(nil)),
		KernelSHA256: hex.EncodeToString(h.Sum(nil)), Compression: image.Gzip, BuiltAt: time.Now()}
	cfg := &nodedb.Config{
		NodeProfiles: map[string]*nodedb.Record{"default": {Kernel: &nodedb.Kernel{Args: []string{"quiet", "crashkernel=no"}},
			Init: "/sbin/init", Root: "initramfs", SystemOverlay: []string{"wwinit", "hostname"}, RuntimeOverlay: []string{"hosts"}}},
		Nodes: map[string]*nodedb.Record{},
	}
	for i := 1; i <= n; i++ {
		cfg.Nodes[fmt.Sprintf("n%05d", i)] = &nodedb.Record{Profiles: []string{"default"}, ImageName: "bench",
			NetDevs: map[string]*nodedb.NetDev{"default": {
				Hwaddr: fmt.Sprintf("52:54:00:%02x:%02x:%02x", i>>16&0xff, i>>8&0xff, i&0xff),
				Ipaddr: fmt.Sprintf("10.%d.%d.%d", i>>16&0xff, i>>8&0xff, i&0xff), Netmask: "255.0.0.0"}}}
	}
	inv, err := nodedb.NewMemoryStore(cfg)
	if err != nil {
		return err
	}
	srv, err := provision.NewServer(provision.ServerConfig{HTTPAddr: addr,
		Options: provision.Options{Inventory: inv, Images: fixedImage{meta}, Logger: log}})
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "listening on %s with %d nodes, image %s (%d bytes)\n", srv.HTTPAddr(), n, file, size)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return srv.Serve(ctx)
}
