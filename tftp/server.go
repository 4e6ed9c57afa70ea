package tftp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	ptftp "github.com/pin/tftp/v3"
	"github.com/pin/tftp/v3/netascii"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Defaults for the zero values of Server fields.
const (
	DefaultTimeout      = time.Second
	DefaultRetries      = 5
	DefaultMaxTransfers = 4096
	// MaxAnticipateBytes bounds Server.Anticipate: window × block size. A
	// larger window can overrun a client's socket buffer, and pin/tftp's
	// anticipate sender then stalls for good once a block is lost.
	MaxAnticipateBytes = 64 << 10
)

// ErrServerClosed is returned by Serve and ListenAndServe after Shutdown.
var ErrServerClosed = errors.New("tftp: server closed")

// Errors sent to clients in the TFTP ERROR packet, with their RFC 1350
// error code (see sendError; pin/tftp alone would send code 1 for all).
var (
	errNotFound   = &codedError{codeNotFound, "file not found"}
	errUnsafePath = &codedError{codeAccessViolation, "access violation: unsafe path"}
	errBadMode    = &codedError{codeIllegalOp, "illegal TFTP operation: transfer mode must be octet or netascii"}
	errReadOnly   = &codedError{codeAccessViolation, "access violation: read-only server"}
	errBusy       = &codedError{codeNotDefined, "server busy, try again later"}
	errShutdown   = &codedError{codeNotDefined, "server shutting down"}
	errUnreadable = &codedError{codeNotDefined, "file unreadable"}
	errNotRegular = &codedError{codeNotFound, "file not found: not a regular file"}
)

// Errors returned to callers.
var (
	errNoFS        = errors.New("tftp: Server.FS is nil: set it to the tree to serve (for example tftp.OpenBootFS)")
	errNotUDPConn  = errors.New("tftp: Serve needs a *net.UDPConn (for example from tftp.ListenPacket)")
	errModeUnknown = errors.New("mode not visible")
)

// Request is one validated read request.
type Request struct {
	// Name is the requested file, cleaned by CleanPath: relative,
	// slash-separated, no "..".
	Name string
	// Mode is "octet" or "netascii".
	Mode string
	// Remote is the client's address and port (its transfer ID).
	Remote netip.AddrPort
	// Local is the server address the request arrived on; invalid if the
	// kernel did not say.
	Local netip.Addr
}

// RequestFS is an optional capability of Server.FS. When the served file
// system implements it, the server calls OpenRequest instead of Open, so the
// file may depend on who asks (a per-node file by client address, say).
// OpenRequest gets the request after validation; ctx ends when the Serve
// that received the request stops.
type RequestFS interface {
	fs.FS
	OpenRequest(ctx context.Context, req *Request) (fs.File, error)
}

// Server is a read-only TFTP server over an fs.FS. Set its fields, then call
// Serve or ListenAndServe; one Server may serve several sockets (one per
// interface, say) at once. Fields must not change once serving starts.
type Server struct {
	// FS holds the files served. Names reach it cleaned by CleanPath.
	// It must keep symbolic links inside itself: os.Root.FS and
	// OpenBootFS do, os.DirFS does not. If it implements RequestFS, the
	// server uses OpenRequest.
	FS fs.FS

	// Logger receives refused requests (Warn), completed transfers (Info)
	// and ignored packets (Debug). Nil discards.
	Logger *slog.Logger

	// Metrics, if not nil, counts requests and transfers (see NewMetrics).
	Metrics *Metrics

	// Timeout is how long the server waits for an acknowledgement before
	// it first retransmits a block (DefaultTimeout if zero). Each further
	// retransmission waits twice as long, up to 16 × Timeout (exponential
	// backoff, RFC 1123 4.2.3.2). The growing wait matters: atftp re-ACKs
	// a repeated block only once and otherwise waits for its own 5 s timer,
	// which a server retransmitting faster than that keeps resetting.
	Timeout time.Duration

	// Retries is how many times a block is retransmitted before the
	// transfer is abandoned (DefaultRetries if zero). With the defaults a
	// silent client is given up after 47 s.
	Retries int

	// MaxBlockSize caps the blksize option. Zero means: the MTU of the
	// interface the socket is bound to, or the smallest MTU of the
	// non-loopback interfaces for a wildcard address, minus IP, UDP and
	// TFTP headers (32 bytes for IPv4), so no block is fragmented. It is
	// measured when Serve starts. pin/tftp further caps each request at
	// its arrival interface's MTU − 28 (4 bytes too many: a 1472-byte
	// block on a 1500-byte MTU is fragmented) and offers no per-request
	// hook, so on a host whose interfaces differ in MTU, serve one socket
	// per interface address to get each interface's own limit.
	MaxBlockSize int

	// Anticipate, above 1, turns on pin/tftp's experimental anticipate
	// sender with this many blocks in flight. It is non-standard and,
	// when a block is lost and the window overruns the client's socket
	// buffer, stalls; so it is off by default and Serve clamps it so
	// that Anticipate × block size stays within MaxAnticipateBytes (it
	// stays off unless MaxBlockSize, given or measured, allows two
	// blocks).
	Anticipate uint

	// MaxTransfers bounds concurrent transfers (DefaultMaxTransfers if
	// zero, no bound if negative). A request beyond it waits up to
	// BusyWait for a transfer to end, then gets a "server busy" error: a
	// PXE ROM gives up the boot on an error, so a short queue turns a boot
	// storm into a delay instead of failed nodes.
	MaxTransfers int
	// BusyWait is how long a request waits for a free transfer slot
	// (DefaultBusyWait if zero, no wait if negative).
	BusyWait time.Duration

	mu        sync.Mutex
	listeners map[*listener]struct{}
	closed    bool
	active    atomic.Int64
	busyLog   atomic.Int64 // unix nanoseconds of the last "too many transfers" warning
}

// DefaultBusyWait is how long a request waits for a free transfer slot
// before "server busy"; PXE ROMs wait several seconds for an answer.
const DefaultBusyWait = 3 * time.Second

func (s *Server) busyWait() time.Duration {
	switch {
	case s.BusyWait == 0:
		return DefaultBusyWait
	case s.BusyWait < 0:
		return 0
	}
	return s.BusyWait
}

// acquire takes a transfer slot, waiting up to busyWait for one when all
// maxT are in use (maxT <= 0: no bound). It reports whether it got one.
func (s *Server) acquire(ctx context.Context, maxT int) bool {
	if maxT <= 0 {
		s.active.Add(1)
		return true
	}
	deadline := time.Now().Add(s.busyWait())
	for wait := 5 * time.Millisecond; ; wait = min(2*wait, 200*time.Millisecond) {
		if n := s.active.Add(1); n <= int64(maxT) {
			return true
		}
		s.active.Add(-1)
		if !time.Now().Add(wait).Before(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
		}
	}
}

// listener is one socket being served.
type listener struct {
	ps        *ptftp.Server
	abort     chan struct{} // closed: running transfers fail at their next block
	abortOnce sync.Once
}

func (l *listener) abortTransfers() { l.abortOnce.Do(func() { close(l.abort) }) }

// ListenPacket opens a UDP socket for Serve with packet info (IP_PKTINFO,
// IPV6_RECVPKTINFO) switched on before it is bound, so even requests that
// arrive before Serve starts carry their arrival interface and address;
// without them pin/tftp limits the transfer to 512-byte blocks and answers
// from the default source address. network is "udp", "udp4" or "udp6".
func ListenPacket(ctx context.Context, network, addr string) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(network, _ string, c syscall.RawConn) error {
		return enablePacketInfo(network, c)
	}}
	pc, err := lc.ListenPacket(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("tftp: listen on %s %s: %w (port 69 needs root or CAP_NET_BIND_SERVICE; is another TFTP server such as dnsmasq bound to it?)", network, addr, err)
	}
	return pc.(*net.UDPConn), nil
}

// ListenAndServe listens on the UDP address addr (":69" if empty; IPv4
// unless the host is an IPv6 literal) and serves it until ctx ends or
// Shutdown is called. It must run on the goroutine that is to own the
// transfer sockets; see Serve.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	if addr == "" {
		addr = ":69"
	}
	network := "udp4"
	if host, _, err := net.SplitHostPort(addr); err == nil {
		if ip, err := netip.ParseAddr(host); err == nil && ip.Is6() && !ip.Is4In6() {
			network = "udp6"
		}
	}
	conn, err := ListenPacket(ctx, network, addr)
	if err != nil {
		return err
	}
	return s.Serve(ctx, conn)
}

// Serve answers TFTP requests arriving on conn, which must be a
// *net.UDPConn (open it with ListenPacket so the first requests keep their
// packet info). It returns ctx.Err() when ctx ends (running transfers are
// then abandoned with an error packet), ErrServerClosed after Shutdown, or
// another error if it cannot serve. It closes conn before it returns; do not
// close conn yourself while Serve runs (pin/tftp would spin on it).
//
// Serve opens one socket per transfer, from the goroutine that called it: to
// serve inside a network namespace, call Serve on a thread locked into that
// namespace.
func (s *Server) Serve(ctx context.Context, conn net.PacketConn) error {
	if s.FS == nil {
		conn.Close()
		return errNoFS
	}
	uc, ok := conn.(*net.UDPConn)
	if !ok {
		conn.Close()
		return errNotUDPConn
	}
	// pin/tftp enables packet info too, but only once its loop starts;
	// for a socket ListenPacket did not open, do it as early as we can.
	if la, ok := uc.LocalAddr().(*net.UDPAddr); ok && la.IP.To4() != nil {
		_ = ipv4.NewPacketConn(uc).SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true)
	} else {
		_ = ipv6.NewPacketConn(uc).SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true)
	}

	l := &listener{abort: make(chan struct{})}
	l.ps = ptftp.NewServer(
		func(name string, rf io.ReaderFrom) error { return replyError(rf, s.read(ctx, l, name, rf)) },
		func(name string, wt io.WriterTo) error { return replyError(wt, s.write(name, wt)) },
	)
	l.ps.SetTimeout(s.timeout())
	l.ps.SetRetries(s.retries())
	// pin/tftp's default backoff sleeps a random 0-1 s before each
	// retransmission; make the waits an exponential series instead.
	timeout := s.timeout()
	l.ps.SetBackoff(func(attempt int) time.Duration { return retransmitBackoff(timeout, attempt) })
	l.ps.SetHook(hook{s})
	bs := s.MaxBlockSize
	if bs == 0 {
		bs = autoBlockSize(uc)
	}
	if bs > 0 {
		l.ps.SetBlockSize(bs)
	}
	if w := anticipateWindow(s.Anticipate, bs); w > 1 {
		l.ps.SetAnticipate(w)
	}
	s.logger().Info("tftp: serving", "addr", uc.LocalAddr().String(), "max_blksize", bs)

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		conn.Close()
		return ErrServerClosed
	}
	if s.listeners == nil {
		s.listeners = make(map[*listener]struct{})
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()

	stop := context.AfterFunc(ctx, func() {
		l.abortTransfers()
		l.ps.Shutdown()
	})
	err := l.ps.Serve(uc)
	stop()
	conn.Close()

	s.mu.Lock()
	delete(s.listeners, l)
	closed := s.closed
	s.mu.Unlock()
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case closed:
		return ErrServerClosed
	case err != nil:
		return fmt.Errorf("tftp: serve %s: %w", uc.LocalAddr(), err)
	}
	return nil
}

// Shutdown stops every Serve from accepting requests and waits for running
// transfers to finish. If ctx ends first, it makes the remaining transfers
// fail at their next block (the client gets an error packet) and returns
// ctx.Err(). Serve calls made after Shutdown return ErrServerClosed.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	ls := make([]*listener, 0, len(s.listeners))
	for l := range s.listeners {
		ls = append(ls, l)
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() {
		var wg sync.WaitGroup
		for _, l := range ls {
			wg.Go(l.ps.Shutdown)
		}
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		for _, l := range ls {
			l.abortTransfers()
		}
		return ctx.Err()
	}
}

// read is pin/tftp's read handler: validate, open, send. The error it
// returns goes to the client in an ERROR packet.
func (s *Server) read(ctx context.Context, l *listener, filename string, rf io.ReaderFrom) error {
	start := time.Now()
	req := &Request{Mode: "octet"}
	ot, _ := rf.(ptftp.OutgoingTransfer)
	if ot != nil {
		ua := ot.RemoteAddr()
		req.Remote = ua.AddrPort()
		req.Remote = netip.AddrPortFrom(req.Remote.Addr().Unmap(), req.Remote.Port())
	}
	if pi, ok := rf.(ptftp.RequestPacketInfo); ok {
		if a, ok := netip.AddrFromSlice(pi.LocalIP()); ok {
			req.Local = a.Unmap()
		}
	}
	log := s.logger().With("remote", req.Remote.String(), "file", filename)
	negotiate(rf)

	rawMode, err := transferMode(rf)
	if err == nil {
		switch m := strings.ToLower(rawMode); m {
		case "octet", "netascii":
			req.Mode = m
		default:
			// A NUL inside the requested name ends up here: pin/tftp
			// cuts the name at the first NUL and reads the rest as mode.
			log.Warn("tftp: refused request with invalid mode (NUL in name?)", "mode", rawMode)
			s.Metrics.request(ResultRefused)
			return errBadMode
		}
	}
	name, err := CleanPath(filename)
	if err != nil {
		log.Warn("tftp: refused unsafe path", "err", err)
		s.Metrics.request(ResultRefused)
		return errUnsafePath
	}
	req.Name = name

	maxT := s.MaxTransfers
	if maxT == 0 {
		maxT = DefaultMaxTransfers
	}
	if !s.acquire(ctx, maxT) {
		// One warning per 10 s, not one per refusal: a storm would
		// otherwise flood the log.
		if now, last := time.Now().UnixNano(), s.busyLog.Load(); now-last > int64(10*time.Second) && s.busyLog.CompareAndSwap(last, now) {
			log.Warn("tftp: refusing requests: too many transfers", "max_transfers", maxT, "waited", s.busyWait())
		}
		s.Metrics.request(ResultBusy)
		return errBusy
	}
	defer s.active.Add(-1)
	s.Metrics.activeAdd(1)
	defer s.Metrics.activeAdd(-1)

	f, err := s.open(ctx, req)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			log.Info("tftp: file not found")
		} else {
			log.Warn("tftp: cannot open file", "err", err)
		}
		s.Metrics.request(ResultNotFound)
		return errNotFound
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		log.Warn("tftp: cannot stat file", "err", err)
		s.Metrics.request(ResultNotFound)
		return errUnreadable
	}
	if !st.Mode().IsRegular() {
		log.Info("tftp: refused request for a non-regular file", "mode", st.Mode().String())
		s.Metrics.request(ResultNotFound)
		return errNotRegular
	}

	var r io.Reader = f
	if req.Mode == "octet" {
		if ot != nil {
			ot.SetSize(st.Size()) // answers the tsize option
		}
	} else if rawMode != "netascii" {
		// pin/tftp converts only for the exact lower-case mode name.
		r = netascii.ToReader(r)
	}
	bufSize := 64 << 10
	if sz := st.Size(); sz >= 0 && sz < int64(bufSize) {
		bufSize = max(int(sz)+1, 16)
	}
	n, err := rf.ReadFrom(&abortReader{r: bufio.NewReaderSize(r, bufSize), abort: l.abort})
	s.Metrics.sent(n)
	if err != nil {
		log.Warn("tftp: transfer failed", "sent_bytes", n, "err", err)
		s.Metrics.request(ResultFailed)
		return err
	}
	log.Info("tftp: sent", "bytes", n, "duration", time.Since(start).Round(time.Millisecond).String())
	s.Metrics.request(ResultOK)
	return nil
}

// replyError sends a handler's error to the client with its RFC 1350 code
// before pin/tftp would send it as code 1, and returns err for pin/tftp,
// which then sends nothing more.
func replyError(transfer any, err error) error {
	if err != nil {
		sendError(transfer, err)
	}
	return err
}

// write is pin/tftp's write handler: every write is refused.
func (s *Server) write(filename string, wt io.WriterTo) error {
	remote := ""
	if it, ok := wt.(ptftp.IncomingTransfer); ok {
		ua := it.RemoteAddr()
		remote = ua.String()
	}
	s.logger().Warn("tftp: refused write request", "remote", remote, "file", filename)
	s.Metrics.request(ResultWriteRefused)
	return errReadOnly
}

func (s *Server) open(ctx context.Context, req *Request) (fs.File, error) {
	if rfs, ok := s.FS.(RequestFS); ok {
		return rfs.OpenRequest(ctx, req)
	}
	return s.FS.Open(req.Name)
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

func (s *Server) timeout() time.Duration {
	if s.Timeout <= 0 {
		return DefaultTimeout
	}
	return s.Timeout
}

func (s *Server) retries() int {
	if s.Retries <= 0 {
		return DefaultRetries
	}
	return s.Retries
}

// transferMode reads the mode of a pending pin/tftp transfer. pin/tftp
// v3.1.0 parses it but does not hand it to the read handler; without it a
// request smuggling a NUL into the file name ("a\x00../x\x00octet") would
// pass as name "a" in mode "../x". The field is read, never written.
func transferMode(rf io.ReaderFrom) (string, error) {
	v := reflect.ValueOf(rf)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return "", errModeUnknown
	}
	f := v.Elem().FieldByName("mode")
	if !f.IsValid() || f.Kind() != reflect.String {
		return "", errModeUnknown
	}
	return f.String(), nil
}

// abortReader fails the transfer once abort is closed.
type abortReader struct {
	r     io.Reader
	abort <-chan struct{}
}

func (a *abortReader) Read(p []byte) (int, error) {
	select {
	case <-a.abort:
		return 0, errShutdown
	default:
	}
	return a.r.Read(p)
}

// hook feeds pin/tftp's transfer statistics into the metrics.
type hook struct{ s *Server }

func (h hook) OnSuccess(st ptftp.TransferStats) {
	h.s.Metrics.datagramStats(st.DatagramsSent, st.DatagramsAcked)
}

func (h hook) OnFailure(st ptftp.TransferStats, err error) {
	if st.RemoteAddr == nil && st.Filename == "" && st.Duration == 0 {
		// From pin/tftp's receive loop: the packet was no request.
		h.s.Metrics.malformedPacket()
		h.s.logger().Debug("tftp: ignored packet", "err", err)
		return
	}
	h.s.Metrics.datagramStats(st.DatagramsSent, st.DatagramsAcked)
}

// Header bytes around a TFTP data block: IP + UDP + TFTP opcode and block.
const (
	overhead4 = 20 + 8 + 4
	overhead6 = 40 + 8 + 4
	minBlock  = 512
	maxBlock  = 65464
)

// autoBlockSize is the largest unfragmented block for the interface conn is
// bound to, or for the smallest non-loopback interface if it is bound to a
// wildcard address; 0 if unknown.
func autoBlockSize(conn *net.UDPConn) int {
	la, ok := conn.LocalAddr().(*net.UDPAddr)
	if !ok {
		return 0
	}
	overhead := overhead4
	if la.IP.To4() == nil {
		overhead = overhead6
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return 0
	}
	best := 0
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.MTU <= 0 {
			continue
		}
		if !la.IP.IsUnspecified() {
			addrs, err := ifc.Addrs()
			if err != nil {
				continue
			}
			for _, a := range addrs {
				if ipn, ok := a.(*net.IPNet); ok && ipn.IP.Equal(la.IP) {
					return clampBlock(ifc.MTU - overhead)
				}
			}
			continue
		}
		if ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		if v := ifc.MTU - overhead; best == 0 || v < best {
			best = v
		}
	}
	return clampBlock(best)
}

func clampBlock(n int) int {
	switch {
	case n <= 0:
		return 0
	case n < minBlock:
		return minBlock
	case n > maxBlock:
		return maxBlock
	}
	return n
}

// retransmitBackoff is the pause before retransmission number attempt+1 (0
// based), on top of the timeout already waited: the time between sends is
// timeout × 2^attempt, at most 16 × timeout.
func retransmitBackoff(timeout time.Duration, attempt int) time.Duration {
	attempt = min(max(attempt, 0), 4)
	return timeout * time.Duration(1<<attempt-1)
}

// anticipateWindow clamps the anticipate window so that window × block size
// stays within MaxAnticipateBytes; below 2 it is off.
func anticipateWindow(want uint, blockSize int) uint {
	if want < 2 || blockSize <= 0 {
		return 0
	}
	limit := uint(MaxAnticipateBytes / blockSize)
	if want > limit {
		want = limit
	}
	if want < 2 {
		return 0
	}
	return want
}
