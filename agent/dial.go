package agent

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"syscall"
)

// DialFunc opens a connection, like net.Dialer.DialContext.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Privileged source ports the agent binds: 512-1023. The ports below 512
// are left to the services that traditionally use them (rsh, NFS...).
const (
	privLow = 512
	privN   = 512
)

// DialPrivileged connects from a privileged source port (below 1024),
// which the provisioning server requires for runtime overlays and
// heartbeats in secure mode: only root (or CAP_NET_BIND_SERVICE) can bind
// one. It tries the ports of 512-1023 from a random one on, skipping ports
// in use; the source address is the one the kernel routes from (the node's
// own).
func DialPrivileged(ctx context.Context, network, addr string) (net.Conn, error) {
	start := rand.N(privN)
	var last error
	for i := range privN {
		d := net.Dialer{LocalAddr: &net.TCPAddr{Port: privLow + (start+i)%privN}}
		c, err := d.DialContext(ctx, network, addr)
		if err == nil {
			return c, nil
		}
		last = err
		if errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) {
			return nil, fmt.Errorf("binding a privileged source port needs root or CAP_NET_BIND_SERVICE: %w", err)
		}
		if !errors.Is(err, syscall.EADDRINUSE) && !errors.Is(err, syscall.EADDRNOTAVAIL) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("no free privileged source port in %d-%d: %w", privLow, privLow+privN-1, last)
}

// DialAny connects from any source port, for servers in insecure mode.
func DialAny(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}
