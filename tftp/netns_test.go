package tftp

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/provision/netlab"
)

var (
	srvPrefix = netip.MustParsePrefix("10.69.0.1/24")
	cliPrefix = netip.MustParsePrefix("10.69.0.2/24")
)

// lab is a server namespace and a client namespace joined by a veth pair
// (MTU 1500), with a file tree on disk.
type lab struct {
	srv, cli *netlab.NS
	dir      string
	log      *logBuffer
	metrics  *Metrics
	reg      *prometheus.Registry
}

func newLab(t *testing.T) *lab {
	t.Helper()
	netlab.Require(t)
	l := &lab{srv: netlab.NewNS(t), cli: netlab.NewNS(t), dir: t.TempDir(), log: &logBuffer{}}
	netlab.Veth(t, l.srv, "srv0", srvPrefix, l.cli, "cli0", cliPrefix)
	l.reg = prometheus.NewRegistry()
	var err error
	l.metrics, err = NewMetrics(l.reg)
	require.NoError(t, err)
	return l
}

// serve runs srv on addr inside the server namespace until the test ends.
// It fills in FS, Logger and Metrics if unset.
func (l *lab) serve(t *testing.T, srv *Server, addr string) {
	t.Helper()
	if srv.FS == nil {
		root, err := os.OpenRoot(l.dir)
		require.NoError(t, err)
		t.Cleanup(func() { root.Close() })
		srv.FS = root.FS()
	}
	if srv.Logger == nil {
		srv.Logger = slog.New(slog.NewTextHandler(l.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if srv.Metrics == nil {
		srv.Metrics = l.metrics
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan error, 1)
	done := make(chan error, 1)
	go func() {
		done <- l.srv.Do(func() error {
			conn, err := ListenPacket(ctx, "udp4", addr)
			ready <- err
			if err != nil {
				return err
			}
			return srv.Serve(ctx, conn)
		})
	}()
	require.NoError(t, <-ready)
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.ErrorIs(t, err, context.Canceled)
		case <-time.After(30 * time.Second):
			t.Error("Serve did not return 30s after its context ended")
		}
	})
}

// writeRandom writes size random bytes to name under the lab tree and
// returns their SHA-256.
func (l *lab) writeRandom(t *testing.T, name string, size int64) string {
	t.Helper()
	f, err := os.Create(filepath.Join(l.dir, name))
	require.NoError(t, err)
	h := sha256.New()
	_, err = io.CopyN(io.MultiWriter(f, h), rand.Reader, size)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	return hex.EncodeToString(h.Sum(nil))
}

// run runs a client in the client namespace and returns its combined output.
func (l *lab) run(t *testing.T, timeout time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := l.cli.Command(ctx, name, args...)
	cmd.Dir = t.TempDir() // atftp writes relative local names here
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func fileSHA(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	h := sha256.New()
	_, err = io.Copy(h, f)
	require.NoError(t, err)
	return hex.EncodeToString(h.Sum(nil))
}

// logBuffer is a concurrency-safe log sink.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Test50MB: curl and atftp fetch a 50 MB file byte-identical at blksize 512
// (102400 blocks: the block number rolls over past 65535) and 1468 (the
// largest unfragmented block on a 1500-byte MTU). tsize is asked for and
// must be answered.
func Test50MB(t *testing.T) {
	netlab.RequireTools(t, "curl", "atftp")
	l := newLab(t)
	const size = 50 << 20
	want := l.writeRandom(t, "big.bin", size)
	l.serve(t, &Server{}, srvPrefix.Addr().String()+":69")
	srv := srvPrefix.Addr().String()

	for _, blk := range []int{512, 1468} {
		t.Run(fmt.Sprintf("curl/blksize=%d", blk), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "big.bin")
			text, err := l.run(t, 3*time.Minute, "curl", "-sS", "-v", "--tftp-blksize", fmt.Sprint(blk),
				"-o", out, "tftp://"+srv+"/big.bin")
			require.NoError(t, err, text)
			assert.Equal(t, want, fileSHA(t, out))
		})
		t.Run(fmt.Sprintf("atftp/blksize=%d", blk), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "big.bin")
			text, err := l.run(t, 3*time.Minute, "atftp", "--option", fmt.Sprintf("blksize %d", blk),
				"--option", "tsize", "-g", "-r", "big.bin", "-l", out, srv, "69")
			require.NoError(t, err, text)
			assert.Equal(t, want, fileSHA(t, out))
		})
	}
	assert.Equal(t, 4.0, metricValue(t, l.metrics.requests.WithLabelValues(ResultOK)))
	assert.Equal(t, float64(4*size), metricValue(t, l.metrics.bytes))
}

// TestBlockSizeClampedToMTU: a client asking for more than fits in one
// 1500-byte frame gets MTU - 32 = 1468, whatever pin/tftp would allow, and
// its tsize question is answered.
func TestBlockSizeClampedToMTU(t *testing.T) {
	netlab.RequireTools(t, "atftp")
	l := newLab(t)
	want := l.writeRandom(t, "f.bin", 200<<10)
	l.serve(t, &Server{}, ":69") // wildcard: smallest non-loopback MTU
	out := filepath.Join(t.TempDir(), "f.bin")
	text, err := l.run(t, time.Minute, "atftp", "--trace", "--option", "blksize 8192", "--option", "tsize",
		"-g", "-r", "f.bin", "-l", out, srvPrefix.Addr().String(), "69")
	require.NoError(t, err, text)
	assert.Contains(t, text, "received OACK <")
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "received OACK") {
			assert.Contains(t, line, "blksize: 1468,")
			assert.Contains(t, line, fmt.Sprintf("tsize: %d,", 200<<10))
		}
	}
	assert.Equal(t, want, fileSHA(t, out))
}

// TestRefused: traversal, absolute paths, NUL bytes, unknown files and
// writes all get an error packet that the client reports, and are logged.
func TestRefused(t *testing.T) {
	netlab.RequireTools(t, "curl", "atftp")
	l := newLab(t)
	l.writeRandom(t, "ok.bin", 1000)
	require.NoError(t, os.Symlink("/etc/passwd", filepath.Join(l.dir, "escape")))
	l.serve(t, &Server{}, srvPrefix.Addr().String()+":69")
	srv := srvPrefix.Addr().String()

	curlCases := []struct{ url, msg string }{
		{"tftp://" + srv + "/../etc/passwd", "TFTP error: access violation: unsafe path"},
		{"tftp://" + srv + "/a/../../etc/passwd", "TFTP error: access violation: unsafe path"},
		{"tftp://" + srv + "//etc/passwd", "TFTP error: file not found"}, // the tree's etc/passwd
		{"tftp://" + srv + "//../etc/passwd", "TFTP error: access violation: unsafe path"},
		{"tftp://" + srv + "/escape", "TFTP error: file not found"},
		{"tftp://" + srv + "/missing", "TFTP error: file not found"},
	}
	for _, c := range curlCases {
		out := filepath.Join(t.TempDir(), "out")
		text, err := l.run(t, time.Minute, "curl", "-sS", "-v", "--path-as-is", "-o", out, c.url)
		assert.Error(t, err, "curl %s succeeded:\n%s", c.url, text)
		assert.Contains(t, text, c.msg, c.url)
		assert.NoFileExists(t, out)
	}
	for name, msg := range map[string]string{
		"../etc/passwd":  "error received from server <access violation: unsafe path>",
		"/../etc/passwd": "error received from server <access violation: unsafe path>",
		"/etc/passwd":    "error received from server <file not found>", // the tree's etc/passwd, as tftp-hpa -s
	} {
		text, err := l.run(t, time.Minute, "atftp", "-g", "-r", name, "-l", filepath.Join(t.TempDir(), "out"), srv, "69")
		assert.Error(t, err, text)
		assert.Contains(t, text, msg, name)
	}

	// A NUL cannot go through curl (it refuses %00) or atftp: send raw
	// requests from the client namespace.
	for _, c := range []struct {
		pkt []byte
		msg string
	}{
		{[]byte("\x00\x01ok.bin\x00../../etc/passwd\x00octet\x00"), "illegal TFTP operation"},
		{[]byte("\x00\x01ok.bin\x00\x00octet\x00"), "illegal TFTP operation"},
		{[]byte("\x00\x01ok.bin\x00../x\x00"), "illegal TFTP operation"},
		{[]byte("\x00\x01../etc/passwd\x00octet\x00"), "access violation: unsafe path"},
	} {
		op, msg := l.rawRequest(t, srv+":69", c.pkt)
		assert.Equal(t, uint16(5), op, "%q: want an ERROR packet", c.pkt)
		assert.Contains(t, msg, c.msg, "%q", c.pkt)
	}

	// Writes.
	src := filepath.Join(t.TempDir(), "up")
	require.NoError(t, os.WriteFile(src, []byte("upload"), 0o644))
	text, err := l.run(t, time.Minute, "curl", "-sS", "-v", "-T", src, "tftp://"+srv+"/up")
	assert.Error(t, err, text)
	assert.Contains(t, text, "TFTP error: access violation: read-only server")
	text, err = l.run(t, time.Minute, "atftp", "-p", "-l", src, "-r", "up2", srv, "69")
	assert.Error(t, err, text)
	assert.Contains(t, text, "read-only server")
	assert.NoFileExists(t, filepath.Join(l.dir, "up"))
	assert.NoFileExists(t, filepath.Join(l.dir, "up2"))

	logs := l.log.String()
	assert.Contains(t, logs, `msg="tftp: refused unsafe path"`)
	assert.Contains(t, logs, `file=../etc/passwd`)
	assert.Contains(t, logs, `file=/etc/passwd`)
	assert.Contains(t, logs, `msg="tftp: refused request with invalid mode (NUL in name?)"`)
	assert.Contains(t, logs, `msg="tftp: refused write request"`)
	assert.Equal(t, 2.0, metricValue(t, l.metrics.requests.WithLabelValues(ResultWriteRefused)))
	assert.Equal(t, 9.0, metricValue(t, l.metrics.requests.WithLabelValues(ResultRefused)))
	assert.Equal(t, 4.0, metricValue(t, l.metrics.requests.WithLabelValues(ResultNotFound)))
	assert.Equal(t, 0.0, metricValue(t, l.metrics.requests.WithLabelValues(ResultOK)))
}

// rawRequest sends one request packet from the client namespace and returns
// the opcode and message of the first reply.
func (l *lab) rawRequest(t *testing.T, server string, pkt []byte) (uint16, string) {
	t.Helper()
	var conn *net.UDPConn
	require.NoError(t, l.cli.Do(func() error {
		var err error
		conn, err = net.ListenUDP("udp4", nil)
		return err
	}))
	defer conn.Close()
	dst, err := net.ResolveUDPAddr("udp4", server)
	require.NoError(t, err)
	_, err = conn.WriteToUDP(pkt, dst)
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
	buf := make([]byte, 65536)
	n, _, err := conn.ReadFromUDP(buf)
	require.NoError(t, err, "no reply to %q", pkt)
	require.GreaterOrEqual(t, n, 4)
	return binary.BigEndian.Uint16(buf), strings.TrimRight(string(buf[4:n]), "\x00")
}

// TestRetransmission: 10% of the datagrams in each direction are dropped
// by a proxy between client and server (sch_netem is not available
// everywhere); the server's retransmissions still deliver identical files.
// atftp re-ACKs a repeated block only once, so when that ACK is lost too it
// is atftp's own timer (1 s here) that recovers, once the server's
// exponential backoff leaves it a second of silence.
func TestRetransmission(t *testing.T) {
	netlab.RequireTools(t, "curl", "atftp")
	l := newLab(t)
	want := l.writeRandom(t, "f.bin", 384<<10)
	wantSmall := l.writeRandom(t, "s.bin", 96<<10)
	l.serve(t, &Server{Timeout: 100 * time.Millisecond, Retries: 10}, "127.0.0.1:69")
	p := l.startLossyProxy(t, srvPrefix.Addr().String()+":6969", "127.0.0.1:69", 0.10)
	srv := srvPrefix.Addr().String()

	out := filepath.Join(t.TempDir(), "c.bin")
	text, err := l.run(t, 2*time.Minute, "curl", "-sS", "--tftp-blksize", "1468", "-o", out, "tftp://"+srv+":6969/f.bin")
	require.NoError(t, err, text)
	assert.Equal(t, want, fileSHA(t, out))

	// atftp stalls about 2.5 s on every lost repeated ACK: a smaller file.
	out = filepath.Join(t.TempDir(), "a.bin")
	text, err = l.run(t, 2*time.Minute, "atftp", "--tftp-timeout", "1", "--option", "blksize 512", "-g", "-r", "s.bin", "-l", out, srv, "6969")
	require.NoError(t, err, text)
	assert.Equal(t, wantSmall, fileSHA(t, out))

	dropped := p.dropped.Load()
	t.Logf("proxy dropped %d datagrams; server counted %v retransmissions", dropped, metricValue(t, l.metrics.retransmits))
	assert.Greater(t, dropped, int64(20), "the proxy should have dropped something")
	// The retransmits of the last transfer are counted when it ends: after
	// the client has its file.
	assert.Eventually(t, func() bool { return metricValue(t, l.metrics.retransmits) > 0 }, 5*time.Second, 50*time.Millisecond)
}

// TestShutdown: Shutdown waits for nothing when idle, makes Serve return
// ErrServerClosed, and later Serve calls fail the same way.
func TestShutdown(t *testing.T) {
	srv := &Server{FS: os.DirFS(t.TempDir())}
	conn, err := ListenPacket(t.Context(), "udp4", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background(), conn) }()
	require.Eventually(t, func() bool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		return len(srv.listeners) == 1
	}, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, srv.Shutdown(t.Context()))
	select {
	case err := <-done:
		assert.ErrorIs(t, err, ErrServerClosed)
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after Shutdown")
	}
	conn2, err := ListenPacket(t.Context(), "udp4", "127.0.0.1:0")
	require.NoError(t, err)
	assert.ErrorIs(t, srv.Serve(context.Background(), conn2), ErrServerClosed)
	assert.True(t, errors.Is(srv.ListenAndServe(context.Background(), "127.0.0.1:0"), ErrServerClosed))
}

// metricValue sums the counter or gauge values c collects.
func metricValue(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 16)
	c.Collect(ch)
	close(ch)
	sum := 0.0
	for m := range ch {
		var d dto.Metric
		require.NoError(t, m.Write(&d))
		sum += d.GetCounter().GetValue() + d.GetGauge().GetValue()
	}
	return sum
}
