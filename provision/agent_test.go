package provision_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/agent"
	"github.com/wwboot/wwboot/nodedb"
	"github.com/wwboot/wwboot/overlay"
	"github.com/wwboot/wwboot/provision"
	"github.com/wwboot/wwboot/provision/netlab"
)

// clock is a settable clock for the status.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func nodeStatus(t *testing.T, h *provision.Handler, name string) provision.NodeStatus {
	t.Helper()
	for _, s := range h.Status().Nodes {
		if s.Node == name {
			return s
		}
	}
	t.Fatalf("node %s not in the status", name)
	return provision.NodeStatus{}
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// TestAgentLongPollFollowsTheInventory runs the node agent against a real
// handler over loopback, from a privileged port as secure mode requires: it
// applies the runtime overlay, then holds one request open (no polling),
// and a change to the inventory reaches the node's files in about a second.
func TestAgentLongPollFollowsTheInventory(t *testing.T) {
	netlab.Require(t) // root, for the privileged source port
	l := newLab(t)
	clk := &clock{t: time.Now()}
	opts := l.options(t)
	opts.Now = clk.Now
	h, err := provision.NewHandler(opts)
	require.NoError(t, err)
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	hw, err := nodedb.ParseHW(mac1)
	require.NoError(t, err)
	root := t.TempDir()
	ag := &agent.Agent{URL: ts.URL, HWAddr: hw, Root: root, Wait: 30 * time.Second, Heartbeat: time.Hour}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ag.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(5 * time.Second):
			t.Error("the agent did not stop when its context ended")
		}
	})
	hosts := filepath.Join(root, "etc", "hosts")
	require.Eventually(t, func() bool { return strings.Contains(readFile(hosts), "n2") }, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return nodeStatus(t, h, "n1").State == provision.StateUp }, 5*time.Second, 10*time.Millisecond,
		"the first heartbeat makes the node up")

	// Idle: the agent's request is held, not repeated.
	time.Sleep(300 * time.Millisecond) // into its long-poll
	before := nodeStatus(t, h, "n1").Requests
	time.Sleep(time.Second)
	assert.Equal(t, before, nodeStatus(t, h, "n1").Requests, "no request finished in a second of idling: a long-poll, not a poll")

	start := time.Now()
	require.NoError(t, l.store.Update(context.Background(), func(c *nodedb.Config) error {
		c.Nodes["n3"] = &nodedb.Record{Profiles: []string{"default"}, NetDevs: map[string]*nodedb.NetDev{
			"default": {Hwaddr: "aa:bb:cc:dd:ee:03", Ipaddr: "127.0.0.3"}}}
		return nil
	}))
	require.Eventually(t, func() bool { return strings.Contains(readFile(hosts), "127.0.0.3") }, 5*time.Second, 5*time.Millisecond)
	took := time.Since(start)
	t.Logf("inventory change to the node's /etc/hosts: %v", took.Round(time.Millisecond))
	assert.Less(t, took, 1500*time.Millisecond, "a change reaches the node in about a second")

	// The state file remembers what was applied: a restarted agent (a new
	// Agent on the same root) asks with its ETag and gets 304.
	state := filepath.Join(root, agent.DefaultStateFile)
	require.Eventually(t, func() bool { return ag.ETag() != "" && strings.HasPrefix(readFile(state), ag.ETag()+"\n") },
		5*time.Second, 5*time.Millisecond, "the state file follows the apply")
	ag2 := &agent.Agent{URL: ts.URL, HWAddr: hw, Root: root}
	changed, err := ag2.Sync(context.Background(), 0)
	require.NoError(t, err)
	assert.False(t, changed)
	assert.NotEmpty(t, ag2.ETag())

	// From an ordinary port the server refuses, as secure mode requires.
	plain := &agent.Agent{URL: ts.URL, HWAddr: hw, Root: t.TempDir(), Dial: agent.DialAny}
	_, err = plain.Sync(context.Background(), 0)
	assert.ErrorContains(t, err, "403")
	assert.ErrorContains(t, plain.Report(context.Background(), agent.StateUp, "agent", ""), "403")
}

// TestLongPollAnswers checks the server side of the long-poll with a plain
// HTTP client: a stale or missing ETag is answered at once, a current one
// is held until the wait ends (304), and StopWaiting answers held requests
// at once.
func TestLongPollAnswers(t *testing.T) {
	l := newLab(t)
	opts := l.options(t)
	opts.InsecurePorts = true
	h, err := provision.NewHandler(opts)
	require.NoError(t, err)
	ts := httptest.NewServer(h)
	defer ts.Close()
	u := ts.URL + "/overlay/runtime/" + mac1
	resp, _ := get(t, u+"?wait=10")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	etag := resp.Header.Get("ETag")
	require.NotEmpty(t, etag)

	start := time.Now()
	resp, _ = get(t, u+"?wait=10", "If-None-Match", `"stale"`)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Less(t, time.Since(start), time.Second, "a stale ETag is answered at once")

	start = time.Now()
	resp, body := get(t, u+"?wait=1", "If-None-Match", etag)
	assert.Equal(t, http.StatusNotModified, resp.StatusCode, "%s", body)
	assert.Equal(t, etag, resp.Header.Get("ETag"))
	assert.GreaterOrEqual(t, time.Since(start), time.Second)
	assert.Less(t, time.Since(start), 3*time.Second)

	resp, _ = get(t, u+"?wait=abc", "If-None-Match", etag)
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)

	go func() {
		time.Sleep(300 * time.Millisecond)
		h.StopWaiting()
	}()
	start = time.Now()
	resp, _ = get(t, u+"?wait=60", "If-None-Match", etag)
	assert.Equal(t, http.StatusNotModified, resp.StatusCode)
	assert.Less(t, time.Since(start), 5*time.Second, "StopWaiting ends the wait")

	// Over HTTP/2 (no hijacking) the request waits in the handler, woken
	// the same way.
	opts.Registry = nil
	h3, err := provision.NewHandler(opts)
	require.NoError(t, err)
	ts3 := httptest.NewUnstartedServer(h3)
	ts3.EnableHTTP2 = true
	ts3.StartTLS()
	defer ts3.Close()
	h2get := func(wait string) (*http.Response, time.Duration) {
		req, err := http.NewRequest(http.MethodGet, ts3.URL+"/overlay/runtime/"+mac1+"?wait="+wait, nil)
		require.NoError(t, err)
		req.Header.Set("If-None-Match", etag)
		start := time.Now()
		resp, err := ts3.Client().Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp, time.Since(start)
	}
	resp, took := h2get("1")
	assert.Equal(t, 2, resp.ProtoMajor)
	assert.Equal(t, http.StatusNotModified, resp.StatusCode)
	assert.GreaterOrEqual(t, took, time.Second)
	go func() {
		time.Sleep(300 * time.Millisecond)
		assert.NoError(t, l.store.Update(context.Background(), func(c *nodedb.Config) error {
			c.Nodes["n3"] = &nodedb.Record{Profiles: []string{"default"}, NetDevs: map[string]*nodedb.NetDev{
				"default": {Hwaddr: "aa:bb:cc:dd:ee:03", Ipaddr: "127.0.0.3"}}}
			return nil
		}))
	}()
	resp, took = h2get("30")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.NotEqual(t, etag, resp.Header.Get("ETag"))
	assert.Less(t, took, 2*time.Second, "the change ends the wait")
	resp, _ = get(t, u)
	etag = resp.Header.Get("ETag")

	// Notify wakes waiters; with nothing changed they keep waiting.
	opts.Registry = nil
	h2, err := provision.NewHandler(opts)
	require.NoError(t, err)
	ts2 := httptest.NewServer(h2)
	defer ts2.Close()
	go func() {
		time.Sleep(200 * time.Millisecond)
		h2.Notify()
	}()
	start = time.Now()
	resp, _ = get(t, ts2.URL+"/overlay/runtime/"+mac1+"?wait=1", "If-None-Match", etag)
	assert.Equal(t, http.StatusNotModified, resp.StatusCode)
	assert.GreaterOrEqual(t, time.Since(start), time.Second, "woken for nothing, it waits on")
}

// TestNodeStateFromReports: heartbeats make a node up, silence makes it
// down, a reported failure makes it failed with its reason until it boots
// again, and a boot that goes quiet without a heartbeat ends down with a
// hint.
func TestNodeStateFromReports(t *testing.T) {
	netlab.Require(t) // root, for the privileged source port
	l := newLab(t)
	clk := &clock{t: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)}
	opts := l.options(t)
	opts.Now = clk.Now
	h, err := provision.NewHandler(opts)
	require.NoError(t, err)
	ts := httptest.NewServer(h)
	defer ts.Close()
	ctx := context.Background()
	hw, _ := nodedb.ParseHW(mac1)
	ag := &agent.Agent{URL: ts.URL, HWAddr: hw, Root: t.TempDir()}

	resp, _ := get(t, ts.URL+"/ipxe/"+mac1)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	s := nodeStatus(t, h, "n1")
	assert.Equal(t, provision.StateBooting, s.State)
	assert.Contains(t, s.Reason, "fetched ipxe")

	clk.Add(time.Second)
	require.NoError(t, ag.Report(ctx, agent.StateBooting, "init", "unpacked"))
	s = nodeStatus(t, h, "n1")
	assert.Equal(t, provision.StateBooting, s.State)
	assert.Equal(t, "init: unpacked", s.Reason)

	clk.Add(time.Second)
	require.NoError(t, ag.Report(ctx, agent.StateUp, "agent", ""))
	s = nodeStatus(t, h, "n1")
	assert.Equal(t, provision.StateUp, s.State)
	assert.Equal(t, clk.Now(), s.Heartbeat)

	clk.Add(provision.DefaultHeartbeatTimeout - time.Second)
	assert.Equal(t, provision.StateUp, nodeStatus(t, h, "n1").State)
	clk.Add(2 * time.Second)
	s = nodeStatus(t, h, "n1")
	assert.Equal(t, provision.StateDown, s.State)
	assert.Equal(t, "no heartbeat for 1m41s", s.Reason)

	clk.Add(time.Second)
	require.NoError(t, ag.Report(ctx, agent.StateFailed, "init", "system overlay incomplete:\nno end marker\x00"))
	s = nodeStatus(t, h, "n1")
	assert.Equal(t, provision.StateFailed, s.State)
	assert.Equal(t, "init: system overlay incomplete: no end marker", s.Reason)
	clk.Add(time.Hour)
	assert.Equal(t, provision.StateFailed, nodeStatus(t, h, "n1").State, "failed stays failed")

	// The node boots again: booting, then quiet without a heartbeat.
	resp, _ = get(t, ts.URL+"/ipxe/"+mac1)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, provision.StateBooting, nodeStatus(t, h, "n1").State)
	clk.Add(provision.DefaultBootTimeout + time.Second)
	s = nodeStatus(t, h, "n1")
	assert.Equal(t, provision.StateDown, s.State)
	assert.Contains(t, s.Reason, "wwclient")

	// /status carries the same, as JSON.
	resp, body := get(t, ts.URL+"/status")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, string(body), `"state": "down"`)
	assert.Contains(t, string(body), `"reported": "failed"`)

	// Refused: another node's address, a bad body, an unknown MAC.
	hw2, _ := nodedb.ParseHW(mac2)
	other := &agent.Agent{URL: ts.URL, HWAddr: hw2, Root: t.TempDir(), AssetKey: asset}
	assert.ErrorContains(t, other.Report(ctx, agent.StateUp, "agent", ""), "403", "n2's reports come from n2's address only")
	unknown := &agent.Agent{URL: ts.URL, HWAddr: []byte{2, 0, 0, 0, 0, 9}, Root: t.TempDir()}
	assert.ErrorContains(t, unknown.Report(ctx, agent.StateUp, "agent", ""), "404")
	assert.ErrorContains(t, ag.Report(ctx, "dancing", "agent", ""), "use up, booting or failed")

	opts.InsecurePorts, opts.AnySourceAddr, opts.Registry = true, true, nil
	hi, err := provision.NewHandler(opts)
	require.NoError(t, err)
	tsi := httptest.NewServer(hi)
	defer tsi.Close()
	for body, code := range map[string]int{
		`{"state":"up"}`:                    http.StatusNoContent,
		`{"state":"sleeping"}`:              http.StatusBadRequest,
		`{"state":"up","stage":"a b"}`:      http.StatusBadRequest,
		`not json`:                          http.StatusBadRequest,
		`{"state":"up"} {"state":"failed"}`: http.StatusBadRequest,
		`{"state":"up","reason":"` + strings.Repeat("x", 5000) + `"}`: http.StatusRequestEntityTooLarge,
	} {
		resp, err := http.Post(tsi.URL+"/agent/"+mac1, "application/json", bytes.NewBufferString(body))
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, code, resp.StatusCode, body)
	}
}

// TestLongPollRechecksServerFiles: a change no one announces (the server's
// authorized_keys file, which the runtime overlay includes) reaches a
// waiting agent at the next recheck; with rechecks off it does not.
func TestLongPollRechecksServerFiles(t *testing.T) {
	l := newLab(t)
	keys := filepath.Join(t.TempDir(), "authorized_keys")
	require.NoError(t, os.WriteFile(keys, []byte("ssh-ed25519 AAAAfirst first@admin\n"), 0o600))
	ov, err := overlay.New(overlay.Options{KeyDir: t.TempDir(), CheckInterval: -1,
		Server: overlay.ServerInfo{Ipaddr: "127.0.0.1", Netmask: "255.0.0.0", Ssh: overlay.SSHConf{AuthorizedKeys: keys}}})
	require.NoError(t, err)
	serve := func(recheck time.Duration) string {
		opts := l.options(t)
		opts.Overlays, opts.InsecurePorts, opts.RecheckInterval, opts.Registry = ov, true, recheck, nil
		h, err := provision.NewHandler(opts)
		require.NoError(t, err)
		ts := httptest.NewServer(h)
		t.Cleanup(ts.Close)
		return ts.URL + "/overlay/runtime/" + mac1
	}
	for _, tc := range []struct {
		recheck time.Duration
		want    int
	}{{-1, http.StatusNotModified}, {300 * time.Millisecond, http.StatusOK}} {
		u := serve(tc.recheck)
		resp, _ := get(t, u)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		etag := resp.Header.Get("ETag")
		go func() {
			time.Sleep(200 * time.Millisecond)
			assert.NoError(t, os.WriteFile(keys, []byte("ssh-ed25519 AAAA"+tc.recheck.String()+" new@admin\n"), 0o600))
		}()
		start := time.Now()
		resp, _ = get(t, u+"?wait=2", "If-None-Match", etag)
		assert.Equal(t, tc.want, resp.StatusCode, "recheck %v", tc.recheck)
		if tc.want == http.StatusOK {
			assert.Less(t, time.Since(start), 1500*time.Millisecond, "at the next recheck")
		}
	}
}
