//go:build linux

package dhcp

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// listenWatch opens the DHCP client port on ifname, shared with any DHCP
// client on the machine (SO_REUSEADDR), to see replies other servers
// broadcast on the segment.
func listenWatch(ifname string) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			if serr = unix.BindToDevice(int(fd), ifname); serr != nil {
				return
			}
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1); serr != nil {
				return
			}
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp4", fmt.Sprintf("0.0.0.0:%d", ClientPort))
	if err != nil {
		return nil, fmt.Errorf("listen on %s UDP port %d: %w", ifname, ClientPort, err)
	}
	return pc.(*net.UDPConn), nil
}

func (s *Server) noteOwn(sid netip.Addr) {
	s.ownMu.Lock()
	if !s.own[sid] && len(s.own) < 256 {
		s.own[sid] = true
	}
	s.ownMu.Unlock()
}

func (s *Server) isProbe(mac net.HardwareAddr) bool {
	key, ok := macKey(mac)
	if !ok {
		return false
	}
	s.ownMu.Lock()
	defer s.ownMu.Unlock()
	return s.probes[key]
}

func (s *Server) isOwn(c *Conn, sid netip.Addr) bool {
	if c.owns(sid) {
		return true
	}
	s.ownMu.Lock()
	defer s.ownMu.Unlock()
	return s.own[sid]
}

// watchOthers broadcasts one DHCPDISCOVER from a made-up MAC, then reports
// every DHCP server other than this one whose offers or acks reach the
// client port, until the conn's watch socket is closed or times out.
func (s *Server) watchOthers(c *Conn) {
	var (
		xid      dhcpv4.TransactionID
		probe    []byte
		probing  = s.cfg.ProbeWait > 0
		answered bool
	)
	if probing {
		var mac [6]byte
		_, _ = rand.Read(mac[:])
		mac[0] = mac[0]&^1 | 2 // locally administered unicast
		s.ownMu.Lock()
		s.probes[mac] = true
		s.ownMu.Unlock()
		_, _ = rand.Read(xid[:])
		d, err := dhcpv4.New(dhcpv4.WithHwAddr(mac[:]), dhcpv4.WithTransactionID(xid),
			dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover), dhcpv4.WithBroadcast(true),
			dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")))
		if err != nil {
			probing = false
		} else {
			probe = d.ToBytes()
		}
	}
	// The probe goes out three times over ProbeWait, as a client would
	// retransmit, until a foreign server answers it.
	const tries = 3
	start := time.Now()
	deadline := start.Add(s.cfg.ProbeWait)
	sent := 0
	buf := make([]byte, 2048)
	for {
		if probing && !answered {
			now := time.Now()
			if sent < tries && !now.Before(start.Add(time.Duration(sent)*s.cfg.ProbeWait/tries)) {
				_, err := c.watch.WriteToUDPAddrPort(probe, netip.AddrPortFrom(netip.AddrFrom4([4]byte{255, 255, 255, 255}), ServerPort))
				if err != nil {
					s.log.Warn("dhcp: probe for other DHCP servers not sent", "interface", c.iface, "err", err)
				}
				sent++
			}
			if !now.Before(deadline) {
				probing = false // the wait is over; keep listening passively
				if s.cfg.Proxy {
					s.log.Warn("dhcp: no DHCP server answered a probe on this interface: in proxy mode wwboot hands out no addresses, so clients get none; start the site's DHCP server or use full mode",
						"interface", c.iface)
				}
				_ = c.watch.SetReadDeadline(time.Time{})
			} else {
				next := deadline
				if sent < tries {
					next = start.Add(time.Duration(sent) * s.cfg.ProbeWait / tries)
				}
				_ = c.watch.SetReadDeadline(next)
			}
		} else {
			_ = c.watch.SetReadDeadline(time.Time{})
		}
		n, _, err := c.watch.ReadFromUDPAddrPort(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		if err != nil {
			return // closed: Serve is stopping
		}
		m, err := dhcpv4.FromBytes(buf[:n])
		if err != nil || m.OpCode != dhcpv4.OpcodeBootReply {
			continue
		}
		if mt := m.MessageType(); mt != dhcpv4.MessageTypeOffer && mt != dhcpv4.MessageTypeAck {
			continue
		}
		sid, ok := addrOf(m.ServerIdentifier())
		if !ok || s.isOwn(c, sid) {
			continue
		}
		if m.TransactionID == xid {
			answered = true
		}
		s.reportOther(c, sid, m)
	}
}

func (s *Server) reportOther(c *Conn, sid netip.Addr, m *dhcpv4.DHCPv4) {
	now := time.Now()
	s.ownMu.Lock()
	last, seen := s.warned[sid]
	report := !seen || now.Sub(last) > 10*time.Minute
	if report {
		if len(s.warned) > 1024 {
			clear(s.warned)
		}
		s.warned[sid] = now
	}
	s.ownMu.Unlock()
	if s.cfg.Proxy {
		if report {
			s.log.Info("dhcp: site DHCP server found (proxy mode answers beside it)", "interface", c.iface, "server", sid)
		}
		return
	}
	s.cfg.Metrics.inc(func(m *Metrics) prometheus.Counter { return m.otherServer })
	if report {
		s.log.Warn("dhcp: another DHCP server answers on this segment: clients may take its offers instead of wwboot's; stop it, or run wwboot in proxy mode beside it",
			"interface", c.iface, "other_server", sid, "offered", m.YourIPAddr.String(), "client", m.ClientHWAddr.String())
	}
}
