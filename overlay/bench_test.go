package overlay

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/nodedb"
)

// benchSetup returns an inventory of n nodes and a key directory in which
// every node's host keys already exist (generating them is a one-time cost,
// measured by BenchmarkHostKeys).
func benchSetup(b *testing.B, n int) (*nodedb.MemoryStore, string) {
	b.Helper()
	st, err := nodedb.NewMemoryStore(testConfig(n))
	require.NoError(b, err)
	keyDir := b.TempDir()
	db, _ := st.Snapshot(context.Background())
	r, err := New(Options{Server: benchServer(), KeyDir: keyDir})
	require.NoError(b, err)
	require.NoError(b, r.keys.ensure(db.Names(), r.opts.Server.Ssh.KeyTypes, db.Names(), 0))
	return st, keyDir
}

// BenchmarkBuild renders system and runtime archives of every node with the
// built-in overlays (default lists), cold cache, on every core.
func BenchmarkBuild(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			st, keyDir := benchSetup(b, n)
			db, _ := st.Snapshot(context.Background())
			var bytes int64
			cpu0 := cpuTime()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				r, err := New(Options{Server: benchServer(), KeyDir: keyDir})
				require.NoError(b, err)
				res, err := r.Build(context.Background(), db)
				require.NoError(b, err)
				bytes = 0
				for _, rr := range res {
					bytes += rr.System.Size() + rr.Runtime.Size()
				}
				if s := r.Stats(); s.Renders != int64(2*n) {
					b.Fatalf("renders %d, want %d", s.Renders, 2*n)
				}
			}
			b.ReportMetric((cpuTime()-cpu0).Seconds()/float64(b.N), "cpu-s/op")
			b.ReportMetric(float64(bytes)/float64(n), "bytes/node")
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/node")
		})
	}
}

// cpuTime is the process's user+system CPU time: on a shared machine it
// says more than the wall clock.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkBuildColdKeys is BenchmarkBuild for 1000 nodes including the
// generation of every node's ed25519 and ecdsa host keys.
func BenchmarkBuildColdKeys(b *testing.B) {
	st, err := nodedb.NewMemoryStore(testConfig(1000))
	require.NoError(b, err)
	db, _ := st.Snapshot(context.Background())
	for i := 0; i < b.N; i++ {
		r, err := New(Options{Server: benchServer(), KeyDir: b.TempDir()})
		require.NoError(b, err)
		_, err = r.Build(context.Background(), db)
		require.NoError(b, err)
	}
}

// BenchmarkAfterChange: a warm 1000-node cache, one node's address changes,
// then 100 nodes ask for both archives at once. Reports the wall time of
// the 100 requests and how many archives were rendered.
func BenchmarkAfterChange(b *testing.B) {
	st, keyDir := benchSetup(b, 1000)
	ctx := context.Background()
	r, err := New(Options{Server: benchServer(), KeyDir: keyDir})
	require.NoError(b, err)
	db, _ := st.Snapshot(ctx)
	_, err = r.Build(ctx, db)
	require.NoError(b, err)
	var total time.Duration
	var renders int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		require.NoError(b, st.Update(ctx, func(c *nodedb.Config) error {
			c.Nodes["n00050"].NetDevs["default"].Ipaddr = fmt.Sprintf("10.1.%d.%d", i/250%250, i%250+1)
			return nil
		}))
		db, _ := st.Snapshot(ctx)
		before := r.Stats().Renders
		b.StartTimer()
		start := time.Now()
		var wg sync.WaitGroup
		for j := 1; j <= 100; j++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n, _ := db.Node(fmt.Sprintf("n%05d", j*10))
				for _, k := range []Kind{System, Runtime} {
					if _, err := r.Render(ctx, db, n, k); err != nil {
						b.Error(err)
					}
				}
			}()
		}
		wg.Wait()
		total += time.Since(start)
		renders += r.Stats().Renders - before
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/100req")
	b.ReportMetric(float64(renders)/float64(b.N), "renders/100req")
}

// BenchmarkRenderHit is the cost of a cache hit (the provisioning server's
// common case).
func BenchmarkRenderHit(b *testing.B) {
	st, keyDir := benchSetup(b, 10)
	db, _ := st.Snapshot(context.Background())
	r, err := New(Options{Server: benchServer(), KeyDir: keyDir})
	require.NoError(b, err)
	n, _ := db.Node("n00005")
	_, err = r.Render(context.Background(), db, n, System)
	require.NoError(b, err)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := r.Render(context.Background(), db, n, System); err != nil {
			b.Fatal(err)
		}
	}
}

// benchServer is testServer with the ed25519 and ecdsa host keys the
// benchmark figures were first measured with (RSA adds about 0.3 s of CPU
// per node, once).
func benchServer() ServerInfo {
	s := testServer()
	s.Ssh.KeyTypes = []string{"ed25519", "ecdsa"}
	return s
}
