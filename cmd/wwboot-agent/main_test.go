package main

import (
	"bytes"
	"context"
	"debug/elf"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/nodedb"
	"github.com/wwboot/wwboot/overlay"
	"github.com/wwboot/wwboot/provision"
)

// maxSize is the size budget of the stripped static agent (bytes): it sits
// in every node's memory. Measured 2.9 MB with Go 1.26 before the TLS
// channel, 5.5 MB with it (crypto/tls and crypto/x509 weigh 2.6 MB; the
// price of keeping the node's secrets off the wire in clear text).
const maxSize = 6 << 20

// TestBinaryIsSmallAndStatic builds the agent as the wwclient overlay
// ships it and checks it is a static executable (no ELF interpreter, no
// shared libraries) within its size budget.
func TestBinaryIsSmallAndStatic(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "wwboot-agent")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	fi, err := os.Stat(bin)
	require.NoError(t, err)
	t.Logf("wwboot-agent: %d bytes (%.2f MiB), static, stripped", fi.Size(), float64(fi.Size())/(1<<20))
	assert.Less(t, fi.Size(), int64(maxSize))

	f, err := elf.Open(bin)
	require.NoError(t, err)
	defer f.Close()
	for _, p := range f.Progs {
		assert.NotEqual(t, elf.PT_INTERP, p.Type, "a static binary has no interpreter")
		assert.NotEqual(t, elf.PT_DYNAMIC, p.Type, "a static binary has no dynamic section")
	}
	libs, _ := f.ImportedLibraries()
	assert.Empty(t, libs)
	assert.Nil(t, f.Section(".symtab"), "stripped")

	out, err = exec.Command(bin, "-h").CombinedOutput()
	assert.Error(t, err)
	assert.Contains(t, string(out), "report    tell the server")
}

// TestCommands runs the commands in process against a real provisioning
// handler on loopback: once applies the runtime overlay, report sets the
// node's state, run keeps going until its context ends, and mistakes are
// explained.
func TestCommands(t *testing.T) {
	ctx := context.Background()
	cfg := &nodedb.Config{Nodes: map[string]*nodedb.Record{"n1": {
		RuntimeOverlay: []string{"hosts"},
		NetDevs:        map[string]*nodedb.NetDev{"default": {Hwaddr: "52:54:00:00:00:01", Ipaddr: "127.0.0.1"}},
	}}}
	store, err := nodedb.NewMemoryStore(cfg)
	require.NoError(t, err)
	ov, err := overlay.New(overlay.Options{KeyDir: t.TempDir()})
	require.NoError(t, err)
	h, err := provision.NewHandler(provision.Options{Inventory: store, Overlays: ov, InsecurePorts: true})
	require.NoError(t, err)
	ts := httptest.NewServer(h)
	defer ts.Close()

	dir := t.TempDir()
	conf := filepath.Join(dir, "node.conf")
	require.NoError(t, os.WriteFile(conf, []byte("WWBOOT_HWADDR='52:54:00:00:00:01'\nWWBOOT_URL='"+ts.URL+"'\n"), 0o644))
	root := filepath.Join(dir, "root")
	require.NoError(t, os.Mkdir(root, 0o755))
	var stderr bytes.Buffer
	cli := func(args ...string) error {
		stderr.Reset()
		return run(ctx, append([]string{"-conf", conf, "-any-port"}, args...), &stderr)
	}

	require.NoError(t, cli("-root", root, "once"), stderr.String())
	hosts, err := os.ReadFile(filepath.Join(root, "etc", "hosts"))
	require.NoError(t, err)
	assert.Contains(t, string(hosts), "n1")

	require.NoError(t, cli("report", "failed", "no", "end", "marker"), stderr.String())
	st := h.Status().Nodes[0]
	assert.Equal(t, provision.StateFailed, st.State)
	assert.Equal(t, "init: no end marker", st.Reason)

	// run: heartbeats make the node up; it returns when its context ends.
	rctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	require.NoError(t, run(rctx, []string{"-conf", conf, "-any-port", "-root", root, "run"}, &stderr))
	assert.Equal(t, provision.StateUp, h.Status().Nodes[0].State)

	for args, want := range map[string]string{
		"report":             "give a state",
		"report dancing now": "use up, booting or failed",
		"jump":               `unknown command "jump"`,
		"once extra":         "takes no arguments",
	} {
		err := cli(append(strings.Fields(args), "-tries", "1")...)
		assert.ErrorContains(t, err, want, args)
	}
	err = run(ctx, []string{"-conf", filepath.Join(dir, "missing"), "once"}, &stderr)
	assert.ErrorContains(t, err, "-server")
	err = run(ctx, []string{"-url", "https://x", "-hwaddr", "52:54:00:00:00:01", "once"}, &stderr)
	assert.ErrorContains(t, err, "http://HOST:PORT")
}

// TestOnceRetryFor is what the wwboot-agent-sync unit relies on to put the
// node's SSH host keys in place before sshd starts: with -retry-for, once
// keeps trying while the server is not there yet (the network still coming
// up) and succeeds when it answers; without it, once fails at the first try.
func TestOnceRetryFor(t *testing.T) {
	ctx := context.Background()
	cfg := &nodedb.Config{Nodes: map[string]*nodedb.Record{"n1": {
		RuntimeOverlay: []string{"hosts"},
		NetDevs:        map[string]*nodedb.NetDev{"default": {Hwaddr: "52:54:00:00:00:01", Ipaddr: "127.0.0.1"}},
	}}}
	store, err := nodedb.NewMemoryStore(cfg)
	require.NoError(t, err)
	ov, err := overlay.New(overlay.Options{KeyDir: t.TempDir()})
	require.NoError(t, err)
	h, err := provision.NewHandler(provision.Options{Inventory: store, Overlays: ov, InsecurePorts: true})
	require.NoError(t, err)

	// A port nothing listens on yet.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	require.NoError(t, os.Mkdir(root, 0o755))
	args := []string{"-url", "http://" + addr, "-hwaddr", "52:54:00:00:00:01", "-any-port", "-root", root, "once"}
	var stderr bytes.Buffer
	start := time.Now()
	require.Error(t, run(ctx, args, &stderr), "no server, no retry")
	assert.Less(t, time.Since(start), 2*time.Second)

	done := make(chan error, 1)
	var stderr2 bytes.Buffer
	go func() { done <- run(ctx, append(args, "-retry-for", "30s"), &stderr2) }()
	time.Sleep(3 * time.Second)
	ln, err = net.Listen("tcp", addr)
	require.NoError(t, err)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	select {
	case err := <-done:
		require.NoError(t, err, stderr2.String())
	case <-time.After(30 * time.Second):
		t.Fatal("once -retry-for did not return")
	}
	assert.Contains(t, stderr2.String(), "trying again")
	hosts, err := os.ReadFile(filepath.Join(root, "etc", "hosts"))
	require.NoError(t, err)
	assert.Contains(t, string(hosts), "n1")
}
