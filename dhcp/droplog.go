package dhcp

import (
	"context"
	"log/slog"
	"net"
	"net/netip"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// logDrop writes the debug line for a packet the server or the policy did
// not answer: "dhcp: dropped" with the reason (a Drop* label), the detail
// when there is one, where the packet came from and, when it parsed, who
// sent it. Callers check that debug logging is enabled first.
func logDrop(ctx context.Context, log *slog.Logger, reason, detail, iface string, port int, peer netip.AddrPort, m *dhcpv4.DHCPv4, mac net.HardwareAddr) {
	attrs := make([]slog.Attr, 0, 8)
	attrs = append(attrs, slog.String("reason", reason))
	if detail != "" {
		attrs = append(attrs, slog.String("detail", detail))
	}
	attrs = append(attrs, slog.String("interface", iface), slog.Int("port", port), slog.String("peer", peer.String()))
	if m != nil {
		attrs = append(attrs, slog.String("type", m.MessageType().String()), slog.String("htype", m.HWType.String()),
			slog.String("xid", m.TransactionID.String()))
		if mac == nil {
			mac = m.ClientHWAddr
		}
	}
	if mac != nil {
		attrs = append(attrs, slog.String("mac", mac.String()))
	}
	log.LogAttrs(ctx, slog.LevelDebug, "dhcp: dropped", attrs...)
}

// clientString names a request's client in log lines: its hardware address
// (the GUID for IPoIB) or, failing that, chaddr as sent.
func clientString(m *dhcpv4.DHCPv4) string {
	if mac, err := ClientHW(m); err == nil {
		return mac.String()
	}
	return m.ClientHWAddr.String()
}
