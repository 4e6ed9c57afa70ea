package dhcp

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var (
	srvAddr   = netip.MustParseAddr("10.0.0.1")
	knownMAC  = net.HardwareAddr{0x52, 0x54, 0x00, 0x00, 0x00, 0x01}
	knownAddr = netip.MustParseAddr("10.0.0.11")
	otherMAC  = net.HardwareAddr{0x52, 0x54, 0x00, 0x00, 0x00, 0x02}
	strayMAC  = net.HardwareAddr{0x52, 0x54, 0x00, 0x00, 0x00, 0x99}
	discMAC   = net.HardwareAddr{0x52, 0x54, 0x00, 0x00, 0x00, 0xd1}
)

func testHosts(t testing.TB) *StaticHosts {
	t.Helper()
	h, err := NewStaticHosts(map[string]Host{
		knownMAC.String(): {
			Hostname: "n1", Addr: knownAddr, Netmask: net.CIDRMask(24, 32),
			Gateway: srvAddr, DNS: []netip.Addr{srvAddr}, Domain: "cluster", MTU: 9000, LeaseTime: 2 * time.Hour,
		},
		otherMAC.String(): {Hostname: "n2", Addr: netip.MustParseAddr("10.0.0.100"), Netmask: net.CIDRMask(24, 32)},
	})
	require.NoError(t, err)
	return h
}

// msg builds a client request; mods adjust it.
func msg(t testing.TB, mt dhcpv4.MessageType, mac net.HardwareAddr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	m, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(mac), dhcpv4.WithMessageType(mt)}, mods...)...)
	require.NoError(t, err)
	// Round-trip through the wire format, as the server would see it.
	m, err = dhcpv4.FromBytes(m.ToBytes())
	require.NoError(t, err)
	return m
}

func opt(code uint8, v []byte) dhcpv4.Modifier {
	return dhcpv4.WithGeneric(dhcpv4.GenericOptionCode(code), v)
}

func pxe(arch iana.Arch) []dhcpv4.Modifier {
	return []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		opt(93, []byte{byte(arch >> 8), byte(arch)}),
		opt(97, append([]byte{0}, make([]byte, 16)...)),
	}
}

func with(ms []dhcpv4.Modifier, more ...dhcpv4.Modifier) []dhcpv4.Modifier {
	return append(append([]dhcpv4.Modifier{}, ms...), more...)
}

type discovererFunc func(ctx context.Context, mac net.HardwareAddr) (Host, error)

func (f discovererFunc) Discover(ctx context.Context, mac net.HardwareAddr) (Host, error) {
	return f(ctx, mac)
}

// want describes the expected reply; zero fields are not checked except
// where noted.
type want struct {
	none     bool
	dropped  string // the wwboot_dhcp_dropped_total reason counted
	typ      dhcpv4.MessageType
	yiaddr   string // "" means 0.0.0.0
	siaddr   string // "" means 0.0.0.0
	ciaddr   string
	file     string
	opt67    string
	vendor   string // option 60 in the reply; "" means absent
	opt43    bool
	hostOpts bool // options 1,3,6,12,15,26,51 of knownMAC's host
	check    func(t *testing.T, r *dhcpv4.DHCPv4)
}

func TestPolicy(t *testing.T) {
	ipxeURL := "http://10.0.0.1:9873/ipxe/${mac:hexhyp}"
	relay := dhcpv4.WithGatewayIP(net.ParseIP("10.9.0.1"))
	sid := dhcpv4.WithOption(dhcpv4.OptServerIdentifier(srvAddr.AsSlice()))
	reqIP := func(a string) dhcpv4.Modifier { return dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP(a))) }
	userClass := opt(77, []byte("iPXE"))
	ipxe175 := opt(175, []byte{1, 1, 1})

	cases := []struct {
		name   string
		mode   Mode
		noTFTP bool
		port   int // default 67
		pools  bool
		disc   bool
		req    *dhcpv4.DHCPv4
		want   want
	}{
		{name: "full BIOS PXE discover", req: msg(t, dhcpv4.MessageTypeDiscover, knownMAC, pxe(iana.INTEL_X86PC)...),
			want: want{typ: dhcpv4.MessageTypeOffer, yiaddr: "10.0.0.11", siaddr: "10.0.0.1", file: "undionly.kpxe", hostOpts: true}},
		{name: "full x86-64 EFI arch 7", req: msg(t, dhcpv4.MessageTypeDiscover, knownMAC, pxe(iana.EFI_X86_64)...),
			want: want{typ: dhcpv4.MessageTypeOffer, yiaddr: "10.0.0.11", siaddr: "10.0.0.1", file: "snponly.efi"}},
		{name: "full x86-64 EFI arch 9", req: msg(t, dhcpv4.MessageTypeDiscover, knownMAC, pxe(iana.EFI_BC)...),
			want: want{typ: dhcpv4.MessageTypeOffer, yiaddr: "10.0.0.11", siaddr: "10.0.0.1", file: "snponly.efi"}},
		{name: "full arm64 EFI arch 11", req: msg(t, dhcpv4.MessageTypeDiscover, knownMAC, pxe(iana.EFI_ARM64)...),
			want: want{typ: dhcpv4.MessageTypeOffer, yiaddr: "10.0.0.11", siaddr: "10.0.0.1", file: "arm64/snponly.efi"}},
		{name: "full unsupported arch gets an address but no bootfile", req: msg(t, dhcpv4.MessageTypeDiscover, knownMAC, pxe(iana.EFI_RISCV64)...),
			want: want{typ: dhcpv4.MessageTypeOffer, yiaddr: "10.0.0.11", file: ""}},
		{name: "full PXE without options 93 and 97 boots as BIOS",
			req:  msg(t, dhcpv4.MessageTypeDiscover, knownMAC, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient"))),
			want: want{typ: dhcpv4.MessageTypeOffer, yiaddr: "10.0.0.11", siaddr: "10.0.0.1", file: "undionly.kpxe"}},
		{name: "full plain client without vendor class still gets the BIOS bootfile", req: msg(t, dhcpv4.MessageTypeDiscover, knownMAC),
			want: want{typ: dhcpv4.MessageTypeOffer, yiaddr: "10.0.0.11", siaddr: "10.0.0.1", file: "undionly.kpxe", hostOpts: true}},
		{name: "full iPXE user class gets the script URL", req: msg(t, dhcpv4.MessageTypeDiscover, knownMAC, with(pxe(iana.EFI_X86_64), userClass)...),
			want: want{typ: dhcpv4.MessageTypeOffer, yiaddr: "10.0.0.11", file: ipxeURL, vendor: "PXEClient", check: func(t *testing.T, r *dhcpv4.DHCPv4) {
				assert.Equal(t, []byte{176, 1, 1}, r.Options.Get(dhcpv4.GenericOptionCode(175)), "iPXE no-pxedhcp: no ProxyDHCPREQUEST to 4011")
			}}},
		{name: "full iPXE option 175 gets the script URL", req: msg(t, dhcpv4.MessageTypeDiscover, knownMAC, with(pxe(iana.INTEL_X86PC), ipxe175)...),
			want: want{typ: dhcpv4.MessageTypeOffer, yiaddr: "10.0.0.11", file: ipxeURL, vendor: "PXEClient"}},
		{name: "full iPXE request option 67 is filled too",
			req:  msg(t, dhcpv4.MessageTypeDiscover, knownMAC, userClass, dhcpv4.WithRequestedOptions(dhcpv4.OptionBootfileName)),
			want: want{typ: dhcpv4.MessageTypeOffer, yiaddr: "10.0.0.11", file: ipxeURL, opt67: ipxeURL}},
		{name: "full UEFI HTTP Boot x86-64",
			req:  msg(t, dhcpv4.MessageTypeDiscover, knownMAC, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("HTTPClient:Arch:00016:UNDI:003001")), opt(93, []byte{0, 16})),
			want: want{typ: dhcpv4.MessageTypeOffer, yiaddr: "10.0.0.11", file: "http://10.0.0.1:9873/boot/snponly.efi", vendor: "HTTPClient"}},
		{name: "full UEFI HTTP Boot arm64",
			req:  msg(t, dhcpv4.MessageTypeDiscover, knownMAC, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("HTTPClient")), opt(93, []byte{0, 19})),
			want: want{typ: dhcpv4.MessageTypeOffer, yiaddr: "10.0.0.11", file: "http://10.0.0.1:9873/boot/arm64/snponly.efi", vendor: "HTTPClient"}},
		{name: "full relayed discover keeps giaddr and relay info", req: msg(t, dhcpv4.MessageTypeDiscover, knownMAC, relay, opt(82, []byte{1, 3, 'p', 'o', 'r'})),
			want: want{typ: dhcpv4.MessageTypeOffer, yiaddr: "10.0.0.11", siaddr: "10.0.0.1", file: "undionly.kpxe", check: func(t *testing.T, r *dhcpv4.DHCPv4) {
				assert.Equal(t, "10.9.0.1", r.GatewayIPAddr.String())
				assert.Equal(t, []byte{1, 3, 'p', 'o', 'r'}, r.Options.Get(dhcpv4.OptionRelayAgentInformation))
			}}},
		{name: "full PXE machine id option 97 echoed", req: msg(t, dhcpv4.MessageTypeDiscover, knownMAC, pxe(iana.INTEL_X86PC)...),
			want: want{typ: dhcpv4.MessageTypeOffer, yiaddr: "10.0.0.11", siaddr: "10.0.0.1", file: "undionly.kpxe", check: func(t *testing.T, r *dhcpv4.DHCPv4) {
				assert.Len(t, r.Options.Get(dhcpv4.OptionClientMachineIdentifier), 17)
			}}},
		{name: "full TFTP off: PXE ROM gets an address, no bootfile", noTFTP: true, req: msg(t, dhcpv4.MessageTypeDiscover, knownMAC, pxe(iana.INTEL_X86PC)...),
			want: want{typ: dhcpv4.MessageTypeOffer, yiaddr: "10.0.0.11", file: ""}},
		{name: "full TFTP off: iPXE still gets the script", noTFTP: true, req: msg(t, dhcpv4.MessageTypeDiscover, knownMAC, userClass),
			want: want{typ: dhcpv4.MessageTypeOffer, yiaddr: "10.0.0.11", file: ipxeURL}},
		{name: "full request selecting our offer", req: msg(t, dhcpv4.MessageTypeRequest, knownMAC, sid, reqIP("10.0.0.11")),
			want: want{typ: dhcpv4.MessageTypeAck, yiaddr: "10.0.0.11", siaddr: "10.0.0.1", file: "undionly.kpxe", hostOpts: true}},
		{name: "full request init-reboot", req: msg(t, dhcpv4.MessageTypeRequest, knownMAC, reqIP("10.0.0.11")),
			want: want{typ: dhcpv4.MessageTypeAck, yiaddr: "10.0.0.11", siaddr: "10.0.0.1", file: "undionly.kpxe"}},
		{name: "full request renewing with ciaddr", req: msg(t, dhcpv4.MessageTypeRequest, knownMAC, dhcpv4.WithClientIP(net.ParseIP("10.0.0.11"))),
			want: want{typ: dhcpv4.MessageTypeAck, yiaddr: "10.0.0.11", siaddr: "10.0.0.1", file: "undionly.kpxe"}},
		{name: "full request for a wrong address is NAKed", req: msg(t, dhcpv4.MessageTypeRequest, knownMAC, sid, reqIP("10.0.0.12")),
			want: want{typ: dhcpv4.MessageTypeNak}},
		{name: "full relayed NAK sets the broadcast bit", req: msg(t, dhcpv4.MessageTypeRequest, knownMAC, relay, reqIP("10.0.0.12")),
			want: want{typ: dhcpv4.MessageTypeNak, check: func(t *testing.T, r *dhcpv4.DHCPv4) { assert.True(t, r.IsBroadcast()) }}},
		{name: "full request to another server is ignored",
			req:  msg(t, dhcpv4.MessageTypeRequest, knownMAC, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("10.0.0.254"))), reqIP("10.0.0.11")),
			want: want{none: true, dropped: DropNotForUs}},
		{name: "full request without any address is malformed", req: msg(t, dhcpv4.MessageTypeRequest, knownMAC),
			want: want{none: true, dropped: DropMalformed}},
		{name: "full unknown MAC ignored and counted", req: msg(t, dhcpv4.MessageTypeDiscover, strayMAC, pxe(iana.INTEL_X86PC)...),
			want: want{none: true, dropped: DropUnknownHost}},
		{name: "full unknown MAC handed to discovery", disc: true, req: msg(t, dhcpv4.MessageTypeDiscover, discMAC, pxe(iana.INTEL_X86PC)...),
			want: want{typ: dhcpv4.MessageTypeOffer, yiaddr: "10.0.0.50", siaddr: "10.0.0.1", file: "undionly.kpxe", check: func(t *testing.T, r *dhcpv4.DHCPv4) {
				assert.Equal(t, "n50", r.HostName())
			}}},
		{name: "full unknown MAC discovery finds no node", disc: true, req: msg(t, dhcpv4.MessageTypeDiscover, strayMAC),
			want: want{none: true, dropped: DropUnknownHost}},
		{name: "full unknown MAC gets a pool address", pools: true, req: msg(t, dhcpv4.MessageTypeDiscover, strayMAC, pxe(iana.INTEL_X86PC)...),
			want: want{typ: dhcpv4.MessageTypeOffer, yiaddr: "10.0.0.101", siaddr: "10.0.0.1", file: "undionly.kpxe", check: func(t *testing.T, r *dhcpv4.DHCPv4) {
				assert.Equal(t, uint32(600), leaseSecs(r)) // 10.0.0.100 is n2's: skipped
			}}},
		{name: "full unknown MAC request for an address it was never offered", pools: true,
			req:  msg(t, dhcpv4.MessageTypeRequest, strayMAC, reqIP("10.0.0.105")),
			want: want{none: true, dropped: DropNotForUs}},
		{name: "full release has no reply", req: msg(t, dhcpv4.MessageTypeRelease, knownMAC, sid, dhcpv4.WithClientIP(net.ParseIP("10.0.0.11"))),
			want: want{none: true}},
		{name: "full decline has no reply", req: msg(t, dhcpv4.MessageTypeDecline, knownMAC, sid, reqIP("10.0.0.11")),
			want: want{none: true}},
		{name: "full inform gets options but no address or lease", req: msg(t, dhcpv4.MessageTypeInform, knownMAC, dhcpv4.WithClientIP(net.ParseIP("10.0.0.11"))),
			want: want{typ: dhcpv4.MessageTypeAck, ciaddr: "10.0.0.11", siaddr: "10.0.0.1", file: "undionly.kpxe", check: func(t *testing.T, r *dhcpv4.DHCPv4) {
				assert.False(t, r.Options.Has(dhcpv4.OptionIPAddressLeaseTime))
				assert.Equal(t, "n1", r.HostName())
			}}},
		{name: "full reply from a BOOTREPLY is refused", req: msg(t, dhcpv4.MessageTypeDiscover, knownMAC, func(d *dhcpv4.DHCPv4) { d.OpCode = dhcpv4.OpcodeBootReply }),
			want: want{none: true, dropped: DropMalformed}},
		{name: "full multicast chaddr is refused", req: msg(t, dhcpv4.MessageTypeDiscover, net.HardwareAddr{1, 0, 0x5e, 0, 0, 1}),
			want: want{none: true, dropped: DropMalformed}},
		{name: "full server message type from a client is refused", req: msg(t, dhcpv4.MessageTypeOffer, knownMAC),
			want: want{none: true, dropped: DropMalformed}},
		{name: "full ignores port 4011", port: 4011, req: msg(t, dhcpv4.MessageTypeRequest, knownMAC, reqIP("10.0.0.11")),
			want: want{none: true, dropped: DropNotForUs}},

		{name: "proxy PXE discover on 67", mode: Proxy, req: msg(t, dhcpv4.MessageTypeDiscover, knownMAC, pxe(iana.EFI_X86_64)...),
			want: want{typ: dhcpv4.MessageTypeOffer, siaddr: "10.0.0.1", file: "snponly.efi", vendor: "PXEClient", opt43: true, check: func(t *testing.T, r *dhcpv4.DHCPv4) {
				assert.False(t, r.Options.Has(dhcpv4.OptionIPAddressLeaseTime))
				assert.False(t, r.Options.Has(dhcpv4.OptionSubnetMask))
				assert.Len(t, r.Options.Get(dhcpv4.OptionClientMachineIdentifier), 17)
			}}},
		{name: "proxy PXE request on 4011", mode: Proxy, port: 4011,
			req:  msg(t, dhcpv4.MessageTypeRequest, knownMAC, with(pxe(iana.INTEL_X86PC), dhcpv4.WithClientIP(net.ParseIP("192.168.7.20")))...),
			want: want{typ: dhcpv4.MessageTypeAck, siaddr: "10.0.0.1", ciaddr: "192.168.7.20", file: "undionly.kpxe", vendor: "PXEClient", opt43: true}},
		{name: "proxy iPXE discover gets the script URL", mode: Proxy, req: msg(t, dhcpv4.MessageTypeDiscover, knownMAC, with(pxe(iana.INTEL_X86PC), userClass)...),
			want: want{typ: dhcpv4.MessageTypeOffer, file: ipxeURL, vendor: "PXEClient", opt43: true, check: func(t *testing.T, r *dhcpv4.DHCPv4) {
				assert.False(t, r.Options.Has(dhcpv4.GenericOptionCode(175)), "proxy mode: the site's server's offer decides")
			}}},
		{name: "proxy UEFI HTTP Boot", mode: Proxy,
			req:  msg(t, dhcpv4.MessageTypeDiscover, knownMAC, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("HTTPClient")), opt(93, []byte{0, 16})),
			want: want{typ: dhcpv4.MessageTypeOffer, file: "http://10.0.0.1:9873/boot/snponly.efi", vendor: "HTTPClient"}},
		{name: "proxy relayed discover", mode: Proxy, req: msg(t, dhcpv4.MessageTypeDiscover, knownMAC, with(pxe(iana.INTEL_X86PC), relay)...),
			want: want{typ: dhcpv4.MessageTypeOffer, siaddr: "10.0.0.1", file: "undionly.kpxe", vendor: "PXEClient", opt43: true, check: func(t *testing.T, r *dhcpv4.DHCPv4) {
				assert.Equal(t, "10.9.0.1", r.GatewayIPAddr.String())
			}}},
		{name: "proxy ignores non-PXE clients", mode: Proxy, req: msg(t, dhcpv4.MessageTypeDiscover, knownMAC),
			want: want{none: true, dropped: DropNoBoot}},
		{name: "proxy ignores requests on 67", mode: Proxy, req: msg(t, dhcpv4.MessageTypeRequest, knownMAC, with(pxe(iana.INTEL_X86PC), reqIP("10.0.0.11"))...),
			want: want{none: true, dropped: DropNotForUs}},
		{name: "proxy ignores unknown MACs", mode: Proxy, req: msg(t, dhcpv4.MessageTypeDiscover, strayMAC, pxe(iana.INTEL_X86PC)...),
			want: want{none: true, dropped: DropUnknownHost}},
		{name: "proxy TFTP off: PXE ROM gets nothing", mode: Proxy, noTFTP: true, req: msg(t, dhcpv4.MessageTypeDiscover, knownMAC, pxe(iana.INTEL_X86PC)...),
			want: want{none: true, dropped: DropNoBoot}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hosts := testHosts(t)
			reg := prometheus.NewRegistry()
			metrics, err := NewMetrics(reg)
			require.NoError(t, err)
			cfg := Config{Mode: tc.mode, TFTP: !tc.noTFTP, Metrics: metrics}
			if tc.pools {
				pool, err := NewPool(PoolConfig{
					Start: netip.MustParseAddr("10.0.0.100"), End: netip.MustParseAddr("10.0.0.199"),
					Netmask: net.CIDRMask(24, 32), LeaseTime: 10 * time.Minute, Reserver: hosts,
				})
				require.NoError(t, err)
				cfg.Pools = []*Pool{pool}
			}
			if tc.disc {
				cfg.Discoverer = discovererFunc(func(_ context.Context, mac net.HardwareAddr) (Host, error) {
					if mac.String() == discMAC.String() {
						return Host{Hostname: "n50", Addr: netip.MustParseAddr("10.0.0.50"), Netmask: net.CIDRMask(24, 32)}, nil
					}
					return Host{}, ErrUnknownHost
				})
			}
			p, err := NewPolicy(hosts, cfg)
			require.NoError(t, err)
			port := tc.port
			if port == 0 {
				port = ServerPort
			}
			r, err := p.ServeDHCP(context.Background(), &Request{Msg: tc.req, Interface: "eth0", Local: srvAddr, Port: port})
			require.NoError(t, err)
			w := tc.want
			if w.dropped != "" {
				assert.Equal(t, 1.0, counterValue(metrics.dropped.WithLabelValues(w.dropped)), "dropped{reason=%s}", w.dropped)
			}
			if w.none {
				require.Nil(t, r)
				return
			}
			require.NotNil(t, r)
			// Every reply survives the wire and matches its request.
			r, err = dhcpv4.FromBytes(r.ToBytes())
			require.NoError(t, err)
			assert.Equal(t, dhcpv4.OpcodeBootReply, r.OpCode)
			assert.Equal(t, tc.req.TransactionID, r.TransactionID)
			assert.Equal(t, tc.req.ClientHWAddr.String(), r.ClientHWAddr.String())
			assert.Equal(t, w.typ, r.MessageType())
			assert.Equal(t, srvAddr.String(), r.ServerIdentifier().String())
			if w.typ == dhcpv4.MessageTypeNak {
				assert.True(t, r.YourIPAddr.IsUnspecified())
				return
			}
			assert.Equal(t, orZero(w.yiaddr), r.YourIPAddr.String(), "yiaddr")
			if w.siaddr != "" || w.file != "" {
				assert.Equal(t, orZero(w.siaddr), r.ServerIPAddr.String(), "siaddr")
			}
			assert.Equal(t, w.file, r.BootFileName, "file")
			assert.Equal(t, w.opt67, string(r.Options.Get(dhcpv4.OptionBootfileName)), "option 67")
			if w.ciaddr != "" {
				assert.Equal(t, w.ciaddr, r.ClientIPAddr.String())
			}
			if w.vendor != "" || w.file != "" {
				assert.Equal(t, w.vendor, r.ClassIdentifier(), "option 60")
			}
			assert.Equal(t, w.opt43, r.Options.Has(dhcpv4.OptionVendorSpecificInformation), "option 43")
			if w.hostOpts {
				assert.Equal(t, "ffffff00", r.SubnetMask().String())
				assert.Equal(t, "[10.0.0.1]", ipsString(r.Router()))
				assert.Equal(t, "[10.0.0.1]", ipsString(r.DNS()))
				assert.Equal(t, "n1", r.HostName())
				assert.Equal(t, "cluster", r.DomainName())
				assert.Equal(t, []byte{0x23, 0x28}, r.Options.Get(dhcpv4.OptionInterfaceMTU))
				assert.Equal(t, uint32(7200), leaseSecs(r))
				assert.Equal(t, 1.0, counterValue(metrics.replied.WithLabelValues(typeLabel(w.typ))))
			}
			if w.check != nil {
				w.check(t, r)
			}
		})
	}
}

func orZero(s string) string {
	if s == "" {
		return "0.0.0.0"
	}
	return s
}

func ipsString(ips []net.IP) string {
	s := "["
	for i, ip := range ips {
		if i > 0 {
			s += " "
		}
		s += ip.String()
	}
	return s + "]"
}

func leaseSecs(r *dhcpv4.DHCPv4) uint32 {
	return uint32(r.IPAddressLeaseTime(0) / time.Second)
}

func TestPolicyPoolExchange(t *testing.T) {
	hosts := testHosts(t)
	file := t.TempDir() + "/leases"
	newPolicy := func() *Policy {
		pool, err := NewPool(PoolConfig{
			Start: netip.MustParseAddr("10.0.0.100"), End: netip.MustParseAddr("10.0.0.102"),
			Netmask: net.CIDRMask(24, 32), LeaseFile: file, Reserver: hosts,
		})
		require.NoError(t, err)
		p, err := NewPolicy(hosts, Config{TFTP: true, Pools: []*Pool{pool}})
		require.NoError(t, err)
		return p
	}
	p := newPolicy()
	serve := func(p *Policy, m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
		r, err := p.ServeDHCP(context.Background(), &Request{Msg: m, Interface: "eth0", Local: srvAddr, Port: ServerPort})
		require.NoError(t, err)
		return r
	}
	offer := serve(p, msg(t, dhcpv4.MessageTypeDiscover, strayMAC))
	require.NotNil(t, offer)
	assert.Equal(t, "10.0.0.101", offer.YourIPAddr.String())
	ack := serve(p, msg(t, dhcpv4.MessageTypeRequest, strayMAC,
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(srvAddr.AsSlice())), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offer.YourIPAddr))))
	require.NotNil(t, ack)
	assert.Equal(t, dhcpv4.MessageTypeAck, ack.MessageType())

	// A restart keeps the lease: the client gets its address back, and
	// another unknown client does not get it.
	p = newPolicy()
	ack = serve(p, msg(t, dhcpv4.MessageTypeRequest, strayMAC, dhcpv4.WithClientIP(net.ParseIP("10.0.0.101"))))
	require.NotNil(t, ack)
	assert.Equal(t, dhcpv4.MessageTypeAck, ack.MessageType())
	second := net.HardwareAddr{0x52, 0x54, 0, 0, 0, 0x98}
	offer = serve(p, msg(t, dhcpv4.MessageTypeDiscover, second))
	require.NotNil(t, offer)
	assert.Equal(t, "10.0.0.102", offer.YourIPAddr.String())

	// The pool is full now: a third client is dropped.
	assert.Nil(t, serve(p, msg(t, dhcpv4.MessageTypeDiscover, net.HardwareAddr{0x52, 0x54, 0, 0, 0, 0x97})))

	// Release frees the address for others.
	assert.Nil(t, serve(p, msg(t, dhcpv4.MessageTypeRelease, strayMAC,
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(srvAddr.AsSlice())), dhcpv4.WithClientIP(net.ParseIP("10.0.0.101")))))
	offer = serve(p, msg(t, dhcpv4.MessageTypeDiscover, net.HardwareAddr{0x52, 0x54, 0, 0, 0, 0x97}))
	require.NotNil(t, offer)
	assert.Equal(t, "10.0.0.101", offer.YourIPAddr.String())
}

type brokenHosts struct{}

func (brokenHosts) HostByHW(context.Context, net.HardwareAddr) (Host, error) {
	return Host{}, errors.New("inventory file unreadable")
}

func TestPolicyInventoryFailureIsAnError(t *testing.T) {
	p, err := NewPolicy(brokenHosts{}, Config{})
	require.NoError(t, err)
	r, err := p.ServeDHCP(context.Background(), &Request{Msg: msg(t, dhcpv4.MessageTypeDiscover, knownMAC), Local: srvAddr, Port: ServerPort})
	assert.Nil(t, r)
	require.ErrorContains(t, err, "inventory file unreadable")
}

func TestPolicyConfigErrors(t *testing.T) {
	hosts := testHosts(t)
	for name, cfg := range map[string]Config{
		"bad mode":        {Mode: 7},
		"ipv6 server":     {ServerAddr: netip.MustParseAddr("fe80::1")},
		"not a URL":       {IPXEScriptURL: "tftp://x/y"},
		"empty bootfile":  {Bootfiles: map[iana.Arch]string{0: ""}},
		"proxy with pool": {Mode: Proxy, Pools: []*Pool{{}}},
	} {
		_, err := NewPolicy(hosts, cfg)
		assert.Error(t, err, name)
	}
}

func TestPolicyCustomBootfilesAndURLs(t *testing.T) {
	p, err := NewPolicy(testHosts(t), Config{
		ServerAddr: netip.MustParseAddr("10.0.0.2"), HTTPPort: 8080, TFTP: true,
		IPXEScriptURL: "http://{server}:{port}/ipxe/{mac}",
		Bootfiles:     map[iana.Arch]string{iana.EFI_ARM64: "ipxe-arm64.efi"},
	})
	require.NoError(t, err)
	r, err := p.ServeDHCP(context.Background(), &Request{Msg: msg(t, dhcpv4.MessageTypeDiscover, knownMAC, opt(77, []byte("iPXE"))), Local: srvAddr, Port: ServerPort})
	require.NoError(t, err)
	assert.Equal(t, "http://10.0.0.2:8080/ipxe/52-54-00-00-00-01", r.BootFileName)
	assert.Equal(t, "10.0.0.2", r.ServerIdentifier().String())
	r, err = p.ServeDHCP(context.Background(), &Request{Msg: msg(t, dhcpv4.MessageTypeDiscover, knownMAC, pxe(iana.EFI_ARM64)...), Local: srvAddr, Port: ServerPort})
	require.NoError(t, err)
	assert.Equal(t, "ipxe-arm64.efi", r.BootFileName)
	assert.Equal(t, "10.0.0.2", r.ServerIPAddr.String())
}

func TestPolicyLongURLGoesToOption67(t *testing.T) {
	long := "http://{server}:{port}/ipxe/" + string(make([]byte, 0)) + "a-very-long-path/that/goes/on/and/on/and/on/and/on/and/on/and/on/and/on/and/on/and/on/${mac:hexhyp}?with=query&and=more"
	p, err := NewPolicy(testHosts(t), Config{IPXEScriptURL: long})
	require.NoError(t, err)
	r, err := p.ServeDHCP(context.Background(), &Request{Msg: msg(t, dhcpv4.MessageTypeDiscover, knownMAC, opt(77, []byte("iPXE"))), Local: srvAddr, Port: ServerPort})
	require.NoError(t, err)
	assert.Empty(t, r.BootFileName)
	assert.Greater(t, len(r.Options.Get(dhcpv4.OptionBootfileName)), 127)
}

func TestPolicyWarnsAboutAnotherServer(t *testing.T) {
	reg := prometheus.NewRegistry()
	metrics, err := NewMetrics(reg)
	require.NoError(t, err)
	var logs logBuffer
	p, err := NewPolicy(testHosts(t), Config{Metrics: metrics, Logger: logs.logger()})
	require.NoError(t, err)
	for range 3 {
		r, err := p.ServeDHCP(context.Background(), &Request{Msg: msg(t, dhcpv4.MessageTypeRequest, knownMAC,
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("10.0.0.254"))), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.0.0.77"))),
		), Interface: "eth0", Local: srvAddr, Port: ServerPort})
		require.NoError(t, err)
		assert.Nil(t, r)
	}
	assert.Equal(t, 3.0, counterValue(metrics.otherServer))
	assert.Equal(t, 1, logs.count("another DHCP server answers on this segment"), logs.String())
	assert.Contains(t, logs.String(), "other_server=10.0.0.254")
}
