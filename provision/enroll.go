package provision

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/wwboot/wwboot/events"
	"github.com/wwboot/wwboot/nodedb"
)

// The node agent's TLS channel (issue 11 item 1, beyond the floor):
//
//   - Once per boot, the agent enrolls: POST /agent/enroll/{mac} over plain
//     HTTP with a certificate request (CSR) for a key it made, passing the
//     runtime overlay's checks (privileged source port, the node's address,
//     its asset key). The CA signs a client certificate (CN the node's
//     name) and the server keeps its serial as the node's current one.
//   - Then the agent fetches its runtime overlay and sends its reports over
//     HTTPS (AgentTLS.Port), with that certificate. A request is the node's
//     when the certificate chains to the CA, its serial is the node's
//     current one and its CN is the name of the node the {mac} belongs to.
//   - A node enrolls once per boot: after an enrollment, another one is
//     refused (409) until the node asks for a boot-chain file (iPXE script,
//     kernel, image), which every boot does. Whoever enrolls first in a
//     boot wins; the real node then gets a loud refusal.
//   - With TLS on, the runtime overlay never goes over plain HTTP, and
//     plain reports are taken only until the node enrolled in this boot
//     (/init's early "booting" and "failed" reports).

// StageEnroll is the stage of an agent's enrollment (POST /agent/enroll/{mac}).
const StageEnroll = "enroll"

// Reasons of refusals of the TLS channel (label "reason" of
// wwboot_http_refused_total).
const (
	RefusedTLSOnly  = "tls_only"    // the runtime overlay asked over plain HTTP while TLS is on
	RefusedEnrolled = "enrolled"    // a plain report, or a second enrollment, after the node enrolled in this boot
	RefusedCert     = "certificate" // no client certificate, another node's, or not the node's current one
	RefusedCSR      = "csr"         // a malformed certificate request
)

const (
	maxCSR           = 4 << 10 // bytes of an enrollment body
	nodeCertsDir     = "nodes" // below the CA's directory
	nodeRecordSuffix = ".json" // of a node's record in nodeCertsDir
	enrollMediaType  = "application/pem-certificate-chain"
)

// ErrCSR is the error (wrapped) of a certificate request ParseCSR refuses.
var ErrCSR = errors.New("bad certificate request")

// ParseCSR reads and checks a node's certificate request, PEM ("CERTIFICATE
// REQUEST") or DER, at most 4 KiB: its signature must verify, and its key
// must be ECDSA P-256 or ed25519. The subject is ignored (the server names
// the certificate after the node the request came for).
func ParseCSR(b []byte) (*x509.CertificateRequest, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty body (send a PEM or DER certificate request)", ErrCSR)
	}
	if len(b) > maxCSR {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrCSR, maxCSR)
	}
	der := b
	if bytes.HasPrefix(bytes.TrimLeft(b, " \t\r\n"), []byte("-----BEGIN")) {
		blk, _ := pem.Decode(b)
		if blk == nil || (blk.Type != "CERTIFICATE REQUEST" && blk.Type != "NEW CERTIFICATE REQUEST") {
			return nil, fmt.Errorf("%w: not a PEM CERTIFICATE REQUEST", ErrCSR)
		}
		der = blk.Bytes
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCSR, err)
	}
	switch k := csr.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("%w: ECDSA key on %s: use P-256", ErrCSR, k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	default:
		return nil, fmt.Errorf("%w: a %T key: use ECDSA P-256 or ed25519", ErrCSR, csr.PublicKey)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: signature: %w", ErrCSR, err)
	}
	return csr, nil
}

// AgentTLS is the server side of the node agents' TLS channel: the cluster
// CA, the HTTPS port, and each node's current certificate, kept in the CA's
// directory below nodes/ so that a restarted server keeps its nodes
// working. Give it to Options.AgentTLS; create it with NewAgentTLS. It is
// safe for concurrent use.
type AgentTLS struct {
	// CA signs the nodes' certificates.
	CA *CA
	// Port is the HTTPS port the agents use, for messages (the Server
	// listens on ServerConfig.AgentTLSAddr).
	Port int
	// Now is the clock of certificate lifetimes; nil means time.Now.
	Now func() time.Time

	dir string
	log *slog.Logger

	mu    sync.Mutex
	nodes map[string]*nodeCert
}

// nodeCert is what the server keeps of one node's enrollment.
type nodeCert struct {
	mu     sync.Mutex
	Serial string    `json:"serial"`   // hex serial of the current certificate
	At     time.Time `json:"enrolled"` // when it enrolled
	From   string    `json:"from"`     // from which client address
	// Booted: the node asked for a boot-chain file since it enrolled, so
	// it may enroll again.
	Booted bool `json:"booted"`
}

// NewAgentTLS returns the TLS channel's state over ca, reading the nodes'
// records from the CA's directory (nodes/, created 0700); port is the
// HTTPS port, for messages; log receives the refusals (nil discards).
// Records that cannot be read are logged and skipped (the node enrolls at
// its next boot).
func NewAgentTLS(ca *CA, port int, log *slog.Logger) (*AgentTLS, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &AgentTLS{CA: ca, Port: port, dir: filepath.Join(ca.dir, nodeCertsDir), log: log, nodes: map[string]*nodeCert{}}
	if err := os.MkdirAll(t.dir, 0o700); err != nil {
		return nil, fmt.Errorf("agent TLS: %w", err)
	}
	ents, err := os.ReadDir(t.dir)
	if err != nil {
		return nil, fmt.Errorf("agent TLS: %w", err)
	}
	for _, e := range ents {
		esc, ok := strings.CutSuffix(e.Name(), nodeRecordSuffix)
		if !ok { // temporary files end in .tmpNNN
			continue
		}
		name, err := url.PathUnescape(esc)
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join(t.dir, e.Name()))
		rec := &nodeCert{}
		if err == nil {
			err = json.Unmarshal(data, rec)
		}
		if err == nil {
			_, ok := new(big.Int).SetString(rec.Serial, 16)
			if !ok {
				err = fmt.Errorf("serial %q is not hexadecimal", rec.Serial)
			}
		}
		if err != nil {
			log.Warn("agent TLS: a node's enrollment record cannot be read; the node enrolls again at its next boot",
				"file", filepath.Join(t.dir, e.Name()), "err", err)
			continue
		}
		t.nodes[name] = rec
	}
	return t, nil
}

// ServerConfig returns the HTTPS listener's TLS configuration: the server
// certificate for hosts (CA.ServerCertificate, issued again while serving
// once less than ServerCertRenew is left), TLS 1.3 at least, and client
// certificates verified against the CA when given (the handler then checks
// whose they are).
func (t *AgentTLS) ServerConfig(hosts []string, now time.Time) (*tls.Config, error) {
	cert, err := t.CA.ServerCertificate(hosts, now)
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	cur := &cert
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			mu.Lock()
			defer mu.Unlock()
			if now := t.now(); cur.Leaf.NotAfter.Sub(now) < ServerCertRenew {
				c, err := t.CA.ServerCertificate(hosts, now)
				if err != nil {
					t.log.Error("agent TLS: renewing the server certificate; serving the old one", "err", err)
				} else {
					cur = &c
				}
			}
			return cur, nil
		},
		ClientAuth: tls.VerifyClientCertIfGiven,
		ClientCAs:  t.CA.Pool(),
		NextProtos: []string{"http/1.1"},
	}, nil
}

func (t *AgentTLS) now() time.Time {
	if t.Now == nil {
		return time.Now()
	}
	return t.Now()
}

func (t *AgentTLS) record(node string, create bool) *nodeCert {
	t.mu.Lock()
	defer t.mu.Unlock()
	rec := t.nodes[node]
	if rec == nil && create {
		rec = &nodeCert{}
		t.nodes[node] = rec
	}
	return rec
}

// save writes rec atomically as node's record; rec.mu is held.
func (t *AgentTLS) save(node string, rec *nodeCert) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(t.dir, url.PathEscape(node)+nodeRecordSuffix), append(data, '\n'), 0o600)
}

// bootSeen notes that node asked for a boot-chain file: it may enroll
// again. It writes the node's record only when that changes it (once a
// boot).
func (t *AgentTLS) bootSeen(node string) {
	rec := t.record(node, false)
	if rec == nil {
		return // never enrolled: may enroll anyway
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.Booted {
		return
	}
	rec.Booted = true
	if err := t.save(node, rec); err != nil {
		t.log.Error("agent TLS: saving a node's enrollment record", "node", node, "err", err)
	}
}

// enrolledThisBoot reports whether node enrolled since its last boot-chain
// request.
func (t *AgentTLS) enrolledThisBoot(node string) bool {
	rec := t.record(node, false)
	if rec == nil {
		return false
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return rec.Serial != "" && !rec.Booted
}

// errEnrolled is an enrollment refused because the node enrolled in this boot.
type errEnrolled struct {
	node, from string
	at         time.Time
}

func (e *errEnrolled) Error() string {
	return fmt.Sprintf("node %s already enrolled in this boot at %s from %s: a second enrollment may be an attacker, "+
		"or the agent lost /run/wwboot; reboot the node to enroll again", e.node, e.at.UTC().Format(time.RFC3339), e.from)
}

// enroll signs csr for node, unless node enrolled in this boot.
func (t *AgentTLS) enroll(node string, csr *x509.CertificateRequest, from string, now time.Time) (*x509.Certificate, error) {
	rec := t.record(node, true)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.Serial != "" && !rec.Booted {
		return nil, &errEnrolled{node: node, from: rec.From, at: rec.At}
	}
	cert, err := t.CA.issueNode(node, csr.PublicKey, now)
	if err != nil {
		return nil, err
	}
	next := nodeCert{Serial: cert.SerialNumber.Text(16), At: now, From: from}
	if err := t.save(node, &next); err != nil {
		return nil, fmt.Errorf("saving the enrollment: %w", err)
	}
	rec.Serial, rec.At, rec.From, rec.Booted = next.Serial, next.At, next.From, false
	return cert, nil
}

// certAllowed checks a request that came over TLS: its client certificate
// (verified against the CA by the TLS handshake) must be node's current one.
func (t *AgentTLS) certAllowed(cs *tls.ConnectionState, node *nodedb.Node) (reason, msg string) {
	if len(cs.VerifiedChains) == 0 || len(cs.PeerCertificates) == 0 {
		return RefusedCert, "no client certificate: the node agent enrolls first (POST /agent/enroll/{mac} over plain HTTP)"
	}
	c := cs.PeerCertificates[0]
	if c.Subject.CommonName != node.ID {
		return RefusedCert, fmt.Sprintf("this certificate is node %q's, not node %s's", c.Subject.CommonName, node.ID)
	}
	rec := t.record(node.ID, false)
	cur := ""
	if rec != nil {
		rec.mu.Lock()
		cur = rec.Serial
		rec.mu.Unlock()
	}
	if cur == "" || cur != c.SerialNumber.Text(16) {
		return RefusedCert, fmt.Sprintf("node %s: this certificate is not the node's current one (from a previous boot, or another "+
			"enrollment replaced it): the agent enrolls again, which works once per boot", node.ID)
	}
	return "", ""
}

// serveEnroll signs a node agent's certificate request, POST
// /agent/enroll/{mac}, with the runtime overlay's checks, once per boot.
func (h *Handler) serveEnroll(w *recorder, r *http.Request) {
	t := h.opts.AgentTLS
	if t == nil {
		http.Error(w, "this server has no agent TLS (wwboot.conf: agent tls: false): the agent uses plain HTTP", http.StatusNotFound)
		return
	}
	hw, err := ParseMAC(r.PathValue("mac"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.hwaddr = hw.String()
	_, node, err := h.lookup(r.Context(), hw)
	switch {
	case errors.Is(err, nodedb.ErrNotFound) || (err == nil && node == nil):
		h.metrics.unknown.Inc()
		w.hwaddr = ""
		http.Error(w, fmt.Sprintf("no node has hardware address %s; add it with: wwboot node add NAME --hwaddr %s", hw, hw), http.StatusNotFound)
		return
	case err != nil:
		h.log.Error("inventory lookup failed", "hwaddr", hw, "err", err)
		http.Error(w, "inventory unavailable", http.StatusServiceUnavailable)
		return
	}
	w.node = node.ID
	if reason, msg := h.plainAllowed(r, node); reason != "" {
		h.refuse(w, r, node, StageEnroll, reason, msg)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxCSR+1))
	if err != nil {
		http.Error(w, "enroll: "+err.Error(), http.StatusBadRequest)
		return
	}
	csr, err := ParseCSR(body)
	if err != nil {
		h.metrics.refused.WithLabelValues(RefusedCSR).Inc()
		http.Error(w, "enroll: "+err.Error(), http.StatusBadRequest)
		return
	}
	cert, err := t.enroll(node.ID, csr, r.RemoteAddr, h.now())
	var dup *errEnrolled
	if errors.As(err, &dup) {
		h.metrics.refused.WithLabelValues(RefusedEnrolled).Inc()
		h.log.Warn("refused a second enrollment in one boot", "node", node.ID, "client", r.RemoteAddr, "err", err)
		if h.opts.Events != nil {
			h.opts.Events.Publish(events.Event{Type: events.TypeStage, Time: h.now(), Node: node.ID, Hwaddr: w.hwaddr,
				Stage: "enroll_refused", Source: "server", Reason: err.Error()})
		}
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	if err != nil {
		h.log.Error("enrollment", "node", node.ID, "err", err)
		http.Error(w, "enroll: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h.log.Info("node enrolled", "node", node.ID, "client", r.RemoteAddr, "serial", cert.SerialNumber.Text(16))
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	out = append(out, t.CA.pem...)
	w.Header().Set("Content-Type", enrollMediaType)
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(out)
}
