package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/power/ipmisim"
	"github.com/wwboot/wwboot/provision/netlab"
)

const powerTestPass = "Bmc-pw-4711"

// powerSite writes a nodes.conf whose BMC login comes from a profile and
// whose addresses are per node: n1-n3 have ipmi_sim BMCs in ns, n4's BMC
// does not answer, n5 has none.
func powerSite(t *testing.T, ns *netlab.NS) (string, []*ipmisim.Sim) {
	t.Helper()
	root := t.TempDir()
	var sims []*ipmisim.Sim
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := 1; i <= 3; i++ {
		dir := filepath.Join(t.TempDir(), fmt.Sprint("bmc", i))
		require.NoError(t, os.MkdirAll(dir, 0o755))
		s, err := ipmisim.Start(ctx, ipmisim.Options{Dir: dir, Addr: fmt.Sprintf("127.0.1.%d", i), Username: "admin", Password: powerTestPass, Command: ns.Command})
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		sims = append(sims, s)
	}
	conf := `nodeprofiles:
  default: {}
  bmc:
    ipmi:
      username: admin
      password: ` + powerTestPass + `
      interface: lanplus
nodes:
`
	for i := 1; i <= 4; i++ {
		conf += fmt.Sprintf("  n%d:\n    profiles: [bmc]\n    ipmi:\n      ipaddr: 127.0.1.%d\n", i, i)
	}
	conf += "  n5:\n    profiles: [default]\n"
	require.NoError(t, os.WriteFile(filepath.Join(root, "nodes.conf"), []byte(conf), 0o644))
	return root, sims
}

func TestPowerCommandAgainstIPMISim(t *testing.T) {
	netlab.Require(t)
	netlab.RequireTools(t, "ipmi_sim")
	ns := netlab.NewNS(t)
	root, sims := powerSite(t, ns)
	bin, err := buildBinary()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	wwboot := func(args ...string) (string, error) {
		out, err := ns.Command(ctx, bin, append([]string{"--root", root}, args...)...).CombinedOutput()
		return string(out), err
	}

	out, err := wwboot("power", "on", "n[1-3]")
	require.NoError(t, err, out)
	for i, s := range sims {
		on, err := s.Power()
		require.NoError(t, err)
		assert.True(t, on, "n%d", i+1)
	}
	assert.Regexp(t, `(?m)^n2\s+on\s`, out)

	out, err = wwboot("power", "status", "-o", "json", "n1,n3", "n2")
	require.NoError(t, err, out)
	var res []struct{ Node, State, Error string }
	require.NoError(t, json.Unmarshal([]byte(out), &res), out)
	require.Len(t, res, 3)
	assert.Equal(t, []string{"n1", "n3", "n2"}, []string{res[0].Node, res[1].Node, res[2].Node})
	for _, r := range res {
		assert.Equal(t, "on", r.State, r.Node)
	}

	// Every node gets its line; the two without a working BMC fail alone,
	// and the command says so with its exit status.
	out, err = wwboot("power", "off", "--timeout", "8s", "n*")
	require.Error(t, err)
	assert.Contains(t, out, "2 of 5 nodes failed")
	assert.Regexp(t, `(?m)^n1\s+off\s`, out)
	assert.Regexp(t, `(?m)^n4\s+unknown\s.*127\.0\.1\.4:623`, out)
	assert.Regexp(t, `(?m)^n5\s+unknown\s.*no BMC configured`, out)
	assert.NotContains(t, out, powerTestPass)
	for _, s := range sims {
		on, err := s.Power()
		require.NoError(t, err)
		assert.False(t, on)
	}

	// Unknown nodes are refused before any BMC is touched.
	before, err := sims[0].Calls()
	require.NoError(t, err)
	out, err = wwboot("power", "on", "n1", "n[8-9]")
	require.Error(t, err)
	assert.Contains(t, out, "node n[8-9]: not found")
	after, err := sims[0].Calls()
	require.NoError(t, err)
	assert.Equal(t, before, after)

	out, err = wwboot("power", "explode", "n1")
	require.Error(t, err)
	assert.Contains(t, out, `power action "explode": use on, off, cycle, reset or status`)
}

// TestNodeConsole attaches `wwboot node console` to a node whose serial port
// (a TCP socket here, QEMU's -serial tcp later) sits behind ipmi_sim.
func TestNodeConsole(t *testing.T) {
	netlab.Require(t)
	netlab.RequireTools(t, "ipmi_sim")
	ns := netlab.NewNS(t)
	var ln net.Listener
	require.NoError(t, ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}))
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		line, err := r.ReadString('\r')
		if err != nil {
			return
		}
		_, _ = c.Write([]byte("node says: " + strings.TrimSpace(line) + "\r\n"))
		_, _ = io.Copy(io.Discard, r)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	sim, err := ipmisim.Start(ctx, ipmisim.Options{Dir: dir, Addr: "127.0.1.50", Username: "admin", Password: powerTestPass, Command: ns.Command, SOL: "tcp:" + ln.Addr().String()})
	require.NoError(t, err)
	defer sim.Close()
	root := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(root, "nodes.conf"), []byte(`nodeprofiles: {}
nodes:
  n1:
    ipmi: {ipaddr: 127.0.1.50, username: admin, password: `+powerTestPass+`, interface: lanplus, escapechar: "&"}
`), 0o644))
	bin, err := buildBinary()
	require.NoError(t, err)

	cmd := ns.Command(ctx, bin, "--root", root, "node", "console", "n1")
	inR, inW, err := os.Pipe() // a file: the child reads it directly
	require.NoError(t, err)
	defer inW.Close()
	cmd.Stdin = inR
	var out, errb syncBuf
	cmd.Stdout, cmd.Stderr = &out, &errb
	require.NoError(t, cmd.Start())
	require.NoError(t, inR.Close())
	_, err = inW.Write([]byte("hostname\r"))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "node says: hostname\r\n") }, 15*time.Second, 50*time.Millisecond, "stdout %q stderr %q", out.String(), errb.String())
	_, err = inW.Write([]byte("&."))
	require.NoError(t, err)
	// The escape alone ends the console: stdin stays open.
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		require.NoError(t, err, errb.String())
	case <-time.After(10 * time.Second):
		t.Fatalf("console did not end at &.: %s", errb.String())
	}
	assert.Contains(t, errb.String(), "[console of n1; type &. at the start of a line to leave]")
	assert.NotContains(t, out.String()+errb.String(), powerTestPass)
}

// syncBuf collects a child's output while the test reads it.
type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
