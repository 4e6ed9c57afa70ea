package provision_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	ptftp "github.com/pin/tftp/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/wwboot/wwboot/image"
	"github.com/wwboot/wwboot/nodedb"
	"github.com/wwboot/wwboot/provision"
	"github.com/wwboot/wwboot/provision/netlab"
	"github.com/wwboot/wwboot/tftp"
)

// limitedServer runs the lab's whole Server on all loopback addresses with
// the given HTTP limits and returns its port.
func limitedServer(t *testing.T, l *lab, lim provision.ConnLimits) string {
	t.Helper()
	srv, err := provision.NewServer(provision.ServerConfig{Options: l.options(t), HTTPAddr: "127.0.0.1:0",
		HTTPLimits: lim, DrainTimeout: time.Second})
	require.NoError(t, err)
	require.NoError(t, srv.Listen())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	_, port, _ := net.SplitHostPort(srv.HTTPAddr().String())
	return port
}

// dialFrom connects from the loopback address src (127.0.0.0/8 is all
// local) to 127.0.0.1:port, with a receive buffer of rcvbuf bytes if > 0.
// It returns nil if the server reset the connection at once.
func dialFrom(t *testing.T, src, port string, rcvbuf int) *net.TCPConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Control: func(_, _ string, rc syscall.RawConn) error {
		if rcvbuf <= 0 {
			return nil
		}
		return rc.Control(func(fd uintptr) { _ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf) })
	}}
	c, err := d.Dial("tcp", "127.0.0.1:"+port)
	if errors.Is(err, syscall.ECONNRESET) {
		return nil
	}
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// open reports whether the server kept c: a read that times out means the
// connection is there and idle; EOF or a reset means it was refused.
func open(c *net.TCPConn) bool {
	if c == nil {
		return false
	}
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestHTTPPerClientCapRefusesOneAddressAndServesAnother(t *testing.T) {
	l := newLab(t)
	port := limitedServer(t, l, provision.ConnLimits{Max: 1000, PerClient: 8})
	conns := make([]*net.TCPConn, 30)
	for i := range conns {
		conns[i] = dialFrom(t, "127.0.0.2", port, 0)
	}
	kept := 0
	for _, c := range conns {
		if open(c) {
			kept++
		}
	}
	assert.Equal(t, 8, kept, "idle connections from one address past the per-client cap are refused")

	// Another address is served meanwhile.
	c := dialFrom(t, "127.0.0.3", port, 0)
	_, err := fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	// Closing one of the kept connections frees its place.
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	require.Eventually(t, func() bool { return open(dialFrom(t, "127.0.0.2", port, 0)) }, 5*time.Second, 50*time.Millisecond)

	_, body := get(t, "http://127.0.0.1:"+port+"/metrics")
	// 22 refused above, and those of the retries while the close was on its way.
	assert.Regexp(t, `wwboot_http_connections_refused_total\{reason="per_client_cap"\} 2[2-9]\n`, string(body))
}

// TestHTTPTotalCapQueues: past the overall cap a connection is neither
// refused nor served: it waits until another closes, then its request is
// answered (a boot storm larger than the cap is served late, not reset).
func TestHTTPTotalCapQueues(t *testing.T) {
	l := newLab(t)
	port := limitedServer(t, l, provision.ConnLimits{Max: 5, PerClient: -1})
	held := make([]*net.TCPConn, 5)
	for i := range held {
		held[i] = dialFrom(t, fmt.Sprintf("127.0.1.%d", i+1), port, 0)
		require.True(t, open(held[i]), "connection %d under the cap is kept", i)
	}
	// Make sure the server accepted all five before the sixth comes.
	require.Eventually(t, func() bool {
		mfs, err := l.reg.Gather()
		require.NoError(t, err)
		for _, mf := range mfs {
			if mf.GetName() == "wwboot_http_connections" {
				return mf.GetMetric()[0].GetGauge().GetValue() == 5
			}
		}
		return false
	}, 5*time.Second, 20*time.Millisecond)

	late := dialFrom(t, "127.0.1.9", port, 0)
	require.NotNil(t, late, "a connection past the cap is not reset")
	_, err := fmt.Fprintf(late, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	_ = late.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	_, err = late.Read(make([]byte, 1))
	var ne net.Error
	require.True(t, errors.As(err, &ne) && ne.Timeout(), "no answer while the cap is full: %v", err)

	held[0].Close()
	_ = late.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(late), nil)
	require.NoError(t, err, "answered once a place is free")
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	for _, c := range held[1:] {
		assert.True(t, open(c), "the others stay open")
	}
}

// bigImage gives node n1 an image of about size bytes of random content and
// returns the URL path it is served at.
func bigImage(t *testing.T, l *lab, size int) string {
	t.Helper()
	tree := filepath.Join(t.TempDir(), "tree")
	require.NoError(t, os.MkdirAll(filepath.Join(tree, "boot"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tree, "boot", "vmlinuz-6.1.0-1-amd64"), randBytes(t, 64<<10), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(tree, "payload"), randBytes(t, size), 0o644))
	_, err := l.images.Import(context.Background(), tree, "big", image.BuildOptions{})
	require.NoError(t, err)
	require.NoError(t, l.store.Update(context.Background(), func(c *nodedb.Config) error {
		c.Nodes["n1"].ImageName = "big"
		return nil
	}))
	return "/image/" + mac1
}

// startDownload sends a GET for path on c and reads the response header.
func startDownload(t *testing.T, c net.Conn, path string) (*bufio.Reader, int64) {
	t.Helper()
	_, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
	require.NoError(t, err)
	br := bufio.NewReaderSize(c, 4096)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	n, err := strconv.ParseInt(resp.Header.Get("Content-Length"), 10, 64)
	require.NoError(t, err)
	return br, n
}

func TestHTTPStalledDownloadIsCutSlowOneIsNot(t *testing.T) {
	l := newLab(t)
	path := bigImage(t, l, 16<<20)
	port := limitedServer(t, l, provision.ConnLimits{Max: 100, StallTimeout: time.Second})

	t.Run("stopped reading", func(t *testing.T) {
		c := dialFrom(t, "127.0.0.4", port, 16<<10)
		br, size := startDownload(t, c, path)
		_, err := io.CopyN(io.Discard, br, 64<<10)
		require.NoError(t, err)
		time.Sleep(3 * time.Second) // stop reading, past the stall timeout
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := io.Copy(io.Discard, br)
		assert.Less(t, 64<<10+n, size, "the server cut the download")
		assert.False(t, errors.Is(err, os.ErrDeadlineExceeded), "cut by the server, not by the client's deadline: %v", err)
		_, body := get(t, "http://127.0.0.1:"+port+"/metrics")
		assert.Contains(t, string(body), "wwboot_http_stalled_writes_total 1")
	})
	t.Run("slow but steady", func(t *testing.T) {
		c := dialFrom(t, "127.0.0.5", port, 0)
		br, size := startDownload(t, c, path)
		// 512 KiB every 100 ms, about 5 MB/s: far under what the link
		// does, so the server waits on the client the whole way, but every
		// write chunk completes within the stall timeout.
		var got int64
		for got < size {
			n, err := io.CopyN(io.Discard, br, min(512<<10, size-got))
			got += n
			require.NoError(t, err, "after %d of %d bytes", got, size)
			time.Sleep(100 * time.Millisecond)
		}
		assert.Equal(t, size, got)
	})
}

// holdConns starts a separate process (its descriptors are not this
// test's) that opens n TCP connections to 127.0.0.1:port from the loopback
// addresses 127.0.3.x and holds them open until the test ends. It returns
// once every connect was tried.
func holdConns(t *testing.T, port string, n int) {
	t.Helper()
	netlab.RequireTools(t, "python3")
	script := `
import socket, sys, resource
resource.setrlimit(resource.RLIMIT_NOFILE, (8192, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
port, n = int(sys.argv[1]), int(sys.argv[2])
held = []
for i in range(n):
    s = socket.socket()
    s.bind(("127.0.3.%d" % (1 + i % 200), 0))
    try:
        s.connect(("127.0.0.1", port))
    except OSError:
        pass
    held.append(s)
print("ready", flush=True)
sys.stdin.read()
`
	cmd := exec.Command("python3", "-c", script, port, strconv.Itoa(n))
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "ready\n", line)
}

// TestHTTPSaturatedLeavesTFTPAndDescriptors: with RLIMIT_NOFILE at 1,100,
// the overall cap derived from it is (1,100 - FDReserve) / 2 = 294. A
// client process opens 1,500 connections; HTTP holds at most 294 of them,
// TFTP still serves a file, the server can still open files, and the
// overload is logged once at warning level, not 1,200 times.
func TestHTTPSaturatedLeavesTFTPAndDescriptors(t *testing.T) {
	var old syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old))
	low := old
	low.Cur = 1100
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low))
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })

	l := newLab(t)
	var logs syncBuffer
	opts := l.options(t)
	opts.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	srv, err := provision.NewServer(provision.ServerConfig{Options: opts, HTTPAddr: "127.0.0.1:0",
		HTTPLimits: provision.ConnLimits{PerClient: -1}, TFTP: true, TFTPAddr: "127.0.0.1:0", DrainTimeout: time.Second})
	require.NoError(t, err)
	require.NoError(t, srv.Listen())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	_, port, _ := net.SplitHostPort(srv.HTTPAddr().String())
	holdConns(t, port, 1500)
	time.Sleep(500 * time.Millisecond) // the server accepts up to its cap

	c, err := ptftp.NewClient(srv.TFTPAddr().String())
	require.NoError(t, err)
	wt, err := c.Receive("undionly.kpxe", "octet")
	require.NoError(t, err, "TFTP answers while HTTP is saturated")
	var buf bytes.Buffer
	_, err = wt.WriteTo(&buf)
	require.NoError(t, err)
	want, _ := os.ReadFile(filepath.Join(l.bootDir, "undionly.kpxe"))
	assert.Equal(t, want, buf.Bytes())

	metric := func(name, reason string) float64 {
		mfs, err := l.reg.Gather()
		require.NoError(t, err)
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				if mf.GetName() == name && (reason == "" || m.GetLabel()[0].GetValue() == reason) {
					if m.GetGauge() != nil {
						return m.GetGauge().GetValue()
					}
					return m.GetCounter().GetValue()
				}
			}
		}
		return -1 // not there yet
	}
	// The rest wait in the kernel's listen queue: the listener stopped
	// accepting at the cap.
	require.Eventually(t, func() bool { return metric("wwboot_http_accept_waits_total", "") >= 1 },
		10*time.Second, 50*time.Millisecond)
	assert.Equal(t, float64(294), metric("wwboot_http_connections", ""), "HTTP holds no more than its cap")

	assert.Equal(t, 1, strings.Count(logs.String(), "HTTP overloaded"), "overload is logged once, at warning level:\n%s", logs.String())
	assert.Contains(t, logs.String(), "level=WARN msg=\"HTTP overloaded")
}

// syncBuffer is a bytes.Buffer safe for a logger and a test reading it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestHTTPDerivedCap: without a configured cap, and descriptors to spare,
// the overall cap is MinMaxConns for a small inventory and grows with it,
// ConnsPerNode per node.
func TestHTTPDerivedCap(t *testing.T) {
	var rl syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl))
	for _, tc := range []struct {
		nodes int
		want  int
	}{{2, provision.MinMaxConns}, {2000, provision.ConnsPerNode*2000 + provision.MinMaxConns/8}} {
		if rl.Cur < uint64(2*tc.want+provision.FDReserve) {
			t.Skipf("RLIMIT_NOFILE %d too low for this check", rl.Cur)
		}
		store := inventoryFile(t, tc.nodes)
		var logs syncBuffer
		srv, err := provision.NewServer(provision.ServerConfig{
			Options:  provision.Options{Inventory: store, Logger: slog.New(slog.NewTextHandler(&logs, nil))},
			HTTPAddr: "127.0.0.1:0",
		})
		require.NoError(t, err)
		require.NoError(t, srv.Listen())
		require.NoError(t, srv.Shutdown(context.Background()))
		assert.Contains(t, logs.String(), fmt.Sprintf("HTTP connection limits\" max=%d per_client=%d", tc.want, provision.DefaultPerClient))
	}
}

// TestTFTPCapGrowsWithTheInventory: the TFTP transfer cap is two per node
// of the inventory, at least tftp.DefaultMaxTransfers, unless configured: a
// fixed cap of 4,096 failed 778 of 10,000 storming nodes with "server busy",
// which ends a PXE ROM's boot (issue 11 item 12).
func TestTFTPCapGrowsWithTheInventory(t *testing.T) {
	l := newLab(t)
	listen := func(max int) int {
		opts := l.options(t)
		opts.Registry = nil // a registry of its own for each server
		srv, err := provision.NewServer(provision.ServerConfig{Options: opts, HTTPAddr: "127.0.0.1:0",
			TFTP: true, TFTPAddr: "127.0.0.1:0", TFTPMaxTransfers: max, DrainTimeout: time.Second})
		require.NoError(t, err)
		require.NoError(t, srv.Listen())
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- srv.Serve(ctx) }()
		cancel()
		<-done
		return srv.TFTPMaxTransfers()
	}
	assert.Equal(t, tftp.DefaultMaxTransfers, listen(0), "a small inventory gets the default")
	require.NoError(t, l.store.Update(context.Background(), func(c *nodedb.Config) error {
		for i := range 3000 {
			c.Nodes[fmt.Sprintf("s%04d", i)] = &nodedb.Record{Profiles: []string{"default"}, NetDevs: map[string]*nodedb.NetDev{
				"default": {Hwaddr: fmt.Sprintf("02:00:00:00:%02x:%02x", i>>8, i&0xff)}}}
		}
		return nil
	}))
	assert.Equal(t, 2*3002, listen(0), "two transfers per node of 3,002")
	assert.Equal(t, 7, listen(7), "a configured cap is kept")
}
