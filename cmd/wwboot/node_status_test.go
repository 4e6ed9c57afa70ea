package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/provision"
)

// statusServer answers /api/v1/status with the states of n1 and n2 given for
// each successive request (the last one repeats).
func statusServer(t *testing.T, steps ...map[string]string) *httptest.Server {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.Equal(t, "/api/v1/status", r.URL.Path)
		i := int(calls.Add(1)) - 1
		if i >= len(steps) {
			i = len(steps) - 1
		}
		st := provision.Status{Now: time.Now(), Unseen: []string{"other"}}
		for _, n := range []string{"n1", "n2"} {
			s := provision.NodeStatus{Node: n, Hwaddr: "52:54:00:00:00:01", State: steps[i][n]}
			if s.State == "failed" {
				s.Reason = "mkfs failed"
			}
			st.Nodes = append(st.Nodes, s)
		}
		require.NoError(t, json.NewEncoder(w).Encode(st))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestNodeStatusWait(t *testing.T) {
	root := t.TempDir()
	fast := []string{"--interval", "10ms"}

	srv := statusServer(t,
		map[string]string{"n1": "booting", "n2": "down"},
		map[string]string{"n1": "up", "n2": "booting"},
		map[string]string{"n1": "up", "n2": "up"})
	out, err := run(t, root, append([]string{"node", "status", "n*", "--server", srv.URL, "--wait"}, fast...)...)
	require.NoError(t, err, out)
	assert.Contains(t, out, "n1 booting")
	assert.Contains(t, out, "n2 up")
	assert.Contains(t, out, "all 2 nodes up")
	assert.NotContains(t, out, "other", "only the nodes named")

	// Without --wait: one table of the nodes named.
	out = mustRun(t, root, "node", "status", "n2", "--server", srv.URL)
	assert.Contains(t, out, "n2")
	assert.NotContains(t, out, "n1 ")

	// A node that fails ends the wait with its reason.
	srv = statusServer(t, map[string]string{"n1": "booting", "n2": "failed"})
	_, err = run(t, root, append([]string{"node", "status", "--server", srv.URL, "--wait", "n1", "n2"}, fast...)...)
	assert.ErrorContains(t, err, "n2 (mkfs failed)")

	// The timeout names the nodes not there.
	srv = statusServer(t, map[string]string{"n1": "up", "n2": "booting"})
	start := time.Now()
	_, err = run(t, root, append([]string{"node", "status", "--server", srv.URL, "--wait=up", "--wait-timeout", "200ms", "n1", "n2"}, fast...)...)
	assert.ErrorContains(t, err, "not up: n2")
	assert.Less(t, time.Since(start), 5*time.Second)

	_, err = run(t, root, "node", "status", "--server", srv.URL, "--wait=sleeping")
	assert.ErrorContains(t, err, "use up, booting, down or failed")
	_, err = run(t, root, append([]string{"node", "status", "--server", srv.URL, "--wait", "zz*"}, fast...)...)
	assert.ErrorContains(t, err, "no node matches")
}

// TestCompletion: cobra's completion scripts exist, and node, overlay and
// image arguments complete to the names in ROOT.
func TestCompletion(t *testing.T) {
	root := t.TempDir()
	mustRun(t, root, "init")
	mustRun(t, root, "node", "add", "n1", "--hwaddr", "52:54:00:00:00:01")
	mustRun(t, root, "node", "add", "n2", "--hwaddr", "52:54:00:00:00:02")
	mustRun(t, root, "overlay", "create", "mysite")
	assert.Contains(t, mustRun(t, root, "completion", "bash"), "bash completion")

	out := mustRun(t, root, "__complete", "node", "show", "")
	assert.Contains(t, out, "n1\nn2\n")
	out = mustRun(t, root, "__complete", "overlay", "info", "")
	assert.Contains(t, out, "mysite\n")
	assert.Contains(t, out, "wwinit\n")
	out = mustRun(t, root, "__complete", "profile", "show", "")
	assert.True(t, strings.HasPrefix(out, "default\n"), out)
}
