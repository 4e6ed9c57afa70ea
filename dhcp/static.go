package dhcp

import (
	"context"
	"fmt"
	"net"
	"net/netip"
)

// StaticHosts is a fixed in-memory inventory, for tests, examples and small
// embedders. It implements [Hosts] and [Reserver]; build it with
// [NewStaticHosts] and do not change it afterwards.
type StaticHosts struct {
	byMAC  map[[6]byte]Host
	byAddr map[netip.Addr][6]byte
}

// NewStaticHosts indexes hosts by MAC (any form net.ParseMAC accepts). Two
// hosts with one address are an error.
func NewStaticHosts(hosts map[string]Host) (*StaticHosts, error) {
	s := &StaticHosts{byMAC: make(map[[6]byte]Host, len(hosts)), byAddr: make(map[netip.Addr][6]byte, len(hosts))}
	for m, h := range hosts {
		mac, err := net.ParseMAC(m)
		if err != nil {
			return nil, fmt.Errorf("dhcp: static host %q: %w", m, err)
		}
		key, ok := macKey(mac)
		if !ok {
			return nil, fmt.Errorf("dhcp: static host %q: not a 6-byte Ethernet address", m)
		}
		if h.Addr.IsValid() {
			if other, dup := s.byAddr[h.Addr]; dup {
				return nil, fmt.Errorf("dhcp: static hosts %s and %s both have address %v: give each its own", mac, net.HardwareAddr(other[:]), h.Addr)
			}
			s.byAddr[h.Addr] = key
		}
		s.byMAC[key] = h
	}
	return s, nil
}

// HostByHW returns the host for mac or an error wrapping [ErrUnknownHost].
func (s *StaticHosts) HostByHW(_ context.Context, mac net.HardwareAddr) (Host, error) {
	if key, ok := macKey(mac); ok {
		if h, ok := s.byMAC[key]; ok {
			return h, nil
		}
	}
	return Host{}, fmt.Errorf("%w: %s", ErrUnknownHost, mac)
}

// Reserved reports whether a host has addr.
func (s *StaticHosts) Reserved(addr netip.Addr) bool {
	_, ok := s.byAddr[addr]
	return ok
}
