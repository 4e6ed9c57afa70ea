package provision_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
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
	"github.com/wwboot/wwboot/provision"
	"github.com/wwboot/wwboot/provision/netlab"
)

// certClient is an HTTPS client that presents the certificate an agent
// keeps in runDir (a copy of it: the attacker's).
func certClient(t *testing.T, s *tlsServer, runDir string) *http.Client {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(runDir, agent.CertFile), filepath.Join(runDir, agent.KeyFile))
	require.NoError(t, err)
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: s.ca.Pool(), ServerName: "127.0.0.1",
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }}}}
	t.Cleanup(cl.CloseIdleConnections)
	return cl
}

// runtimeOverTLS asks for mac's runtime overlay with client cl.
func runtimeOverTLS(t *testing.T, s *tlsServer, cl *http.Client, mac string) (int, string) {
	t.Helper()
	resp, err := cl.Get(s.sec + "/overlay/runtime/" + mac)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// copyDir copies the agent's key and certificate, as an attacker who stole
// them would.
func copyRun(t *testing.T, runDir string) string {
	t.Helper()
	dst := t.TempDir()
	for _, f := range []string{agent.CertFile, agent.KeyFile} {
		b, err := os.ReadFile(filepath.Join(runDir, f))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dst, f), b, 0o600))
	}
	return dst
}

// TestCertificateDiesWithItsNode: a node that leaves the inventory takes its
// certificate with it. n1 enrolls; its certificate (kept by an attacker)
// fetches n1's runtime overlay. Then n1 is deleted and added again with
// another MAC: whether the server saw the inventory without n1 (its record
// is pruned, on disk too) or not (one change deletes and re-adds it: the
// record names the old MAC), the old certificate gets 401 at the new n1's
// runtime overlay, and the new n1 enrolls.
func TestCertificateDiesWithItsNode(t *testing.T) {
	netlab.Require(t) // root, for the privileged source port of the enrollment
	ctx := context.Background()
	for _, seen := range []bool{true, false} {
		name := map[bool]string{true: "server saw the deletion", false: "delete and add in one change"}[seen]
		t.Run(name, func(t *testing.T) {
			l := newLab(t)
			tlsDir := filepath.Join(t.TempDir(), "tls")
			s := startServer(t, l, tlsDir, "", "")
			ag := s.nodeAgent(t, filepath.Join(t.TempDir(), "run"))
			_, err := ag.Sync(ctx, 0)
			require.NoError(t, err)
			stolen := certClient(t, s, copyRun(t, ag.RunDir))
			code, body := runtimeOverTLS(t, s, stolen, mac1)
			require.Equal(t, http.StatusOK, code, body)
			record := filepath.Join(tlsDir, "nodes", "n1.json")
			require.FileExists(t, record)

			const newMAC = "aa:bb:cc:dd:ee:09"
			readd := func(c *nodedb.Config) {
				c.Nodes["n1"] = &nodedb.Record{Profiles: []string{"default"}, ImageName: "img", NetDevs: map[string]*nodedb.NetDev{
					"default": {Hwaddr: newMAC, Ipaddr: ip1, Netmask: "255.0.0.0"}}}
			}
			if seen {
				require.NoError(t, l.store.Update(ctx, func(c *nodedb.Config) error { delete(c.Nodes, "n1"); return nil }))
				// Any node request lets the server see the new inventory.
				resp, _ := get(t, s.plain+"/ipxe/"+mac2)
				require.Equal(t, http.StatusOK, resp.StatusCode)
				assert.NoFileExists(t, record, "a node gone from the inventory loses its enrollment record")
				require.NoError(t, l.store.Update(ctx, func(c *nodedb.Config) error { readd(c); return nil }))
			} else {
				require.NoError(t, l.store.Update(ctx, func(c *nodedb.Config) error { delete(c.Nodes, "n1"); readd(c); return nil }))
			}
			code, body = runtimeOverTLS(t, s, stolen, newMAC)
			assert.Equal(t, http.StatusUnauthorized, code, "the old n1's certificate at the new n1's runtime overlay: %s", body)
			assert.NotContains(t, body, "PRIVATE KEY")

			// The new n1 enrolls and gets its overlay.
			fresh := s.nodeAgent(t, filepath.Join(t.TempDir(), "run"))
			fresh.HWAddr, err = nodedb.ParseHW(newMAC)
			require.NoError(t, err)
			_, err = fresh.Sync(ctx, 0)
			require.NoError(t, err, "the new node enrolls")
			code, _ = runtimeOverTLS(t, s, certClient(t, s, fresh.RunDir), newMAC)
			assert.Equal(t, http.StatusOK, code)
			code, _ = runtimeOverTLS(t, s, stolen, newMAC)
			assert.Equal(t, http.StatusUnauthorized, code)
		})
	}
}

// TestRevoke: RevokeEnrollments on the CA directory (what `wwboot node
// revoke` and the API do, from another process than the server) makes
// every current certificate of the node 401 at once, the running server's
// cached record notwithstanding, and opens enrollment again: the node's
// agent re-enrolls on its next request, within the same boot. A boot-chain
// request after the revocation does not write the record back.
func TestRevoke(t *testing.T) {
	netlab.Require(t)
	ctx := context.Background()
	l := newLab(t)
	tlsDir := filepath.Join(t.TempDir(), "tls")
	s := startServer(t, l, tlsDir, "", "")
	ag := s.nodeAgent(t, filepath.Join(t.TempDir(), "run"))
	_, err := ag.Sync(ctx, 0)
	require.NoError(t, err)
	stolen := certClient(t, s, copyRun(t, ag.RunDir))
	code, _ := runtimeOverTLS(t, s, stolen, mac1)
	require.Equal(t, http.StatusOK, code)

	revoked, err := provision.RevokeEnrollments(tlsDir, "n1", "n2")
	require.NoError(t, err)
	assert.Equal(t, []string{"n1"}, revoked, "n2 never enrolled")
	code, body := runtimeOverTLS(t, s, stolen, mac1)
	assert.Equal(t, http.StatusUnauthorized, code, body)
	assert.Contains(t, body, "revoked")

	// iPXE asks (a boot-chain request): the revoked record stays gone.
	resp, _ := get(t, s.plain+"/ipxe/"+mac1)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.NoFileExists(t, filepath.Join(tlsDir, "nodes", "n1.json"))

	// The agent's own certificate is refused too; it forgets it, and its
	// next request enrolls again (no reboot: enrollment is open).
	_, err = ag.Sync(ctx, 0)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "401")
	_, err = ag.Sync(ctx, 0)
	require.NoError(t, err, "the agent re-enrolls after a revocation")
	code, _ = runtimeOverTLS(t, s, certClient(t, s, ag.RunDir), mac1)
	assert.Equal(t, http.StatusOK, code)
	code, _ = runtimeOverTLS(t, s, stolen, mac1)
	assert.Equal(t, http.StatusUnauthorized, code)

	// AgentTLS.Revoke (in the server's process) does the same.
	got, err := s.at.Revoke("n1")
	require.NoError(t, err)
	assert.Equal(t, []string{"n1"}, got)
	code, _ = runtimeOverTLS(t, s, certClient(t, s, ag.RunDir), mac1)
	assert.Equal(t, http.StatusUnauthorized, code)
}

// TestReportRefusalLeaksNoState: a plain report from an unprivileged port
// after the node enrolled is refused for its port, not told that the node
// enrolled in this boot: the address and port checks run first.
func TestReportRefusalLeaksNoState(t *testing.T) {
	netlab.Require(t)
	l := newLab(t)
	s := startServer(t, l, filepath.Join(t.TempDir(), "tls"), "", "")
	ag := s.nodeAgent(t, filepath.Join(t.TempDir(), "run"))
	_, err := ag.Sync(context.Background(), 0)
	require.NoError(t, err)
	for _, path := range []string{"/agent/" + mac1, "/agent/enroll/" + mac1} {
		resp, err := http.Post(s.plain+path, "application/json", strings.NewReader(`{"state":"up"}`))
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, http.StatusForbidden, resp.StatusCode, path)
		assert.Contains(t, string(b), "privileged source port", path)
		assert.NotContains(t, string(b), "enrolled", path)
		assert.NotContains(t, string(b), "runtime overlay", path)
	}
}

// logSink collects log records as JSON lines.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

// lines returns the records whose msg contains sub.
func (s *logSink) lines(t *testing.T, sub string) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, ln := range strings.Split(strings.TrimSpace(s.buf.String()), "\n") {
		if ln == "" {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(ln), &m))
		if msg, _ := m["msg"].(string); strings.Contains(msg, sub) {
			out = append(out, m)
		}
	}
	return out
}

// TestRefusedEnrollment: an enrollment refused for its port or address is
// told so in its own words (not the runtime overlay's), and logged as a
// warning at most once a minute per node, with the number of refusals.
func TestRefusedEnrollment(t *testing.T) {
	l := newLab(t)
	ca, err := provision.OpenCA(filepath.Join(t.TempDir(), "tls"), "test", time.Now())
	require.NoError(t, err)
	at, err := provision.NewAgentTLS(ca, 9874, nil)
	require.NoError(t, err)
	sink := &logSink{}
	clk := &clock{t: time.Date(2026, 11, 30, 1, 0, 0, 0, time.UTC)}
	opts := l.options(t)
	opts.AgentTLS, opts.Now = at, clk.Now
	opts.Logger = slog.New(slog.NewJSONHandler(sink, &slog.HandlerOptions{Level: slog.LevelInfo}))
	h, err := provision.NewHandler(opts)
	require.NoError(t, err)
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)

	enroll := func() (int, string) {
		resp, err := http.Post(ts.URL+"/agent/enroll/"+mac1, "application/pkcs10", strings.NewReader("x"))
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := enroll() // from an unprivileged port
	assert.Equal(t, http.StatusForbidden, code)
	assert.Contains(t, body, "enrollment")
	assert.Contains(t, body, "privileged source port")
	assert.NotContains(t, body, "runtime overlay")

	warned := func() []map[string]any {
		var out []map[string]any
		for _, m := range sink.lines(t, "refused an enrollment") {
			if m["level"] == "WARN" {
				out = append(out, m)
			}
		}
		return out
	}
	require.Len(t, warned(), 1, "the first refusal is a warning")
	assert.Equal(t, "n1", warned()[0]["node"])
	assert.EqualValues(t, 1, warned()[0]["count"])
	for range 5 {
		clk.Add(5 * time.Second)
		enroll()
	}
	assert.Len(t, warned(), 1, "within a minute: no more lines")
	clk.Add(time.Minute)
	enroll()
	require.Len(t, warned(), 2)
	assert.EqualValues(t, 6, warned()[1]["count"], "the line counts the refusals since the last one")
	assert.Empty(t, sink.lines(t, "refused\""), "no INFO line per refusal either")
}
