// Package netlab builds small throwaway networks out of Linux network
// namespaces for tests: namespaces, veth pairs, bridges and tap devices, with
// addresses that exist only inside the namespaces the test created. It needs
// root and iproute2's ip command.
//
// The test process itself stays in its own namespace; servers under test open
// their sockets inside a lab namespace with [NS.Do], and real clients run
// there with [NS.Command].
package netlab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Require skips the test unless it runs as root with iproute2 available.
// In CI (env CI set) a missing prerequisite fails instead, so a broken
// machine cannot pass by skipping.
func Require(t testing.TB) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "network namespace tests need root"
	} else if _, err := exec.LookPath("ip"); err != nil {
		why = "network namespace tests need iproute2's ip"
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal(why)
	}
	t.Skip(why)
}

// RequireTools skips (or, under CI, fails) the test unless every named
// program is on PATH.
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s not installed: .ci/run installs it from .ci/packages", tool)
			}
			t.Skipf("%s not installed (apt-get install the package that provides it)", tool)
		}
	}
}

// NS is a network namespace created for one test and deleted when it ends.
type NS struct {
	Name string
	t    testing.TB
}

// NewNS creates a fresh namespace with its loopback up.
func NewNS(t testing.TB) *NS {
	t.Helper()
	Require(t)
	n := &NS{Name: "wwb-" + randHex(4), t: t}
	ip(t, "netns", "add", n.Name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", n.Name).Run() })
	n.IP("link", "set", "lo", "up")
	return n
}

// IP runs `ip ARGS...` inside the namespace and fails the test on error.
func (n *NS) IP(args ...string) {
	n.t.Helper()
	ip(n.t, append([]string{"-n", n.Name}, args...)...)
}

// Command returns a command that runs inside the namespace.
func (n *NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Do runs fn on an OS thread switched into the namespace. Sockets fn opens
// belong to the namespace for their whole life, whichever goroutine uses
// them afterwards. The thread is discarded when fn returns.
func (n *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		f, err := os.Open("/run/netns/" + n.Name)
		if err != nil {
			errc <- fmt.Errorf("netlab: open namespace %s: %w", n.Name, err)
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("netlab: enter namespace %s: %w", n.Name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// Veth connects two namespaces with a veth pair named aIf (in a) and bIf (in
// b), assigns the given addresses (an invalid prefix means none) and brings
// both ends up.
func Veth(t testing.TB, a *NS, aIf string, aAddr netip.Prefix, b *NS, bIf string, bAddr netip.Prefix) {
	t.Helper()
	tmpA, tmpB := "wwv"+randHex(4), "wwv"+randHex(4)
	ip(t, "link", "add", tmpA, "type", "veth", "peer", "name", tmpB)
	ip(t, "link", "set", tmpA, "netns", a.Name, "name", aIf)
	ip(t, "link", "set", tmpB, "netns", b.Name, "name", bIf)
	for _, e := range []struct {
		ns   *NS
		ifc  string
		addr netip.Prefix
	}{{a, aIf, aAddr}, {b, bIf, bAddr}} {
		if e.addr.IsValid() {
			e.ns.IP("addr", "add", e.addr.String(), "dev", e.ifc)
		}
		e.ns.IP("link", "set", e.ifc, "up")
	}
}

// Bridge creates a bridge named name in the namespace with the given address
// (an invalid prefix means none) and brings it up.
func (n *NS) Bridge(name string, addr netip.Prefix) {
	n.t.Helper()
	n.IP("link", "add", name, "type", "bridge")
	if addr.IsValid() {
		n.IP("addr", "add", addr.String(), "dev", name)
	}
	n.IP("link", "set", name, "up")
}

// Tap creates a tap device in the namespace, enslaved to bridge (if not
// empty), for a QEMU -netdev tap,ifname=NAME,script=no,downscript=no.
func (n *NS) Tap(name, bridge string) {
	n.t.Helper()
	n.IP("tuntap", "add", "dev", name, "mode", "tap")
	if bridge != "" {
		n.IP("link", "set", name, "master", bridge)
	}
	n.IP("link", "set", name, "up")
}

func ip(t testing.TB, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
