package dhcp

import (
	"fmt"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds the DHCP counters. Create it with [NewMetrics] and hand the
// same value to [Config] and [ServerConfig]; a nil *Metrics counts nothing.
type Metrics struct {
	received    *prometheus.CounterVec
	replied     *prometheus.CounterVec
	dropped     *prometheus.CounterVec
	unknown     prometheus.Counter
	discovered  prometheus.Counter
	failures    prometheus.Counter
	otherServer prometheus.Counter
	declined    prometheus.Counter

	recvBy  [9]prometheus.Counter // by message type 1-8, 0 other
	replyBy [9]prometheus.Counter
}

// Reasons a request is dropped, the values of the "reason" label of
// wwboot_dhcp_dropped_total.
const (
	DropMalformed   = "malformed"    // not a parseable, valid BOOTREQUEST from an Ethernet client
	DropQueueFull   = "queue_full"   // the bounded work queue was full (boot storm)
	DropUnknownHost = "unknown_host" // MAC not in the inventory, no pool, no discovery
	DropNotForUs    = "not_for_us"   // the client talks to another server, or a message type this mode ignores
	DropNoBoot      = "no_boot_info" // proxy mode: nothing to tell this client (not PXE, unsupported arch)
	DropPoolFull    = "pool_full"    // the dynamic pool has no free address
	DropError       = "error"        // the handler failed (inventory, lease file)
	DropRateLimited = "rate_limited" // an unknown MAC over the UnknownLimit
	DropShutdown    = "shutdown"     // still queued when the server stopped
)

// NewMetrics creates the DHCP counters and registers them on reg (not on the
// global registry). Their names start with wwboot_dhcp_.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wwboot_dhcp_received_total", Help: "DHCP requests received, by message type.",
		}, []string{"type"}),
		replied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wwboot_dhcp_replies_total", Help: "DHCP replies sent, by message type.",
		}, []string{"type"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wwboot_dhcp_dropped_total", Help: "DHCP requests not answered, by reason.",
		}, []string{"reason"}),
		unknown: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wwboot_dhcp_unknown_clients_total", Help: "Requests from MACs the inventory does not know.",
		}),
		discovered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wwboot_dhcp_discovered_total", Help: "Unknown MACs assigned to a discoverable node.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wwboot_dhcp_failures_total", Help: "Requests the handler failed on (inventory or lease file errors).",
		}),
		otherServer: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wwboot_dhcp_other_server_seen_total", Help: "Signs of another DHCP server on a served segment.",
		}),
		declined: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wwboot_dhcp_declined_total", Help: "DHCPDECLINEs: a client found its address in use.",
		}),
	}
	for t := range m.recvBy {
		// Children exist for what clients send and servers answer; the
		// rest are created on first use.
		switch mt := dhcpv4.MessageType(t); mt {
		case dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeDecline,
			dhcpv4.MessageTypeRelease, dhcpv4.MessageTypeInform:
			m.recvBy[t] = m.received.WithLabelValues(typeLabel(mt))
		case dhcpv4.MessageTypeOffer, dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak:
			m.replyBy[t] = m.replied.WithLabelValues(typeLabel(mt))
		}
	}
	for _, c := range []prometheus.Collector{m.received, m.replied, m.dropped, m.unknown, m.discovered, m.failures, m.otherServer, m.declined} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("dhcp: register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *Metrics) recv(t dhcpv4.MessageType) {
	if m != nil {
		if c := m.recvBy[typeIndex(t)]; c != nil {
			c.Inc()
		} else {
			m.received.WithLabelValues(typeLabel(t)).Inc()
		}
	}
}

func (m *Metrics) reply(t dhcpv4.MessageType) {
	if m != nil {
		if c := m.replyBy[typeIndex(t)]; c != nil {
			c.Inc()
		} else {
			m.replied.WithLabelValues(typeLabel(t)).Inc()
		}
	}
}

func (m *Metrics) drop(reason string) {
	if m != nil {
		m.dropped.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) inc(c func(*Metrics) prometheus.Counter) {
	if m != nil {
		c(m).Inc()
	}
}

func typeLabel(t dhcpv4.MessageType) string {
	switch t {
	case dhcpv4.MessageTypeDiscover:
		return "discover"
	case dhcpv4.MessageTypeOffer:
		return "offer"
	case dhcpv4.MessageTypeRequest:
		return "request"
	case dhcpv4.MessageTypeDecline:
		return "decline"
	case dhcpv4.MessageTypeAck:
		return "ack"
	case dhcpv4.MessageTypeNak:
		return "nak"
	case dhcpv4.MessageTypeRelease:
		return "release"
	case dhcpv4.MessageTypeInform:
		return "inform"
	default:
		return "other"
	}
}

func typeIndex(t dhcpv4.MessageType) int {
	if t >= 1 && t <= 8 {
		return int(t)
	}
	return 0
}
