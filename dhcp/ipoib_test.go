//go:build linux

package dhcp

import (
	"context"
	"encoding/hex"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ibGUID is the port GUID of the IPoIB test node (a Mellanox OUI).
var ibGUID = net.HardwareAddr{0x00, 0x02, 0xc9, 0x03, 0x00, 0xa1, 0xb2, 0xc3}

// ibAddr is that port's 20-byte IPoIB address as ip link shows it: flags
// and queue pair number, the subnet prefix fe80::, the GUID.
var ibAddr = append(net.HardwareAddr{0x80, 0x00, 0x02, 0x08, 0xfe, 0x80, 0, 0, 0, 0, 0, 0}, ibGUID...)

func ibHosts(t testing.TB) *StaticHosts {
	t.Helper()
	h, err := NewStaticHosts(map[string]Host{
		ibGUID.String(): {Hostname: "ib01", Addr: netip.MustParseAddr("10.77.0.21"), Netmask: net.CIDRMask(24, 32)},
	})
	require.NoError(t, err)
	return h
}

func hexBytes(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, ":", ""))
	require.NoError(t, err)
	return b
}

// ibRequest builds an IPoIB request the way the clients of the form do:
// htype 32 with chaddr of length hlen (0: zero, RFC 4390; 8: the GUID),
// the broadcast flag, and the client identifier id (nil: none).
func ibRequest(t testing.TB, mt dhcpv4.MessageType, hlen int, id []byte, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	m, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithMessageType(mt), dhcpv4.WithBroadcast(true)}, mods...)...)
	require.NoError(t, err)
	m.HWType = iana.HWTypeInfiniband
	m.ClientHWAddr = net.HardwareAddr{}
	if hlen == GUIDLen {
		m.ClientHWAddr = ibGUID
	}
	if id != nil {
		m.UpdateOption(dhcpv4.OptClientIdentifier(id))
	}
	return m
}

// The forms IPoIB clients send, each of which must get its node's address
// from a real server over a real socket.
func ibForms(t testing.TB) map[string]struct {
	hlen int
	id   []byte
} {
	return map[string]struct {
		hlen int
		id   []byte
	}{
		"hlen 8, GUID in chaddr, no client id": {hlen: 8},
		"RFC 4390: hlen 0, 0xff IAID DUID-LL":  {id: append(hexBytes(t, "ff:00000001:0003:0020"), ibGUID...)},
		"RFC 4390: hlen 0, 0xff IAID DUID-LLT of the 20-byte address": {
			id: append(hexBytes(t, "ff:00000001:0001:0020:2c1e4a10"), ibAddr...)},
		"dhclient.conf form ff:00:00:00:00:00:02:00:00:02:c9:00+GUID (DUID-EN)": {
			id: append(hexBytes(t, "ff:00:00:00:00:00:02:00:00:02:c9:00"), ibGUID...)},
		"iPXE: 0x20 and the GUID":              {id: append([]byte{0x20}, ibGUID...)},
		"0x20 and the 20-byte IPoIB address":   {id: append([]byte{0x20}, ibAddr...)},
		"hlen 8 and a client id with the GUID": {hlen: 8, id: append([]byte{0x20}, ibGUID...)},
	}
}

func TestIPoIBClientGetsItsAddressInEveryForm(t *testing.T) {
	l := newLab(t, netip.Prefix{})
	serve(t, l.srv, policy(t, ibHosts(t), Config{TFTP: true}), ServerConfig{ProbeWait: -1})
	c := udpIn(t, l.cli, "0.0.0.0:68")

	for name, f := range ibForms(t) {
		t.Run(name, func(t *testing.T) {
			d := ibRequest(t, dhcpv4.MessageTypeDiscover, f.hlen, f.id, dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE")))
			offer := exchange(t, c, d, "255.255.255.255:67")
			assertIBReply(t, offer, d, dhcpv4.MessageTypeOffer)
			assert.Equal(t, "http://10.77.0.1:9873/ipxe/${mac:hexhyp}", offer.BootFileName, "iPXE over IB fetches its script")

			r := ibRequest(t, dhcpv4.MessageTypeRequest, f.hlen, f.id,
				dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("10.77.0.1"))),
				dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.77.0.21"))))
			ack := exchange(t, c, r, "255.255.255.255:67")
			assertIBReply(t, ack, r, dhcpv4.MessageTypeAck)
			assert.Equal(t, "ib01", ack.HostName())
		})
	}
}

// assertIBReply checks an answer to an IPoIB client as RFC 4390 section 2.1
// wants it: htype 32, hlen 0, chaddr zero, broadcast, client id echoed.
func assertIBReply(t *testing.T, r, req *dhcpv4.DHCPv4, mt dhcpv4.MessageType) {
	t.Helper()
	require.Equal(t, mt, r.MessageType())
	assert.Equal(t, "10.77.0.21", r.YourIPAddr.String())
	assert.Equal(t, iana.HWTypeInfiniband, r.HWType)
	assert.Empty(t, r.ClientHWAddr, "hlen 0")
	raw := r.ToBytes()
	assert.Equal(t, byte(0), raw[2], "hlen on the wire")
	assert.Equal(t, make([]byte, 16), raw[28:44], "chaddr zero on the wire")
	assert.True(t, r.IsBroadcast())
	assert.Equal(t, req.Options.Get(dhcpv4.OptionClientIdentifier), r.Options.Get(dhcpv4.OptionClientIdentifier))
}

func TestIPoIBUnknownAndMalformedAreDroppedWithAReason(t *testing.T) {
	l := newLab(t, netip.Prefix{})
	var logs logBuffer
	serve(t, l.srv, policy(t, ibHosts(t), Config{TFTP: true, Logger: logs.logger()}), ServerConfig{ProbeWait: -1, Logger: logs.logger()})
	c := udpIn(t, l.cli, "0.0.0.0:68")

	other := net.HardwareAddr{0, 2, 0xc9, 3, 0, 9, 9, 9}
	for _, tc := range []struct {
		pkt  []byte
		want []string
	}{
		{ibRequest(t, dhcpv4.MessageTypeDiscover, 0, append([]byte{0x20}, other...)).ToBytes(),
			[]string{"reason=unknown_host", "htype=Infiniband", "mac=" + other.String()}},
		{ibRequest(t, dhcpv4.MessageTypeDiscover, 0, nil).ToBytes(),
			[]string{"reason=malformed", "RFC 4390 requires option 61"}},
		{ibRequest(t, dhcpv4.MessageTypeDiscover, 0, hexBytes(t, "ff:00000001:0004:00112233445566778899aabbccddeeff")).ToBytes(),
			[]string{"reason=malformed", "holds no port GUID"}},
		{[]byte("not a DHCP packet, but long enough to be read as one? no."),
			[]string{"reason=malformed", "does not parse"}},
	} {
		_, err := c.WriteToUDPAddrPort(tc.pkt, netip.MustParseAddrPort("255.255.255.255:67"))
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			for _, line := range strings.Split(logs.String(), "\n") {
				if !strings.Contains(line, "dhcp: dropped") {
					continue
				}
				all := true
				for _, w := range tc.want {
					all = all && strings.Contains(line, w)
				}
				if all {
					return true
				}
			}
			return false
		}, 10*time.Second, 20*time.Millisecond, "no debug line with %q in:\n%s", tc.want, &logs)
	}
}

func TestGUIDFromClientID(t *testing.T) {
	for name, f := range ibForms(t) {
		if f.id == nil {
			continue
		}
		g, ok := GUIDFromClientID(f.id)
		assert.True(t, ok, name)
		assert.Equal(t, ibGUID, g, name)
	}
	for _, bad := range []string{"", "20", "20:0000000000000000", "ff:00000001", "ff:00000001:0003:0001:525400123456",
		"ff:00000001:0004:00112233445566778899aabbccddeeff", "01:525400123456", "20:0102030405"} {
		_, ok := GUIDFromClientID(hexBytes(t, bad))
		assert.False(t, ok, bad)
	}
}

func TestPickQueueFindsTheIPoIBGUID(t *testing.T) {
	for name, f := range ibForms(t) {
		m := ibRequest(t, dhcpv4.MessageTypeDiscover, f.hlen, f.id)
		hw, ok := rawClientHW(m.ToBytes())
		assert.True(t, ok, name)
		assert.Equal(t, ibGUID, hw, name)
		want, err := ClientHW(m)
		require.NoError(t, err, name)
		assert.Equal(t, want, hw, name)
	}
	ctx := context.Background()
	p := policy(t, ibHosts(t), Config{})
	q := queues{cls: p, known: make(chan *packet), unknown: make(chan *packet)}
	assert.Equal(t, q.known, q.pick(ctx, ibRequest(t, dhcpv4.MessageTypeDiscover, 0, append([]byte{0x20}, ibGUID...)).ToBytes()),
		"a known IPoIB node is served on the known queue")
}

// TestServerDropsAreLoggedWithTheirReason: the server's own drop paths
// (work queue full, still queued at shutdown) each leave a debug line with
// their reason, like the policy's (issue 11 item 10: nothing was logged).
func TestServerDropsAreLoggedWithTheirReason(t *testing.T) {
	l := newLab(t, netip.MustParsePrefix("10.77.0.2/24"))
	release := make(chan struct{})
	slow := HandlerFunc(func(ctx context.Context, req *Request) (*dhcpv4.DHCPv4, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil, nil
	})
	var logs logBuffer
	srv, err := NewServer(slow, ServerConfig{Interfaces: []string{"eth0"}, Workers: 1, Queue: 4, ProbeWait: -1, Logger: logs.logger()})
	require.NoError(t, err)
	var conns []*Conn
	require.NoError(t, l.srv.Do(func() (err error) {
		conns, err = srv.Listen()
		return err
	}))
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background(), conns...) }()

	var c *net.UDPConn
	require.NoError(t, l.cli.Do(func() (err error) {
		c, err = net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(10, 77, 0, 1), Port: ServerPort})
		return err
	}))
	defer c.Close()
	for i := range 50 {
		_, err := c.Write(must(dhcpv4.NewDiscovery(net.HardwareAddr{2, 0, 0, 0, 0, byte(i + 1)})).ToBytes())
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return logs.count("reason=queue_full") > 0 }, 10*time.Second, 20*time.Millisecond,
		"queue-full drops logged: %s", &logs)
	assert.Contains(t, logs.String(), "mac=02:00:00:00:00:", "the line names the client")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_ = srv.Shutdown(ctx)
	close(release)
	require.NoError(t, <-served)
	assert.Positive(t, logs.count("reason=shutdown"), "shutdown drops logged: %s", &logs)
}
