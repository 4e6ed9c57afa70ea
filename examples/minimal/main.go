// Command minimal boots every machine that asks into one image. There is no
// inventory: a node is made up from its MAC. It serves HTTP only; point your
// DHCP server's iPXE boot file at http://HOST:9873/ipxe/${mac:hexhyp}.
package main

import (
	"context"
	"flag"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/wwboot/wwboot/image"
	"github.com/wwboot/wwboot/nodedb"
	"github.com/wwboot/wwboot/overlay"
	"github.com/wwboot/wwboot/provision"
)

func main() {
	addr := flag.String("addr", ":9873", "HTTP listen address")
	store := flag.String("images", "/var/lib/wwboot/images", "image store directory")
	img := flag.String("image", "default", "the image every node boots")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	images, err := image.OpenStore(*store)
	must(log, err)
	overlays, err := overlay.New(overlay.Options{DefaultRuntime: []string{}, Log: log})
	must(log, err)
	everyone := provision.InventoryFunc(func(_ context.Context, hw net.HardwareAddr) (*nodedb.Node, error) {
		return &nodedb.Node{ID: "node-" + strings.ReplaceAll(hw.String(), ":", ""), Record: nodedb.Record{
			ImageName: *img, SystemOverlay: []string{"wwinit", "hostname"}, Kernel: &nodedb.Kernel{Args: []string{"quiet"}},
		}}, nil
	})
	srv, err := provision.NewServer(provision.ServerConfig{HTTPAddr: *addr,
		Options: provision.Options{Inventory: everyone, Images: images, Overlays: overlays, Logger: log}})
	must(log, err)
	must(log, srv.Listen())
	log.Info("listening", "addr", srv.HTTPAddr().String())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	must(log, srv.Serve(ctx))
}

func must(log *slog.Logger, err error) {
	if err != nil {
		log.Error("minimal", "err", err)
		os.Exit(1)
	}
}
