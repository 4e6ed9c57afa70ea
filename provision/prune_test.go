package provision_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/nodedb"
	"github.com/wwboot/wwboot/provision/netlab"
)

// privilegedFrom connects from address ip and a privileged source port, as a
// node's agent on that address does (root only).
func privilegedFrom(ip string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var last error
		for port := 600; port < 1024; port++ {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip), Port: port}}
			c, err := d.DialContext(ctx, network, addr)
			if err == nil {
				return c, nil
			}
			last = err
		}
		return nil, fmt.Errorf("no privileged port free on %s: %w", ip, last)
	}
}

// withoutNode returns the nodes.conf text conf (2-space indents) without
// node name's block, as an administrator deletes it in an editor.
func withoutNode(t *testing.T, conf, name string) string {
	t.Helper()
	var out strings.Builder
	skip, found := false, false
	for _, ln := range strings.SplitAfter(conf, "\n") {
		if ln == "  "+name+":\n" {
			skip, found = true, true
			continue
		}
		if skip && strings.HasPrefix(ln, "   ") {
			continue // the block's own lines, deeper than its key
		}
		skip = false
		out.WriteString(ln)
	}
	require.True(t, found, "node %s not found in:\n%s", name, conf)
	return out.String()
}

// TestHandEditPrunesWithoutRequests is the attacker review's repro: n3
// enrolls; an administrator deletes n3's block from nodes.conf by hand;
// nobody asks anything; the file is restored. The server drops n3's
// enrollment record when it sees the inventory without n3 (no request
// needed), so the old certificate gets 401 after the restore and the
// record stays gone.
func TestHandEditPrunesWithoutRequests(t *testing.T) {
	netlab.Require(t) // root, for the privileged source port of the enrollment
	ctx := context.Background()
	const mac3, ip3 = "aa:bb:cc:dd:ee:03", "127.0.0.3"
	l := newLab(t)
	require.NoError(t, l.store.Update(ctx, func(c *nodedb.Config) error {
		c.Nodes["n3"] = &nodedb.Record{Profiles: []string{"default"}, ImageName: "img", NetDevs: map[string]*nodedb.NetDev{
			"default": {Hwaddr: mac3, Ipaddr: ip3, Netmask: "255.0.0.0"}}}
		return nil
	}))
	tlsDir := filepath.Join(t.TempDir(), "tls")
	s := startServer(t, l, tlsDir, "", "")
	ag := s.nodeAgent(t, filepath.Join(t.TempDir(), "run"))
	var err error
	ag.HWAddr, err = nodedb.ParseHW(mac3)
	require.NoError(t, err)
	ag.Dial = privilegedFrom(ip3)
	_, err = ag.Sync(ctx, 0)
	require.NoError(t, err, "n3 enrolls")
	stolen := certClient(t, s, copyRun(t, ag.RunDir))
	code, body := runtimeOverTLS(t, s, stolen, mac3)
	require.Equal(t, http.StatusOK, code, body)
	record := filepath.Join(tlsDir, "nodes", "n3.json")
	require.FileExists(t, record)

	path := filepath.Join(l.root, "nodes.conf")
	orig, err := os.ReadFile(path)
	require.NoError(t, err)
	edited := withoutNode(t, string(orig), "n3")
	require.NotContains(t, edited, mac3)
	require.Contains(t, edited, mac1)
	require.NoError(t, os.WriteFile(path, []byte(edited), 0o644))

	// No request at all: the server sees the new inventory by itself.
	start := time.Now()
	require.Eventually(t, func() bool { _, err := os.Stat(record); return os.IsNotExist(err) },
		5*time.Second, 10*time.Millisecond, "n3's enrollment record is dropped with no request")
	t.Logf("hand edit to the record's removal, no request: %v", time.Since(start).Round(time.Millisecond))

	require.NoError(t, os.WriteFile(path, orig, 0o644))
	code, body = runtimeOverTLS(t, s, stolen, mac3)
	assert.Equal(t, http.StatusUnauthorized, code, "the old certificate after the restore: %s", body)
	assert.NotContains(t, body, "PRIVATE KEY")
	assert.NoFileExists(t, record, "the restored node has no enrollment until it boots and enrolls again")
}
