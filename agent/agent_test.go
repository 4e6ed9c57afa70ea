package agent

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/u-root/u-root/pkg/cpio"
)

// fakeServer speaks the server's side of the protocol: the runtime overlay
// (failing the first few requests), long-poll with 304 and the reports.
type fakeServer struct {
	mu       sync.Mutex
	fails    int // runtime requests still to answer 500
	gets     []time.Time
	queries  []string
	reports  []map[string]string
	archive  []byte
	etag     string
	released chan struct{}
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/agent/52-54-00-00-00-01":
		var m map[string]string
		_ = json.NewDecoder(r.Body).Decode(&m)
		f.reports = append(f.reports, m)
		f.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	case r.URL.Path == "/overlay/runtime/52-54-00-00-00-01":
		f.gets = append(f.gets, time.Now())
		f.queries = append(f.queries, r.URL.RawQuery)
		if f.fails > 0 {
			f.fails--
			f.mu.Unlock()
			http.Error(w, "render failed", http.StatusInternalServerError)
			return
		}
		etag, archive := f.etag, f.archive
		f.mu.Unlock()
		if r.Header.Get("If-None-Match") == etag {
			select { // a long-poll that nothing ends but the test
			case <-f.released:
			case <-r.Context().Done():
			}
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", etag)
		_, _ = w.Write(archive)
	default:
		f.mu.Unlock()
		http.NotFound(w, r)
	}
}

// TestRunRetriesAndBeats: a failing server is retried after a jittered
// backoff (not hammered), the heartbeats carry the failure as their
// reason, come every Heartbeat, and the overlay is applied once the server
// answers; Run ends with its context.
func TestRunRetriesAndBeats(t *testing.T) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(newc(t, cpio.StaticFile("etc/hosts", "10.0.0.1 n1\n", 0o644)))
	require.NoError(t, zw.Close())
	f := &fakeServer{fails: 2, archive: gz.Bytes(), etag: `"v1"`, released: make(chan struct{})}
	ts := httptest.NewServer(f)
	defer ts.Close()
	defer close(f.released)
	root := t.TempDir()
	a := &Agent{URL: ts.URL, HWAddr: net.HardwareAddr{0x52, 0x54, 0, 0, 0, 1}, Root: root, Dial: DialAny,
		Heartbeat: 300 * time.Millisecond, Wait: 42 * time.Second, AssetKey: "k&y"}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	hosts := filepath.Join(root, "etc", "hosts")
	require.Eventually(t, func() bool { _, err := os.Stat(hosts); return err == nil }, 10*time.Second, 10*time.Millisecond)
	time.Sleep(700 * time.Millisecond) // a few heartbeats, into the long-poll
	cancel()
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not end with its context")
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	require.GreaterOrEqual(t, len(f.gets), 4, "2 failures, the fetch, the long-poll")
	gap1, gap2 := f.gets[1].Sub(f.gets[0]), f.gets[2].Sub(f.gets[1])
	assert.GreaterOrEqual(t, gap1, 500*time.Millisecond, "first backoff: 0.5-1 s")
	assert.GreaterOrEqual(t, gap2, time.Second, "second backoff: 1-2 s")
	assert.Equal(t, "assetkey=k%26y", f.queries[0])
	assert.Equal(t, "assetkey=k%26y&wait=42", f.queries[3], "then a long-poll of Wait")
	require.GreaterOrEqual(t, len(f.reports), 3, "a heartbeat at start and every 300 ms")
	assert.Equal(t, map[string]string{"state": "up", "stage": "agent", "reason": ""}, f.reports[0])
	sawFailure := false
	for _, r := range f.reports {
		sawFailure = sawFailure || (r["reason"] != "" && bytes.Contains([]byte(r["reason"]), []byte("500")))
	}
	assert.True(t, sawFailure, "a heartbeat during the failures says why: %v", f.reports)
	assert.Equal(t, "", f.reports[len(f.reports)-1]["reason"], "and the last one, after the fetch, is clean")
}

func TestBackoffGrowsAndIsBounded(t *testing.T) {
	for n, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 4: 8 * time.Second, 7: time.Minute, 50: time.Minute} {
		for range 20 {
			d := backoff(n)
			assert.GreaterOrEqual(t, d, want/2, n)
			assert.LessOrEqual(t, d, want, n)
		}
	}
}
