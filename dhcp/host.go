package dhcp

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"
)

// ErrUnknownHost is returned by [Hosts.HostByHW] and [Discoverer.Discover]
// when the inventory has no node for a hardware address. The policy branches
// on it with errors.Is: an unknown client is counted and ignored (or handed
// to the pool or to discovery), any other error is logged as a failure.
var ErrUnknownHost = errors.New("dhcp: unknown host")

// Host is what the DHCP server hands a known client. Zero fields are left
// out of the reply.
type Host struct {
	// Hostname is the node's name (option 12).
	Hostname string
	// Addr is the node's IPv4 address (yiaddr, and option 50 on the client
	// side). Required in full mode; ignored in proxy mode.
	Addr netip.Addr
	// Netmask is the subnet mask (option 1).
	Netmask net.IPMask
	// Gateway is the default router (option 3).
	Gateway netip.Addr
	// DNS lists the name servers (option 6).
	DNS []netip.Addr
	// Domain is the DNS domain name (option 15).
	Domain string
	// MTU is the interface MTU (option 26); 0 leaves it out.
	MTU uint16
	// LeaseTime is the address lease time (option 51); 0 means the
	// policy's default.
	LeaseTime time.Duration
}

// Hosts looks up the inventory by hardware address. It must be safe for
// concurrent use and fast: it runs once per packet.
type Hosts interface {
	// HostByHW returns the host for mac, or an error wrapping
	// [ErrUnknownHost] when the inventory has no node with that address.
	HostByHW(ctx context.Context, mac net.HardwareAddr) (Host, error)
}

// HostsFunc adapts a function to [Hosts].
type HostsFunc func(ctx context.Context, mac net.HardwareAddr) (Host, error)

// HostByHW calls f(ctx, mac).
func (f HostsFunc) HostByHW(ctx context.Context, mac net.HardwareAddr) (Host, error) {
	return f(ctx, mac)
}

// Discoverer assigns an unknown hardware address to a node marked
// discoverable in the inventory. Implementations must be race-free: two
// unknown MACs discovered at once never take the same node, and the same MAC
// asking twice gets the same node. They persist the assignment before
// returning. When no discoverable node is left they return an error wrapping
// [ErrUnknownHost].
type Discoverer interface {
	// Discover assigns mac to a discoverable node and returns that node's
	// host, or an error wrapping [ErrUnknownHost] if none is left.
	Discover(ctx context.Context, mac net.HardwareAddr) (Host, error)
}

// Reserver tells the dynamic pool which addresses the inventory gives to
// nodes, so the pool never hands one of them to another client. A [Hosts]
// used with a [Pool] must implement it (or the pool is given one directly).
type Reserver interface {
	// Reserved reports whether addr belongs to a node in the inventory. It
	// runs under the pool's lock for every candidate address: keep it fast.
	Reserved(addr netip.Addr) bool
}

// ReserverFunc adapts a function to [Reserver].
type ReserverFunc func(addr netip.Addr) bool

// Reserved calls f(addr).
func (f ReserverFunc) Reserved(addr netip.Addr) bool { return f(addr) }
