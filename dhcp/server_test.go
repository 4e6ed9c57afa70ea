//go:build linux

package dhcp

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/wwboot/wwboot/provision/netlab"
)

const labClientMAC = "52:54:00:12:34:56"

// lab is a server namespace and a client namespace joined by a veth pair:
// the server's eth0 has 10.77.0.1/24, the client's eth0 has the MAC
// labClientMAC and the address cliAddr (none if invalid).
type lab struct {
	srv, cli *netlab.NS
}

func newLab(t *testing.T, cliAddr netip.Prefix) *lab {
	t.Helper()
	l := &lab{srv: netlab.NewNS(t), cli: netlab.NewNS(t)}
	netlab.Veth(t, l.srv, "eth0", netip.MustParsePrefix("10.77.0.1/24"), l.cli, "eth0", cliAddr)
	l.cli.IP("link", "set", "eth0", "down")
	l.cli.IP("link", "set", "eth0", "address", labClientMAC)
	l.cli.IP("link", "set", "eth0", "up")
	return l
}

func labHosts(t *testing.T) *StaticHosts {
	t.Helper()
	h, err := NewStaticHosts(map[string]Host{
		labClientMAC: {
			Hostname: "node01", Addr: netip.MustParseAddr("10.77.0.11"), Netmask: net.CIDRMask(24, 32),
			Gateway: netip.MustParseAddr("10.77.0.1"), DNS: []netip.Addr{netip.MustParseAddr("10.77.0.1")},
			Domain: "cluster.test", MTU: 1400, LeaseTime: time.Hour,
		},
	})
	require.NoError(t, err)
	return h
}

// serve starts a server for h inside ns and stops it when the test ends.
func serve(t *testing.T, ns *netlab.NS, h Handler, cfg ServerConfig) *Server {
	t.Helper()
	if cfg.Interfaces == nil {
		cfg.Interfaces = []string{"eth0"}
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	srv, err := NewServer(h, cfg)
	require.NoError(t, err)
	var conns []*Conn
	require.NoError(t, ns.Do(func() (err error) {
		conns, err = srv.Listen()
		return err
	}))
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ctx, conns...) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			assert.NoError(t, err)
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after its context was cancelled")
		}
	})
	return srv
}

func testLogger(t *testing.T) *slogLogger { return newTestLogger(t) }

func policy(t *testing.T, h Hosts, cfg Config) *Policy {
	t.Helper()
	p, err := NewPolicy(h, cfg)
	require.NoError(t, err)
	return p
}

func TestUdhcpcGetsTheInventoryAddress(t *testing.T) {
	netlab.RequireTools(t, "busybox", "ip")
	l := newLab(t, netip.Prefix{})
	reg := prometheus.NewRegistry()
	metrics, err := NewMetrics(reg)
	require.NoError(t, err)
	serve(t, l.srv, policy(t, labHosts(t), Config{TFTP: true, Metrics: metrics}), ServerConfig{Metrics: metrics})

	dir := t.TempDir()
	script := filepath.Join(dir, "udhcpc.sh")
	require.NoError(t, os.WriteFile(script, []byte(`#!/bin/sh
case "$1" in
bound|renew)
	ip addr add "$ip/$mask" dev "$interface"
	env > "`+dir+`/env"
	;;
esac
`), 0o755))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := l.cli.Command(ctx, "busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "5", "-T", "1",
		"-O", "mtu", "-O", "domain", "-s", script).CombinedOutput()
	require.NoError(t, err, "udhcpc: %s", out)

	addr, err := l.cli.Command(ctx, "ip", "-4", "-o", "addr", "show", "dev", "eth0").CombinedOutput()
	require.NoError(t, err)
	assert.Contains(t, string(addr), "inet 10.77.0.11/24", "address configured by udhcpc")
	env, err := os.ReadFile(filepath.Join(dir, "env"))
	require.NoError(t, err)
	for _, kv := range []string{"ip=10.77.0.11", "hostname=node01", "router=10.77.0.1", "dns=10.77.0.1", "domain=cluster.test",
		"mtu=1400", "serverid=10.77.0.1", "boot_file=undionly.kpxe", "siaddr=10.77.0.1", "lease=3600"} {
		assert.Contains(t, string(env), kv+"\n")
	}
	assert.Equal(t, 1.0, counterValue(metrics.replied.WithLabelValues("offer")))
	assert.Equal(t, 1.0, counterValue(metrics.replied.WithLabelValues("ack")))
}

func TestDhclientGetsTheInventoryAddress(t *testing.T) {
	netlab.RequireTools(t, "dhclient", "ip")
	l := newLab(t, netip.Prefix{})
	serve(t, l.srv, policy(t, labHosts(t), Config{TFTP: true}), ServerConfig{})

	dir := t.TempDir()
	script := filepath.Join(dir, "dhclient.sh")
	// Our own script: dhclient-script would rewrite the host's resolv.conf.
	require.NoError(t, os.WriteFile(script, []byte(`#!/bin/sh
case "$reason" in
BOUND|REBOOT|RENEW)
	ip addr add "$new_ip_address/$new_subnet_mask" dev "$interface"
	env > "`+dir+`/env.tmp" && mv "`+dir+`/env.tmp" "`+dir+`/env"
	;;
esac
exit 0
`), 0o755))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := l.cli.Command(ctx, "dhclient", "-4", "-d", "-v", "-1", "-sf", script,
		"-lf", filepath.Join(dir, "leases"), "-pf", filepath.Join(dir, "pid"), "eth0")
	var out logBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	defer func() {
		cancel()
		_ = cmd.Wait()
	}()
	envFile := filepath.Join(dir, "env")
	require.Eventually(t, func() bool { _, err := os.Stat(envFile); return err == nil }, 25*time.Second, 100*time.Millisecond,
		"dhclient never bound: %s", &out)

	addr, err := l.cli.Command(ctx, "ip", "-4", "-o", "addr", "show", "dev", "eth0").CombinedOutput()
	require.NoError(t, err)
	assert.Contains(t, string(addr), "inet 10.77.0.11/24", "address configured by dhclient")
	env, err := os.ReadFile(envFile)
	require.NoError(t, err)
	for _, kv := range []string{"new_ip_address=10.77.0.11", "new_host_name=node01", "new_routers=10.77.0.1",
		"new_domain_name_servers=10.77.0.1", "new_domain_name=cluster.test", "new_interface_mtu=1400",
		"new_dhcp_server_identifier=10.77.0.1", "new_filename=undionly.kpxe", "new_next_server=10.77.0.1",
		"new_subnet_mask=255.255.255.0", "new_dhcp_lease_time=3600"} {
		assert.Contains(t, string(env), kv+"\n")
	}
	assert.Contains(t, out.String(), "DHCPACK of 10.77.0.11 from 10.77.0.1")
}

// udpIn opens a UDP socket inside ns.
func udpIn(t *testing.T, ns *netlab.NS, addr string) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	require.NoError(t, ns.Do(func() error {
		lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1)
				_ = unix.BindToDevice(int(fd), "eth0")
			})
		}}
		pc, err := lc.ListenPacket(context.Background(), "udp4", addr)
		if err != nil {
			return err
		}
		c = pc.(*net.UDPConn)
		return nil
	}))
	t.Cleanup(func() { c.Close() })
	return c
}

// exchange sends m and returns the reply with its xid, retransmitting
// every second like a real client (a loaded machine drops packets on veth
// backlogs too).
func exchange(t *testing.T, c *net.UDPConn, m *dhcpv4.DHCPv4, to string) *dhcpv4.DHCPv4 {
	t.Helper()
	buf := make([]byte, 2048)
	giveUp := time.Now().Add(10 * time.Second)
	for time.Now().Before(giveUp) {
		_, err := c.WriteToUDPAddrPort(m.ToBytes(), netip.MustParseAddrPort(to))
		require.NoError(t, err)
		require.NoError(t, c.SetReadDeadline(time.Now().Add(time.Second)))
		for {
			n, _, err := c.ReadFromUDPAddrPort(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			require.NoError(t, err)
			r, err := dhcpv4.FromBytes(buf[:n])
			require.NoError(t, err)
			// A retransmitted DISCOVER may draw a second OFFER with the xid
			// the REQUEST reuses: match the reply type too.
			isOffer := r.MessageType() == dhcpv4.MessageTypeOffer
			if r.TransactionID == m.TransactionID && r.OpCode == dhcpv4.OpcodeBootReply &&
				isOffer == (m.MessageType() == dhcpv4.MessageTypeDiscover) {
				return r
			}
		}
	}
	t.Fatalf("no reply to %s", m.MessageType())
	return nil
}

func TestRelayedRequestIsAnsweredToTheRelay(t *testing.T) {
	l := newLab(t, netip.MustParsePrefix("10.77.0.2/24"))
	relayedMAC := net.HardwareAddr{0x52, 0x54, 0, 0, 0x77, 1}
	hosts, err := NewStaticHosts(map[string]Host{relayedMAC.String(): {Addr: netip.MustParseAddr("10.9.0.11"), Netmask: net.CIDRMask(24, 32), Gateway: netip.MustParseAddr("10.9.0.1")}})
	require.NoError(t, err)
	serve(t, l.srv, policy(t, hosts, Config{TFTP: true}), ServerConfig{})

	relay := udpIn(t, l.cli, "10.77.0.2:67") // a relay agent listens on 67
	d, err := dhcpv4.NewDiscovery(relayedMAC, dhcpv4.WithGatewayIP(net.ParseIP("10.77.0.2")), func(d *dhcpv4.DHCPv4) { d.HopCount = 1 },
		dhcpv4.WithOption(dhcpv4.OptRelayAgentInfo(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(1), []byte("port7")))))
	require.NoError(t, err)
	offer := exchange(t, relay, d, "10.77.0.1:67")
	assert.Equal(t, dhcpv4.MessageTypeOffer, offer.MessageType())
	assert.Equal(t, "10.9.0.11", offer.YourIPAddr.String())
	assert.Equal(t, "10.77.0.2", offer.GatewayIPAddr.String())
	assert.NotNil(t, offer.RelayAgentInfo())
	req, err := dhcpv4.NewRequestFromOffer(offer, dhcpv4.WithGatewayIP(net.ParseIP("10.77.0.2")))
	require.NoError(t, err)
	ack := exchange(t, relay, req, "10.77.0.1:67")
	assert.Equal(t, dhcpv4.MessageTypeAck, ack.MessageType())
	assert.Equal(t, "10.9.0.11", ack.YourIPAddr.String())
}

func TestProxyModeOn67And4011(t *testing.T) {
	// The client already has an address from the site's DHCP server.
	l := newLab(t, netip.MustParsePrefix("10.77.0.2/24"))
	serve(t, l.srv, policy(t, labHosts(t), Config{Mode: Proxy, TFTP: true}), ServerConfig{}) // Proxy inferred from the policy

	c := udpIn(t, l.cli, "0.0.0.0:68")
	mac, _ := net.ParseMAC(labClientMAC)
	pxeOpts := []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")),
		dhcpv4.WithGeneric(dhcpv4.OptionClientSystemArchitectureType, []byte{0, byte(iana.EFI_X86_64)}),
	}
	d, err := dhcpv4.NewDiscovery(mac, pxeOpts...)
	require.NoError(t, err)
	offer := exchange(t, c, d, "255.255.255.255:67")
	assert.Equal(t, dhcpv4.MessageTypeOffer, offer.MessageType())
	assert.True(t, offer.YourIPAddr.IsUnspecified(), "proxy offers no address")
	assert.Equal(t, "snponly.efi", offer.BootFileName)
	assert.Equal(t, "PXEClient", offer.ClassIdentifier())

	r, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(mac), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithClientIP(net.ParseIP("10.77.0.2"))}, pxeOpts...)...)
	require.NoError(t, err)
	ack := exchange(t, c, r, "10.77.0.1:4011")
	assert.Equal(t, dhcpv4.MessageTypeAck, ack.MessageType())
	assert.Equal(t, "snponly.efi", ack.BootFileName)
	assert.Equal(t, "10.77.0.1", ack.ServerIPAddr.String())
}

func TestListenRefusesAPortAnotherServerHolds(t *testing.T) {
	netlab.RequireTools(t, "dnsmasq")
	l := newLab(t, netip.Prefix{})
	ctx, cancel := context.WithCancel(context.Background())
	dns := l.srv.Command(ctx, "dnsmasq", "--no-daemon", "--port=0", "--conf-file=/dev/null", "--leasefile-ro",
		"--pid-file=", "--interface=eth0", "--dhcp-range=10.77.0.100,10.77.0.150,1h")
	var out logBuffer
	dns.Stdout, dns.Stderr = &out, &out
	require.NoError(t, dns.Start())
	defer func() { cancel(); _ = dns.Wait() }()
	require.Eventually(t, func() bool {
		o, _ := l.srv.Command(ctx, "ss", "-lun").CombinedOutput()
		return strings.Contains(string(o), ":67 ")
	}, 10*time.Second, 50*time.Millisecond, "dnsmasq did not start: %s", &out)

	err := l.srv.Do(func() error {
		c, err := Listen("eth0", ServerPort)
		if err == nil {
			c.Close()
		}
		return err
	})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "another DHCP server")
}

func TestShutdownLetsRequestsInHandFinish(t *testing.T) {
	l := newLab(t, netip.MustParsePrefix("10.77.0.2/24"))
	started := make(chan struct{})
	release := make(chan struct{})
	mac, _ := net.ParseMAC(labClientMAC)
	slow := HandlerFunc(func(ctx context.Context, req *Request) (*dhcpv4.DHCPv4, error) {
		if req.Msg.ClientHWAddr.String() != mac.String() {
			return nil, nil
		}
		close(started)
		<-release
		return policy(t, labHosts(t), Config{}).ServeDHCP(ctx, req)
	})
	srv, err := NewServer(slow, ServerConfig{Interfaces: []string{"eth0"}, Logger: testLogger(t)})
	require.NoError(t, err)
	var conns []*Conn
	require.NoError(t, l.srv.Do(func() (err error) { conns, err = srv.Listen(); return err }))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(context.Background(), conns...) }()

	relay := udpIn(t, l.cli, "10.77.0.2:67")
	d, err := dhcpv4.NewDiscovery(mac, dhcpv4.WithGatewayIP(net.ParseIP("10.77.0.2")))
	require.NoError(t, err)
	_, err = relay.WriteToUDPAddrPort(d.ToBytes(), netip.MustParseAddrPort("10.77.0.1:67"))
	require.NoError(t, err)
	<-started
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(context.Background()) }()
	time.Sleep(100 * time.Millisecond)
	close(release)
	require.NoError(t, <-shut)
	require.NoError(t, <-errc)
	// The request in hand was answered before the socket closed.
	buf := make([]byte, 2048)
	require.NoError(t, relay.SetReadDeadline(time.Now().Add(2*time.Second)))
	n, _, err := relay.ReadFromUDPAddrPort(buf)
	require.NoError(t, err)
	offer, err := dhcpv4.FromBytes(buf[:n])
	require.NoError(t, err)
	assert.Equal(t, "10.77.0.11", offer.YourIPAddr.String())
	assert.ErrorIs(t, srv.Serve(context.Background()), ErrServerClosed)
}

func TestAnotherDHCPServerOnTheSegmentIsReported(t *testing.T) {
	netlab.RequireTools(t, "dnsmasq")
	l := newLab(t, netip.MustParsePrefix("10.77.0.2/24"))
	ctx, cancel := context.WithCancel(context.Background())
	// A rogue dnsmasq on the client side of the segment, handing out a range.
	dns := l.cli.Command(ctx, "dnsmasq", "--no-daemon", "--port=0", "--conf-file=/dev/null", "--leasefile-ro",
		"--pid-file=", "--interface=eth0", "--bind-interfaces", "--no-ping", "--dhcp-range=10.77.0.100,10.77.0.150,1h")
	var out logBuffer
	dns.Stdout, dns.Stderr = &out, &out
	require.NoError(t, dns.Start())
	defer func() { cancel(); _ = dns.Wait() }()
	require.Eventually(t, func() bool {
		o, _ := l.cli.Command(ctx, "ss", "-lun").CombinedOutput()
		return strings.Contains(string(o), ":67 ")
	}, 10*time.Second, 50*time.Millisecond, "dnsmasq did not start: %s", &out)

	var logs logBuffer
	reg := prometheus.NewRegistry()
	metrics, err := NewMetrics(reg)
	require.NoError(t, err)
	serve(t, l.srv, policy(t, labHosts(t), Config{TFTP: true, Metrics: metrics}), ServerConfig{Logger: logs.logger(), Metrics: metrics})
	require.Eventually(t, func() bool { return logs.count("another DHCP server answers on this segment") == 1 }, 10*time.Second, 50*time.Millisecond, logs.String())
	assert.Contains(t, logs.String(), "other_server=10.77.0.2")
	assert.GreaterOrEqual(t, counterValue(metrics.otherServer), 1.0)
}

func TestProxyModeWarnsWhenNoSiteServerAnswers(t *testing.T) {
	l := newLab(t, netip.MustParsePrefix("10.77.0.2/24"))
	var logs logBuffer
	serve(t, l.srv, policy(t, labHosts(t), Config{Mode: Proxy, TFTP: true}), ServerConfig{Proxy: true, ProbeWait: 300 * time.Millisecond, Logger: logs.logger()})
	require.Eventually(t, func() bool { return logs.count("no DHCP server answered a probe") == 1 }, 5*time.Second, 50*time.Millisecond, logs.String())
}

func TestOwnProbeIsNotAnswered(t *testing.T) {
	l := newLab(t, netip.MustParsePrefix("10.77.0.2/24"))
	hosts := labHosts(t)
	pool, err := NewPool(PoolConfig{Start: netip.MustParseAddr("10.77.0.100"), End: netip.MustParseAddr("10.77.0.110"),
		Netmask: net.CIDRMask(24, 32), Reserver: hosts})
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	metrics, err := NewMetrics(reg)
	require.NoError(t, err)
	serve(t, l.srv, policy(t, hosts, Config{Pools: []*Pool{pool}, Metrics: metrics}), ServerConfig{ProbeWait: 200 * time.Millisecond, Metrics: metrics})
	time.Sleep(500 * time.Millisecond)
	assert.Equal(t, 0.0, counterValue(metrics.replied.WithLabelValues("offer")), "the server offered an address to its own probe")
}

// udhcpc runs busybox udhcpc on ns's eth0 and returns the variables its
// script saw on "bound".
func udhcpc(t *testing.T, ns *netlab.NS) string {
	t.Helper()
	dir := t.TempDir()
	script := filepath.Join(dir, "udhcpc.sh")
	require.NoError(t, os.WriteFile(script, []byte(`#!/bin/sh
case "$1" in
bound|renew)
	ip addr add "$ip/$mask" dev "$interface"
	env > "`+dir+`/env"
	;;
esac
`), 0o755))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := ns.Command(ctx, "busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "5", "-T", "1", "-s", script).CombinedOutput()
	require.NoError(t, err, "udhcpc: %s", out)
	env, err := os.ReadFile(filepath.Join(dir, "env"))
	require.NoError(t, err)
	return string(env)
}

func TestServerOnTwoInterfaces(t *testing.T) {
	netlab.RequireTools(t, "busybox", "ip")
	srv, a, b := netlab.NewNS(t), netlab.NewNS(t), netlab.NewNS(t)
	netlab.Veth(t, srv, "eth0", netip.MustParsePrefix("10.77.0.1/24"), a, "eth0", netip.Prefix{})
	netlab.Veth(t, srv, "eth1", netip.MustParsePrefix("10.88.0.1/24"), b, "eth0", netip.Prefix{})
	for ns, mac := range map[*netlab.NS]string{a: "52:54:00:aa:00:01", b: "52:54:00:bb:00:01"} {
		ns.IP("link", "set", "eth0", "down")
		ns.IP("link", "set", "eth0", "address", mac)
		ns.IP("link", "set", "eth0", "up")
	}
	hosts, err := NewStaticHosts(map[string]Host{
		"52:54:00:aa:00:01": {Hostname: "a1", Addr: netip.MustParseAddr("10.77.0.11"), Netmask: net.CIDRMask(24, 32)},
		"52:54:00:bb:00:01": {Hostname: "b1", Addr: netip.MustParseAddr("10.88.0.11"), Netmask: net.CIDRMask(24, 32)},
	})
	require.NoError(t, err)
	serve(t, srv, policy(t, hosts, Config{TFTP: true}), ServerConfig{Interfaces: []string{"eth0", "eth1"}})

	envA, envB := udhcpc(t, a), udhcpc(t, b)
	assert.Contains(t, envA, "ip=10.77.0.11\n")
	assert.Contains(t, envA, "serverid=10.77.0.1\n")
	assert.Contains(t, envA, "siaddr=10.77.0.1\n")
	assert.Contains(t, envB, "ip=10.88.0.11\n")
	assert.Contains(t, envB, "serverid=10.88.0.1\n", "each interface answers with its own address")
	assert.Contains(t, envB, "siaddr=10.88.0.1\n")
}
