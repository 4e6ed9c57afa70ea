package power

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/wwboot/wwboot/nodedb"
)

// slowBMC is an embedder's own BMC: it records concurrency and can hang or
// fail.
type slowBMC struct {
	delay   time.Duration
	fail    error
	state   State
	running *atomic.Int32
	peak    *atomic.Int32
	mu      sync.Mutex
	calls   []string
}

func (b *slowBMC) do(ctx context.Context, name string) error {
	n := b.running.Add(1)
	defer b.running.Add(-1)
	for {
		p := b.peak.Load()
		if n <= p || b.peak.CompareAndSwap(p, n) {
			break
		}
	}
	b.mu.Lock()
	b.calls = append(b.calls, name)
	b.mu.Unlock()
	select {
	case <-time.After(b.delay):
	case <-ctx.Done():
		return ctx.Err()
	}
	return b.fail
}

func (b *slowBMC) On(ctx context.Context) error    { return b.do(ctx, "on") }
func (b *slowBMC) Off(ctx context.Context) error   { return b.do(ctx, "off") }
func (b *slowBMC) Cycle(ctx context.Context) error { return b.do(ctx, "cycle") }
func (b *slowBMC) Reset(ctx context.Context) error { return b.do(ctx, "reset") }
func (b *slowBMC) Status(ctx context.Context) (State, error) {
	return b.state, b.do(ctx, "status")
}

func TestRunBoundsConcurrencyAndKeepsOrder(t *testing.T) {
	var running, peak atomic.Int32
	var targets []Target
	for i := range 40 {
		targets = append(targets, Target{Node: fmt.Sprint("n", i), BMC: &slowBMC{delay: 20 * time.Millisecond, state: StateOn, running: &running, peak: &peak}})
	}
	res := Run(context.Background(), targets, ActionStatus, Options{Concurrency: 5})
	require.Len(t, res, 40)
	for i, r := range res {
		assert.Equal(t, fmt.Sprint("n", i), r.Node)
		assert.Equal(t, StateOn, r.State)
		assert.NoError(t, r.Err)
		assert.GreaterOrEqual(t, r.Took, 20*time.Millisecond)
	}
	assert.Equal(t, int32(5), peak.Load(), "at most 5 at once, and 5 were used")
}

func TestRunPerNodeTimeoutAndErrors(t *testing.T) {
	var running, peak atomic.Int32
	boom := errors.New("bmc said no")
	targets := []Target{
		{Node: "ok", BMC: &slowBMC{running: &running, peak: &peak}},
		{Node: "hangs", BMC: &slowBMC{delay: time.Hour, running: &running, peak: &peak}},
		{Node: "fails", BMC: &slowBMC{fail: boom, running: &running, peak: &peak}},
		{Node: "unconfigured", Err: fmt.Errorf("ipmi.port %q: not a port number", "x")},
		{Node: "nil"},
	}
	var logBuf bytes.Buffer
	start := time.Now()
	res := Run(context.Background(), targets, ActionOff, Options{Timeout: 100 * time.Millisecond, Log: slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	assert.Less(t, time.Since(start), 2*time.Second)
	assert.NoError(t, res[0].Err)
	assert.Equal(t, StateOff, res[0].State)
	require.Error(t, res[1].Err)
	assert.ErrorIs(t, res[1].Err, context.DeadlineExceeded)
	assert.ErrorIs(t, res[2].Err, boom)
	assert.Equal(t, "bmc said no", res[2].Error)
	assert.Contains(t, res[3].Error, "ipmi.port")
	assert.Contains(t, res[4].Error, "no BMC")
	for _, r := range res[1:] {
		assert.Equal(t, StateUnknown, r.State, r.Node)
	}
	assert.Contains(t, logBuf.String(), "node=hangs")
}

func TestRunStopsStartingWhenCancelled(t *testing.T) {
	var running, peak atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	var targets []Target
	for i := range 10 {
		targets = append(targets, Target{Node: fmt.Sprint("n", i), BMC: &slowBMC{delay: time.Hour, running: &running, peak: &peak}})
	}
	time.AfterFunc(50*time.Millisecond, cancel)
	res := Run(ctx, targets, ActionOn, Options{Concurrency: 2})
	for _, r := range res {
		assert.ErrorIs(t, r.Err, context.Canceled, r.Node)
	}
	assert.Contains(t, res[9].Error, "not started")
}

func TestDoMapsActions(t *testing.T) {
	var running, peak atomic.Int32
	b := &slowBMC{state: StateOff, running: &running, peak: &peak}
	for _, a := range []Action{ActionOn, ActionOff, ActionCycle, ActionReset, ActionStatus} {
		_, err := Do(context.Background(), b, a)
		require.NoError(t, err)
	}
	assert.Equal(t, []string{"on", "off", "cycle", "reset", "status"}, b.calls)
	_, err := Do(context.Background(), b, "explode")
	assert.Error(t, err)
}

func TestParseAction(t *testing.T) {
	a, err := ParseAction(" ON ")
	require.NoError(t, err)
	assert.Equal(t, ActionOn, a)
	_, err = ParseAction("soft")
	assert.ErrorContains(t, err, "use on, off, cycle, reset or status")
}

func TestConfigFromIPMI(t *testing.T) {
	c, err := ConfigFromIPMI(&nodedb.IPMI{Ipaddr: "10.0.0.5", Port: "6230", UserName: "admin", Password: "pw-1", Interface: "LAN", EscapeChar: "~", Template: "ipmitool.tmpl"})
	require.NoError(t, err)
	assert.Equal(t, Config{Host: "10.0.0.5", Port: 6230, Username: "admin", Password: "pw-1", Interface: "lan", EscapeChar: "~", Template: "ipmitool.tmpl"}, c)
	assert.NotContains(t, c.String(), "pw-1")
	assert.Contains(t, c.String(), "password=***")
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("bmc", "config", c)
	assert.NotContains(t, buf.String(), "pw-1")
	b, err := New(c)
	require.NoError(t, err)
	assert.IsType(t, &IPMI{}, b)

	for _, tc := range []struct {
		in   *nodedb.IPMI
		want string
	}{
		{nil, "no BMC"},
		{&nodedb.IPMI{UserName: "a"}, "set ipmi ipaddr"},
		{&nodedb.IPMI{Ipaddr: "h", Port: "70000"}, "ipmi.port"},
		{&nodedb.IPMI{Ipaddr: "h", Interface: "serial"}, "ipmi.interface"},
		{&nodedb.IPMI{Ipaddr: "h", Interface: "lan", Template: "redfish"}, "ipmi.interface"},
		{&nodedb.IPMI{Ipaddr: "h", EscapeChar: "~."}, "ipmi.escapechar"},
		{&nodedb.IPMI{Ipaddr: "h", Template: "kind-qemu.tmpl"}, "ipmi template"},
		{&nodedb.IPMI{Ipaddr: "h", Template: "nobmc.tmpl"}, "no BMC"},
		{&nodedb.IPMI{Ipaddr: "a b"}, "ipmi.ipaddr"},
	} {
		_, err := ConfigFromIPMI(tc.in)
		assert.ErrorContains(t, err, tc.want)
	}
	_, err = ConfigFromIPMI(&nodedb.IPMI{Ipaddr: "h", Template: "nobmc.tmpl"})
	assert.ErrorIs(t, err, ErrNoBMC)
}

func TestRedactError(t *testing.T) {
	base := fmt.Errorf("login with pw Hunter2 failed: %w", context.DeadlineExceeded)
	err := redactError(base, "Hunter2")
	assert.Equal(t, "login with pw *** failed: context deadline exceeded", err.Error())
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Nil(t, errors.Unwrap(err), "the original text is not reachable")
	assert.Same(t, base, redactError(base, ""))
}

// FuzzConfigFromIPMI: nodes.conf's ipmi: fields are validated at the edge;
// whatever passes has a usable port, a driver, and a description without
// the password.
func FuzzConfigFromIPMI(f *testing.F) {
	f.Add("10.0.0.5", "623", "admin", "pw", "lanplus", "~", "ipmitool.tmpl")
	f.Add("bmc-n1", "", "root", "x y", "", "", "redfish")
	f.Add("h", "0", "", "", "LAN", "~.", "nobmc.tmpl")
	f.Fuzz(func(t *testing.T, addr, port, user, pass, iface, esc, tmpl string) {
		c, err := ConfigFromIPMI(&nodedb.IPMI{Ipaddr: addr, Port: port, UserName: user, Password: pass, Interface: iface, EscapeChar: esc, Template: tmpl})
		if err != nil {
			return
		}
		require.True(t, c.Port >= 0 && c.Port <= 65535)
		_, err = c.Driver()
		require.NoError(t, err)
		if len(pass) >= 4 && !strings.Contains(user+addr+iface, pass) {
			require.NotContains(t, c.String(), pass)
		}
		_, err = New(c)
		require.NoError(t, err)
	})
}
