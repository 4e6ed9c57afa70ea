package provision_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/agent"
	"github.com/wwboot/wwboot/events"
	"github.com/wwboot/wwboot/provision"
	"github.com/wwboot/wwboot/provision/netlab"
)

// refused asserts that nothing listens at addr (TCP): the connection is
// refused, not merely slow.
func refused(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err == nil {
		c.Close()
	}
	assert.ErrorIs(t, err, syscall.ECONNREFUSED, "a connection to %s is refused", addr)
}

// TestServerBindAddrs: with BindAddrs (the cluster address 127.0.0.5 and
// loopback 127.0.0.1), HTTP, the agents' TLS port and TFTP (TFTPAddr on the
// cluster address) answer there and refuse another address of the same host
// (127.0.0.6); the iPXE script names the address the request came to, the
// server certificate verifies for the cluster address, and the log names the
// bound addresses.
func TestServerBindAddrs(t *testing.T) {
	l := newLab(t)
	opts := l.options(t)
	ca, err := provision.OpenCA(filepath.Join(t.TempDir(), "tls"), "test", time.Now())
	require.NoError(t, err)
	at, err := provision.NewAgentTLS(ca, 0, nil)
	require.NoError(t, err)
	opts.AgentTLS = at
	var logs syncBuffer
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))

	cluster, lo := netip.MustParseAddr("127.0.0.5"), netip.MustParseAddr("127.0.0.1")
	srv, err := provision.NewServer(provision.ServerConfig{
		Options:      opts,
		Addr:         cluster,
		HTTPAddr:     "0.0.0.0:0", // the host part is ignored with BindAddrs
		AgentTLSAddr: ":0",
		BindAddrs:    []netip.Addr{cluster, lo, cluster},
		TFTP:         true,
		TFTPAddr:     "127.0.0.5:0",
		DrainTimeout: 5 * time.Second,
	})
	require.NoError(t, err)
	require.NoError(t, srv.Listen())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	defer func() {
		cancel()
		assert.NoError(t, <-done)
	}()

	port := func(a net.Addr) string { _, p, _ := net.SplitHostPort(a.String()); return p }
	require.Len(t, srv.HTTPAddrs(), 2, "one socket per address, duplicates dropped")
	require.Len(t, srv.AgentTLSAddrs(), 2)
	hp, tp := port(srv.HTTPAddr()), port(srv.AgentTLSAddr())
	assert.Equal(t, "127.0.0.5:"+hp, srv.HTTPAddrs()[0].String())
	assert.Equal(t, "127.0.0.1:"+hp, srv.HTTPAddrs()[1].String(), "port 0: the others take the first's port")
	assert.Equal(t, "127.0.0.1:"+tp, srv.AgentTLSAddrs()[1].String())

	// HTTP: the cluster address and loopback serve; another address of
	// the host is refused.
	base := "http://127.0.0.5:" + hp
	resp, body := get(t, base+"/ipxe/"+strings.ReplaceAll(mac1, ":", "-"))
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, string(body), "kernel --name kernel "+base+"/kernel/"+mac1, "the script names the address it was asked at")
	resp, _ = get(t, "http://127.0.0.1:"+hp+"/healthz")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	refused(t, "127.0.0.6:"+hp)

	// The agents' TLS port: the same, and the certificate verifies for
	// the cluster address.
	pem, err := os.ReadFile(ca.CertPath())
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(pem))
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for _, host := range []string{"127.0.0.5", "127.0.0.1"} {
		resp, err := hc.Get("https://" + host + ":" + tp + "/healthz")
		require.NoError(t, err, "TLS /healthz at %s", host)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode)
	}
	refused(t, "127.0.0.6:"+tp)

	// TFTP on the cluster address: a read request there gets data, one to
	// another address of the host gets a port unreachable.
	fp := port(srv.TFTPAddr())
	rrq := append([]byte{0, 1}, []byte("undionly.kpxe\x00octet\x00")...)
	uc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer uc.Close()
	_, err = uc.WriteTo(rrq, net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.5:"+fp)))
	require.NoError(t, err)
	require.NoError(t, uc.SetReadDeadline(time.Now().Add(5*time.Second)))
	buf := make([]byte, 2048)
	n, from, err := uc.ReadFrom(buf)
	require.NoError(t, err)
	require.GreaterOrEqual(t, n, 4)
	assert.Equal(t, []byte{0, 3, 0, 1}, buf[:4], "TFTP DATA block 1 from the cluster address")
	assert.Equal(t, "127.0.0.5", from.(*net.UDPAddr).IP.String(), "the transfer answers from the cluster address")
	_, err = uc.WriteTo(append([]byte{0, 5, 0, 0}, "test done\x00"...), from) // ERROR: end the transfer
	require.NoError(t, err)
	other, err := net.Dial("udp4", "127.0.0.6:"+fp)
	require.NoError(t, err)
	defer other.Close()
	_, err = other.Write(rrq)
	require.NoError(t, err)
	require.NoError(t, other.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = other.Read(buf)
	assert.True(t, errors.Is(err, syscall.ECONNREFUSED), "TFTP at another address: port unreachable, got %v", err)

	assert.Regexp(t, `msg=serving http="\[127\.0\.0\.5:`+hp+` 127\.0\.0\.1:`+hp+`\]" agent_tls="\[127\.0\.0\.5:`+tp+` 127\.0\.0\.1:`+tp+`\]" tftp=127\.0\.0\.5:`+fp,
		logs.String(), "the bound addresses are logged at info")
}

// TestServerBindAddrsErrors: an address this host does not have is an
// error naming it, and nothing stays bound; without BindAddrs the listener
// binds HTTPAddr as it is (":0": every address).
func TestServerBindAddrsErrors(t *testing.T) {
	l := newLab(t)
	srv, err := provision.NewServer(provision.ServerConfig{
		Options:   l.options(t),
		HTTPAddr:  ":0",
		BindAddrs: []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("192.0.2.77")},
	})
	require.NoError(t, err)
	err = srv.Listen()
	require.Error(t, err)
	assert.ErrorContains(t, err, "192.0.2.77 is not an address of this host")
	assert.Nil(t, srv.HTTPAddr())

	l = newLab(t)
	srv, err = provision.NewServer(provision.ServerConfig{Options: l.options(t), HTTPAddr: ":0"})
	require.NoError(t, err)
	require.NoError(t, srv.Listen())
	defer func() { assert.NoError(t, srv.Shutdown(context.Background())) }()
	_, p, _ := net.SplitHostPort(srv.HTTPAddr().String())
	for _, host := range []string{"127.0.0.1", "127.0.0.6"} {
		c, err := net.DialTimeout("tcp", host+":"+p, 2*time.Second)
		require.NoError(t, err, "every address is bound without BindAddrs: %s", host)
		c.Close()
	}
}

// TestAnonymousIPXEMarksBooting backs the README's threat model: a plain GET
// of a running node's iPXE script, from an address that is not the node's,
// turns the node booting in the status and publishes node.state booting
// (previous up), but enrolls nobody: the running agent's certificate still
// works, and its next report turns the node up again.
func TestAnonymousIPXEMarksBooting(t *testing.T) {
	netlab.Require(t) // root, for the privileged source port of the enrollment
	l := newLab(t)
	s := startServer(t, l, filepath.Join(t.TempDir(), "tls"), "", "")
	ctx := context.Background()
	ag := s.nodeAgent(t, filepath.Join(t.TempDir(), "run"))
	_, err := ag.Sync(ctx, 0)
	require.NoError(t, err)
	require.NoError(t, ag.Report(ctx, agent.StateUp, "agent", ""))
	require.Equal(t, provision.StateUp, nodeStatus(t, s.srv.Handler(), "n1").State)

	// Anyone: 127.0.0.9 is no node's address, the port is unprivileged.
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: (&net.Dialer{
		LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 9)}}).DialContext}}
	resp, err := hc.Get(s.plain + "/ipxe/" + mac1)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, provision.StateBooting, nodeStatus(t, s.srv.Handler(), "n1").State, "an anonymous script request marks the node booting")
	require.Eventually(t, func() bool {
		for _, e := range s.events.all() {
			if e.Type == events.TypeState && e.Node == "n1" && e.State == provision.StateBooting && e.Previous == provision.StateUp {
				return true
			}
		}
		return false
	}, 5*time.Second, 10*time.Millisecond, "node.state booting (previous up) reaches the hooks")

	// The running agent keeps its certificate: nobody enrolled.
	_, err = ag.Sync(ctx, 0)
	require.NoError(t, err, "the running agent's certificate still works")
	require.NoError(t, ag.Report(ctx, agent.StateUp, "agent", ""))
	assert.Equal(t, provision.StateUp, nodeStatus(t, s.srv.Handler(), "n1").State)
}

// all returns a copy of the events published so far.
func (l *eventLog) all() []events.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]events.Event(nil), l.evs...)
}
