package tftp

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Result labels of the wwboot_tftp_requests_total counter.
const (
	ResultOK           = "ok"            // file sent completely
	ResultNotFound     = "not_found"     // no such file, or not a regular file
	ResultRefused      = "refused"       // unsafe path or invalid transfer mode
	ResultWriteRefused = "write_refused" // write request (the server is read-only)
	ResultBusy         = "busy"          // MaxTransfers transfers already running
	ResultFailed       = "failed"        // transfer started but did not complete
)

// Metrics are the server's Prometheus metrics. Create them with NewMetrics
// on the caller's registry and hand them to one or more Servers; a nil
// *Metrics records nothing.
type Metrics struct {
	requests    *prometheus.CounterVec
	bytes       prometheus.Counter
	datagrams   prometheus.Counter
	retransmits prometheus.Counter
	malformed   prometheus.Counter
	active      prometheus.Gauge
}

// NewMetrics creates the TFTP metrics and registers them on reg:
//
//	wwboot_tftp_requests_total{result}      requests by outcome (Result* constants)
//	wwboot_tftp_sent_bytes_total            file bytes sent in completed and failed transfers
//	wwboot_tftp_datagrams_sent_total        DATA and OACK datagrams sent, retransmissions included
//	wwboot_tftp_retransmits_total           datagrams sent but never acknowledged
//	wwboot_tftp_malformed_packets_total     packets to the server port that were not a request (or whose transfer socket could not be opened)
//	wwboot_tftp_active_transfers            transfers running now
//
// It fails if reg already holds metrics of the same names.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wwboot_tftp_requests_total",
			Help: "TFTP requests by result.",
		}, []string{"result"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wwboot_tftp_sent_bytes_total",
			Help: "File bytes sent over TFTP.",
		}),
		datagrams: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wwboot_tftp_datagrams_sent_total",
			Help: "TFTP DATA and OACK datagrams sent, retransmissions included.",
		}),
		retransmits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wwboot_tftp_retransmits_total",
			Help: "TFTP datagrams sent but not acknowledged (retransmitted or lost at the end of a failed transfer).",
		}),
		malformed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wwboot_tftp_malformed_packets_total",
			Help: "Packets to the TFTP server port that were not a read or write request.",
		}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wwboot_tftp_active_transfers",
			Help: "TFTP transfers in progress.",
		}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.bytes, m.datagrams, m.retransmits, m.malformed, m.active} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("tftp: register metrics: %w (is another tftp.Metrics on this registry?)", err)
		}
	}
	for _, r := range []string{ResultOK, ResultNotFound, ResultRefused, ResultWriteRefused, ResultBusy, ResultFailed} {
		m.requests.WithLabelValues(r)
	}
	return m, nil
}

func (m *Metrics) request(result string) {
	if m != nil {
		m.requests.WithLabelValues(result).Inc()
	}
}

func (m *Metrics) sent(n int64) {
	if m != nil && n > 0 {
		m.bytes.Add(float64(n))
	}
}

func (m *Metrics) datagramStats(sent, acked int) {
	if m == nil {
		return
	}
	m.datagrams.Add(float64(sent))
	if sent > acked {
		m.retransmits.Add(float64(sent - acked))
	}
}

func (m *Metrics) malformedPacket() {
	if m != nil {
		m.malformed.Inc()
	}
}

func (m *Metrics) activeAdd(d float64) {
	if m != nil {
		m.active.Add(d)
	}
}
