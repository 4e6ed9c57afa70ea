//go:build linux

package dhcp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"golang.org/x/sys/unix"
)

// ServerConfig configures a [Server].
type ServerConfig struct {
	// Interfaces names the interfaces to serve; one socket each, bound to
	// the device, so the server always knows where a packet arrived.
	Interfaces []string
	// Proxy also listens on the PXE boot server port 4011 (proxy mode).
	// NewServer sets it when the handler is a proxy-mode *Policy.
	Proxy bool
	// ProbeWait is how long Serve waits for answers to the DHCPDISCOVER it
	// broadcasts on each interface at start to find other DHCP servers on
	// the segment; 0 means 2s, negative disables the probe. Other servers
	// are also noticed for as long as Serve runs, from the offers and acks
	// they broadcast, and from clients asking for their offers.
	ProbeWait time.Duration
	// RequestTimeout bounds each handler call through its context, so a
	// hung inventory cannot hold a worker for good; default 10s.
	RequestTimeout time.Duration
	// Workers bounds how many requests are handled at once; default 256.
	// Workers waiting for the pool's lease file to be written share one
	// write, so more workers mean more acknowledgements per fsync.
	Workers int
	// Queue bounds how many received packets (4 KiB each) wait for a
	// worker; packets beyond it are dropped and counted (queue_full).
	// Default 2048.
	Queue int
	// UnknownWorkers and UnknownQueue are the workers and queue for
	// packets from clients the handler does not know, when the handler is
	// a [Classifier] (a *Policy is): they are served apart, so a flood of
	// made-up MACs cannot take the queue or the workers from known nodes.
	// Defaults 8 and 256.
	UnknownWorkers int
	UnknownQueue   int
	// Logger receives errors and warnings; nil discards.
	Logger *slog.Logger
	// Metrics counts packets; nil counts nothing. Give it the same value
	// as the policy's.
	Metrics *Metrics
}

// Server receives DHCP packets on named interfaces and answers them with a
// [Handler] on a bounded pool of workers. It is written on raw UDP sockets
// rather than insomniacslk's server4, which starts an unbounded goroutine
// per packet, cannot tell which address a packet arrived on, broadcasts
// every reply to an unconfigured client, does not answer relays, and sets
// SO_REUSEPORT so that a second DHCP server on port 67 silently takes half
// the traffic. This server binds port 67 exclusively (another server on the
// same port makes Listen fail with a clear error), learns the arrival
// address from IP_PKTINFO, and delivers replies per RFC 2131 section 4.1.
type Server struct {
	h   Handler
	cfg ServerConfig
	log *slog.Logger

	mu       sync.Mutex
	stop     chan struct{}
	served   bool
	done     chan struct{}
	abort    context.CancelFunc // cancels the requests in hand
	stopping atomic.Bool        // queued packets are dropped, not served

	bufs sync.Pool

	ownMu  sync.Mutex
	own    map[netip.Addr]bool      // server identifiers this server sent
	probes map[[6]byte]bool         // MACs of this server's own probes
	warned map[netip.Addr]time.Time // other servers already reported
}

// ErrServerClosed is returned by Serve after Shutdown or a second Serve.
var ErrServerClosed = errors.New("dhcp: server closed")

// NewServer returns a server that answers with h.
func NewServer(h Handler, cfg ServerConfig) (*Server, error) {
	if h == nil {
		return nil, errors.New("dhcp: NewServer: handler is nil")
	}
	if p, ok := h.(*Policy); ok && p.Mode() == Proxy {
		cfg.Proxy = true
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 256
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 2048
	}
	if cfg.UnknownWorkers <= 0 {
		cfg.UnknownWorkers = 8
	}
	if cfg.UnknownQueue <= 0 {
		cfg.UnknownQueue = 256
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 10 * time.Second
	}
	if cfg.ProbeWait == 0 {
		cfg.ProbeWait = 2 * time.Second
	}
	s := &Server{h: h, cfg: cfg, log: cfg.Logger, stop: make(chan struct{}), done: make(chan struct{}),
		own: make(map[netip.Addr]bool), probes: make(map[[6]byte]bool), warned: make(map[netip.Addr]time.Time)}
	s.bufs.New = func() any { return new(packet) }
	return s, nil
}

// Conn is a DHCP socket bound to one interface and port.
type Conn struct {
	iface    string
	ifindex  int
	port     int
	udp      *net.UDPConn
	prefixes []netip.Prefix // the interface's IPv4 prefixes when opened

	// watch listens on the client port 68 for other servers' replies (port
	// 67 conns only); watchErr says why it could not be opened.
	watch    *net.UDPConn
	watchErr error
}

// Interface is the name of the interface the socket is bound to.
func (c *Conn) Interface() string { return c.iface }

// Port is the local UDP port.
func (c *Conn) Port() int { return c.port }

// Close closes the socket.
func (c *Conn) Close() error {
	if c.watch != nil {
		c.watch.Close()
	}
	return c.udp.Close()
}

// Listen opens a DHCP socket on interface ifname and UDP port (67, or 4011
// for proxy mode) in the calling thread's network namespace. The port is
// bound without SO_REUSEADDR/SO_REUSEPORT, so another DHCP server holding
// it makes Listen fail instead of silently sharing the traffic.
func Listen(ifname string, port int) (*Conn, error) {
	ifc, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("dhcp: interface %q: %w (check the interface name in the config)", ifname, err)
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return nil, fmt.Errorf("dhcp: addresses of interface %s: %w", ifname, err)
	}
	var prefixes []netip.Prefix
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip4 := n.IP.To4(); ip4 != nil {
				ones, _ := n.Mask.Size()
				prefixes = append(prefixes, netip.PrefixFrom(netip.AddrFrom4([4]byte(ip4)), ones))
			}
		}
	}
	var serr error
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		err := rc.Control(func(fd uintptr) {
			if serr = unix.BindToDevice(int(fd), ifname); serr != nil {
				serr = fmt.Errorf("SO_BINDTODEVICE: %w", serr)
				return
			}
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1); serr != nil {
				serr = fmt.Errorf("SO_BROADCAST: %w", serr)
				return
			}
			if serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1); serr != nil {
				serr = fmt.Errorf("IP_PKTINFO: %w", serr)
				return
			}
			// A boot storm arrives in bursts: give the kernel room to queue
			// it (beyond net.core.rmem_max when running as root).
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20) != nil {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp4", fmt.Sprintf("0.0.0.0:%d", port))
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("dhcp: listen on %s UDP port %d: %w: another DHCP server (dnsmasq, dhcpd, kea, a second wwboot) holds the port on this machine; stop it, or run wwboot in proxy mode beside the site's server", ifname, port, err)
		}
		if errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) {
			return nil, fmt.Errorf("dhcp: listen on %s UDP port %d: %w: a DHCP server needs root, or CAP_NET_BIND_SERVICE, CAP_NET_RAW (SO_BINDTODEVICE) and CAP_NET_ADMIN (ARP entries for unicast replies)", ifname, port, err)
		}
		return nil, fmt.Errorf("dhcp: listen on %s UDP port %d: %w", ifname, port, err)
	}
	c := &Conn{iface: ifname, ifindex: ifc.Index, port: port, udp: pc.(*net.UDPConn), prefixes: prefixes}
	if port == ServerPort {
		c.watch, c.watchErr = listenWatch(ifname)
	}
	return c, nil
}

// Listen opens the sockets the config asks for: port 67 on every
// interface, and 4011 too in proxy mode. On error it closes what it opened.
func (s *Server) Listen() ([]*Conn, error) {
	if len(s.cfg.Interfaces) == 0 {
		return nil, errors.New("dhcp: server config names no interfaces: set ServerConfig.Interfaces")
	}
	ports := []int{ServerPort}
	if s.cfg.Proxy {
		ports = append(ports, PXEServerPort)
	}
	var conns []*Conn
	for _, ifname := range s.cfg.Interfaces {
		for _, port := range ports {
			c, err := Listen(ifname, port)
			if err != nil {
				for _, c := range conns {
					c.Close()
				}
				return nil, err
			}
			conns = append(conns, c)
		}
	}
	return conns, nil
}

// ListenAndServe opens the configured sockets and serves them until ctx
// is done or Shutdown is called.
func (s *Server) ListenAndServe(ctx context.Context) error {
	conns, err := s.Listen()
	if err != nil {
		return err
	}
	return s.Serve(ctx, conns...)
}

type packet struct {
	buf   [4096]byte
	n     int
	conn  *Conn
	peer  netip.AddrPort
	local netip.Addr
}

// Serve answers packets from conns until ctx is done or Shutdown is
// called, then stops reading, lets the requests in hand finish, closes the
// conns and returns nil. It returns ErrServerClosed if the server was
// already shut down.
func (s *Server) Serve(ctx context.Context, conns ...*Conn) error {
	s.mu.Lock()
	if s.served {
		s.mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
		return ErrServerClosed
	}
	s.served = true // one Serve per Server
	s.mu.Unlock()
	defer close(s.done)
	if len(conns) == 0 {
		return errors.New("dhcp: Serve: no sockets (call Listen first)")
	}

	q := queues{known: make(chan *packet, s.cfg.Queue)}
	if cls, ok := s.h.(Classifier); ok {
		q.cls = cls
		q.unknown = make(chan *packet, s.cfg.UnknownQueue)
	}
	// Requests in hand finish after a stop, unless Shutdown's context ends
	// first: then abort cancels them.
	hctx, abort := context.WithCancel(context.WithoutCancel(ctx))
	defer abort()
	s.mu.Lock()
	s.abort = abort
	s.mu.Unlock()
	var readers, workers sync.WaitGroup
	for _, c := range conns {
		s.log.Info("dhcp: serving", "interface", c.iface, "port", c.port, "addresses", fmt.Sprint(c.prefixes))
		readers.Add(1)
		go func() {
			defer readers.Done()
			s.read(hctx, c, q)
		}()
	}
	for _, c := range conns {
		if c.watch == nil {
			if c.watchErr != nil {
				s.log.Warn("dhcp: cannot watch the client port for other DHCP servers", "interface", c.iface, "err", c.watchErr)
			}
			continue
		}
		readers.Add(1)
		go func() {
			defer readers.Done()
			s.watchOthers(c)
		}()
	}
	work := func(queue <-chan *packet) {
		defer workers.Done()
		for p := range queue {
			if s.stopping.Load() {
				s.dropped(hctx, p, DropShutdown, "queued when the server stopped") // a backlog must not hold the stop
			} else {
				s.handle(hctx, p)
			}
			s.bufs.Put(p)
		}
	}
	for range s.cfg.Workers {
		workers.Add(1)
		go work(q.known)
	}
	if q.unknown != nil {
		for range s.cfg.UnknownWorkers {
			workers.Add(1)
			go work(q.unknown)
		}
	}

	select {
	case <-ctx.Done():
	case <-s.stop:
	}
	s.stopping.Store(true)
	for _, c := range conns {
		_ = c.udp.SetReadDeadline(time.Unix(1, 0))
		if c.watch != nil {
			_ = c.watch.Close() // watchOthers resets its deadlines: closing is what stops it
		}
	}
	readers.Wait()
	close(q.known)
	if q.unknown != nil {
		close(q.unknown)
	}
	workers.Wait()
	for _, c := range conns {
		c.Close()
	}
	return nil
}

// Shutdown stops Serve: no more packets are read, packets still queued are
// dropped (counted as DropShutdown), requests in hand finish. It returns when
// Serve has returned or ctx is done; then the contexts of the requests still
// in hand are cancelled, so Serve returns soon after whatever the backlog.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	started := s.served
	s.served = true
	s.mu.Unlock()
	if !started {
		return nil
	}
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		if s.abort != nil {
			s.abort()
		}
		s.mu.Unlock()
		return ctx.Err()
	}
}

// queues are where the receive path puts packets: known clients' queue,
// and, when the handler is a Classifier, everyone else's.
type queues struct {
	cls     Classifier
	known   chan *packet
	unknown chan *packet // nil without a Classifier
}

// pick returns the queue for the packet in b: the client hardware address
// is read from its fixed place in the BOOTP header (RFC 2131 section 2), or
// for IPoIB from chaddr or option 61 ([ClientHW]), without parsing the rest.
func (q queues) pick(ctx context.Context, b []byte) chan *packet {
	if q.cls == nil {
		return q.known
	}
	hw, ok := rawClientHW(b)
	if !ok {
		return q.unknown // malformed: the parser drops it, on the small side
	}
	if q.cls.Known(ctx, hw) {
		return q.known
	}
	return q.unknown
}

func (s *Server) read(ctx context.Context, c *Conn, q queues) {
	oob := make([]byte, unix.CmsgSpace(unix.SizeofInet4Pktinfo)*2)
	for {
		p := s.bufs.Get().(*packet)
		n, oobn, flags, peer, err := c.udp.ReadMsgUDPAddrPort(p.buf[:], oob)
		if err != nil {
			s.bufs.Put(p)
			if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Error("dhcp: read", "interface", c.iface, "port", c.port, "err", err)
			time.Sleep(10 * time.Millisecond) // don't spin on a persistent error
			continue
		}
		p.n, p.conn, p.peer = n, c, peer
		if flags&unix.MSG_TRUNC != 0 {
			s.dropped(ctx, p, DropMalformed, "larger than the 4 KiB any DHCP client sends")
			s.bufs.Put(p)
			continue
		}
		p.local = c.localAddr(oob[:oobn])
		select {
		case q.pick(ctx, p.buf[:n]) <- p:
		default:
			s.dropped(ctx, p, DropQueueFull, "work queue full")
			s.bufs.Put(p)
		}
	}
}

// dropped counts a packet the server drops before the handler sees it and
// logs it with its reason at debug level.
func (s *Server) dropped(ctx context.Context, p *packet, reason, detail string) {
	s.cfg.Metrics.drop(reason)
	if !s.log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	var hw net.HardwareAddr
	if mac, ok := rawClientHW(p.buf[:p.n]); ok {
		hw = mac
	}
	logDrop(ctx, s.log, reason, detail, p.conn.iface, p.conn.port, p.peer, nil, hw)
}

// localAddr is the address the packet was addressed to (a relay's unicast),
// else the interface address the kernel would answer from, else the
// interface's first address.
func (c *Conn) localAddr(oob []byte) netip.Addr {
	// Walk the control messages by hand: unix.ParseSocketControlMessage
	// allocates, and this runs for every packet.
	for len(oob) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		if h.Len < unix.SizeofCmsghdr || int(h.Len) > len(oob) {
			break
		}
		data := oob[unix.CmsgLen(0):h.Len]
		if h.Level == unix.IPPROTO_IP && h.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo {
			info := (*unix.Inet4Pktinfo)(unsafe.Pointer(&data[0]))
			dst := netip.AddrFrom4(info.Addr)
			if c.owns(dst) {
				return dst
			}
			if spec := netip.AddrFrom4(info.Spec_dst); !spec.IsUnspecified() {
				return spec
			}
		}
		next := unix.CmsgSpace(int(h.Len) - unix.CmsgLen(0))
		if next > len(oob) {
			break
		}
		oob = oob[next:]
	}
	if len(c.prefixes) > 0 {
		return c.prefixes[0].Addr()
	}
	return netip.Addr{}
}

func (c *Conn) owns(a netip.Addr) bool {
	for _, p := range c.prefixes {
		if p.Addr() == a {
			return true
		}
	}
	return false
}

func (c *Conn) onLink(a netip.Addr) bool {
	for _, p := range c.prefixes {
		if p.Masked().Contains(a) {
			return true
		}
	}
	return false
}

func (s *Server) handle(ctx context.Context, p *packet) {
	defer func() {
		if r := recover(); r != nil {
			buf := make([]byte, 4096)
			buf = buf[:runtime.Stack(buf, false)]
			s.log.Error("dhcp: handler panic", "interface", p.conn.iface, "peer", p.peer, "panic", fmt.Sprint(r), "stack", string(buf))
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	reply, req := s.serve(ctx, p.buf[:p.n], p.conn.iface, p.conn.port, p.local, p.peer)
	if reply == nil {
		return
	}
	dst, arp := destination(req.Msg, reply, p.conn.port, p.peer)
	b := reply.ToBytes()
	if sid, ok := addrOf(reply.ServerIdentifier()); ok {
		s.noteOwn(sid)
	}
	if arp && p.conn.onLink(dst.Addr()) {
		if err := p.conn.setARP(dst.Addr(), reply.ClientHWAddr); err != nil {
			s.log.Debug("dhcp: ARP entry for unicast reply failed, broadcasting", "err", err)
			dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte{255, 255, 255, 255}), ClientPort)
		}
	} else if arp {
		dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte{255, 255, 255, 255}), ClientPort)
	}
	if err := p.conn.send(b, dst, p.local); err != nil {
		s.log.Warn("dhcp: send reply", "interface", p.conn.iface, "to", dst, "mac", clientString(req.Msg), "err", err)
	}
}

// serve parses one packet and runs the handler; both nil means no reply.
func (s *Server) serve(ctx context.Context, b []byte, iface string, port int, local netip.Addr, peer netip.AddrPort) (*dhcpv4.DHCPv4, *Request) {
	m, err := dhcpv4.FromBytes(b)
	if err != nil {
		s.cfg.Metrics.drop(DropMalformed)
		if s.log.Enabled(ctx, slog.LevelDebug) {
			logDrop(ctx, s.log, DropMalformed, "does not parse: "+err.Error(), iface, port, peer, nil, nil)
		}
		return nil, nil
	}
	mac, err := ClientHW(m)
	if err != nil {
		s.cfg.Metrics.drop(DropMalformed)
		if s.log.Enabled(ctx, slog.LevelDebug) {
			logDrop(ctx, s.log, DropMalformed, err.Error(), iface, port, peer, m, nil)
		}
		return nil, nil
	}
	if s.isProbe(m.ClientHWAddr) {
		if s.log.Enabled(ctx, slog.LevelDebug) {
			logDrop(ctx, s.log, "own_probe", "this server's own probe for other servers, looped back", iface, port, peer, m, mac)
		}
		return nil, nil
	}
	req := &Request{Msg: m, Interface: iface, Local: local, Port: port, Peer: peer}
	reply, err := s.h.ServeDHCP(ctx, req)
	if err != nil {
		s.log.Error("dhcp: request failed", "interface", iface, "mac", mac.String(), "type", m.MessageType().String(), "err", err)
		return nil, nil
	}
	if reply == nil {
		return nil, nil
	}
	if s.log.Enabled(ctx, slog.LevelDebug) {
		s.log.Debug("dhcp: reply", "interface", iface, "mac", mac.String(), "type", reply.MessageType().String(), "yiaddr", reply.YourIPAddr.String())
	}
	return reply, req
}

// destination picks where a reply goes, per RFC 2131 section 4.1; arp is
// true when it goes by unicast to a client without an address, whose MAC
// must be put in the ARP table first.
func destination(req, reply *dhcpv4.DHCPv4, port int, peer netip.AddrPort) (dst netip.AddrPort, arp bool) {
	bcast := netip.AddrPortFrom(netip.AddrFrom4([4]byte{255, 255, 255, 255}), ClientPort)
	if g, ok := addrOf(req.GatewayIPAddr); ok && !g.IsUnspecified() {
		return netip.AddrPortFrom(g, ServerPort), false
	}
	if port == PXEServerPort && peer.Addr().Is4() && !peer.Addr().IsUnspecified() {
		return peer, false
	}
	if reply.MessageType() == dhcpv4.MessageTypeNak {
		return bcast, false
	}
	if ci, ok := addrOf(req.ClientIPAddr); ok && !ci.IsUnspecified() {
		return netip.AddrPortFrom(ci, ClientPort), false
	}
	if req.IsBroadcast() || reply.IsBroadcast() { // IPoIB replies are broadcast (RFC 4390)
		return bcast, false
	}
	if yi, ok := addrOf(reply.YourIPAddr); ok && !yi.IsUnspecified() {
		return netip.AddrPortFrom(yi, ClientPort), true
	}
	return bcast, false
}

func (c *Conn) send(b []byte, dst netip.AddrPort, src netip.Addr) error {
	var oob []byte
	if src.Is4() {
		oob = unix.PktInfo4(&unix.Inet4Pktinfo{Ifindex: int32(c.ifindex), Spec_dst: src.As4()})
	}
	_, _, err := c.udp.WriteMsgUDPAddrPort(b, oob, dst)
	return err
}

// setARP puts addr → mac in the interface's ARP table (SIOCSARP), so a
// unicast reply reaches a client that cannot answer ARP yet. dnsmasq and
// ISC dhcpd do the same.
func (c *Conn) setARP(addr netip.Addr, mac net.HardwareAddr) error {
	if len(mac) != 6 {
		return fmt.Errorf("hardware address %v is not Ethernet", mac)
	}
	var req [68]byte // struct arpreq
	binary.NativeEndian.PutUint16(req[0:], unix.AF_INET)
	a4 := addr.As4()
	copy(req[4:8], a4[:])
	binary.NativeEndian.PutUint16(req[16:], unix.ARPHRD_ETHER)
	copy(req[18:24], mac)
	binary.NativeEndian.PutUint32(req[32:], 0x02) // ATF_COM
	copy(req[52:67], c.iface)
	rc, err := c.udp.SyscallConn()
	if err != nil {
		return err
	}
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, unix.SIOCSARP, uintptr(unsafe.Pointer(&req[0])))
		if errno != 0 {
			ierr = errno
		}
	}); err != nil {
		return err
	}
	return ierr
}
