package tftp

import (
	"bytes"
	"context"
	"encoding/binary"
	"io/fs"
	"net"
	"net/netip"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	ptftp "github.com/pin/tftp/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// serveLoopback runs srv on conn (127.0.0.1) until the test ends.
func serveLoopback(t *testing.T, srv *Server, conn *net.UDPConn) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, conn) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("Serve did not return after its context ended")
		}
	})
}

// rawClient is a UDP socket on loopback speaking raw TFTP.
type rawClient struct {
	t    *testing.T
	conn *net.UDPConn
	peer *net.UDPAddr // server's transfer port, once known
}

func newRawClient(t *testing.T) *rawClient {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return &rawClient{t: t, conn: c}
}

func (c *rawClient) send(to net.Addr, pkt []byte) {
	_, err := c.conn.WriteTo(pkt, to)
	require.NoError(c.t, err)
}

func (c *rawClient) recv() (op uint16, body []byte) {
	require.NoError(c.t, c.conn.SetReadDeadline(time.Now().Add(5*time.Second)))
	buf := make([]byte, 65536)
	n, from, err := c.conn.ReadFromUDP(buf)
	require.NoError(c.t, err)
	require.GreaterOrEqual(c.t, n, 4)
	c.peer = from
	return binary.BigEndian.Uint16(buf), buf[2:n]
}

func rrq(name string, opts ...string) []byte {
	p := append([]byte{0, 1}, name...)
	p = append(p, 0)
	p = append(p, "octet"...)
	p = append(p, 0)
	for _, o := range opts {
		p = append(p, o...)
		p = append(p, 0)
	}
	return p
}

func ack(block uint16) []byte { return []byte{0, 4, byte(block >> 8), byte(block)} }

// TestPacketInfoBeforeServe: a request that reaches a ListenPacket socket
// before Serve runs still gets its blksize. pin/tftp switches packet info
// on only inside Serve; a request queued on a plain socket before that is
// capped at 512 bytes.
func TestPacketInfoBeforeServe(t *testing.T) {
	files := fstest.MapFS{"f": {Data: bytes.Repeat([]byte("x"), 5000)}}
	for _, tc := range []struct {
		name string
		open func() (*net.UDPConn, error)
		want string
	}{
		{"ListenPacket", func() (*net.UDPConn, error) { return ListenPacket(t.Context(), "udp4", "127.0.0.1:0") }, "blksize\x001468\x00"},
		{"net.ListenUDP", func() (*net.UDPConn, error) {
			return net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		}, "blksize\x00512\x00"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := tc.open()
			require.NoError(t, err)
			c := newRawClient(t)
			c.send(conn.LocalAddr(), rrq("f", "blksize", "1468"))
			time.Sleep(50 * time.Millisecond) // queued before Serve starts
			serveLoopback(t, &Server{FS: files}, conn)
			op, body := c.recv()
			require.Equal(t, uint16(6), op, "want OACK, got %q", body)
			assert.Contains(t, string(body), tc.want)
		})
	}
}

// TestRequestFS: an FS with OpenRequest sees the validated request.
func TestRequestFS(t *testing.T) {
	rfs := &recordingFS{MapFS: fstest.MapFS{"node.ipxe": {Data: []byte("per node")}}}
	conn, err := ListenPacket(t.Context(), "udp4", "127.0.0.1:0")
	require.NoError(t, err)
	serveLoopback(t, &Server{FS: rfs}, conn)
	c, err := ptftp.NewClient(conn.LocalAddr().String())
	require.NoError(t, err)
	wt, err := c.Receive("./node.ipxe", "OCTET")
	require.NoError(t, err)
	var buf bytes.Buffer
	_, err = wt.WriteTo(&buf)
	require.NoError(t, err)
	assert.Equal(t, "per node", buf.String())

	rfs.mu.Lock()
	defer rfs.mu.Unlock()
	require.Len(t, rfs.seen, 1)
	r := rfs.seen[0]
	assert.Equal(t, "node.ipxe", r.Name)
	assert.Equal(t, "octet", r.Mode)
	assert.Equal(t, netip.MustParseAddr("127.0.0.1"), r.Local)
	assert.Equal(t, netip.MustParseAddr("127.0.0.1"), r.Remote.Addr())
	assert.NotZero(t, r.Remote.Port())
}

type recordingFS struct {
	fstest.MapFS
	mu   sync.Mutex
	seen []Request
}

func (r *recordingFS) OpenRequest(_ context.Context, req *Request) (fs.File, error) {
	r.mu.Lock()
	r.seen = append(r.seen, *req)
	r.mu.Unlock()
	return r.Open(req.Name)
}

// TestBusyAndShutdown: beyond MaxTransfers a request gets "server busy";
// Shutdown with an expiring context fails the running transfer at its next
// block with an error packet.
func TestBusyAndShutdown(t *testing.T) {
	files := fstest.MapFS{"f": {Data: bytes.Repeat([]byte("x"), 4096)}}
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	require.NoError(t, err)
	_, err = NewMetrics(reg)
	assert.Error(t, err, "second registration on one registry")

	conn, err := ListenPacket(t.Context(), "udp4", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &Server{FS: files, MaxTransfers: 1, BusyWait: -1, Timeout: 2 * time.Second, Metrics: m}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background(), conn) }()

	first := newRawClient(t)
	first.send(conn.LocalAddr(), rrq("f"))
	op, _ := first.recv() // DATA 1; not acknowledged yet
	require.Equal(t, uint16(3), op)

	second := newRawClient(t)
	second.send(conn.LocalAddr(), rrq("f"))
	op, body := second.recv()
	require.Equal(t, uint16(5), op)
	assert.Contains(t, string(body), "server busy")
	assert.Equal(t, 1.0, metricValue(t, m.requests.WithLabelValues(ResultBusy)))
	assert.Equal(t, 1.0, metricValue(t, m.active))

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	assert.ErrorIs(t, srv.Shutdown(ctx), context.DeadlineExceeded)
	first.send(first.peer, ack(1))
	op, body = first.recv()
	require.Equal(t, uint16(5), op, "got %q", body)
	assert.Contains(t, string(body), "server shutting down")
	select {
	case err := <-done:
		assert.ErrorIs(t, err, ErrServerClosed)
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
	assert.Eventually(t, func() bool { return metricValue(t, m.active) == 0 }, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, 1.0, metricValue(t, m.requests.WithLabelValues(ResultFailed)))
}

// TestBusyWaitsForASlot: in a boot storm a request beyond MaxTransfers
// waits for a transfer to end instead of getting an error (a PXE ROM gives
// up its boot on one), and is served when the slot frees.
func TestBusyWaitsForASlot(t *testing.T) {
	files := fstest.MapFS{"f": {Data: []byte("small")}}
	conn, err := ListenPacket(t.Context(), "udp4", "127.0.0.1:0")
	require.NoError(t, err)
	serveLoopback(t, &Server{FS: files, MaxTransfers: 1, BusyWait: 10 * time.Second, Timeout: 5 * time.Second}, conn)

	first := newRawClient(t)
	first.send(conn.LocalAddr(), rrq("f"))
	op, _ := first.recv() // DATA 1, the whole file; the transfer ends with its ACK
	require.Equal(t, uint16(3), op)

	second := newRawClient(t)
	second.send(conn.LocalAddr(), rrq("f"))
	time.Sleep(300 * time.Millisecond) // the second request is waiting now
	first.send(first.peer, ack(1))
	op, body := second.recv()
	require.Equal(t, uint16(3), op, "the waiting request is served once the slot frees, got %q", body)
	assert.Contains(t, string(body), "small")
}

// TestNetascii: netascii in any letter case converts line ends.
func TestNetascii(t *testing.T) {
	conn, err := ListenPacket(t.Context(), "udp4", "127.0.0.1:0")
	require.NoError(t, err)
	serveLoopback(t, &Server{FS: fstest.MapFS{"t": {Data: []byte("a\nb\n")}}}, conn)
	for _, mode := range []string{"netascii", "NetAscii"} {
		c := newRawClient(t)
		p := append([]byte{0, 1}, "t\x00"+mode+"\x00"...)
		c.send(conn.LocalAddr(), p)
		op, body := c.recv()
		require.Equal(t, uint16(3), op)
		assert.Equal(t, "a\r\nb\r\n", string(body[2:]), mode)
		c.send(c.peer, ack(1))
	}
}

func TestRetransmitBackoff(t *testing.T) {
	var gaps []time.Duration
	for a := range 7 {
		gaps = append(gaps, time.Second+retransmitBackoff(time.Second, a))
	}
	assert.Equal(t, []time.Duration{1, 2, 4, 8, 16, 16, 16}, func() []time.Duration {
		for i := range gaps {
			gaps[i] /= time.Second
		}
		return gaps
	}())
}

func TestAnticipateWindow(t *testing.T) {
	for _, tc := range []struct {
		want uint
		blk  int
		got  uint
	}{
		{0, 1468, 0}, {1, 1468, 0}, {8, 1468, 8}, {60, 1468, 44}, {8, 0, 0}, {8, 65464, 0}, {8, 512, 8},
	} {
		assert.Equal(t, tc.got, anticipateWindow(tc.want, tc.blk), "%+v", tc)
	}
}

func TestServeErrors(t *testing.T) {
	conn, err := ListenPacket(t.Context(), "udp4", "127.0.0.1:0")
	require.NoError(t, err)
	assert.ErrorContains(t, (&Server{}).Serve(t.Context(), conn), "Server.FS is nil")
	pc, err := net.ListenPacket("ip4:1", "127.0.0.1")
	if err == nil { // needs root
		assert.ErrorContains(t, (&Server{FS: fstest.MapFS{}}).Serve(t.Context(), pc), "*net.UDPConn")
	}
	err = (&Server{FS: fstest.MapFS{}}).ListenAndServe(t.Context(), "256.0.0.1:69")
	assert.ErrorContains(t, err, "listen on udp4 256.0.0.1:69")
}

// TestIPv6: the server answers over IPv6 loopback, where the machine has it.
func TestIPv6(t *testing.T) {
	conn, err := ListenPacket(t.Context(), "udp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	serveLoopback(t, &Server{FS: fstest.MapFS{"f": {Data: bytes.Repeat([]byte("6"), 3000)}}}, conn)
	c, err := ptftp.NewClient(conn.LocalAddr().String())
	require.NoError(t, err)
	c.SetBlockSize(1400)
	wt, err := c.Receive("f", "octet")
	require.NoError(t, err)
	var buf bytes.Buffer
	_, err = wt.WriteTo(&buf)
	require.NoError(t, err)
	assert.Equal(t, 3000, buf.Len())
}

// TestGarbageIgnored: packets that are no request get no answer and are
// counted.
func TestGarbageIgnored(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	require.NoError(t, err)
	conn, err := ListenPacket(t.Context(), "udp4", "127.0.0.1:0")
	require.NoError(t, err)
	serveLoopback(t, &Server{FS: fstest.MapFS{"f": {Data: []byte("x")}}, Metrics: m}, conn)
	c := newRawClient(t)
	garbage := [][]byte{ack(1), {0, 3, 0, 1, 'x'}, {0, 5, 0, 1, 0}, {0, 6, 'a', 0, 'b', 0}, {0, 9}, {7}, {0, 1, 'f'}}
	for _, p := range garbage {
		c.send(conn.LocalAddr(), p)
	}
	require.NoError(t, c.conn.SetReadDeadline(time.Now().Add(300*time.Millisecond)))
	n, _, err := c.conn.ReadFromUDP(make([]byte, 1500))
	assert.Error(t, err, "got a %d-byte reply to garbage", n)
	assert.Eventually(t, func() bool { return metricValue(t, m.malformed) == float64(len(garbage)) }, 5*time.Second, 10*time.Millisecond)
}
