//go:build linux

package ipxe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"
)

// ICMPv6 neighbour discovery message types (RFC 4861).
const (
	icmpRouterSolicitation  = 133
	icmpRouterAdvertisement = 134
)

// RouterAdvertiser answers IPv6 router solicitations on one interface with a
// router advertisement that announces nothing: router lifetime 0 (not a
// default router), no prefix, neither the managed nor the other-configuration
// flag. Hosts learn no address and no route from it.
//
// It exists for iPXE. iPXE configures a NIC with DHCPv4 and IPv6 SLAAC at
// once and waits until both are done; without a router on the link the IPv6
// side gives up only after about 15 seconds of solicitations (measured: 16 s
// per boot with Debian's iPXE 1.0.0+git-20190125 under QEMU), and only then
// does iPXE fetch its script. The empty advertisement completes the IPv6 side
// at once. Serve it on provisioning networks that have no IPv6 router; where
// one exists, iPXE does not wait and this is not needed.
//
// A solicitation from a link-local address is answered by unicast to that
// address, one from the unspecified address (::) by multicast to all nodes,
// at most once per MulticastInterval.
type RouterAdvertiser struct {
	ifi    *net.Interface
	conn   *net.IPConn
	logger *slog.Logger

	// MulticastInterval is the least time between two multicast answers;
	// set it before Serve. Default 1 s.
	MulticastInterval time.Duration

	mu        sync.Mutex
	lastMcast time.Time
	answered  uint64
}

// ListenRouterAdvertiser opens a raw ICMPv6 socket bound to interface ifname
// (in the calling thread's network namespace) and joins the all-routers
// group. It needs CAP_NET_RAW. logger may be nil.
func ListenRouterAdvertiser(ifname string, logger *slog.Logger) (*RouterAdvertiser, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("ipxe: router advertiser: interface %q: %w", ifname, err)
	}
	if len(ifi.HardwareAddr) == 0 {
		return nil, fmt.Errorf("ipxe: router advertiser: interface %q has no link-layer address", ifname)
	}
	conn, err := net.ListenIP("ip6:ipv6-icmp", &net.IPAddr{IP: net.IPv6unspecified})
	if err != nil {
		return nil, fmt.Errorf("ipxe: router advertiser on %s: open raw ICMPv6 socket (needs CAP_NET_RAW): %w", ifname, err)
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("ipxe: router advertiser on %s: %w", ifname, err)
	}
	var serr error
	cerr := rc.Control(func(fd uintptr) {
		s := int(fd)
		// Neighbour discovery demands hop limit 255 on what we send.
		if serr = syscall.SetsockoptInt(s, syscall.IPPROTO_IPV6, syscall.IPV6_MULTICAST_HOPS, 255); serr != nil {
			return
		}
		if serr = syscall.SetsockoptInt(s, syscall.IPPROTO_IPV6, syscall.IPV6_UNICAST_HOPS, 255); serr != nil {
			return
		}
		if serr = syscall.SetsockoptInt(s, syscall.IPPROTO_IPV6, syscall.IPV6_MULTICAST_IF, ifi.Index); serr != nil {
			return
		}
		if serr = syscall.SetsockoptInt(s, syscall.IPPROTO_IPV6, syscall.IPV6_MULTICAST_LOOP, 0); serr != nil {
			return
		}
		if serr = syscall.BindToDevice(s, ifname); serr != nil {
			return
		}
		mr := &syscall.IPv6Mreq{Interface: uint32(ifi.Index)}
		copy(mr.Multiaddr[:], net.ParseIP("ff02::2").To16())
		serr = syscall.SetsockoptIPv6Mreq(s, syscall.IPPROTO_IPV6, syscall.IPV6_JOIN_GROUP, mr)
	})
	if err := errors.Join(cerr, serr); err != nil {
		conn.Close()
		return nil, fmt.Errorf("ipxe: router advertiser on %s: socket options: %w", ifname, err)
	}
	return &RouterAdvertiser{ifi: ifi, conn: conn, logger: logger, MulticastInterval: time.Second}, nil
}

// advertisement returns the ICMPv6 router advertisement; the kernel fills in
// the checksum.
func (r *RouterAdvertiser) advertisement() []byte {
	ra := make([]byte, 16, 16+8)
	ra[0] = icmpRouterAdvertisement
	// Bytes 1-15: code 0, checksum (kernel), cur hop limit 0 (unspecified),
	// flags 0 (no M, no O), router lifetime 0 (not a default router),
	// reachable time 0, retrans timer 0: all zero.
	// Source link-layer address option (type 1, length in units of 8 bytes).
	opt := []byte{1, byte((2 + len(r.ifi.HardwareAddr) + 7) / 8)}
	opt = append(opt, r.ifi.HardwareAddr...)
	for len(opt)%8 != 0 {
		opt = append(opt, 0)
	}
	return append(ra, opt...)
}

// Answered returns how many solicitations have been answered.
func (r *RouterAdvertiser) Answered() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.answered
}

// Serve answers solicitations until ctx ends or Close is called. It returns
// nil after ctx ends or Close, otherwise the socket's error.
func (r *RouterAdvertiser) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { r.conn.Close() })
	defer stop()
	ra := r.advertisement()
	allNodes := &net.IPAddr{IP: net.ParseIP("ff02::1"), Zone: r.ifi.Name}
	buf := make([]byte, 1500)
	for {
		n, from, err := r.conn.ReadFromIP(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("ipxe: router advertiser on %s: %w", r.ifi.Name, err)
		}
		if n < 8 || buf[0] != icmpRouterSolicitation || buf[1] != 0 {
			continue
		}
		dst := allNodes
		if from.IP.IsLinkLocalUnicast() {
			dst = &net.IPAddr{IP: from.IP, Zone: r.ifi.Name}
		} else {
			r.mu.Lock()
			recent := time.Since(r.lastMcast) < r.MulticastInterval
			if !recent {
				r.lastMcast = time.Now()
			}
			r.mu.Unlock()
			if recent {
				continue
			}
		}
		if _, err := r.conn.WriteToIP(ra, dst); err != nil {
			r.logger.Warn("router advertisement not sent", "interface", r.ifi.Name, "to", dst.String(), "err", err)
			continue
		}
		r.mu.Lock()
		r.answered++
		r.mu.Unlock()
		r.logger.Debug("router solicitation answered", "interface", r.ifi.Name, "from", from.String(), "to", dst.String())
	}
}

// Close stops Serve and releases the socket.
func (r *RouterAdvertiser) Close() error { return r.conn.Close() }
