package provision_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/nodedb"
	"github.com/wwboot/wwboot/provision"
	"github.com/wwboot/wwboot/provision/netlab"
)

// gunzip returns the raw cpio of a (multi-member) gzip overlay archive.
func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	require.NoError(t, err)
	raw, err := io.ReadAll(zr)
	require.NoError(t, err)
	return raw
}

// TestSystemOverlayRefusesPrivateFiles is issue 11 item 1's first example:
// with ssh.host_keys in the system overlays (Warewulf's default profile and
// wwboot's until now), GET /overlay/system/{mac} from any address returned
// the node's private host keys. Now such an overlay is refused to everyone
// with an error naming the files, and the keys come in the runtime overlay,
// which another address or an unprivileged port does not get.
func TestSystemOverlayRefusesPrivateFiles(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	require.NoError(t, l.store.Update(ctx, func(c *nodedb.Config) error {
		p := c.NodeProfiles["default"]
		p.SystemOverlay = append(p.SystemOverlay, "ssh.host_keys")
		p.RuntimeOverlay = []string{"hosts", "ssh.authorized_keys"}
		return nil
	}))
	opts := l.options(t)
	h, err := provision.NewHandler(opts)
	require.NoError(t, err)
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)

	resp, body := get(t, ts.URL+"/overlay/system/"+mac1)
	assert.Equal(t, http.StatusInternalServerError, resp.StatusCode)
	assert.Contains(t, string(body), "etc/ssh/ssh_host_ed25519_key")
	assert.Contains(t, string(body), "runtime overlays")
	assert.NotContains(t, string(body), "PRIVATE KEY")
	assert.NotContains(t, string(body), "etc/ssh/ssh_host_ed25519_key.pub", "public keys are not private")
	m := metricValue(t, ts.URL, `wwboot_http_refused_total{reason="system_secret"}`)
	assert.Equal(t, "1", m)

	// The same overlay with the opt-out carries the private key: the refusal
	// above is what keeps it from the network.
	opts.Registry = nil
	opts.SystemSecrets = true
	hw, err := provision.NewHandler(opts)
	require.NoError(t, err)
	tw := httptest.NewServer(hw)
	t.Cleanup(tw.Close)
	resp, body = get(t, tw.URL+"/overlay/system/"+mac1)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, string(gunzip(t, body)), "PRIVATE KEY")

	// With ssh.host_keys in the runtime overlays (wwboot's default now), the
	// system overlay has no private key, and the runtime overlay goes to no
	// one but the node: this client's port is unprivileged.
	require.NoError(t, l.store.Update(ctx, func(c *nodedb.Config) error {
		p := c.NodeProfiles["default"]
		p.SystemOverlay = p.SystemOverlay[:len(p.SystemOverlay)-1]
		p.RuntimeOverlay = append(p.RuntimeOverlay, "ssh.host_keys")
		return nil
	}))
	resp, body = get(t, ts.URL+"/overlay/system/"+mac1)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	raw := gunzip(t, body)
	assert.NotContains(t, string(raw), "PRIVATE KEY")
	assert.Contains(t, string(raw), "etc/hostname")
	resp, body = get(t, ts.URL+"/overlay/runtime/"+mac1)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	assert.NotContains(t, string(body), "PRIVATE KEY")
}

// metricValue returns the value of the sample named sample (with labels, as
// the text format writes it) from base/metrics.
func metricValue(t *testing.T, base, sample string) string {
	t.Helper()
	resp, body := get(t, base+"/metrics")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			return v
		}
	}
	t.Fatalf("no sample %s in /metrics", sample)
	return ""
}

// TestListingsAdminOnly is issue 11 item 1's second example: /status (open
// to all) listed every booted node's MAC, the first of the two requests that
// fetched a node's private keys. The server runs in one network namespace;
// a client in another asks from two addresses of its veth: 10.98.0.2 (the
// provisioning network) gets 403 and no MAC, node name or address from
// /status and /metrics, unless it sends the admin token; 10.98.0.3 (an admin
// network) and loopback on the server get the listings.
func TestListingsAdminOnly(t *testing.T) {
	netlab.Require(t)
	const (
		nodeMAC = "52:54:00:98:00:09"
		nodeIP  = "10.98.0.9"
		token   = "s3cret-admin-token"
	)
	srvNS, cli := netlab.NewNS(t), netlab.NewNS(t)
	netlab.Veth(t, srvNS, "wwb0", netip.MustParsePrefix("10.98.0.1/24"), cli, "eth0", netip.MustParsePrefix("10.98.0.2/24"))
	cli.IP("addr", "add", "10.98.0.3/24", "dev", "eth0")

	l := newLab(t)
	require.NoError(t, l.store.Update(context.Background(), func(c *nodedb.Config) error {
		c.Nodes["n9"] = &nodedb.Record{Profiles: []string{"default"}, ImageName: "img", NetDevs: map[string]*nodedb.NetDev{
			"default": {Hwaddr: nodeMAC, Ipaddr: nodeIP, Netmask: "255.255.255.0"}}}
		return nil
	}))
	opts := l.options(t)
	opts.Admin = provision.Admin{Nets: []netip.Prefix{netip.MustParsePrefix("10.98.0.3/32")}, Token: token}
	h, err := provision.NewHandler(opts)
	require.NoError(t, err)
	var ln net.Listener
	require.NoError(t, srvNS.Do(func() (err error) { ln, err = net.Listen("tcp4", "0.0.0.0:9873"); return err }))
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	// client returns an HTTP client whose connections start in ns from src.
	client := func(ns *netlab.NS, src string) *http.Client {
		d := &net.Dialer{Timeout: 5 * time.Second}
		if src != "" {
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
		}
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
				err = ns.Do(func() error { c, err = d.DialContext(ctx, network, addr); return err })
				return c, err
			}}}
	}
	do := func(c *http.Client, url, auth string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, url, nil)
		require.NoError(t, err)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := c.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}
	const srvURL = "http://10.98.0.1:9873"
	attacker, admin := client(cli, "10.98.0.2"), client(cli, "10.98.0.3")

	// The node boots: its script request puts it in the status. A node only
	// needs its own routes, which stay open.
	code, script := do(attacker, srvURL+"/ipxe/"+nodeMAC, "")
	require.Equal(t, http.StatusOK, code, script)
	code, _ = do(attacker, srvURL+"/healthz", "")
	assert.Equal(t, http.StatusOK, code)

	leaks := []string{nodeMAC, "n9", nodeIP, "10.98.0.2", "hwaddr", "wwboot_http"}
	for _, path := range []string{"/status", "/metrics"} {
		for _, auth := range []string{"", "Bearer wrong", "Basic " + token, "Bearer "} {
			code, body := do(attacker, srvURL+path, auth)
			assert.Equal(t, http.StatusForbidden, code, "%s with %q from 10.98.0.2", path, auth)
			for _, s := range leaks {
				assert.NotContains(t, body, s, "%s with %q from 10.98.0.2", path, auth)
			}
		}
		code, body := do(attacker, srvURL+path, "Bearer "+token)
		assert.Equal(t, http.StatusOK, code, "%s with the token", path)
		code, _ = do(attacker, srvURL+path, "bearer "+token)
		assert.Equal(t, http.StatusOK, code, "%s with the token, the scheme in lower case (RFC 9110 section 11.1)", path)
		code, body2 := do(admin, srvURL+path, "")
		assert.Equal(t, http.StatusOK, code, "%s from the admin network", path)
		if path == "/status" {
			assert.Contains(t, body, nodeMAC)
			assert.Contains(t, body2, nodeMAC)
		} else {
			assert.Contains(t, body2, "wwboot_http_refused_total")
		}
	}
	// The server itself is always allowed: loopback, or its own address
	// (wwboot status --server http://SERVER-IP:9873 on the server).
	for _, u := range []string{"http://127.0.0.1:9873/status", srvURL + "/status"} {
		code, body := do(client(srvNS, ""), u, "")
		assert.Equal(t, http.StatusOK, code, u)
		assert.Contains(t, body, nodeMAC, u)
	}
	_, body := do(client(srvNS, ""), "http://127.0.0.1:9873/metrics", "")
	assert.Contains(t, body, `wwboot_http_refused_total{reason="admin"} 8`+"\n")
}

// FuzzAdminHeader feeds hostile Authorization headers to /status from an
// address that is neither loopback nor an admin network: only the exact
// bearer token opens it, and a refusal never carries the listing.
func FuzzAdminHeader(f *testing.F) {
	const token = "0123456789abcdef0123456789abcdef"
	l := newLab(f)
	opts := l.options(f)
	opts.Admin = provision.Admin{Nets: []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")}, Token: token}
	h, err := provision.NewHandler(opts)
	require.NoError(f, err)
	// A node asks first, so the listing has something to leak.
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/ipxe/"+mac1, nil))
	require.Equal(f, http.StatusOK, w.Code)
	for _, s := range []string{"", "Bearer " + token, "Bearer " + token[:31], "bearer " + token, "BEARER " + token, "Bearer  " + token + " ",
		"Basic " + token, "Bearer " + token + token, "Bearer \x00" + token} {
		f.Add(s, "192.168.7.7:4000")
		f.Add(s, "[::ffff:10.9.1.1]:4000")
		f.Add(s, "[fe80::1]:4000")
	}
	f.Fuzz(func(t *testing.T, auth, remote string) {
		req := httptest.NewRequest(http.MethodGet, "/status", nil)
		req.RemoteAddr = remote
		req.Header.Set("Authorization", auth)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		body := w.Body.String()
		// The scheme is case-insensitive (RFC 9110 section 11.1).
		scheme, tok, isBearer := strings.Cut(auth, " ")
		byToken := isBearer && strings.EqualFold(scheme, "Bearer") && strings.TrimSpace(tok) == token
		ap, err := netip.ParseAddrPort(remote)
		byAddr := err == nil && (ap.Addr().Unmap().IsLoopback() || netip.MustParsePrefix("10.9.0.0/16").Contains(ap.Addr().Unmap()))
		if w.Code == http.StatusOK && !byToken && !byAddr {
			t.Fatalf("auth %q from %q opened /status", auth, remote)
		}
		if w.Code != http.StatusOK && strings.Contains(body, mac1) {
			t.Fatalf("auth %q from %q: a refusal carries the listing", auth, remote)
		}
		if (byToken || byAddr) && w.Code != http.StatusOK {
			t.Fatalf("auth %q from %q: refused (%d)", auth, remote, w.Code)
		}
	})
}
