package provision

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a runtime overlay (or another node file) is refused, the values of
// the "reason" label of wwboot_http_refused_total.
const (
	RefusedPort     = "unprivileged_port" // source port 1024 or above (secure mode)
	RefusedAddress  = "address"           // source address is not one of the node's
	RefusedAssetKey = "asset_key"         // missing or wrong asset key
	// RefusedAdmin: a listing (/status, /metrics) asked by a client that
	// Options.Admin does not allow.
	RefusedAdmin = "admin"
	// RefusedSystemSecret: a system overlay that carries private files
	// (ErrSystemSecret), refused to everyone.
	RefusedSystemSecret = "system_secret"
)

// metrics are the handler's Prometheus metrics.
type metrics struct {
	requests *prometheus.CounterVec // stage, code
	sent     *prometheus.CounterVec // stage
	active   prometheus.Gauge
	waiting  prometheus.Gauge
	refused  *prometheus.CounterVec // reason
	unknown  prometheus.Counter
}

// newMetrics registers the handler's metrics on reg.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wwboot_http_requests_total",
			Help: "Provisioning HTTP requests by stage (ipxe, kernel, image, system, runtime, boot, status, other) and status code.",
		}, []string{"stage", "code"}),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wwboot_http_sent_bytes_total",
			Help: "Response body bytes sent by stage.",
		}, []string{"stage"}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wwboot_http_active_requests",
			Help: "Provisioning requests being answered now (transfers under way).",
		}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wwboot_agents_waiting",
			Help: "Node agents waiting for a change of their runtime overlay (long-poll).",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wwboot_http_refused_total",
			Help: "Requests refused: unprivileged_port (secure mode), address (not the node's), asset_key, admin (a listing for a client not allowed), system_secret (a system overlay with private files).",
		}, []string{"reason"}),
		unknown: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wwboot_http_unknown_node_total",
			Help: "Requests for a MAC that is not in the inventory.",
		}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.sent, m.active, m.waiting, m.refused, m.unknown} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, r := range []string{RefusedPort, RefusedAddress, RefusedAssetKey, RefusedAdmin, RefusedSystemSecret} {
		m.refused.WithLabelValues(r)
	}
	return m, nil
}

func codeLabel(code int) string { return strconv.Itoa(code) }
