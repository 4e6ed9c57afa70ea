package dhcp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// IPoIB (DHCP over InfiniBand, RFC 4390).
//
// An IPoIB link-layer address is 20 bytes (4 bytes of flags and queue pair
// number, then the 16-byte port GID whose last 8 bytes are the port GUID),
// which does not fit chaddr. RFC 4390 section 2.1 says the client sends
// htype 32, hlen 0, a zero chaddr and the broadcast flag, and identifies
// itself with a client identifier (option 61) as RFC 4361 says (0xff, a
// 4-byte IAID, a DUID). Clients in the field also send hlen 8 with the
// GUID in chaddr, or a client identifier of type 32 followed by the GUID
// (iPXE) or by the whole 20-byte address.
//
// The queue pair number changes from boot to boot, so the only stable
// identity of an IPoIB port is its GUID. Warewulf sites record the hwaddr of
// a "type: infiniband" netdev as the 20-byte address ip link shows, as the
// 8-byte GUID, or as the 20-byte client identifier their dhclient.conf
// sends (ff:00:00:00:00:00:02:00:00:02:c9:00 and the GUID): the GUID is the
// last 8 bytes of each. The policy therefore looks IPoIB clients up by the
// 8-byte GUID; an inventory matches it against the last 8 bytes of a
// 20-byte hwaddr (nodedb does).

// GUIDLen is the length of an InfiniBand port GUID (EUI-64), the hardware
// address by which the policy looks up IPoIB clients.
const GUIDLen = 8

// IPoIBAddrLen is the length of an IPoIB link-layer address.
const IPoIBAddrLen = 20

// ClientHW returns the hardware address by which the request's client is
// looked up: chaddr for Ethernet (htype 1, 6 bytes), the port GUID for
// IPoIB (htype 32, RFC 4390) taken from the client identifier or an 8-byte
// chaddr. The error says why a packet is not a request the policy can
// answer (it is logged at debug level and counted as DropMalformed).
func ClientHW(m *dhcpv4.DHCPv4) (net.HardwareAddr, error) {
	if m == nil {
		return nil, errors.New("no packet")
	}
	if m.OpCode != dhcpv4.OpcodeBootRequest {
		return nil, errors.New("not a BOOTREQUEST (op is not 1)")
	}
	if m.HopCount > 16 {
		return nil, errors.New("more than 16 relay hops")
	}
	if v := m.Options.Get(dhcpv4.OptionDHCPMessageType); len(v) != 1 {
		return nil, errors.New("no DHCP message type (option 53): a BOOTP client")
	}
	switch m.MessageType() {
	case dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeDecline,
		dhcpv4.MessageTypeRelease, dhcpv4.MessageTypeInform:
	default:
		return nil, errors.New("message type " + m.MessageType().String() + " is not one a client sends")
	}
	switch m.HWType {
	case iana.HWTypeEthernet:
		mac := m.ClientHWAddr
		if len(mac) != 6 {
			return nil, errors.New("Ethernet client with a hardware address length other than 6")
		}
		if mac[0]&1 != 0 || bytes.Equal(mac, []byte{0, 0, 0, 0, 0, 0}) {
			return nil, errors.New("Ethernet client hardware address is multicast or zero")
		}
		return mac, nil
	case iana.HWTypeInfiniband:
		if id := m.Options.Get(dhcpv4.OptionClientIdentifier); id != nil {
			if guid, ok := GUIDFromClientID(id); ok {
				return guid, nil
			}
			if len(m.ClientHWAddr) != GUIDLen {
				return nil, errors.New("IPoIB client identifier holds no port GUID (want 0xff+IAID+DUID-LL/LLT/EN or 0x20+GUID)")
			}
		}
		if len(m.ClientHWAddr) == GUIDLen && validGUID(m.ClientHWAddr) {
			return m.ClientHWAddr, nil
		}
		return nil, errors.New("IPoIB client without a client identifier (RFC 4390 requires option 61) or an 8-byte GUID in chaddr")
	}
	return nil, errors.New("hardware type " + m.HWType.String() + " is neither Ethernet nor InfiniBand")
}

// GUIDFromClientID returns the port GUID an IPoIB client identifier
// (option 61) carries, in the forms clients send:
//
//   - 0x20 (htype InfiniBand) and the 8-byte GUID (iPXE), or the 20-byte
//     IPoIB address (GUID in its last 8 bytes);
//   - 0xff, a 4-byte IAID and a DUID (RFC 4361, required by RFC 4390): a
//     DUID-LLT or DUID-LL (RFC 8415 types 1 and 3) of hardware type 32 with
//     an 8- or 20-byte link-layer address, or a DUID-EN (type 2) whose
//     identifier ends in the GUID (the ff:00:00:00:00:00:02:00:00:02:c9:00
//     prefix sites put in dhclient.conf).
//
// ok is false for any other identifier, and for a GUID of all zeros.
func GUIDFromClientID(id []byte) (guid net.HardwareAddr, ok bool) {
	lladdr := func(b []byte) (net.HardwareAddr, bool) {
		switch len(b) {
		case GUIDLen:
			return validOrNil(b)
		case IPoIBAddrLen:
			return validOrNil(b[IPoIBAddrLen-GUIDLen:])
		}
		return nil, false
	}
	if len(id) < 1 {
		return nil, false
	}
	switch id[0] {
	case byte(iana.HWTypeInfiniband):
		return lladdr(id[1:])
	case 0xff:
		if len(id) < 1+4+2 {
			return nil, false
		}
		duid := id[5:]
		switch binary.BigEndian.Uint16(duid) {
		case 1: // DUID-LLT: type, htype, time, lladdr
			if len(duid) < 8 || binary.BigEndian.Uint16(duid[2:]) != uint16(iana.HWTypeInfiniband) {
				return nil, false
			}
			return lladdr(duid[8:])
		case 3: // DUID-LL: type, htype, lladdr
			if len(duid) < 4 || binary.BigEndian.Uint16(duid[2:]) != uint16(iana.HWTypeInfiniband) {
				return nil, false
			}
			return lladdr(duid[4:])
		case 2: // DUID-EN: type, enterprise number, identifier ending in the GUID
			if len(duid) < 2+4+GUIDLen {
				return nil, false
			}
			return validOrNil(duid[len(duid)-GUIDLen:])
		}
	}
	return nil, false
}

func validOrNil(b []byte) (net.HardwareAddr, bool) {
	if !validGUID(b) {
		return nil, false
	}
	return net.HardwareAddr(bytes.Clone(b)), true
}

func validGUID(b []byte) bool {
	return len(b) == GUIDLen && !bytes.Equal(b, make([]byte, GUIDLen))
}

// rawClientHW is ClientHW's hardware address read from the raw packet
// without parsing it, for the receive path's queue choice: chaddr for
// Ethernet, the GUID of an IPoIB packet's chaddr or option 61. ok is false
// when the packet has none (the parser drops it later).
func rawClientHW(b []byte) (net.HardwareAddr, bool) {
	const (
		chaddr  = 28
		options = 240 // after the magic cookie
	)
	if len(b) < chaddr+16 || b[2] > 16 {
		return nil, false
	}
	if b[1] != byte(iana.HWTypeInfiniband) {
		if b[2] == 0 {
			return nil, false
		}
		return net.HardwareAddr(b[chaddr : chaddr+int(b[2])]), true
	}
	if len(b) >= options && binary.BigEndian.Uint32(b[options-4:]) == 0x63825363 {
		for o := b[options:]; len(o) > 0; {
			code := o[0]
			if code == 255 {
				break
			}
			if code == 0 {
				o = o[1:]
				continue
			}
			if len(o) < 2 || len(o) < 2+int(o[1]) {
				break
			}
			if code == 61 {
				if guid, ok := GUIDFromClientID(o[2 : 2+int(o[1])]); ok {
					return guid, true
				}
				break
			}
			o = o[2+int(o[1]):]
		}
	}
	if b[2] == GUIDLen && validGUID(b[chaddr:chaddr+GUIDLen]) {
		return net.HardwareAddr(b[chaddr : chaddr+GUIDLen]), true
	}
	return nil, false
}

// isIPoIB reports whether m comes from an IPoIB client.
func isIPoIB(m *dhcpv4.DHCPv4) bool { return m.HWType == iana.HWTypeInfiniband }
