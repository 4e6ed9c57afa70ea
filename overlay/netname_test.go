package overlay

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/nodedb"
)

func TestValidIfName(t *testing.T) {
	for _, s := range []string{"eth0", "ens5", "enp0s2", "ib0", "bond0.100", "a", "wwdefault", "x_y-z", "abcdefghijklmno"} {
		assert.True(t, ValidIfName(s), s)
	}
	for _, s := range []string{"", "default", "all", "lo", "bonding_masters", "abcdefghijklmnop", "-x", ".x", "a b", "a/b", "a:b", "a\"b", "eth0\n", "é"} {
		assert.False(t, ValidIfName(s), "%q", s)
	}
}

func TestNetNames(t *testing.T) {
	n := &Node{Id: "n1", NetDevs: map[string]*NetDev{
		"default":                      {Hwaddr: "52:54:00:aa:bb:01"},
		"data":                         {Device: "ens5", Hwaddr: "52:54:00:AA:BB:02"},
		"wwdefault":                    {},                                                      // takes "wwdefault" first (sorted), so default hashes
		"ib":                           {Type: "InfiniBand", Hwaddr: "00:11:22:33:44:55:66:77"}, // a GUID
		"a very long name with spaces": {Hwaddr: "not a mac"},                                   // unusable MAC: no match by MAC
	}}
	got, err := n.NetNames()
	require.NoError(t, err)
	byDev := map[string]NetName{}
	for _, nn := range got {
		byDev[nn.NetDev] = nn
	}
	assert.Equal(t, NetName{NetDev: "data", Name: "ens5", Hwaddr: "52:54:00:aa:bb:02", Ether: true, Type: "ethernet"}, byDev["data"], "device kept, MAC canonical")
	assert.Equal(t, NetName{NetDev: "wwdefault", Name: "wwdefault", Type: "ethernet"}, byDev["wwdefault"])
	assert.Equal(t, NetName{NetDev: "ib", Name: "ib", Hwaddr: "00:11:22:33:44:55:66:77", Type: "infiniband"}, byDev["ib"])
	def := byDev["default"]
	assert.Regexp(t, `^wwdefault0[0-9a-f]{5}$`, def.Name, "default's derived name is taken: a hashed variant")
	long := byDev["a very long name with spaces"]
	assert.Regexp(t, `^wwaverylon[0-9a-f]{5}$`, long.Name)
	assert.Empty(t, long.Hwaddr)
	for _, nn := range got {
		assert.True(t, ValidIfName(nn.Name), nn.Name)
	}
	// Stable: the same on every call and every node with the same names.
	again, err := (&Node{Id: "n2", NetDevs: n.NetDevs}).NetNames()
	require.NoError(t, err)
	assert.Equal(t, got, again)

	alone := &Node{Id: "n3", NetDevs: map[string]*NetDev{"default": {}}}
	name, err := alone.IfName("default")
	require.NoError(t, err)
	assert.Equal(t, "wwdefault", name, "the default device, without a device field")

	_, err = (&Node{Id: "n4", NetDevs: map[string]*NetDev{"x": {Device: "eth0\nauto evil"}}}).NetNames()
	require.ErrorContains(t, err, `node n4, network device x: device "eth0\nauto evil" is not a valid interface name`)
	_, err = (&Node{Id: "n5", NetDevs: map[string]*NetDev{"a": {Device: "eth0"}, "b": {Device: "eth0"}}}).NetNames()
	require.ErrorContains(t, err, `node n5, network devices a and b: both have device "eth0"`)
	_, err = alone.IfName("nope")
	require.ErrorContains(t, err, `no network device "nope"`)
}

// twoNetDevs is a node with two network devices: "default" without a
// device field (static address, the primary) and "data" with one (DHCP).
func twoNetDevs() *nodedb.Config {
	return &nodedb.Config{Nodes: map[string]*nodedb.Record{"n1": {
		Tags: map[string]string{"domain": "cluster.test", "DNSSEARCH": "lab.test other.test"},
		NetDevs: map[string]*nodedb.NetDev{
			"default": {Hwaddr: "52:54:00:AA:BB:01", Ipaddr: "10.0.0.5", Netmask: "255.255.0.0", Gateway: "10.0.0.1",
				Tags: map[string]string{"DNS1": "10.0.0.53", "DNS2": "10.0.0.54"}},
			"data": {Device: "ens5", Hwaddr: "52:54:00:aa:bb:02", MTU: "9000"},
		},
		PrimaryNetDev: "default",
	}}}
}

// TestNICByMAC renders every network overlay for a node with two network
// devices and checks each file the node gets, byte for byte.
func TestNICByMAC(t *testing.T) {
	db := testDB(t, twoNetDevs())
	n, err := db.Node("n1")
	require.NoError(t, err)
	r := newTestRenderer(t, func(o *Options) {
		o.DefaultSystem = []string{"udev.netname", "systemd.netname", "ifupdown", "systemd-networkd", "NetworkManager", "resolv"}
	})
	a, err := r.Render(context.Background(), db, n, System)
	require.NoError(t, err)
	m, _ := unpack(t, a)
	files := map[string]string{}
	for p, e := range m {
		if e.mode&0o170000 != sIFDIR {
			files[p] = e.data
		}
	}
	// The /init hook is a plain file, run by TestNetnameHook.
	assert.Contains(t, files["etc/wwboot/init.d/10-netname"], "#!/bin/sh\n")
	delete(files, "etc/wwboot/init.d/10-netname")
	// The end marker every system overlay carries is tested on its own.
	delete(files, "etc/wwboot/system-overlay.done")
	want := map[string]string{
		"etc/udev/rules.d/70-wwboot-netname.rules": `# Written by wwboot for n1: each NIC is named by its hardware address.
# DRIVERS=="?*" leaves virtual devices (VLANs, bonds) that share a NIC's MAC alone.
# network device data
SUBSYSTEM=="net", ACTION=="add", DRIVERS=="?*", ATTR{type}=="1", ATTR{address}=="52:54:00:aa:bb:02", NAME="ens5"
# network device default
SUBSYSTEM=="net", ACTION=="add", DRIVERS=="?*", ATTR{type}=="1", ATTR{address}=="52:54:00:aa:bb:01", NAME="wwdefault"
`,
		"etc/wwboot/netnames": `# Written by wwboot for n1: hardware address and interface name of each NIC.
52:54:00:aa:bb:02 ens5
52:54:00:aa:bb:01 wwdefault
`,
		"etc/systemd/network/10-wwboot-data.link": `# Written by wwboot for n1, network device data.
[Match]
MACAddress=52:54:00:aa:bb:02

[Link]
Name=ens5
`,
		"etc/systemd/network/10-wwboot-default.link": `# Written by wwboot for n1, network device default.
[Match]
MACAddress=52:54:00:aa:bb:01

[Link]
Name=wwdefault
`,
		"etc/network/interfaces.d/wwboot-data": `# Written by wwboot for n1, network device data, hardware address 52:54:00:aa:bb:02.
auto ens5
iface ens5 inet dhcp
`,
		"etc/network/interfaces.d/wwboot-default": `# Written by wwboot for n1, network device default, hardware address 52:54:00:aa:bb:01.
# The address is flushed first: /init may have set it already, and ifup
# fails on an address that exists.
auto wwdefault
iface wwdefault inet static
    pre-up ip -4 addr flush dev wwdefault scope global || true
    address 10.0.0.5/16
    gateway 10.0.0.1
`,
		"etc/systemd/network/50-wwboot-data.network": `# Written by wwboot for n1, network device data.
[Match]
MACAddress=52:54:00:aa:bb:02

[Link]
MTUBytes=9000
ActivationPolicy=up

[Network]
DHCP=ipv4
`,
		"etc/systemd/network/50-wwboot-default.network": `# Written by wwboot for n1, network device default.
[Match]
MACAddress=52:54:00:aa:bb:01

[Link]
ActivationPolicy=up

[Network]
Address=10.0.0.5/16
Gateway=10.0.0.1
DNS=10.0.0.53
DNS=10.0.0.54
Domains=cluster.test lab.test other.test
`,
		"etc/NetworkManager/system-connections/wwboot-data.nmconnection": `# Written by wwboot for n1, network device data.
[connection]
id=wwboot-data
type=ethernet
autoconnect=true

[ethernet]
mac-address=52:54:00:aa:bb:02
mtu=9000

[ipv4]
method=auto

[ipv6]
method=ignore
`,
		"etc/NetworkManager/system-connections/wwboot-default.nmconnection": `# Written by wwboot for n1, network device default.
[connection]
id=wwboot-default
type=ethernet
autoconnect=true

[ethernet]
mac-address=52:54:00:aa:bb:01

[ipv4]
method=manual
address1=10.0.0.5/16,10.0.0.1
dns=10.0.0.53;10.0.0.54;
dns-search=cluster.test;lab.test;other.test;

[ipv6]
method=ignore
`,
		"etc/resolv.conf": `# Written by wwboot for n1.
search cluster.test lab.test other.test
nameserver 10.0.0.53
nameserver 10.0.0.54
`,
	}
	assert.Equal(t, want, files)
	// NetworkManager ignores keyfiles others can read.
	assert.Equal(t, uint64(0o600), m["etc/NetworkManager/system-connections/wwboot-default.nmconnection"].mode&0o777)

	// A device field that is not an interface name is refused when the
	// inventory is loaded, naming the node, the field and what is wrong
	// (the renderer checks again for inventories built by other means:
	// FuzzNetNames).
	bad := twoNetDevs()
	bad.Nodes["n1"].NetDevs["data"].Device = `ens5", NAME="x`
	_, err = nodedb.New(bad)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `node "n1": network devices.data.device`)
	assert.Contains(t, err.Error(), "is not a valid interface name")
}

// FuzzNetNames: whatever the inventory holds (nodedb does not check device
// names), NetNames returns valid, distinct interface names and canonical
// hardware addresses, or an error; it never panics.
func FuzzNetNames(f *testing.F) {
	f.Add("default", "", "52:54:00:aa:bb:01", "data", "ens5", "52:54:00:aa:bb:02")
	f.Add("default", "", "", "wwdefault", "", "")
	f.Add("x", "eth0\nauto evil", "zz", "y", `a", NAME="b`, "00:11:22:33:44:55:66:77")
	f.Add("a/..", "eth0", "aabbccddeeff", "a b c d e f g h", "eth0", "")
	f.Add("all", "", "", "lo", "", "")
	f.Fuzz(func(t *testing.T, n1, d1, h1, n2, d2, h2 string) {
		node := &Node{Id: "n", NetDevs: map[string]*NetDev{n1: {Device: d1, Hwaddr: h1}, n2: {Device: d2, Hwaddr: h2}}}
		got, err := node.NetNames()
		if err != nil {
			return
		}
		require.Len(t, got, len(node.NetDevs))
		seen := map[string]bool{}
		for _, nn := range got {
			require.True(t, ValidIfName(nn.Name), "%q", nn.Name)
			require.False(t, seen[nn.Name], "duplicate %q", nn.Name)
			seen[nn.Name] = true
			if nn.Hwaddr != "" {
				hw, err := nodedb.ParseHW(nn.Hwaddr)
				require.NoError(t, err)
				require.Equal(t, hw.String(), nn.Hwaddr)
				require.Equal(t, len(hw) == 6, nn.Ether)
			}
		}
	})
}
