package power

import (
	"context"
	"fmt"
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

const (
	simUser = "admin"
	simPass = "Sim-s3cret!pw"
)

// lab is a network namespace holding simulated BMCs on 127.0.1.N.
type lab struct {
	ns *netlab.NS
}

func newLab(t testing.TB) *lab {
	t.Helper()
	netlab.Require(t)
	netlab.RequireTools(t, "ipmi_sim")
	return &lab{ns: netlab.NewNS(t)}
}

// sim starts ipmi_sim number i on 127.0.1.i:623 inside the namespace.
func (l *lab) sim(t testing.TB, i int, hook string) *ipmisim.Sim {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := filepath.Join(t.TempDir(), fmt.Sprint("bmc", i))
	require.NoError(t, os.MkdirAll(dir, 0o755))
	s, err := ipmisim.Start(ctx, ipmisim.Options{
		Dir: dir, Addr: fmt.Sprintf("127.0.1.%d", i), Username: simUser, Password: simPass,
		Hook: hook, Command: l.ns.Command,
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// dial opens sockets inside the namespace.
func (l *lab) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := l.ns.Do(func() error {
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

func (l *lab) bmc(i int, iface string) *IPMI {
	return NewIPMI(Config{Host: fmt.Sprintf("127.0.1.%d", i), Username: simUser, Password: simPass, Interface: iface, Dial: l.dial})
}

func TestIPMIAgainstIPMISim(t *testing.T) {
	l := newLab(t)
	for i, iface := range []string{"lanplus", "lan", ""} {
		t.Run("interface="+iface, func(t *testing.T) {
			sim := l.sim(t, i+1, "")
			b := l.bmc(i+1, iface)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()

			st, err := b.Status(ctx)
			require.NoError(t, err)
			assert.Equal(t, StateOff, st)

			start := time.Now()
			require.NoError(t, b.On(ctx))
			// ipmi_sim offers cipher suites up to 3; offering 17 first must
			// not cost a timeout.
			assert.Less(t, time.Since(start), 3*time.Second, "session setup fell into the Get Channel Cipher Suites timeout (4 s)")
			on, err := sim.Power()
			require.NoError(t, err)
			assert.True(t, on, "the chassis program recorded power on")
			st, err = b.Status(ctx)
			require.NoError(t, err)
			assert.Equal(t, StateOn, st)

			require.NoError(t, b.Reset(ctx))
			require.NoError(t, b.Off(ctx))
			on, err = sim.Power()
			require.NoError(t, err)
			assert.False(t, on)
			st, err = b.Status(ctx)
			require.NoError(t, err)
			assert.Equal(t, StateOff, st)

			require.NoError(t, b.Cycle(ctx))
			// ipmi_sim powers off at once and on again about a second later.
			require.Eventually(t, func() bool { on, _ := sim.Power(); return on }, 5*time.Second, 50*time.Millisecond)
			calls, err := sim.Calls()
			require.NoError(t, err)
			assert.Contains(t, calls, "set power 1")
			assert.Contains(t, calls, "set power 0")
			assert.Contains(t, calls, "set reset 1")
		})
	}
}

// TestIPMIStateSeenByIpmitool: what wwboot sets, ipmitool (a second, C
// client) reads from the same BMC, and the other way round.
func TestIPMIStateSeenByIpmitool(t *testing.T) {
	l := newLab(t)
	netlab.RequireTools(t, "ipmitool")
	l.sim(t, 9, "")
	b := l.bmc(9, "lanplus")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ipmitool := func(args ...string) string {
		cmd := l.ns.Command(ctx, "ipmitool", append([]string{"-I", "lanplus", "-C", "3", "-H", "127.0.1.9", "-U", simUser, "-E"}, args...)...)
		cmd.Env = append(os.Environ(), "IPMI_PASSWORD="+simPass)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		return strings.TrimSpace(string(out))
	}
	require.NoError(t, b.On(ctx))
	assert.Equal(t, "Chassis Power is on", ipmitool("chassis", "power", "status"))
	ipmitool("chassis", "power", "off")
	st, err := b.Status(ctx)
	require.NoError(t, err)
	assert.Equal(t, StateOff, st)
}

func TestIPMIHookRuns(t *testing.T) {
	l := newLab(t)
	dir := t.TempDir()
	hook := filepath.Join(dir, "hook")
	record := filepath.Join(dir, "record")
	require.NoError(t, os.WriteFile(hook, []byte("#!/bin/sh\necho \"$1\" >> "+record+"\n"), 0o755))
	l.sim(t, 20, hook)
	b := l.bmc(20, "lanplus")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, b.On(ctx))
	require.NoError(t, b.Reset(ctx))
	require.NoError(t, b.Off(ctx))
	got, err := os.ReadFile(record)
	require.NoError(t, err)
	assert.Equal(t, "on\nreset\noff\n", string(got))

	// A failing hook fails the IPMI command: the BMC answers with an error
	// completion code.
	require.NoError(t, os.WriteFile(hook, []byte("#!/bin/sh\nexit 3\n"), 0o755))
	err = b.On(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "chassis control 1")
}

func TestIPMIErrorsNameTheBMCAndHideThePassword(t *testing.T) {
	l := newLab(t)
	l.sim(t, 30, "")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	wrong := NewIPMI(Config{Host: "127.0.1.30", Username: simUser, Password: "Wrong-pw-" + simPass, Dial: l.dial})
	_, err := wrong.Status(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "127.0.1.30:623")
	assert.Contains(t, err.Error(), "open session")
	assert.NotContains(t, err.Error(), simPass)

	// Nobody listens on .31: the per-node timeout bounds the attempt.
	gone := NewIPMI(Config{Host: "127.0.1.31", Username: simUser, Password: simPass, Dial: l.dial})
	short, cancel2 := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel2()
	start := time.Now()
	_, err = gone.Status(short)
	require.Error(t, err)
	assert.Less(t, time.Since(start), 3*time.Second)
	assert.NotContains(t, err.Error(), simPass)
}

// TestRunManyIPMISims drives 20 real BMCs at once through Run: every node
// gets its own result, one unreachable node fails alone.
func TestRunManyIPMISims(t *testing.T) {
	l := newLab(t)
	const n = 20
	sims := make([]*ipmisim.Sim, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() { defer wg.Done(); sims[i] = l.sim(t, 100+i, "") }()
	}
	wg.Wait()
	var targets []Target
	for i := range n {
		targets = append(targets, Target{Node: fmt.Sprintf("n%02d", i), BMC: l.bmc(100+i, "lanplus")})
	}
	targets = append(targets, Target{Node: "lost", BMC: l.bmc(250, "lanplus")})
	ctx := context.Background()
	res := Run(ctx, targets, ActionOn, Options{Concurrency: 8, Timeout: 10 * time.Second})
	require.Len(t, res, n+1)
	for i := range n {
		assert.Equal(t, fmt.Sprintf("n%02d", i), res[i].Node)
		assert.NoError(t, res[i].Err)
		on, err := sims[i].Power()
		require.NoError(t, err)
		assert.True(t, on, res[i].Node)
	}
	assert.Equal(t, "lost", res[n].Node)
	assert.Error(t, res[n].Err)
	assert.Equal(t, StateUnknown, res[n].State)

	res = Run(ctx, targets[:n], ActionStatus, Options{Concurrency: 8, Timeout: 10 * time.Second})
	for _, r := range res {
		assert.Equal(t, StateOn, r.State, r.Node)
	}
}

// BenchmarkIPMISims100 measures power operations per second across 100
// simulated BMCs (100 ipmi_sim processes, one address each, in one network
// namespace). Each iteration applies one action to all 100 through Run, at
// most 100 at once; every operation is a full RMCP+ session (Get Channel
// Authentication Capabilities, Open Session offering suite 17 then 3, RAKP
// 1-4, Set Session Privilege, the command, Close Session). status reads Get
// Chassis Status; on-off alternates Chassis Control up and down.
func BenchmarkIPMISims100(b *testing.B) {
	l := newLab(b)
	const n = 100
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() { defer wg.Done(); l.sim(b, 1+i, "") }()
	}
	wg.Wait()
	var targets []Target
	for i := range n {
		targets = append(targets, Target{Node: fmt.Sprint("n", i), BMC: l.bmc(1+i, "lanplus")})
	}
	ctx := context.Background()
	for _, bc := range []struct {
		name    string
		actions []Action
	}{
		{"status", []Action{ActionStatus}},
		{"on-off", []Action{ActionOn, ActionOff}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			start := time.Now()
			i := 0
			for b.Loop() {
				a := bc.actions[i%len(bc.actions)]
				i++
				for _, r := range Run(ctx, targets, a, Options{Concurrency: n, Timeout: 10 * time.Second}) {
					if r.Err != nil {
						b.Fatal(r.Node, r.Err)
					}
				}
			}
			b.ReportMetric(float64(n*b.N)/time.Since(start).Seconds(), "ops/s")
		})
	}
}
