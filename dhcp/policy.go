package dhcp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/prometheus/client_golang/prometheus"
)

// Ports the policy answers on.
const (
	ServerPort    = 67   // DHCP server (and relay agent) port
	ClientPort    = 68   // DHCP client port
	PXEServerPort = 4011 // PXE boot server port (proxy mode)
)

// PXE option 43 sub-option 6 (PXE_DISCOVERY_CONTROL) = 8: take the boot
// file from this packet, skip boot server discovery.
var pxeDiscoveryControl = []byte{6, 1, 8, 255}

// iPXE's encapsulated option 175, sub-option 176 (no-pxedhcp) = 1: take
// this offer without waiting for ProxyDHCP offers and send no
// ProxyDHCPREQUEST to port 4011 afterwards. Without it, iPXE that sees
// option 60 PXEClient in the offer (and no next-server) asks the server
// again on port 4011, which only proxy mode answers, and waits about 4 s
// for that before it fetches its script.
var ipxeNoPXEDHCP = []byte{176, 1, 1}

// Policy is the boot policy as a [Handler]: request in, reply out, no
// sockets. Create it with [NewPolicy]; it is safe for concurrent use.
type Policy struct {
	cfg     Config
	hosts   Hosts
	unknown *limiter // nil: no limit

	warnMu sync.Mutex
	warned map[netip.Addr]time.Time // other DHCP servers already reported
}

// NewPolicy returns the policy for cfg over the inventory hosts.
func NewPolicy(hosts Hosts, cfg Config) (*Policy, error) {
	if hosts == nil {
		return nil, errors.New("dhcp: NewPolicy: hosts is nil")
	}
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Policy{cfg: c, hosts: hosts, unknown: newLimiter(c.Unknown), warned: make(map[netip.Addr]time.Time)}, nil
}

// Mode is the policy's mode, Full or Proxy.
func (p *Policy) Mode() Mode { return p.cfg.Mode }

// client is what a request says about the machine that sent it.
type client struct {
	arch     iana.Arch
	hasArch  bool
	pxe      bool // vendor class (option 60) starts with PXEClient
	httpBoot bool // vendor class starts with HTTPClient
	ipxe     bool // user class (option 77) iPXE, or iPXE's option 175
}

func classify(m *dhcpv4.DHCPv4) client {
	var c client
	vc := m.Options.Get(dhcpv4.OptionClassIdentifier)
	c.pxe = bytes.HasPrefix(vc, []byte("PXEClient"))
	c.httpBoot = bytes.HasPrefix(vc, []byte("HTTPClient"))
	if a := m.Options.Get(dhcpv4.OptionClientSystemArchitectureType); len(a) >= 2 {
		c.arch, c.hasArch = iana.Arch(binary.BigEndian.Uint16(a)), true
	}
	c.ipxe = m.Options.Has(dhcpv4.GenericOptionCode(175)) || bytes.Contains(m.Options.Get(dhcpv4.OptionUserClassInformation), []byte("iPXE"))
	return c
}

// baseArch maps UEFI HTTP Boot architectures (RFC 4578 registry 15-20) to
// the architecture whose binary they load.
func baseArch(a iana.Arch) iana.Arch {
	switch a {
	case iana.EFI_X86_HTTP:
		return iana.EFI_IA32
	case iana.EFI_X86_64_HTTP:
		return iana.EFI_X86_64
	case iana.EFI_BC_HTTP:
		return iana.EFI_BC
	case iana.EFI_ARM32_HTTP:
		return iana.EFI_ARM32
	case iana.EFI_ARM64_HTTP:
		return iana.EFI_ARM64
	case iana.INTEL_X86PC_HTTP:
		return iana.INTEL_X86PC
	}
	return a
}

// bootInfo is the boot part of a reply.
type bootInfo struct {
	file        string // file field / option 67
	siaddr      bool   // set next-server (TFTP)
	vendorClass string // option 60 to echo: PXEClient or HTTPClient
	noPXEDHCP   bool   // option 175.176: tell iPXE to skip ProxyDHCP
}

func (p *Policy) boot(c client, server netip.Addr, mac net.HardwareAddr) (bootInfo, bool) {
	arch := iana.INTEL_X86PC // no option 93: a BIOS PXE ROM
	if c.hasArch {
		arch = baseArch(c.arch)
	}
	var vc string
	if c.pxe {
		vc = "PXEClient"
	}
	switch {
	case c.ipxe:
		return bootInfo{file: p.expand(p.cfg.IPXEScriptURL, server, mac, ""), vendorClass: vc, noPXEDHCP: p.cfg.Mode == Full}, true
	case c.httpBoot:
		f, ok := p.cfg.Bootfiles[arch]
		if !ok {
			return bootInfo{}, false
		}
		return bootInfo{file: p.expand(p.cfg.HTTPBootURL, server, mac, f), vendorClass: "HTTPClient"}, true
	case !p.cfg.TFTP:
		return bootInfo{}, false
	default:
		f, ok := p.cfg.Bootfiles[arch]
		if !ok {
			return bootInfo{}, false
		}
		if p.cfg.Mode == Full {
			// A plain offer with a boot file, as ISC dhcpd and dnsmasq
			// send to PXE firmware. Option 60 PXEClient without option
			// 43 makes UEFI PXE (edk2/OVMF) take the offer for a BINL
			// one and ask again on port 4011, which only proxy mode
			// answers: "PXE-E16: No valid offer received".
			vc = ""
		}
		return bootInfo{file: f, siaddr: true, vendorClass: vc}, true
	}
}

func (p *Policy) expand(pattern string, server netip.Addr, mac net.HardwareAddr, bootfile string) string {
	if !strings.Contains(pattern, "{") {
		return pattern
	}
	return strings.NewReplacer(
		"{server}", server.String(),
		"{port}", strconv.Itoa(int(p.cfg.HTTPPort)),
		"{mac}", strings.ReplaceAll(mac.String(), ":", "-"),
		"{bootfile}", bootfile,
	).Replace(pattern)
}

// ServeDHCP answers one request according to the policy. It returns nil
// for requests it ignores (counted by reason) and an error only when the
// inventory or the lease file failed.
func (p *Policy) ServeDHCP(ctx context.Context, req *Request) (*dhcpv4.DHCPv4, error) {
	m := req.Msg
	mac, err := ClientHW(m)
	if err != nil {
		p.dropped(ctx, req, nil, DropMalformed, err.Error())
		return nil, nil
	}
	mt := m.MessageType()
	p.cfg.Metrics.recv(mt)
	sid := p.cfg.ServerAddr
	if !sid.IsValid() {
		sid = req.Local
	}
	if !sid.Is4() || sid.IsUnspecified() {
		p.cfg.Metrics.inc(func(m *Metrics) prometheus.Counter { return m.failures })
		return nil, fmt.Errorf("dhcp: interface %s has no IPv4 address to answer from: add one or set Config.ServerAddr", req.Interface)
	}
	var (
		r      *dhcpv4.DHCPv4
		reason string
	)
	if p.cfg.Mode == Proxy {
		r, reason, err = p.serveProxy(ctx, req, mac, sid)
	} else {
		r, reason, err = p.serveFull(ctx, req, mac, sid)
	}
	switch {
	case errors.Is(err, errRateLimited):
		p.dropped(ctx, req, mac, DropRateLimited, "unknown client over the rate limit")
		return nil, nil
	case err != nil:
		p.dropped(ctx, req, mac, DropError, err.Error())
		p.cfg.Metrics.inc(func(m *Metrics) prometheus.Counter { return m.failures })
		return nil, err
	case r == nil:
		if reason != "" {
			p.dropped(ctx, req, mac, reason, "")
		}
		return nil, nil
	}
	p.cfg.Metrics.reply(r.MessageType())
	return r, nil
}

// dropped counts a request the policy does not answer and logs it, with
// its reason, at debug level (issue 11 item 10: every drop is visible with
// -v). mac is the client's hardware address when it is known.
func (p *Policy) dropped(ctx context.Context, req *Request, mac net.HardwareAddr, reason, detail string) {
	p.cfg.Metrics.drop(reason)
	if !p.cfg.Logger.Enabled(ctx, slog.LevelDebug) {
		return
	}
	logDrop(ctx, p.cfg.Logger, reason, detail, req.Interface, req.Port, req.Peer, req.Msg, mac)
}

// lookup asks the inventory, then discovery. known is false for a MAC
// nobody knows; an unknown MAC over the UnknownLimit gets errRateLimited
// before anything else is done for it.
func (p *Policy) lookup(ctx context.Context, mac net.HardwareAddr, discover bool) (Host, bool, error) {
	h, err := p.hosts.HostByHW(ctx, mac)
	if err == nil {
		return h, true, nil
	}
	if !errors.Is(err, ErrUnknownHost) {
		return Host{}, false, fmt.Errorf("dhcp: inventory lookup of %s: %w", mac, err)
	}
	if !p.unknown.allow(mac, time.Now()) {
		return Host{}, false, errRateLimited
	}
	if discover && p.cfg.Discoverer != nil {
		h, err = p.cfg.Discoverer.Discover(ctx, mac)
		if err == nil {
			p.cfg.Metrics.inc(func(m *Metrics) prometheus.Counter { return m.discovered })
			p.cfg.Logger.Info("dhcp: discovered node", "mac", mac.String(), "hostname", h.Hostname, "addr", h.Addr)
			return h, true, nil
		}
		if !errors.Is(err, ErrUnknownHost) {
			return Host{}, false, fmt.Errorf("dhcp: discovery of %s: %w", mac, err)
		}
	}
	p.cfg.Metrics.inc(func(m *Metrics) prometheus.Counter { return m.unknown })
	if p.cfg.Logger.Enabled(ctx, slog.LevelDebug) {
		p.cfg.Logger.Debug("dhcp: unknown client", "mac", mac.String())
	}
	return Host{}, false, nil
}

func (p *Policy) poolFor(addr netip.Addr) *Pool {
	for _, pl := range p.cfg.Pools {
		if pl.subnet.Contains(addr) {
			return pl
		}
	}
	return nil
}

// clientSubnetAddr is the address that names the client's subnet: the
// relay's, or the server's on the arrival interface.
func clientSubnetAddr(req *Request) netip.Addr {
	if g, ok := addrOf(req.Msg.GatewayIPAddr); ok && !g.IsUnspecified() {
		return g
	}
	return req.Local
}

func addrOf(ip net.IP) (netip.Addr, bool) {
	ip4 := ip.To4()
	if ip4 == nil {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4([4]byte(ip4)), true
}

func requestedAddr(m *dhcpv4.DHCPv4) netip.Addr {
	if a, ok := addrOf(m.RequestedIPAddress()); ok && !a.IsUnspecified() {
		return a
	}
	if a, ok := addrOf(m.ClientIPAddr); ok && !a.IsUnspecified() {
		return a
	}
	return netip.Addr{}
}

func poolHost(pl *Pool, addr netip.Addr, lease time.Duration) Host {
	c := pl.cfg
	return Host{Addr: addr, Netmask: c.Netmask, Gateway: c.Gateway, DNS: c.DNS, Domain: c.Domain, MTU: c.MTU, LeaseTime: lease}
}

func (p *Policy) serveFull(ctx context.Context, req *Request, mac net.HardwareAddr, sid netip.Addr) (*dhcpv4.DHCPv4, string, error) {
	m := req.Msg
	if req.Port != ServerPort {
		return nil, DropNotForUs, nil
	}
	switch m.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		h, known, err := p.lookup(ctx, mac, true)
		if err != nil {
			return nil, "", err
		}
		if known {
			if !h.Addr.Is4() {
				return nil, "", fmt.Errorf("dhcp: node %q (%s) has no IPv4 address in the inventory: set the address of its network device", h.Hostname, mac)
			}
			return p.reply(req, mac, dhcpv4.MessageTypeOffer, sid, h, true), "", nil
		}
		pl := p.poolFor(clientSubnetAddr(req))
		if pl == nil || isIPoIB(m) { // the pool leases Ethernet addresses only
			return nil, DropUnknownHost, nil
		}
		addr, err := pl.Offer(mac, requestedAddr(m))
		if errors.Is(err, ErrPoolFull) {
			p.cfg.Logger.Warn("dhcp: dynamic pool exhausted", "pool", pl.subnet.String(), "mac", mac.String())
			return nil, DropPoolFull, nil
		} else if err != nil {
			return nil, "", err
		}
		return p.reply(req, mac, dhcpv4.MessageTypeOffer, sid, poolHost(pl, addr, pl.cfg.LeaseTime), true), "", nil

	case dhcpv4.MessageTypeRequest:
		reqSID, hasSID := addrOf(m.ServerIdentifier())
		if hasSID && reqSID != sid {
			p.otherServer(req, reqSID)
			return nil, DropNotForUs, nil
		}
		want := requestedAddr(m)
		if !want.IsValid() {
			return nil, DropMalformed, nil
		}
		h, known, err := p.lookup(ctx, mac, true)
		if err != nil {
			return nil, "", err
		}
		if known {
			if h.Addr != want {
				p.cfg.Logger.Info("dhcp: NAK: client asks for an address that is not its own", "mac", mac.String(), "requested", want, "inventory", h.Addr)
				return p.nak(req, sid), "", nil
			}
			return p.reply(req, mac, dhcpv4.MessageTypeAck, sid, h, true), "", nil
		}
		pl := p.poolFor(clientSubnetAddr(req))
		if pl == nil || isIPoIB(m) { // the pool leases Ethernet addresses only
			return nil, DropUnknownHost, nil
		}
		if !pl.subnet.Contains(want) {
			return p.nak(req, sid), "", nil // moved to another subnet
		}
		lt, err := pl.Ack(mac, want)
		switch {
		case errors.Is(err, errReserved):
			p.cfg.Logger.Warn("dhcp: NAK: pool lease on an address the inventory now gives a node", "mac", mac.String(), "addr", want)
			return p.nak(req, sid), "", nil
		case errors.Is(err, errNoLease):
			if hasSID {
				return p.nak(req, sid), "", nil // chose our offer, but it is gone
			}
			return nil, DropNotForUs, nil // RFC 2131 4.3.2: no record, stay silent
		case err != nil:
			return nil, "", err
		}
		return p.reply(req, mac, dhcpv4.MessageTypeAck, sid, poolHost(pl, want, lt), true), "", nil

	case dhcpv4.MessageTypeRelease:
		if reqSID, ok := addrOf(m.ServerIdentifier()); ok && reqSID != sid {
			return nil, DropNotForUs, nil
		}
		ci, _ := addrOf(m.ClientIPAddr)
		if pl := p.poolFor(ci); pl != nil && !isIPoIB(m) {
			if err := pl.Release(mac, ci); err != nil {
				return nil, "", err
			}
		}
		return nil, "", nil

	case dhcpv4.MessageTypeDecline:
		if reqSID, ok := addrOf(m.ServerIdentifier()); ok && reqSID != sid {
			return nil, DropNotForUs, nil
		}
		addr, _ := addrOf(m.RequestedIPAddress())
		p.cfg.Metrics.inc(func(m *Metrics) prometheus.Counter { return m.declined })
		h, known, err := p.lookup(ctx, mac, false)
		if err != nil {
			return nil, "", err
		}
		if known {
			p.cfg.Logger.Warn("dhcp: a node declined its address: another machine on the segment uses it",
				"mac", mac.String(), "hostname", h.Hostname, "addr", addr)
			return nil, "", nil
		}
		if pl := p.poolFor(addr); pl != nil && !isIPoIB(m) {
			p.cfg.Logger.Warn("dhcp: pool address declined: another machine uses it", "mac", mac.String(), "addr", addr)
			if err := pl.Decline(mac, addr); err != nil {
				return nil, "", err
			}
		}
		return nil, "", nil

	case dhcpv4.MessageTypeInform:
		ci, ok := addrOf(m.ClientIPAddr)
		if !ok || ci.IsUnspecified() {
			return nil, DropMalformed, nil
		}
		h, known, err := p.lookup(ctx, mac, false)
		if err != nil {
			return nil, "", err
		}
		if !known {
			pl := p.poolFor(ci)
			if pl == nil || isIPoIB(m) {
				return nil, DropUnknownHost, nil
			}
			h = poolHost(pl, ci, 0)
		}
		return p.reply(req, mac, dhcpv4.MessageTypeAck, sid, h, false), "", nil
	}
	return nil, DropNotForUs, nil
}

func (p *Policy) serveProxy(ctx context.Context, req *Request, mac net.HardwareAddr, sid netip.Addr) (*dhcpv4.DHCPv4, string, error) {
	m := req.Msg
	c := classify(m)
	if !c.pxe && !c.httpBoot && !c.ipxe {
		return nil, DropNoBoot, nil // not a network boot client: the site's server handles it
	}
	var mt dhcpv4.MessageType
	switch {
	case req.Port == ServerPort && m.MessageType() == dhcpv4.MessageTypeDiscover:
		mt = dhcpv4.MessageTypeOffer
	case req.Port == PXEServerPort && (m.MessageType() == dhcpv4.MessageTypeRequest || m.MessageType() == dhcpv4.MessageTypeInform):
		mt = dhcpv4.MessageTypeAck
	default:
		return nil, DropNotForUs, nil
	}
	_, known, err := p.lookup(ctx, mac, true)
	if err != nil {
		return nil, "", err
	}
	if !known {
		return nil, DropUnknownHost, nil
	}
	b, ok := p.boot(c, sid, mac)
	if !ok {
		return nil, DropNoBoot, nil
	}
	r := p.newReply(m, mt, sid)
	if mt == dhcpv4.MessageTypeAck {
		r.ClientIPAddr = m.ClientIPAddr
	}
	p.setBoot(m, r, b, sid)
	if b.vendorClass == "PXEClient" {
		r.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, pxeDiscoveryControl))
	}
	return r, "", nil
}

func (p *Policy) newReply(m *dhcpv4.DHCPv4, mt dhcpv4.MessageType, sid netip.Addr) *dhcpv4.DHCPv4 {
	r := &dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeBootReply,
		HWType:        m.HWType,
		ClientHWAddr:  m.ClientHWAddr,
		TransactionID: m.TransactionID,
		Flags:         m.Flags,
		ClientIPAddr:  net.IPv4zero,
		YourIPAddr:    net.IPv4zero,
		ServerIPAddr:  net.IPv4zero,
		GatewayIPAddr: m.GatewayIPAddr,
		Options:       make(dhcpv4.Options, 16),
	}
	if r.GatewayIPAddr == nil {
		r.GatewayIPAddr = net.IPv4zero
	}
	if isIPoIB(m) {
		// RFC 4390 section 2.1: hlen 0 and chaddr zero (an IPoIB address
		// does not fit it), and the reply is broadcast: the server cannot
		// resolve the client's link-layer address before it has an IP.
		r.ClientHWAddr = net.HardwareAddr{}
		r.SetBroadcast()
	}
	r.UpdateOption(dhcpv4.OptMessageType(mt))
	r.UpdateOption(dhcpv4.OptServerIdentifier(sid.AsSlice()))
	// RFC 3046: echo relay agent information; RFC 6842: echo the client
	// identifier; PXE: echo the client machine identifier (option 97).
	for _, code := range []dhcpv4.OptionCode{dhcpv4.OptionRelayAgentInformation, dhcpv4.OptionClientIdentifier, dhcpv4.OptionClientMachineIdentifier} {
		if v := m.Options.Get(code); v != nil {
			r.UpdateOption(dhcpv4.OptGeneric(code, v))
		}
	}
	return r
}

func (p *Policy) setBoot(m, r *dhcpv4.DHCPv4, b bootInfo, sid netip.Addr) {
	if b.siaddr {
		r.ServerIPAddr = sid.AsSlice()
	}
	if len(b.file) <= 127 {
		r.BootFileName = b.file
	}
	if len(b.file) > 127 || requested(m, dhcpv4.OptionBootfileName) {
		r.UpdateOption(dhcpv4.OptBootFileName(b.file))
	}
	if b.vendorClass != "" {
		r.UpdateOption(dhcpv4.OptClassIdentifier(b.vendorClass))
	}
	if b.noPXEDHCP {
		r.UpdateOption(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(175), ipxeNoPXEDHCP))
	}
}

// reply builds an OFFER or ACK carrying h's configuration (and its
// address and lease time when withAddr; an ACK to INFORM has neither) for
// the client mac (ClientHW's, as ServeDHCP validated it).
func (p *Policy) reply(req *Request, mac net.HardwareAddr, mt dhcpv4.MessageType, sid netip.Addr, h Host, withAddr bool) *dhcpv4.DHCPv4 {
	m := req.Msg
	r := p.newReply(m, mt, sid)
	if withAddr {
		r.YourIPAddr = h.Addr.AsSlice()
		lt := h.LeaseTime
		if lt <= 0 {
			lt = p.cfg.LeaseTime
		}
		secs := uint32(min(lt/time.Second, 1<<32-2))
		r.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionIPAddressLeaseTime, be32(secs)))
		r.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionRenewTimeValue, be32(secs/2)))
		r.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionRebindingTimeValue, be32(secs/8*7)))
	} else {
		r.ClientIPAddr = m.ClientIPAddr
	}
	if len(h.Netmask) == 4 {
		r.UpdateOption(dhcpv4.OptSubnetMask(h.Netmask))
	}
	if h.Gateway.Is4() {
		r.UpdateOption(dhcpv4.OptRouter(h.Gateway.AsSlice()))
	}
	if len(h.DNS) > 0 {
		ips := make([]net.IP, 0, len(h.DNS))
		for _, a := range h.DNS {
			if a.Is4() {
				ips = append(ips, a.AsSlice())
			}
		}
		if len(ips) > 0 {
			r.UpdateOption(dhcpv4.OptDNS(ips...))
		}
	}
	if h.Hostname != "" {
		r.UpdateOption(dhcpv4.OptHostName(h.Hostname))
	}
	if h.Domain != "" {
		r.UpdateOption(dhcpv4.OptDomainName(h.Domain))
	}
	if h.MTU >= 68 {
		r.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionInterfaceMTU, []byte{byte(h.MTU >> 8), byte(h.MTU)}))
	}
	if b, ok := p.boot(classify(m), sid, mac); ok {
		p.setBoot(m, r, b, sid)
	}
	return r
}

func (p *Policy) nak(req *Request, sid netip.Addr) *dhcpv4.DHCPv4 {
	r := p.newReply(req.Msg, dhcpv4.MessageTypeNak, sid)
	if !r.GatewayIPAddr.IsUnspecified() {
		r.SetBroadcast() // RFC 2131 4.3.2: the relay broadcasts a NAK
	}
	return r
}

// otherServer reports, once per server per 10 minutes, a client asking for
// another DHCP server's offer: that server answers on our segment.
func (p *Policy) otherServer(req *Request, other netip.Addr) {
	p.cfg.Metrics.inc(func(m *Metrics) prometheus.Counter { return m.otherServer })
	now := time.Now()
	p.warnMu.Lock()
	last, seen := p.warned[other]
	if !seen || now.Sub(last) > 10*time.Minute {
		p.warned[other] = now
		if len(p.warned) > 1024 {
			clear(p.warned)
		}
		p.warnMu.Unlock()
		p.cfg.Logger.Warn("dhcp: another DHCP server answers on this segment: clients may take its offers instead of wwboot's; stop it, or run wwboot in proxy mode beside it",
			"other_server", other, "interface", req.Interface, "client", clientString(req.Msg))
		return
	}
	p.warnMu.Unlock()
}

func be32(v uint32) []byte {
	return []byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
}

// requested reports whether the client listed code in its parameter request
// list (option 55).
func requested(m *dhcpv4.DHCPv4, code dhcpv4.OptionCode) bool {
	for _, b := range m.Options.Get(dhcpv4.OptionParameterRequestList) {
		if b == code.Code() {
			return true
		}
	}
	return false
}
