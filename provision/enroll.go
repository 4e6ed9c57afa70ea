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
	"io/fs"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
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

	mu       sync.Mutex
	nodes    map[string]*nodeCert
	refusals map[string]*refusalNote // per node, of the inventory only
}

// EnrollWarnEvery is how often at most a refused enrollment of one node is
// logged as a warning; the line counts the refusals since the last one.
const EnrollWarnEvery = time.Minute

// refusalNote is the rate limit of one node's refused enrollments' log.
type refusalNote struct {
	last  time.Time // when the last warning was logged
	count int       // refusals since then, not logged
}

// noteRefusal counts a refused enrollment of node at now and reports
// whether to log it (at most once per EnrollWarnEvery per node), with the
// number of refusals the line stands for (this one and those not logged
// since the last line).
func (t *AgentTLS) noteRefusal(node string, now time.Time) (int, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.refusals == nil {
		t.refusals = map[string]*refusalNote{}
	}
	n := t.refusals[node]
	if n == nil {
		n = &refusalNote{}
		t.refusals[node] = n
	}
	n.count++
	if !n.last.IsZero() && now.Sub(n.last) < EnrollWarnEvery {
		return 0, false
	}
	c := n.count
	n.last, n.count = now, 0
	return c, true
}

// nodeCert is what the server keeps of one node's enrollment.
type nodeCert struct {
	mu     sync.Mutex
	Serial string    `json:"serial"`   // hex serial of the current certificate
	At     time.Time `json:"enrolled"` // when it enrolled
	From   string    `json:"from"`     // from which client address
	// Hwaddr is the MAC the node enrolled for (POST /agent/enroll/{mac}):
	// the certificate counts only while the node of that name still has
	// it. Empty in records written before it existed (then not checked).
	Hwaddr string `json:"hwaddr,omitempty"`
	// Booted: the node asked for a boot-chain file since it enrolled, so
	// it may enroll again.
	Booted bool `json:"booted"`

	// file is the record's file as this server last wrote or read it; nil
	// while an enrollment is being written. A record whose file has gone
	// was revoked (RevokeEnrollments, by another process too).
	file os.FileInfo
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
		rec, err := readRecord(filepath.Join(t.dir, e.Name()))
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

// readRecord reads one node's record file.
func readRecord(path string) (*nodeCert, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return nil, err
	}
	rec := &nodeCert{file: fi}
	if err := json.Unmarshal(data, rec); err != nil {
		return nil, err
	}
	if _, ok := new(big.Int).SetString(rec.Serial, 16); !ok {
		return nil, fmt.Errorf("serial %q is not hexadecimal", rec.Serial)
	}
	return rec, nil
}

// recordPath is the file of node's record.
func recordPath(dir, node string) string {
	return filepath.Join(dir, url.PathEscape(node)+nodeRecordSuffix)
}

// RevokeEnrollments drops the enrollment records of nodes from the CA
// directory tlsDir (wwboot: ROOT/tls; the records are nodes/NAME.json):
// every certificate the CA issued to those nodes then gets 401 from a
// running server, which checks the record's file on every TLS request, and
// each node may enroll again (its agent does on its next request). It
// returns the nodes that had a record; a node without one is no error. It
// needs no CA key, so it works while the server runs, from another
// process.
func RevokeEnrollments(tlsDir string, nodes ...string) (revoked []string, err error) {
	dir := filepath.Join(tlsDir, nodeCertsDir)
	for _, n := range nodes {
		switch err := os.Remove(recordPath(dir, n)); {
		case err == nil:
			revoked = append(revoked, n)
		case errors.Is(err, fs.ErrNotExist):
		default:
			return revoked, fmt.Errorf("revoking node %s's certificate: %w", n, err)
		}
	}
	if len(revoked) > 0 {
		if err := syncDirOf(recordPath(dir, revoked[0])); err != nil {
			return revoked, fmt.Errorf("revoking certificates: %w", err)
		}
	}
	return revoked, nil
}

// Revoke drops the enrollment records of nodes (RevokeEnrollments), here
// and on disk; see there.
func (t *AgentTLS) Revoke(nodes ...string) ([]string, error) {
	revoked, err := RevokeEnrollments(filepath.Dir(t.dir), nodes...)
	t.mu.Lock()
	for _, n := range revoked {
		delete(t.nodes, n)
	}
	t.mu.Unlock()
	for _, n := range revoked {
		t.log.Warn("agent TLS: revoked a node's certificate; its agent enrolls again", "node", n)
	}
	return revoked, err
}

// Prune revokes the records of every node keep rejects (on disk too):
// nodes that left the inventory, so that a node added later under the same
// name does not inherit the old one's certificate. The handler calls it
// with each new inventory snapshot it sees. It returns the nodes revoked.
func (t *AgentTLS) Prune(keep func(node string) bool) ([]string, error) {
	var drop []string
	ents, err := os.ReadDir(t.dir)
	if err != nil {
		return nil, fmt.Errorf("agent TLS: %w", err)
	}
	for _, e := range ents {
		esc, ok := strings.CutSuffix(e.Name(), nodeRecordSuffix)
		if !ok {
			continue
		}
		if name, err := url.PathUnescape(esc); err == nil && !keep(name) {
			drop = append(drop, name)
		}
	}
	t.mu.Lock()
	for name := range t.nodes {
		if !keep(name) && !slices.Contains(drop, name) {
			delete(t.nodes, name) // in memory only: nothing on disk
		}
	}
	for name := range t.refusals {
		if !keep(name) {
			delete(t.refusals, name)
		}
	}
	t.mu.Unlock()
	if len(drop) == 0 {
		return nil, nil
	}
	return t.Revoke(drop...)
}

// current returns node's record as it stands on disk, nil when there is
// none: a record whose file has gone was revoked (by RevokeEnrollments,
// maybe from another process) and is dropped; one whose file changed is
// read again. It costs a stat of the record's file, so that a revocation
// takes effect at the next request, not at the next restart.
func (t *AgentTLS) current(node string) *nodeCert {
	t.mu.Lock()
	rec := t.nodes[node]
	t.mu.Unlock()
	path := recordPath(t.dir, node)
	fi, err := os.Stat(path)
	if rec != nil {
		rec.mu.Lock() // waits for an enrollment under way
		known := rec.file
		rec.mu.Unlock()
		if known == nil {
			return rec // never written (a failed enrollment): nothing to trust
		}
		if err == nil && os.SameFile(known, fi) && known.ModTime().Equal(fi.ModTime()) && known.Size() == fi.Size() {
			return rec
		}
	}
	var fresh *nodeCert
	if err == nil {
		fresh, err = readRecord(path)
		if err != nil {
			t.log.Warn("agent TLS: a node's enrollment record cannot be read; the node enrolls again", "file", path, "err", err)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.nodes[node] != rec {
		return t.nodes[node] // changed meanwhile: take the newer one
	}
	if fresh == nil {
		delete(t.nodes, node)
		return nil
	}
	t.nodes[node] = fresh
	return fresh
}

// record returns node's record in memory, created empty when missing and
// create is set.
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
	path := recordPath(t.dir, node)
	if err := writeFileAtomic(path, append(data, '\n'), 0o600); err != nil {
		return err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	rec.file = fi
	return nil
}

// bootSeen notes that node asked for a boot-chain file: it may enroll
// again. It writes the node's record only when that changes it (once a
// boot).
func (t *AgentTLS) bootSeen(node string) {
	t.mu.Lock()
	rec := t.nodes[node]
	t.mu.Unlock()
	if rec == nil {
		return // never enrolled: may enroll anyway
	}
	rec.mu.Lock()
	booted := rec.Booted
	rec.mu.Unlock()
	if booted {
		return // the common case: no I/O
	}
	if rec = t.current(node); rec == nil {
		return // revoked meanwhile: do not write it back
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.Booted || rec.file == nil {
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
	rec := t.current(node)
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
		"or the agent lost /run/wwboot; reboot the node (or: wwboot node revoke %s) to enroll again", e.node, e.at.UTC().Format(time.RFC3339), e.from, e.node)
}

// enroll signs csr for n, which asked for hwaddr, unless n enrolled in
// this boot. A record for a MAC n no longer has is of an earlier node of
// that name and does not count.
func (t *AgentTLS) enroll(n *nodedb.Node, hwaddr string, csr *x509.CertificateRequest, from string, now time.Time) (*x509.Certificate, error) {
	node := n.ID
	t.current(node) // a revoked record must not block the enrollment
	rec := t.record(node, true)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.Serial != "" && !rec.Booted && !staleHW(n, rec.Hwaddr) {
		return nil, &errEnrolled{node: node, from: rec.From, at: rec.At}
	}
	cert, err := t.CA.issueNode(node, csr.PublicKey, now)
	if err != nil {
		return nil, err
	}
	next := nodeCert{Serial: cert.SerialNumber.Text(16), At: now, From: from, Hwaddr: hwaddr}
	if err := t.save(node, &next); err != nil {
		return nil, fmt.Errorf("saving the enrollment: %w", err)
	}
	rec.Serial, rec.At, rec.From, rec.Hwaddr, rec.Booted, rec.file = next.Serial, next.At, next.From, next.Hwaddr, false, next.file
	return cert, nil
}

// certAllowed checks a request that came over TLS: its client certificate
// (verified against the CA by the TLS handshake) must be node's current one
// (node is of the current inventory snapshot), and the node must still
// have the MAC it enrolled for: a node deleted and added again with other
// hardware does not inherit the old one's certificate.
func (t *AgentTLS) certAllowed(cs *tls.ConnectionState, node *nodedb.Node) (reason, msg string) {
	if len(cs.VerifiedChains) == 0 || len(cs.PeerCertificates) == 0 {
		return RefusedCert, "no client certificate: the node agent enrolls first (POST /agent/enroll/{mac} over plain HTTP)"
	}
	c := cs.PeerCertificates[0]
	if c.Subject.CommonName != node.ID {
		return RefusedCert, fmt.Sprintf("this certificate is node %q's, not node %s's", c.Subject.CommonName, node.ID)
	}
	cur, hw := "", ""
	if rec := t.current(node.ID); rec != nil {
		rec.mu.Lock()
		cur, hw = rec.Serial, rec.Hwaddr
		rec.mu.Unlock()
	}
	if cur == "" || cur != c.SerialNumber.Text(16) {
		return RefusedCert, fmt.Sprintf("node %s: this certificate is not the node's current one (from a previous boot, revoked, or another "+
			"enrollment replaced it): the agent enrolls again", node.ID)
	}
	if staleHW(node, hw) {
		return RefusedCert, fmt.Sprintf("node %s: this certificate was issued for hardware address %s, which the node no longer has "+
			"(deleted and added again, or its MAC changed): the agent enrolls again", node.ID, hw)
	}
	return "", ""
}

// staleHW reports whether a record's MAC hw (empty in old records: not
// checked) no longer belongs to node: the record is of an earlier node of
// that name.
func staleHW(node *nodedb.Node, hw string) bool {
	if hw == "" {
		return false
	}
	mac, err := ParseMAC(hw)
	return err != nil || netDevByHW(node, mac) == nil
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
	_, node, ok := h.nodeOf(w, r, hw, nil)
	if !ok {
		return
	}
	if reason, msg := h.plainAllowed(r, node, whatEnroll); reason != "" {
		h.metrics.refused.WithLabelValues(reason).Inc()
		// Unlike iPXE's runtime overlay request, a refused enrollment is
		// not a normal path: someone not the node, or an agent not root.
		if n, ok := t.noteRefusal(node.ID, h.now()); ok {
			h.log.Warn("refused an enrollment: not from the node's address or not from a privileged port (at most one such line a minute per node)",
				"node", node.ID, "client", r.RemoteAddr, "reason", reason, "count", n)
		}
		http.Error(w, msg, refusalCode(reason))
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
	cert, err := t.enroll(node, w.hwaddr, csr, r.RemoteAddr, h.now())
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
