package nodedb

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// genConfig writes a nodes.conf of n nodes in Warewulf's usual shape: a
// default profile plus one record per node with one network device.
func genConfig(n int) []byte {
	var b strings.Builder
	b.WriteString("nodeprofiles:\n  default:\n    comment: every node\n    system overlay:\n      - wwinit\n      - hostname\n    runtime overlay:\n      - hosts\n    kernel:\n      args:\n        - quiet\n    init: /sbin/init\n    root: initramfs\n    network devices:\n      default:\n        netmask: 255.255.0.0\n        gateway: 10.0.0.1\nnodes:\n")
	for i := range n {
		fmt.Fprintf(&b, "  n%06d:\n    profiles:\n      - default\n    image name: rocky-9\n    network devices:\n      default:\n        device: eth0\n        hwaddr: 02:00:00:%02x:%02x:%02x\n        ipaddr: 10.%d.%d.%d\n    tags:\n      rack: r%d\n",
			i, i>>16&0xff, i>>8&0xff, i&0xff, 1+i>>16, i>>8&0xff, i&0xff, i/40)
	}
	return []byte(b.String())
}

func BenchmarkLoad100k(b *testing.B) {
	path := filepath.Join(b.TempDir(), "nodes.conf")
	data := genConfig(100_000)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	// CPU time beside wall time: on a shared machine wall time mostly
	// measures the neighbours.
	var before, after syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	defer func() {
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
		cpu := time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
		b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
	}()
	for b.Loop() {
		s, err := Open(context.Background(), path)
		if err != nil {
			b.Fatal(err)
		}
		if db, _ := s.Snapshot(context.Background()); db.Len() != 100_000 {
			b.Fatal("wrong count")
		}
	}
}

func BenchmarkNodeByHW(b *testing.B) {
	db, err := func() (*DB, error) {
		cfg, err := Parse("gen", genConfig(10_000))
		if err != nil {
			return nil, err
		}
		return New(cfg)
	}()
	if err != nil {
		b.Fatal(err)
	}
	hw, _ := ParseHW("02:00:00:00:12:34")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := db.NodeByHW(ctx, hw); err != nil {
			b.Fatal(err)
		}
	}
}
