// Command csvinventory provisions the nodes listed in a CSV file, the way a
// program would that keeps its nodes in its own database or gets them from a
// scheduler: it builds the inventory itself (no nodes.conf) and hands it to
// wwboot through the public API. The file is re-read when it changes, so
// nodes can be added while the server runs.
//
// The CSV file has a header line and the columns name, hwaddr, ipaddr,
// netmask, image and kernel args (space separated):
//
//	name,hwaddr,ipaddr,netmask,image,kernelargs
//	n1,52:54:00:00:00:01,10.0.0.11,255.255.255.0,rocky9,quiet console=ttyS0
//
// With -interface it also answers DHCP (full mode) and TFTP on that interface.
package main

import (
	"context"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/wwboot/wwboot/image"
	"github.com/wwboot/wwboot/nodedb"
	"github.com/wwboot/wwboot/overlay"
	"github.com/wwboot/wwboot/provision"
	"github.com/wwboot/wwboot/tftp"
)

func main() {
	file := flag.String("csv", "nodes.csv", "the node list")
	store := flag.String("images", "/var/lib/wwboot/images", "image store directory")
	addr := flag.String("addr", ":9873", "HTTP listen address")
	iface := flag.String("interface", "", "cluster interface for DHCP and TFTP (empty: HTTP only)")
	server := flag.String("server", "", "the server's IPv4 address on the cluster network (with -interface)")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(log, *file, *store, *addr, *iface, *server); err != nil {
		log.Error("csvinventory", "err", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger, file, store, addr, iface, server string) error {
	cfg, mod, err := readCSV(file)
	if err != nil {
		return err
	}
	inv, err := nodedb.NewMemoryStore(cfg)
	if err != nil {
		return err
	}
	images, err := image.OpenStore(store)
	if err != nil {
		return err
	}
	overlays, err := overlay.New(overlay.Options{
		Server:        overlay.ServerInfo{Ipaddr: server},
		DefaultSystem: []string{"wwinit", "hostname", "hosts"}, DefaultRuntime: []string{"hosts"}, Log: log,
	})
	if err != nil {
		return err
	}
	sc := provision.ServerConfig{HTTPAddr: addr,
		Options: provision.Options{Inventory: inv, Images: images, Overlays: overlays, Logger: log}}
	if iface != "" {
		boot, err := tftp.OpenBootFS("", tftp.FindIPXEBinaries(tftp.DebianIPXEDir))
		if err != nil {
			return err
		}
		defer boot.Close()
		sc.Interfaces, sc.DHCP, sc.TFTP, sc.BootFS, sc.RouterAdvertisements = []string{iface}, provision.DHCPFull, true, boot, true
		if server != "" {
			if sc.Addr, err = netip.ParseAddr(server); err != nil {
				return fmt.Errorf("-server: %w", err)
			}
		}
	}
	srv, err := provision.NewServer(sc)
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		return err
	}
	log.Info("listening", "addr", srv.HTTPAddr().String(), "nodes", len(cfg.Nodes))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go watch(ctx, log, file, mod, inv)
	return srv.Serve(ctx)
}

// watch re-reads the CSV file when it changes and swaps the inventory; the
// server serves the new nodes at once and transfers under way go on.
func watch(ctx context.Context, log *slog.Logger, file string, mod time.Time, inv *nodedb.MemoryStore) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		fi, err := os.Stat(file)
		if err != nil || fi.ModTime().Equal(mod) {
			continue
		}
		cfg, m, err := readCSV(file)
		if err == nil {
			err = inv.Update(ctx, func(c *nodedb.Config) error { *c = *cfg; return nil })
		}
		if err != nil {
			log.Error("node list not reloaded; still serving the previous one", "file", file, "err", err)
			mod = fi.ModTime()
			continue
		}
		mod = m
		log.Info("node list reloaded", "file", file, "nodes", len(cfg.Nodes))
	}
}

// readCSV turns the node list into an inventory: one node per line, all
// sharing one profile.
func readCSV(file string) (*nodedb.Config, time.Time, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, time.Time{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, time.Time{}, err
	}
	r := csv.NewReader(f)
	r.FieldsPerRecord = 6
	rows, err := r.ReadAll()
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("%s: %w", file, err)
	}
	if len(rows) == 0 || rows[0][0] != "name" {
		return nil, time.Time{}, errors.New(file + ": the first line must be the header name,hwaddr,ipaddr,netmask,image,kernelargs")
	}
	cfg := &nodedb.Config{
		NodeProfiles: map[string]*nodedb.Record{"default": {Init: "/sbin/init", Root: "initramfs"}},
		Nodes:        map[string]*nodedb.Record{},
	}
	for i, row := range rows[1:] {
		if _, dup := cfg.Nodes[row[0]]; dup {
			return nil, time.Time{}, fmt.Errorf("%s:%d: node %s listed twice", file, i+2, row[0])
		}
		cfg.Nodes[row[0]] = &nodedb.Record{
			Profiles:  []string{"default"},
			ImageName: row[4],
			Kernel:    &nodedb.Kernel{Args: strings.Fields(row[5])},
			NetDevs:   map[string]*nodedb.NetDev{"default": {Hwaddr: row[1], Ipaddr: row[2], Netmask: row[3]}},
		}
	}
	if _, err := nodedb.New(cfg); err != nil {
		return nil, time.Time{}, fmt.Errorf("%s: %w", file, err)
	}
	return cfg, fi.ModTime(), nil
}
