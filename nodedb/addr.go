package nodedb

import (
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// ParseHW parses a hardware (MAC) address written as aa:bb:cc:dd:ee:ff,
// AA-BB-CC-DD-EE-FF, aabb.ccdd.eeff or twelve bare hex digits. Ethernet
// (6-byte), EUI-64 and InfiniBand (20-byte) addresses are accepted.
func ParseHW(s string) (net.HardwareAddr, error) {
	s = strings.TrimSpace(s)
	if len(s) == 12 || len(s) == 16 || len(s) == 40 {
		if b, err := hex.DecodeString(s); err == nil {
			return net.HardwareAddr(b), nil
		}
	}
	hw, err := net.ParseMAC(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not a MAC address: write six hex pairs such as aa:bb:cc:dd:ee:ff", s)
	}
	return hw, nil
}

// NormalizeHW returns the canonical form (lower case, colon separated) of a
// hardware address, or an error if it does not parse.
func NormalizeHW(s string) (string, error) {
	hw, err := ParseHW(s)
	if err != nil {
		return "", err
	}
	return hw.String(), nil
}

// ParseIPv4 parses an IPv4 address, optionally with a /prefix length.
func ParseIPv4(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil || !p.Addr().Is4() {
			return netip.Prefix{}, fmt.Errorf("%q is not an IPv4 address with prefix, such as 10.0.0.5/24", s)
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return netip.Prefix{}, fmt.Errorf("%q is not an IPv4 address such as 10.0.0.5", s)
	}
	return netip.PrefixFrom(a, -1), nil
}

// ParseNetmask parses a dotted IPv4 netmask and returns its prefix length.
// The mask must be contiguous (255.255.252.0, not 255.0.255.0).
func ParseNetmask(s string) (int, error) {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil || !a.Is4() {
		return 0, fmt.Errorf("%q is not a netmask such as 255.255.255.0", s)
	}
	b := a.As4()
	ones, bits := net.IPv4Mask(b[0], b[1], b[2], b[3]).Size()
	if bits == 0 {
		return 0, fmt.Errorf("%q is not a contiguous netmask: use one such as 255.255.255.0", s)
	}
	return ones, nil
}

// ParseIPv6 parses an IPv6 address, optionally with a /prefix length.
func ParseIPv6(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil || !p.Addr().Is6() || p.Addr().Is4In6() {
			return netip.Prefix{}, fmt.Errorf("%q is not an IPv6 address with prefix, such as fd00::5/64", s)
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is6() || a.Is4In6() {
		return netip.Prefix{}, fmt.Errorf("%q is not an IPv6 address such as fd00::5", s)
	}
	return netip.PrefixFrom(a, -1), nil
}
