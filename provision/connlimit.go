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
	// WriteChunk is the most a connection writes under one write deadline:
	// each chunk gets StallTimeout, so the deadline moves on as bytes flow.
	WriteChunk = 256 << 10
)

// ConnLimits bounds what HTTP clients can hold (issue 11 item 4: 20,000
// connections from three addresses once used up every file descriptor, and
// then TFTP and DHCP failed too). Connections past a cap are accepted and
// closed at once (reset), counted in wwboot_http_connections_refused_total,
// and logged at warning level at most once a minute.
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

// Reasons a connection is refused (label "reason").
const (
	refusedTotal     = "total_cap"
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

	mu       sync.Mutex
	total    int
	byAddr   map[netip.Addr]int
	lastWarn time.Time
	since    [2]int // refused since the last warning: total cap, per-client cap
}

func newLimitListener(l net.Listener, max, per int, stall time.Duration, log *slog.Logger, reg prometheus.Registerer) (*limitListener, error) {
	ll := &limitListener{Listener: l, max: max, per: per, stall: stall, log: log, byAddr: map[netip.Addr]int{}}
	ll.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wwboot_http_connections_refused_total",
		Help: "HTTP connections closed at once because a cap was reached, by reason (total_cap, per_client_cap).",
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
	for _, c := range []prometheus.Collector{ll.refused, ll.stalled, open} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("provision: HTTP connection metrics: %w", err)
		}
	}
	return ll, nil
}

// Accept returns the next connection within the caps; those past a cap are
// reset and not returned.
func (l *limitListener) Accept() (net.Conn, error) { return l.accept(l.Listener) }

// share returns a listener over other whose connections count against l's
// caps (the agents' HTTPS port beside HTTP).
func (l *limitListener) share(other net.Listener) net.Listener {
	return &sharedListener{Listener: other, l: l}
}

// sharedListener is a listener counted against another's caps.
type sharedListener struct {
	net.Listener
	l *limitListener
}

// Accept returns the next connection within the caps.
func (s *sharedListener) Accept() (net.Conn, error) { return s.l.accept(s.Listener) }

// accept returns the next connection of ln within l's caps.
func (l *limitListener) accept(ln net.Listener) (net.Conn, error) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return nil, err
		}
		var addr netip.Addr
		if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
			addr = ap.Addr().Unmap()
		}
		l.mu.Lock()
		reason := -1
		switch {
		case l.total >= l.max:
			reason = 0
		case l.per > 0 && l.byAddr[addr] >= l.per:
			reason = 1
		default:
			l.total++
			l.byAddr[addr]++
		}
		if reason < 0 {
			l.mu.Unlock()
			return &limitConn{Conn: c, l: l, addr: addr}, nil
		}
		l.since[reason]++
		warn := time.Since(l.lastWarn) >= time.Minute
		var counts [2]int
		if warn {
			l.lastWarn, counts, l.since = time.Now(), l.since, [2]int{}
		}
		open := l.total
		l.mu.Unlock()
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // reset: no TIME_WAIT, no descriptor kept
		}
		_ = c.Close()
		l.refused.WithLabelValues([]string{refusedTotal, refusedPerClient}[reason]).Inc()
		if warn {
			l.log.Warn("HTTP overloaded: refusing connections past a cap (logged at most once a minute; see wwboot_http_connections_refused_total)",
				"open", open, "max", l.max, "per_client", l.per, "client", addr,
				"refused_total_cap", counts[0], "refused_per_client_cap", counts[1])
		}
	}
}

func (l *limitListener) release(addr netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.byAddr[addr]--; l.byAddr[addr] <= 0 {
		delete(l.byAddr, addr)
	}
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
