// Command wwboot-dhcp is the benchmark harness for package dhcp: a full-mode
// DHCP server on one interface, with either a computed inventory (every MAC
// under a prefix is a known node) or a dynamic pool with a lease file. It
// uses the package's public API only. bench/dhcp/run.sh runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/wwboot/wwboot/dhcp"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "wwboot-dhcp:", err)
		os.Exit(1)
	}
}

func run() error {
	iface := flag.String("iface", "eth0", "interface to serve")
	mode := flag.String("mode", "hosts", "hosts: MACs 00:0c:01:00:yy:zz (yy < 254) are nodes at 10.78.yy+1.zz; pool: dynamic pool with a lease file")
	leaseFile := flag.String("leasefile", "", "pool mode: lease file")
	poolStart := flag.String("pool-start", "10.78.1.0", "pool mode: first address")
	poolEnd := flag.String("pool-end", "10.78.255.254", "pool mode: last address")
	prefix := flag.Int("prefix", 16, "prefix length of the served subnet")
	workers := flag.Int("workers", 0, "worker goroutines (0: default)")
	verbose := flag.Bool("v", false, "debug logging")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile to this file")
	flag.Parse()

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	reg := prometheus.NewRegistry()
	metrics, err := dhcp.NewMetrics(reg)
	if err != nil {
		return err
	}
	mask := net.CIDRMask(*prefix, 32)
	inventory := dhcp.HostsFunc(func(_ context.Context, mac net.HardwareAddr) (dhcp.Host, error) {
		if *mode != "hosts" || len(mac) != 6 || mac[0] != 0x00 || mac[1] != 0x0c || mac[2] != 0x01 || mac[3] != 0 || mac[4] >= 254 {
			return dhcp.Host{}, dhcp.ErrUnknownHost
		}
		return dhcp.Host{
			Hostname: fmt.Sprintf("n%02x%02x", mac[4], mac[5]),
			Addr:     netip.AddrFrom4([4]byte{10, 78, mac[4] + 1, mac[5]}),
			Netmask:  mask, LeaseTime: time.Hour,
		}, nil
	})
	cfg := dhcp.Config{TFTP: true, Logger: logger, Metrics: metrics}
	if *mode == "pool" {
		pool, err := dhcp.NewPool(dhcp.PoolConfig{
			Start: netip.MustParseAddr(*poolStart), End: netip.MustParseAddr(*poolEnd), Netmask: mask,
			LeaseTime: time.Hour, LeaseFile: *leaseFile, Logger: logger,
			Reserver: dhcp.ReserverFunc(func(netip.Addr) bool { return false }),
		})
		if err != nil {
			return err
		}
		cfg.Pools = []*dhcp.Pool{pool}
	} else if *mode != "hosts" {
		return fmt.Errorf("-mode %q: want hosts or pool", *mode)
	}
	policy, err := dhcp.NewPolicy(inventory, cfg)
	if err != nil {
		return err
	}
	srv, err := dhcp.NewServer(policy, dhcp.ServerConfig{Interfaces: []string{*iface}, Workers: *workers, Logger: logger, Metrics: metrics})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err = srv.ListenAndServe(ctx)
	if err != nil && !errors.Is(err, dhcp.ErrServerClosed) {
		return err
	}
	// Print the counters on the way out.
	mfs, err := reg.Gather()
	if err != nil {
		return err
	}
	var b strings.Builder
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
			return err
		}
	}
	fmt.Fprint(os.Stderr, b.String())
	return nil
}
