package main

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/ipxe"
	"github.com/wwboot/wwboot/provision/netlab"
)

// TestServeStartsWithDamagedLeases is issue 11 item 9 end to end: one bad
// line in ROOT/dhcp.leases used to stop wwboot serve from starting. The
// real binary now serves (full DHCP with a dynamic range, on an interface
// of a namespace made for the test), and logs each bad line as file:line.
func TestServeStartsWithDamagedLeases(t *testing.T) {
	netlab.Require(t)
	bin, err := buildBinary()
	require.NoError(t, err)
	ns, peer := netlab.NewNS(t), netlab.NewNS(t)
	netlab.Veth(t, ns, "wwd0", netip.MustParsePrefix("10.77.0.1/24"), peer, "cli0", netip.Prefix{})

	root := t.TempDir()
	mustRun(t, root, "init")
	leases := filepath.Join(root, "dhcp.leases")
	exp := strconv.FormatInt(time.Now().Add(30*time.Minute).Unix(), 10)
	require.NoError(t, os.WriteFile(leases, []byte(
		"# wwboot dhcp leases v1: MAC address expiry(unix seconds)\n"+
			"52:54:00:aa:00:01 10.77.0.100 "+exp+"\n"+
			"garbage that is no lease\n"+
			"52:54:00:aa:00:zz 10.77.0.101 "+exp+"\n"+
			"52:54:00:aa:00:03 10.77.0.300 "+exp+"\n"+
			"52:54:00:aa:00:04 10.77.0.1"), 0o644)) // truncated

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	port := strconv.Itoa(freePort(t))
	cmd := ns.Command(ctx, bin, "--root", root, "serve", "--interface", "wwd0", "--no-tftp", "--ipv6-ra=false",
		"--http-port", port, "--agent-tls-port", strconv.Itoa(freePort(t)), "--range-start", "10.77.0.100", "--range-end", "10.77.0.150")
	var logs syncWriter
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("wwboot serve:\n%s", logs.String())
		}
	}()
	require.Eventually(t, func() bool {
		select {
		case err := <-exited:
			exited <- err
			return true
		default:
		}
		return ns.Command(ctx, "curl", "-sf", "-o", "/dev/null", "http://127.0.0.1:"+port+"/healthz").Run() == nil
	}, 30*time.Second, 100*time.Millisecond)
	select {
	case err := <-exited:
		t.Fatalf("wwboot serve exited: %v\n%s", err, logs.String())
	default:
	}
	// The log reaches us through a pipe copied by another goroutine: it may
	// trail /healthz by a moment.
	assert.Eventually(t, func() bool { return strings.Contains(logs.String(), "loaded=") }, 10*time.Second, 50*time.Millisecond)
	out := logs.String()
	for _, line := range []string{"3", "4", "5", "6"} {
		assert.Contains(t, out, leases+":"+line, "the warning names file:line %s", line)
	}
	assert.Contains(t, out, "dropped=4")
	assert.Contains(t, out, "loaded=1")

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatal("wwboot serve did not stop after SIGTERM")
	}
}

// syncWriter collects a child's output; safe to read while it runs.
type syncWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// TestServeTFTPWarewulfNames: the boot file names Warewulf's DHCP template
// hands out ("/warewulf/ipxe-snponly-x86_64.efi", with its leading slash)
// fetch wwboot's iPXE binary from the real wwboot serve (issue 11 item 11).
func TestServeTFTPWarewulfNames(t *testing.T) {
	netlab.RequireTools(t, "curl")
	want, err := ipxe.Locate(ipxe.EFIX8664)
	if err != nil {
		t.Skipf("no x86-64 iPXE binary installed: %v", err)
	}
	bin, err := buildBinary()
	require.NoError(t, err)
	ns, peer := netlab.NewNS(t), netlab.NewNS(t)
	netlab.Veth(t, ns, "wwd0", netip.MustParsePrefix("10.77.0.1/24"), peer, "cli0", netip.MustParsePrefix("10.77.0.2/24"))
	root := t.TempDir()
	mustRun(t, root, "init")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	port := strconv.Itoa(freePort(t))
	cmd := ns.Command(ctx, bin, "--root", root, "serve", "--interface", "wwd0", "--dhcp", "off", "--ipv6-ra=false", "--http-port", port, "--agent-tls-port", strconv.Itoa(freePort(t)))
	var logs syncWriter
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("wwboot serve:\n%s", logs.String())
		}
	}()
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "tftp: serving") }, 30*time.Second, 50*time.Millisecond)

	wantData, err := os.ReadFile(want)
	require.NoError(t, err)
	for _, name := range []string{"/warewulf/ipxe-snponly-x86_64.efi", "//warewulf/ipxe-snponly-x86_64.efi", "/snponly.efi"} {
		out := filepath.Join(t.TempDir(), "out")
		text, err := peer.Command(ctx, "curl", "-sS", "--path-as-is", "-o", out, "tftp://10.77.0.1/"+name).CombinedOutput()
		require.NoError(t, err, "%s: %s", name, text)
		got, err := os.ReadFile(out)
		require.NoError(t, err)
		assert.Equal(t, wantData, got, name)
	}
}
