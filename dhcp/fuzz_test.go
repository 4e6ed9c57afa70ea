//go:build linux

package dhcp

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/stretchr/testify/require"
)

// FuzzServePacket feeds arbitrary bytes through the server's packet path
// (parse, validate, policy, reply routing) in full mode with a pool, and
// in proxy mode. Nothing may panic, garbage gets no reply, and every reply
// is a well-formed answer to the request it came from.
func FuzzServePacket(f *testing.F) {
	mac := net.HardwareAddr{0x52, 0x54, 0x00, 0x00, 0x00, 0x01}
	for _, m := range []*dhcpv4.DHCPv4{
		must(dhcpv4.NewDiscovery(mac)),
		must(dhcpv4.NewDiscovery(mac, pxe(0)...)),
		must(dhcpv4.NewDiscovery(mac, opt(77, []byte("iPXE")))),
		must(dhcpv4.NewDiscovery(net.HardwareAddr{2, 0, 0, 0, 0, 9}, dhcpv4.WithGatewayIP(net.ParseIP("10.0.0.254")))),
		must(dhcpv4.New(dhcpv4.WithHwAddr(mac), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
			dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.0.0.11"))))),
		must(dhcpv4.New(dhcpv4.WithHwAddr(mac), dhcpv4.WithMessageType(dhcpv4.MessageTypeInform), dhcpv4.WithClientIP(net.ParseIP("10.0.0.11")))),
		must(dhcpv4.New(dhcpv4.WithHwAddr(mac), dhcpv4.WithMessageType(dhcpv4.MessageTypeDecline),
			dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.0.0.11"))))),
	} {
		f.Add(m.ToBytes(), uint16(ServerPort))
		f.Add(m.ToBytes(), uint16(PXEServerPort))
	}
	for _, form := range ibForms(f) {
		for _, mt := range []dhcpv4.MessageType{dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeRequest} {
			m := ibRequest(f, mt, form.hlen, form.id, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.0.0.21"))))
			f.Add(m.ToBytes(), uint16(ServerPort))
		}
	}
	f.Add([]byte{}, uint16(ServerPort))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"), uint16(ServerPort))

	hosts, err := NewStaticHosts(map[string]Host{
		knownMAC.String(): {Hostname: "n1", Addr: knownAddr, Netmask: net.CIDRMask(24, 32)},
		ibGUID.String():   {Hostname: "ib01", Addr: netip.MustParseAddr("10.0.0.21"), Netmask: net.CIDRMask(24, 32)},
	})
	require.NoError(f, err)
	pool, err := NewPool(PoolConfig{Start: netip.MustParseAddr("10.0.0.100"), End: netip.MustParseAddr("10.0.0.110"),
		Netmask: net.CIDRMask(24, 32), Reserver: hosts})
	require.NoError(f, err)
	// No unknown-client limit: the fuzzer sends far more than it allows.
	full, err := NewPolicy(hosts, Config{TFTP: true, Pools: []*Pool{pool}, Unknown: UnknownLimit{Rate: -1}})
	require.NoError(f, err)
	proxy, err := NewPolicy(hosts, Config{Mode: Proxy, TFTP: true, Unknown: UnknownLimit{Rate: -1}})
	require.NoError(f, err)
	servers := []*Server{must(NewServer(full, ServerConfig{})), must(NewServer(proxy, ServerConfig{}))}

	f.Fuzz(func(t *testing.T, b []byte, port uint16) {
		in, perr := dhcpv4.FromBytes(b)
		valid := false
		if perr == nil {
			_, herr := ClientHW(in)
			valid = herr == nil
		}
		for _, s := range servers {
			reply, req := s.serve(context.Background(), b, "eth0", int(port), srvAddr, netip.MustParseAddrPort("0.0.0.0:68"))
			if reply == nil {
				continue
			}
			if !valid {
				t.Fatalf("reply %v to a packet that is not a valid request", reply.Summary())
			}
			out, err := dhcpv4.FromBytes(reply.ToBytes())
			if err != nil {
				t.Fatalf("reply does not parse: %v", err)
			}
			if out.OpCode != dhcpv4.OpcodeBootReply || out.TransactionID != in.TransactionID || out.HWType != in.HWType {
				t.Fatalf("reply does not answer the request: %v", out.Summary())
			}
			if isIPoIB(in) {
				// RFC 4390: hlen 0, chaddr zero, broadcast.
				if len(out.ClientHWAddr) != 0 || !out.IsBroadcast() {
					t.Fatalf("IPoIB reply with chaddr %v, broadcast %v", out.ClientHWAddr, out.IsBroadcast())
				}
			} else if out.ClientHWAddr.String() != in.ClientHWAddr.String() {
				t.Fatalf("reply to another client: %v", out.Summary())
			}
			switch out.MessageType() {
			case dhcpv4.MessageTypeOffer, dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak:
			default:
				t.Fatalf("reply of type %v", out.MessageType())
			}
			dst, _ := destination(req.Msg, reply, int(port), netip.MustParseAddrPort("0.0.0.0:68"))
			if !dst.IsValid() || (dst.Port() != ClientPort && dst.Port() != ServerPort) {
				t.Fatalf("reply to %v", dst)
			}
		}
	})
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
