package dhcp

import (
	"context"
	"net/netip"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Request is one DHCP packet as the server received it.
type Request struct {
	// Msg is the parsed packet. Handlers must not modify it.
	Msg *dhcpv4.DHCPv4
	// Interface is the name of the interface the packet arrived on.
	Interface string
	// Local is the server's address on that interface (the server
	// identifier, option 54, unless the policy configures one).
	Local netip.Addr
	// Port is the local UDP port: 67, or 4011 for PXE boot server requests
	// in proxy mode.
	Port int
	// Peer is the sender's address (a client, or a relay agent on port 67).
	Peer netip.AddrPort
}

// Handler answers DHCP requests. ServeDHCP returns the reply to send, or nil
// (and a nil error) to stay silent. An error means the handler failed (the
// inventory was unreachable, the lease file could not be written); the
// server logs and counts it and sends nothing. Handlers are called
// concurrently.
type Handler interface {
	ServeDHCP(ctx context.Context, req *Request) (*dhcpv4.DHCPv4, error)
}

// HandlerFunc adapts a function to [Handler].
type HandlerFunc func(ctx context.Context, req *Request) (*dhcpv4.DHCPv4, error)

// ServeDHCP calls f(ctx, req).
func (f HandlerFunc) ServeDHCP(ctx context.Context, req *Request) (*dhcpv4.DHCPv4, error) {
	return f(ctx, req)
}
