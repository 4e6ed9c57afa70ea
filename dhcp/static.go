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
	byMAC  map[string]Host // by staticKey
	byAddr map[netip.Addr]net.HardwareAddr
}

// staticKey is the index key of a hardware address: its bytes, and for a
// 20-byte IPoIB address its port GUID (the last 8 bytes), by which IPoIB
// clients are looked up (RFC 4390; see [ClientHW]).
func staticKey(mac net.HardwareAddr) (string, bool) {
	switch len(mac) {
	case 6, GUIDLen:
		return string(mac), true
	case IPoIBAddrLen:
		return string(mac[IPoIBAddrLen-GUIDLen:]), true
	}
	return "", false
}

// NewStaticHosts indexes hosts by hardware address (any form net.ParseMAC
// accepts): 6-byte Ethernet MACs, 8-byte InfiniBand GUIDs and 20-byte IPoIB
// addresses (found by their GUID). Two hosts with one address are an error.
func NewStaticHosts(hosts map[string]Host) (*StaticHosts, error) {
	s := &StaticHosts{byMAC: make(map[string]Host, len(hosts)), byAddr: make(map[netip.Addr]net.HardwareAddr, len(hosts))}
	for m, h := range hosts {
		mac, err := net.ParseMAC(m)
		if err != nil {
			return nil, fmt.Errorf("dhcp: static host %q: %w", m, err)
		}
		key, ok := staticKey(mac)
		if !ok {
			return nil, fmt.Errorf("dhcp: static host %q: not a 6-byte Ethernet address, an 8-byte GUID or a 20-byte IPoIB address", m)
		}
		if _, dup := s.byMAC[key]; dup {
			return nil, fmt.Errorf("dhcp: static host %q: another host has the same address (or InfiniBand GUID)", m)
		}
		if h.Addr.IsValid() {
			if other, dup := s.byAddr[h.Addr]; dup {
				return nil, fmt.Errorf("dhcp: static hosts %s and %s both have address %v: give each its own", mac, other, h.Addr)
			}
			s.byAddr[h.Addr] = mac
		}
		s.byMAC[key] = h
	}
	return s, nil
}

// HostByHW returns the host for mac or an error wrapping [ErrUnknownHost].
func (s *StaticHosts) HostByHW(_ context.Context, mac net.HardwareAddr) (Host, error) {
	if key, ok := staticKey(mac); ok {
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
