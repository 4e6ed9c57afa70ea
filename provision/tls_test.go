package provision_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/agent"
	"github.com/wwboot/wwboot/events"
	"github.com/wwboot/wwboot/nodedb"
	"github.com/wwboot/wwboot/provision"
	"github.com/wwboot/wwboot/provision/netlab"
)

// eventLog records the events a server publishes.
type eventLog struct {
	mu  sync.Mutex
	evs []events.Event
}

func (l *eventLog) Publish(e events.Event) events.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.evs = append(l.evs, e)
	return e
}

func (l *eventLog) find(stage string) *events.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range l.evs {
		if l.evs[i].Stage == stage {
			return &l.evs[i]
		}
	}
	return nil
}

// tlsServer is a real provision.Server on loopback, with the agent TLS
// channel when its AgentTLS is set.
type tlsServer struct {
	srv         *provision.Server
	at          *provision.AgentTLS
	ca          *provision.CA
	plain, sec  string // http://127.0.0.1:P, https://127.0.0.1:Q ("" without TLS)
	cancel      func()
	done        chan error
	stopOnce    sync.Once
	tlsDir      string
	httpAddr    string
	tlsAddrWant string
	events      *eventLog
}

// startServer runs a Server for l on loopback; tlsDir "" means agent tls:
// false. httpAddr/tlsAddr "" mean a free port.
func startServer(t *testing.T, l *lab, tlsDir, httpAddr, tlsAddr string) *tlsServer {
	t.Helper()
	opts := l.options(t)
	opts.Registry = prometheus.NewRegistry() // a restart registers the metrics anew
	s := &tlsServer{tlsDir: tlsDir, events: &eventLog{}}
	opts.Events = s.events
	if tlsDir != "" {
		var err error
		s.ca, err = provision.OpenCA(tlsDir, "test", time.Now())
		require.NoError(t, err)
		s.at, err = provision.NewAgentTLS(s.ca, 0, nil)
		require.NoError(t, err)
		opts.AgentTLS = s.at
	}
	if httpAddr == "" {
		httpAddr = "127.0.0.1:0"
	}
	if tlsAddr == "" {
		tlsAddr = "127.0.0.1:0"
	}
	var err error
	s.srv, err = provision.NewServer(provision.ServerConfig{Options: opts, HTTPAddr: httpAddr, AgentTLSAddr: tlsAddr,
		HTTPLimits: provision.ConnLimits{PerClient: -1}, DrainTimeout: 5 * time.Second})
	require.NoError(t, err)
	require.NoError(t, s.srv.Listen())
	s.plain = "http://" + s.srv.HTTPAddr().String()
	s.httpAddr = s.srv.HTTPAddr().String()
	if a := s.srv.AgentTLSAddr(); a != nil {
		s.sec = "https://" + a.String()
		s.tlsAddrWant = a.String()
		s.at.Port = a.(*net.TCPAddr).Port
	} else {
		require.Empty(t, tlsDir, "TLS on: an HTTPS listener")
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan error, 1)
	go func() { s.done <- s.srv.Serve(ctx) }()
	t.Cleanup(s.stop)
	return s
}

func (s *tlsServer) stop() {
	s.stopOnce.Do(func() {
		s.cancel()
		<-s.done
	})
}

// nodeAgent is n1's agent (127.0.0.1, privileged source port) against s.
func (s *tlsServer) nodeAgent(t *testing.T, runDir string) *agent.Agent {
	hw, err := nodedb.ParseHW(mac1)
	require.NoError(t, err)
	a := &agent.Agent{URL: s.plain, HWAddr: hw, Root: t.TempDir(), Heartbeat: -1, RunDir: runDir}
	if s.sec != "" {
		a.TLSURL, a.CAFile = s.sec, s.ca.CertPath()
	}
	return a
}

const hostKeyPath = "etc/ssh/ssh_host_ed25519_key"

// TestAgentTLSChannel runs the real agent against a real server with the
// agent TLS channel on: the agent enrolls once, the runtime overlay (the
// node's private host key) arrives over TLS and follows the inventory by
// long-poll, plain HTTP gets no runtime overlay and no report once the node
// enrolled, a second enrollment in the same boot is refused until the node
// boots again (a boot-chain request), which supersedes the old certificate;
// a certificate of n1 gets nothing of n2, and one from another CA gets
// nothing at all.
func TestAgentTLSChannel(t *testing.T) {
	netlab.Require(t) // root, for the privileged source port of the enrollment
	l := newLab(t)
	s := startServer(t, l, filepath.Join(t.TempDir(), "tls"), "", "")
	ctx := context.Background()

	// /init's early report, before the enrollment: plain HTTP is fine.
	runDir := filepath.Join(t.TempDir(), "run")
	ag := s.nodeAgent(t, runDir)
	require.NoError(t, ag.Report(ctx, agent.StateBooting, "init", "starting"))
	_, err := os.Stat(filepath.Join(runDir, agent.CertFile))
	require.ErrorIs(t, err, os.ErrNotExist, "a report does not enroll")

	start := time.Now()
	changed, err := ag.Sync(ctx, 0)
	firstSync := time.Since(start)
	require.NoError(t, err)
	require.True(t, changed)
	key, err := os.ReadFile(filepath.Join(ag.Root, hostKeyPath))
	require.NoError(t, err)
	assert.Contains(t, string(key), "PRIVATE KEY", "the node's private host key arrived")
	fi, err := os.Stat(filepath.Join(runDir, agent.KeyFile))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "the agent's key is 0600")
	start = time.Now()
	ag2 := s.nodeAgent(t, runDir) // the daemon after the first sync: same boot, same certificate
	_, err = ag2.Sync(ctx, 0)
	laterSync := time.Since(start)
	require.NoError(t, err)
	t.Logf("first sync with enrollment: %v; a sync reusing the boot's certificate: %v", firstSync.Round(time.Microsecond), laterSync.Round(time.Microsecond))

	// Reports go over TLS now; plain ones are refused.
	require.NoError(t, ag.Report(ctx, agent.StateUp, "agent", ""))
	assert.Equal(t, provision.StateUp, nodeStatus(t, s.srv.Handler(), "n1").State)
	plainAg := s.nodeAgent(t, "")
	plainAg.TLSURL = ""
	err = plainAg.Report(ctx, agent.StateUp, "agent", "")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "403")
	assert.Contains(t, err.Error(), "enrolled in this boot")
	// Plain HTTP gets no runtime overlay, from a privileged port and the
	// node's address or not.
	_, err = plainAg.Sync(ctx, 0)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "403")
	assert.Contains(t, err.Error(), "only over TLS")
	resp, body := get(t, s.plain+"/overlay/runtime/"+mac1)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	assert.NotContains(t, string(body), "PRIVATE KEY")

	// The long-poll over TLS follows the inventory.
	rctx, cancel := context.WithCancel(ctx)
	ag2.Wait = 30 * time.Second
	done := make(chan error, 1)
	go func() { done <- ag2.Run(rctx) }()
	time.Sleep(300 * time.Millisecond) // into its long-poll
	require.NoError(t, l.store.Update(ctx, func(c *nodedb.Config) error {
		c.Nodes["n3"] = &nodedb.Record{Profiles: []string{"default"}, NetDevs: map[string]*nodedb.NetDev{
			"default": {Hwaddr: "aa:bb:cc:dd:ee:03", Ipaddr: "127.0.0.3"}}}
		return nil
	}))
	hosts := filepath.Join(ag2.Root, "etc", "hosts")
	require.Eventually(t, func() bool { return strings.Contains(readFile(hosts), "127.0.0.3") }, 10*time.Second, 10*time.Millisecond,
		"a held TLS long-poll is answered when the inventory changes")
	cancel()
	require.NoError(t, <-done)

	// A second enrollment in the same boot (a fresh /run/wwboot) is refused.
	other := s.nodeAgent(t, filepath.Join(t.TempDir(), "run"))
	_, err = other.Sync(ctx, 0)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "409")
	assert.Contains(t, err.Error(), "already enrolled in this boot")
	assert.Contains(t, err.Error(), "reboot the node")
	ev := s.events.find("enroll_refused")
	require.NotNil(t, ev, "the refusal is an event")
	assert.Equal(t, "n1", ev.Node)
	assert.Contains(t, ev.Reason, "a second enrollment may be an attacker")

	// The node boots again: iPXE asks for its script. Now it enrolls anew,
	// and the certificate of the last boot is refused (401).
	resp, _ = get(t, s.plain+"/ipxe/"+mac1)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	_, err = other.Sync(ctx, 0)
	require.NoError(t, err, "a boot-chain request lets the node enroll again")
	_, err = ag.Sync(ctx, 0)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "401")
	assert.Contains(t, err.Error(), "not the node's current one")

	// n1's certificate gets nothing of n2.
	otherRun := other.RunDir
	n2 := s.nodeAgent(t, otherRun)
	n2.HWAddr, _ = nodedb.ParseHW(mac2)
	n2.AssetKey = asset
	_, err = n2.Sync(ctx, 0)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "401")
	assert.Contains(t, err.Error(), `node "n1"'s, not node n2's`)

	// A certificate from another CA does not pass the handshake.
	foreign := foreignCert(t, "n1")
	// (GetClientCertificate sends it whatever CAs the server names; with
	// Certificates, Go's client would send none.)
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: s.ca.Pool(), ServerName: "127.0.0.1",
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &foreign, nil }}}}
	defer cl.CloseIdleConnections()
	resp, err = cl.Get(s.sec + "/overlay/runtime/" + mac1)
	if err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("a foreign certificate got %s: %q", resp.Status, b)
	}
	assert.Contains(t, err.Error(), "certificate")
	// No certificate at all: 401 with a message.
	cl = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.ca.Pool(), ServerName: "127.0.0.1"}}}
	defer cl.CloseIdleConnections()
	resp, err = cl.Get(s.sec + "/overlay/runtime/" + mac1)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	assert.Contains(t, string(b), "enrolls first")
}

// foreignCert is a client certificate for cn from a CA that is not the
// cluster's.
func foreignCert(t *testing.T, cn string) tls.Certificate {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "evil CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	caCert, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der, caDER}, PrivateKey: key}
}

// recorder is a TCP proxy that records every byte, both directions.
type recordingProxy struct {
	ln   net.Listener
	mu   sync.Mutex
	data bytes.Buffer
}

// startProxy forwards connections to upstream, dialed with dial.
func startProxy(t *testing.T, upstream string, dial agent.DialFunc) *recordingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &recordingProxy{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				u, err := dial(context.Background(), "tcp", upstream)
				if err != nil {
					return
				}
				defer u.Close()
				var wg sync.WaitGroup
				copyRec := func(dst, src net.Conn) {
					defer wg.Done()
					buf := make([]byte, 32<<10)
					for {
						n, err := src.Read(buf)
						if n > 0 {
							p.mu.Lock()
							p.data.Write(buf[:n])
							p.mu.Unlock()
							if _, werr := dst.Write(buf[:n]); werr != nil {
								return
							}
						}
						if err != nil {
							if tc, ok := dst.(*net.TCPConn); ok {
								_ = tc.CloseWrite()
							}
							return
						}
					}
				}
				wg.Add(2)
				go copyRec(u, c)
				go copyRec(c, u)
				wg.Wait()
			}()
		}
	}()
	return p
}

func (p *recordingProxy) addr() string { return p.ln.Addr().String() }

// seen is what an eavesdropper reads in the recording: the bytes, and
// every gzip stream found in them unpacked (the overlay is compressed,
// which hides nothing).
func (p *recordingProxy) seen() []byte {
	p.mu.Lock()
	raw := bytes.Clone(p.data.Bytes())
	p.mu.Unlock()
	out := bytes.Clone(raw)
	for i := 0; ; {
		j := bytes.Index(raw[i:], []byte{0x1f, 0x8b, 0x08})
		if j < 0 {
			break
		}
		i += j
		if zr, err := gzip.NewReader(bytes.NewReader(raw[i:])); err == nil {
			if b, err := io.ReadAll(io.LimitReader(zr, 64<<20)); len(b) > 0 {
				_ = err
				out = append(out, b...)
			}
		}
		i++
	}
	return out
}

// secretLines are the lines of the files the agent applied that say
// something (16 bytes or more), the private key's base64 body among them.
func secretLines(t *testing.T, root string) (keyBody []string, other []string) {
	t.Helper()
	key, err := os.ReadFile(filepath.Join(root, hostKeyPath))
	require.NoError(t, err)
	for _, ln := range strings.Split(string(key), "\n") {
		if len(ln) >= 16 && !strings.HasPrefix(ln, "-----") {
			keyBody = append(keyBody, ln)
		}
	}
	require.NotEmpty(t, keyBody)
	err = filepath.WalkDir(filepath.Join(root, "etc"), func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || strings.HasSuffix(p, hostKeyPath) {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, ln := range strings.Split(string(b), "\n") {
			if len(strings.TrimSpace(ln)) >= 16 {
				other = append(other, ln)
			}
		}
		return nil
	})
	require.NoError(t, err)
	require.NotEmpty(t, other)
	return keyBody, other
}

// TestAgentTLSProxySeesNoSecret puts a recording TCP proxy between the
// agent and the server: with the TLS channel, nothing of the runtime
// overlay (the private host key, the other files) crosses it in clear
// text, compressed or not; with agent tls: false the same recording holds
// the private key, which shows the check can fail.
func TestAgentTLSProxySeesNoSecret(t *testing.T) {
	netlab.Require(t)
	for _, on := range []bool{true, false} {
		name := map[bool]string{true: "tls", false: "plain"}[on]
		t.Run(name, func(t *testing.T) {
			l := newLab(t)
			dir := ""
			if on {
				dir = filepath.Join(t.TempDir(), "tls")
			}
			s := startServer(t, l, dir, "", "")
			// The proxy connects to the server from a privileged port of
			// the node's address, as the agent would.
			plainProxy := startProxy(t, s.httpAddr, agent.DialPrivileged)
			ag := s.nodeAgent(t, filepath.Join(t.TempDir(), "run"))
			ag.URL = "http://" + plainProxy.addr()
			var tlsProxy *recordingProxy
			if on {
				tlsProxy = startProxy(t, s.tlsAddrWant, agent.DialAny)
				ag.TLSURL = "https://" + tlsProxy.addr()
			}
			changed, err := ag.Sync(context.Background(), 0)
			require.NoError(t, err)
			require.True(t, changed)
			require.NoError(t, ag.Report(context.Background(), agent.StateUp, "agent", "heartbeat"))
			seen := plainProxy.seen()
			if tlsProxy != nil {
				seen = append(seen, tlsProxy.seen()...)
				assert.Greater(t, len(tlsProxy.seen()), 1000, "the overlay went through the TLS proxy")
			}
			keyBody, other := secretLines(t, ag.Root)
			if !on {
				for _, ln := range keyBody {
					assert.Contains(t, string(seen), ln, "without TLS the private key crosses the wire in clear")
				}
				return
			}
			for _, ln := range keyBody {
				assert.NotContains(t, string(seen), ln, "a line of the private host key crossed the wire in clear")
			}
			for _, ln := range other {
				assert.NotContains(t, string(seen), ln, "a runtime overlay line crossed the wire in clear")
			}
			t.Logf("recorded %d bytes through the plain proxy (enrollment), %d through the TLS one; %d key lines, %d other lines checked",
				len(plainProxy.seen()), len(tlsProxy.seen()), len(keyBody), len(other))
		})
	}
}

// TestAgentTLSRestart: a restarted server (same ROOT/tls) keeps an enrolled
// node working: its certificate is still the current one, its plain
// reports are still refused, and a second enrollment is still refused.
func TestAgentTLSRestart(t *testing.T) {
	netlab.Require(t)
	l := newLab(t)
	dir := filepath.Join(t.TempDir(), "tls")
	s := startServer(t, l, dir, "", "")
	ag := s.nodeAgent(t, filepath.Join(t.TempDir(), "run"))
	_, err := ag.Sync(context.Background(), 0)
	require.NoError(t, err)
	caPEM := s.ca.CertPEM()
	httpAddr, tlsAddr := s.httpAddr, s.tlsAddrWant
	s.stop()

	s2 := startServer(t, l, dir, httpAddr, tlsAddr)
	assert.Equal(t, caPEM, s2.ca.CertPEM(), "the same CA after a restart")
	ag2 := s2.nodeAgent(t, ag.RunDir) // the same boot's certificate
	changed, err := ag2.Sync(context.Background(), 0)
	require.NoError(t, err, "the enrolled node keeps working after a restart")
	assert.True(t, changed)
	require.NoError(t, ag2.Report(context.Background(), agent.StateUp, "agent", ""))
	plain := s2.nodeAgent(t, "")
	plain.TLSURL = ""
	assert.ErrorContains(t, plain.Report(context.Background(), agent.StateUp, "agent", ""), "enrolled in this boot")
	again := s2.nodeAgent(t, filepath.Join(t.TempDir(), "run"))
	_, err = again.Sync(context.Background(), 0)
	assert.ErrorContains(t, err, "409")

	// A boot-chain request before a restart counts after it.
	resp, _ := get(t, s2.plain+"/kernel/"+mac1)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	s2.stop()
	s3 := startServer(t, l, dir, httpAddr, tlsAddr)
	_, err = s3.nodeAgent(t, filepath.Join(t.TempDir(), "run")).Sync(context.Background(), 0)
	require.NoError(t, err, "the node booted again before the restart: it may enroll")
}

// TestAgentTLSOffIsPlain: with agent tls: false the server opens no HTTPS
// port, serves no enrollment, and the agent works over plain HTTP as before.
func TestAgentTLSOffIsPlain(t *testing.T) {
	netlab.Require(t)
	l := newLab(t)
	s := startServer(t, l, "", "", "")
	assert.Nil(t, s.srv.AgentTLSAddr())
	ag := s.nodeAgent(t, "")
	_, err := ag.Sync(context.Background(), 0)
	require.NoError(t, err)
	require.NoError(t, ag.Report(context.Background(), agent.StateUp, "agent", ""))
	resp, err := http.Post(s.plain+"/agent/enroll/"+mac1, "application/pkcs10", strings.NewReader("x"))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
}

// TestTLSLongPollHoldsNoGoroutine: long-polls held over TLS are hijacked
// like plain ones (the *tls.Conn is what net/http hands over): 300 held
// requests leave no goroutine each on the server, and all are answered
// (304) through their connections when the server stops waiting. It logs
// the memory a held long-poll costs over TLS and over plain HTTP (server
// and client sides together: both run in this process).
func TestTLSLongPollHoldsNoGoroutine(t *testing.T) {
	netlab.Require(t)
	for _, on := range []bool{true, false} {
		t.Run(map[bool]string{true: "tls", false: "plain"}[on], func(t *testing.T) {
			l := newLab(t)
			dir := ""
			if on {
				dir = filepath.Join(t.TempDir(), "tls")
			}
			s := startServer(t, l, dir, "", "")
			ag := s.nodeAgent(t, filepath.Join(t.TempDir(), "run"))
			_, err := ag.Sync(context.Background(), 0)
			require.NoError(t, err)
			etag := ag.ETag()
			require.NotEmpty(t, etag)
			req := "GET /overlay/runtime/" + mac1 + "?wait=120 HTTP/1.1\r\nHost: x\r\nIf-None-Match: " + etag + "\r\nConnection: close\r\n\r\n"
			hold := func() net.Conn {
				var c net.Conn
				if on {
					cert, err := tls.LoadX509KeyPair(filepath.Join(ag.RunDir, agent.CertFile), filepath.Join(ag.RunDir, agent.KeyFile))
					require.NoError(t, err)
					cfg := &tls.Config{RootCAs: s.ca.Pool(), ServerName: "127.0.0.1", Certificates: []tls.Certificate{cert}}
					c, err = tls.Dial("tcp", strings.TrimPrefix(s.sec, "https://"), cfg)
					require.NoError(t, err)
				} else {
					c, err = agent.DialPrivileged(context.Background(), "tcp", s.httpAddr)
					require.NoError(t, err)
				}
				_, err = c.Write([]byte(req))
				require.NoError(t, err)
				return c
			}
			conns := []net.Conn{hold()} // warm-up
			time.Sleep(200 * time.Millisecond)
			settle := func() (int, uint64) {
				var ms runtime.MemStats
				for range 3 {
					runtime.GC()
					time.Sleep(50 * time.Millisecond)
				}
				runtime.ReadMemStats(&ms)
				return runtime.NumGoroutine(), ms.HeapInuse
			}
			g0, m0 := settle()
			const n = 300
			for range n {
				conns = append(conns, hold())
			}
			require.Eventually(t, func() bool {
				return strings.Contains(metricText(t, s), fmt.Sprintf("wwboot_agents_waiting %d", n+1))
			}, 10*time.Second, 20*time.Millisecond, "every request is held")
			g1, m1 := settle()
			t.Logf("%d held long-polls: %+d goroutines, %.1f KiB heap each (server and client sides)",
				n, g1-g0, float64(int64(m1)-int64(m0))/n/1024)
			assert.Less(t, g1-g0, n/10, "a held long-poll keeps no goroutine")

			// The server's share alone: the same number held by another
			// process (this test binary, as TestHelperHoldLongPolls).
			hn := n
			if !on {
				hn = 150 // 512 privileged ports in all, 301 taken above
			}
			helper := exec.Command(os.Args[0], "-test.run=^TestHelperHoldLongPolls$")
			helper.Env = append(os.Environ(), "WWBOOT_HOLD_N="+strconv.Itoa(hn), "WWBOOT_HOLD_REQ="+req,
				"WWBOOT_HOLD_HTTP="+s.httpAddr, "WWBOOT_HOLD_TLS="+strings.TrimPrefix(s.sec, "https://"), "WWBOOT_HOLD_RUN="+ag.RunDir)
			if on {
				helper.Env = append(helper.Env, "WWBOOT_HOLD_CA="+s.ca.CertPath())
			}
			stdin, err := helper.StdinPipe()
			require.NoError(t, err)
			var hout bytes.Buffer
			helper.Stdout, helper.Stderr = &hout, &hout
			require.NoError(t, helper.Start())
			require.Eventually(t, func() bool {
				return strings.Contains(metricText(t, s), fmt.Sprintf("wwboot_agents_waiting %d", n+hn+1))
			}, 20*time.Second, 20*time.Millisecond, "the helper's requests are held: %s", &hout)
			g2, m2 := settle()
			t.Logf("server side alone: %+d goroutines, %.1f KiB heap per held long-poll", g2-g1, float64(int64(m2)-int64(m1))/float64(hn)/1024)
			assert.Less(t, g2-g1, hn/10)
			stdin.Close()
			_ = helper.Wait()

			s.srv.Handler().StopWaiting()
			for _, c := range conns {
				_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
				b, err := io.ReadAll(c)
				require.NoError(t, err)
				assert.True(t, strings.HasPrefix(string(b), "HTTP/1.1 304"), "%q", b)
				c.Close()
			}
		})
	}
}

// metricText is the server's /metrics page.
func metricText(t *testing.T, s *tlsServer) string {
	t.Helper()
	resp, body := get(t, s.plain+"/metrics")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	return string(body)
}

// TestAgentChecksTheServer: the agent talks TLS only to a server whose
// certificate chains to its CA file and is a server certificate: not to
// one of another CA, and not to a node that serves with its own client
// certificate (signed by the cluster CA, but for a client).
func TestAgentChecksTheServer(t *testing.T) {
	netlab.Require(t)
	l := newLab(t)
	s := startServer(t, l, filepath.Join(t.TempDir(), "tls"), "", "")
	ag := s.nodeAgent(t, filepath.Join(t.TempDir(), "run"))
	_, err := ag.Sync(context.Background(), 0)
	require.NoError(t, err)

	// Another CA in the agent's CA file.
	other, err := provision.OpenCA(filepath.Join(t.TempDir(), "tls"), "other", time.Now())
	require.NoError(t, err)
	wrong := s.nodeAgent(t, ag.RunDir)
	wrong.CAFile = other.CertPath()
	_, err = wrong.Sync(context.Background(), 0)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "the server's certificate")

	// A node posing as the server with its client certificate.
	nodeCert, err := tls.LoadX509KeyPair(filepath.Join(ag.RunDir, agent.CertFile), filepath.Join(ag.RunDir, agent.KeyFile))
	require.NoError(t, err)
	fake, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{nodeCert}})
	require.NoError(t, err)
	defer fake.Close()
	go func() {
		for {
			c, err := fake.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.(*tls.Conn).Handshake()
				_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
			}()
		}
	}()
	impostor := s.nodeAgent(t, ag.RunDir)
	impostor.TLSURL = "https://" + fake.Addr().String()
	_, err = impostor.Sync(context.Background(), 0)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "the server's certificate")
	assert.Contains(t, err.Error(), "usage")
	assert.Contains(t, err.Error(), `subject "CN=n1"`, "the message names the certificate presented")
	assert.Contains(t, err.Error(), "is not a server certificate")
	assert.Contains(t, err.Error(), "impersonat")
	assert.NotContains(t, err.Error(), "is /etc/wwboot/ca.crt this cluster's CA?", "the CA file is right; the server is not")
}

// TestAgentsOfOneBootShareTheEnrollment: agent processes of one boot (the
// first sync and the daemon, here four at once) share one enrollment
// through /run/wwboot: none gets the 409 of a second enrollment.
func TestAgentsOfOneBootShareTheEnrollment(t *testing.T) {
	netlab.Require(t)
	l := newLab(t)
	s := startServer(t, l, filepath.Join(t.TempDir(), "tls"), "", "")
	runDir := filepath.Join(t.TempDir(), "run")
	errs := make([]error, 4)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = s.nodeAgent(t, runDir).Sync(context.Background(), 0)
		})
	}
	wg.Wait()
	for _, err := range errs {
		assert.NoError(t, err)
	}
}

// TestHelperHoldLongPolls is TestTLSLongPollHoldsNoGoroutine's other
// process: it holds WWBOOT_HOLD_N long-polls until its stdin closes. It
// does nothing in a normal run.
func TestHelperHoldLongPolls(t *testing.T) {
	n, err := strconv.Atoi(os.Getenv("WWBOOT_HOLD_N"))
	if err != nil {
		t.Skip("the helper process of TestTLSLongPollHoldsNoGoroutine")
	}
	var conns []net.Conn
	for range n {
		var c net.Conn
		if ca := os.Getenv("WWBOOT_HOLD_CA"); ca != "" {
			run := os.Getenv("WWBOOT_HOLD_RUN")
			cert, err := tls.LoadX509KeyPair(filepath.Join(run, agent.CertFile), filepath.Join(run, agent.KeyFile))
			require.NoError(t, err)
			pemData, err := os.ReadFile(ca)
			require.NoError(t, err)
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(pemData)
			c, err = tls.Dial("tcp", os.Getenv("WWBOOT_HOLD_TLS"), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", Certificates: []tls.Certificate{cert}})
			require.NoError(t, err)
		} else {
			c, err = agent.DialPrivileged(context.Background(), "tcp", os.Getenv("WWBOOT_HOLD_HTTP"))
			require.NoError(t, err)
		}
		_, err = c.Write([]byte(os.Getenv("WWBOOT_HOLD_REQ")))
		require.NoError(t, err)
		conns = append(conns, c)
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
}
