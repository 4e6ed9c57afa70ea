package provision

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for [ConnLimits].
const (
	// DefaultPerClient is how many HTTP connections one client address may
	// hold at once. A booting node uses one or two (iPXE, then its agent's
	// long poll); a browser on /status a handful.
	DefaultPerClient = 16
	// DefaultStallTimeout is how long one write chunk (WriteChunk) may take
	// before the connection is cut: a client is served as long as it reads
	// at least WriteChunk bytes per DefaultStallTimeout, about 4 KiB/s, so a
	// slow node still gets a multi-GB image and one that stopped reading is
	// cut within a minute.
	DefaultStallTimeout = 60 * time.Second
	// DefaultIdleTimeout is how long a keep-alive connection may wait for
	// its next request.
	DefaultIdleTimeout = 20 * time.Second
	// FDReserve is how many file descriptors the HTTP cap leaves to
	// everything else (DHCP and TFTP sockets, TFTP's files, the inventory,
	// the image store, logs) when it is derived from RLIMIT_NOFILE.
	FDReserve = 512
	// ConnsPerNode and MinMaxConns size the derived overall cap: four
	// connections per node in the inventory (iPXE's, the agent's long poll,
	// room for retries) plus an eighth of MinMaxConns, and never below
	// MinMaxConns, so idle connections from many addresses cannot take all
	// the memory either (a connection costs some 10-20 KiB).
	ConnsPerNode = 4
	MinMaxConns  = 8192
	// TFTPTransfersPerNode sizes the derived TFTP cap: a node's firmware
	// fetches one file at a time, and one retransmitted request may start
	// a second transfer before the first is given up.
	TFTPTransfersPerNode = 2
	// WriteChunk is the most a connection writes under one write deadline:
	// each chunk gets StallTimeout, so the deadline moves on as bytes flow.
	WriteChunk = 256 << 10
)

// ConnLimits bounds what HTTP clients can hold (issue 11 item 4: 20,000
// connections from three addresses once used up every file descriptor, and
// then TFTP and DHCP failed too). At the overall cap the server stops
// accepting until a connection closes, so new ones wait in the kernel's
// listen queue (wwboot_http_accept_wait_seconds_total); a connection past
// the per-client cap is accepted and closed at once (reset), counted in
// wwboot_http_connections_refused_total. Both are logged at warning level
// at most once a minute.
type ConnLimits struct {
	// Max bounds HTTP connections from all clients together. 0 derives it
	// when the server starts listening: ConnsPerNode per node in the
	// inventory plus MinMaxConns/8, at least MinMaxConns, and at most half
	// of what RLIMIT_NOFILE leaves after FDReserve (a download holds its
	// file open beside its socket), so DHCP and TFTP keep descriptors when
	// HTTP is saturated. Every node can hold one long-lived agent
	// connection; when the descriptors do not allow that, a warning says
	// how many are wanted.
	Max int
	// PerClient bounds connections from one address; 0 means
	// DefaultPerClient, negative means no per-client cap.
	PerClient int
	// StallTimeout cuts a connection whose write of one WriteChunk does not
	// complete in time; 0 means DefaultStallTimeout.
	StallTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle this long; 0 means
	// DefaultIdleTimeout.
	IdleTimeout time.Duration
}

// FilesWanted is how many file descriptors (RLIMIT_NOFILE) a server whose
// inventory holds nodes nodes wants so that no derived cap is cut short:
// FDReserve, two per HTTP connection of the derived cap (the socket and the
// file it sends) and two per TFTP transfer of the derived cap. For 10,000
// nodes it is 122,560; a server started as root can raise its hard limit
// that far (fs.nr_open allowing), others get a warning from Listen.
func FilesWanted(nodes int) uint64 {
	n := uint64(max(nodes, 0))
	return FDReserve + 2*(ConnsPerNode*n+MinMaxConns/8) + 2*TFTPTransfersPerNode*n
}

// fdBudget returns how many HTTP connections RLIMIT_NOFILE allows.
func fdBudget() (int, uint64) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 4096, 0
	}
	left := int64(rl.Cur) - FDReserve
	if rl.Cur > 1<<30 {
		left = 1 << 29
	}
	return int(max(left/2, 32)), rl.Cur
}

// connMetrics are the HTTP connection counters.
type connMetrics struct {
	open    prometheus.GaugeFunc
	refused *prometheus.CounterVec
	stalled prometheus.Counter
}

// Reasons a connection is refused (label "reason"); the overall cap makes
// connections wait instead (see limitListener.Accept).
const (
	refusedPerClient = "per_client_cap"
)

// limitListener enforces ConnLimits on accepted connections.
type limitListener struct {
	net.Listener
	max, per int
	stall    time.Duration
	log      *slog.Logger
	refused  *prometheus.CounterVec
	stalled  prometheus.Counter
	waits    prometheus.Counter
	waited   prometheus.Counter

	freed  chan struct{} // closed (and replaced, under mu) when a place under the overall cap is given back
	closed chan struct{} // Close was called
	close  sync.Once

	mu       sync.Mutex
	total    int
	byAddr   map[netip.Addr]int
	lastWarn time.Time
	lastFull time.Time
	since    [2]int // refused since the last warning: total cap, per-client cap
}

func newLimitListener(l net.Listener, max, per int, stall time.Duration, log *slog.Logger, reg prometheus.Registerer) (*limitListener, error) {
	ll := &limitListener{Listener: l, max: max, per: per, stall: stall, log: log, byAddr: map[netip.Addr]int{},
		freed: make(chan struct{}), closed: make(chan struct{})}
	ll.waits = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "wwboot_http_accept_waits_total",
		Help: "Times the HTTP listener stopped accepting because the overall connection cap was reached (new connections then wait in the kernel's listen queue).",
	})
	ll.waited = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "wwboot_http_accept_wait_seconds_total",
		Help: "Seconds the HTTP listener spent not accepting because the overall connection cap was reached.",
	})
	ll.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wwboot_http_connections_refused_total",
		Help: "HTTP connections closed at once because a cap was reached, by reason (per_client_cap; the overall cap makes connections wait instead).",
	}, []string{"reason"})
	ll.stalled = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "wwboot_http_stalled_writes_total",
		Help: "HTTP connections cut because the client stopped reading (a write chunk outlived the stall timeout).",
	})
	open := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "wwboot_http_connections",
		Help: "HTTP connections open now.",
	}, func() float64 {
		ll.mu.Lock()
		defer ll.mu.Unlock()
		return float64(ll.total)
	})
	for _, c := range []prometheus.Collector{ll.refused, ll.stalled, ll.waits, ll.waited, open} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("provision: HTTP connection metrics: %w", err)
		}
	}
	return ll, nil
}

// Accept returns the next connection within the caps. At the overall cap it
// stops accepting until a connection closes: new connections wait in the
// kernel's listen queue (and past it the clients retransmit their SYNs), so
// a boot storm larger than the cap is served late instead of reset, which
// iPXE would count as a failed download (issue 11 item 12). A connection
// past the per-client cap is reset at once: one address holding that many is
// misbehaving.
func (l *limitListener) Accept() (net.Conn, error) { return l.accept(l.Listener, l.closed) }

// share returns a listener over other whose connections count against l's
// caps (the agents' HTTPS port beside HTTP).
func (l *limitListener) share(other net.Listener) net.Listener {
	return &sharedListener{Listener: other, l: l, closed: make(chan struct{})}
}

// sharedListener is a listener counted against another's caps.
type sharedListener struct {
	net.Listener
	l      *limitListener
	closed chan struct{}
	once   sync.Once
}

// Accept returns the next connection within the caps.
func (s *sharedListener) Accept() (net.Conn, error) { return s.l.accept(s.Listener, s.closed) }

// Close closes the listener; an Accept waiting for a place returns.
func (s *sharedListener) Close() error {
	s.once.Do(func() { close(s.closed) })
	return s.Listener.Close()
}

// accept returns the next connection of ln within l's caps; closed ends a
// wait for a place.
func (l *limitListener) accept(ln net.Listener, closed <-chan struct{}) (net.Conn, error) {
	for {
		if err := l.reserve(closed); err != nil {
			return nil, err
		}
		c, err := ln.Accept()
		if err != nil {
			l.unreserve()
			return nil, err
		}
		var addr netip.Addr
		if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
			addr = ap.Addr().Unmap()
		}
		l.mu.Lock()
		if l.per <= 0 || l.byAddr[addr] < l.per {
			l.byAddr[addr]++
			l.mu.Unlock()
			return &limitConn{Conn: c, l: l, addr: addr}, nil
		}
		l.since[1]++
		warn := time.Since(l.lastWarn) >= time.Minute
		var counts [2]int
		if warn {
			l.lastWarn, counts, l.since = time.Now(), l.since, [2]int{}
		}
		open := l.total - 1
		l.mu.Unlock()
		l.unreserve()
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // reset: no TIME_WAIT, no descriptor kept
		}
		_ = c.Close()
		l.refused.WithLabelValues(refusedPerClient).Inc()
		if warn {
			l.log.Warn("HTTP client over its connection cap: refusing its connections past the cap (logged at most once a minute; see wwboot_http_connections_refused_total)",
				"open", open, "per_client", l.per, "client", addr, "refused_per_client_cap", counts[1])
		}
	}
}

// reserve takes a place under the overall cap for the next accepted
// connection, waiting while there is none. It fails when the listener is
// closed.
func (l *limitListener) reserve(closed <-chan struct{}) error {
	var start time.Time
	for {
		l.mu.Lock()
		freed := l.freed
		if l.total < l.max {
			l.total++
			l.mu.Unlock()
			if !start.IsZero() {
				l.waited.Add(time.Since(start).Seconds())
			}
			return nil
		}
		if start.IsZero() {
			start = time.Now()
			l.waits.Inc()
			if time.Since(l.lastFull) >= time.Minute {
				l.lastFull = start
				l.log.Warn("HTTP overloaded: at the connection cap, new connections wait in the listen queue until others close (logged at most once a minute; see wwboot_http_accept_wait_seconds_total)",
					"open", l.total, "max", l.max)
			}
		}
		l.mu.Unlock()
		select {
		case <-freed:
		case <-closed:
			return net.ErrClosed
		}
	}
}

// unreserve gives back a place reserve took for a connection not kept.
func (l *limitListener) unreserve() {
	l.mu.Lock()
	l.total--
	l.mu.Unlock()
	l.signal()
}

// signal wakes every reserve waiting for a place (HTTP's and the agents'
// HTTPS listener share the caps): freed is closed and replaced.
func (l *limitListener) signal() {
	l.mu.Lock()
	close(l.freed)
	l.freed = make(chan struct{})
	l.mu.Unlock()
}

// Close closes the listener; an Accept waiting for a place returns.
func (l *limitListener) Close() error {
	l.close.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

func (l *limitListener) release(addr netip.Addr) {
	l.mu.Lock()
	l.total--
	if l.byAddr[addr]--; l.byAddr[addr] <= 0 {
		delete(l.byAddr, addr)
	}
	l.mu.Unlock()
	l.signal()
}

// limitConn counts against its listener's caps until closed, and cuts
// writes that make no progress: every chunk of at most WriteChunk bytes gets
// its own deadline, StallTimeout from when it starts.
type limitConn struct {
	net.Conn
	l    *limitListener
	addr netip.Addr
	once sync.Once
}

// Close closes the connection and frees its place under the caps.
func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.addr) })
	return err
}

func (c *limitConn) deadline() {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(c.l.stall))
}

func (c *limitConn) stalled(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.l.stalled.Inc()
		c.l.log.Debug("HTTP client stopped reading; connection cut", "client", c.addr, "stall_timeout", c.l.stall)
	}
	return err
}

// Write writes p in chunks, each under a fresh write deadline.
func (c *limitConn) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), WriteChunk)
		c.deadline()
		m, err := c.Conn.Write(p[:k])
		n += m
		if err != nil {
			return n, c.stalled(err)
		}
		p = p[k:]
	}
	return n, nil
}

// ReadFrom sends r in chunks, each under a fresh write deadline, through the
// TCP connection's own ReadFrom, so a file still goes out with sendfile.
func (c *limitConn) ReadFrom(r io.Reader) (int64, error) {
	rf, ok := c.Conn.(io.ReaderFrom)
	if !ok {
		return io.Copy(connWriter{c}, r)
	}
	remain := int64(-1) // unbounded
	if lr, ok := r.(*io.LimitedReader); ok {
		remain, r = lr.N, lr.R // unwrapped: sendfile looks through one LimitedReader only
	}
	var total int64
	for remain != 0 {
		k := int64(WriteChunk)
		if remain > 0 {
			k = min(k, remain)
		}
		c.deadline()
		n, err := rf.ReadFrom(&io.LimitedReader{R: r, N: k})
		total += n
		if remain > 0 {
			remain -= n
		}
		if err != nil {
			return total, c.stalled(err)
		}
		if n < k { // the source ended
			break
		}
	}
	return total, nil
}

// connWriter hides ReadFrom, so io.Copy does not call it again.
type connWriter struct{ io.Writer }
