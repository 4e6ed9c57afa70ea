package provision

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wwboot/wwboot/events"
	"github.com/wwboot/wwboot/image"
	"github.com/wwboot/wwboot/ipxe"
	"github.com/wwboot/wwboot/nodedb"
	"github.com/wwboot/wwboot/overlay"
)

// Options configure a Handler. Inventory is required; a nil Images,
// Overlays or BootFS makes the routes that need it answer 404.
type Options struct {
	// Inventory finds the node a MAC belongs to.
	Inventory Inventory
	// Images finds a node's image and kernel (usually an *image.Store).
	Images Images
	// Overlays renders a node's overlay archives (usually an
	// *overlay.Renderer).
	Overlays Overlays
	// Scripts renders iPXE scripts (usually an *ipxe.Set); nil means
	// package ipxe's built-in templates.
	Scripts Scripts
	// BootFS holds the iPXE binaries served under /boot/ to UEFI HTTP Boot
	// clients (usually the TFTP tree, a *tftp.BootFS). It must keep
	// symbolic links inside itself (os.Root.FS does, os.DirFS does not).
	BootFS fs.FS

	// BaseURL is the server's URL as nodes reach it, e.g.
	// http://10.0.0.1:9873, written into iPXE scripts. Empty means the
	// address and port each request arrived on, which is right unless the
	// server sits behind a proxy or NAT.
	BaseURL string

	// InsecurePorts serves the runtime overlay to unprivileged source
	// ports (1024 and above). Off by default: only root on the node can
	// bind a port below 1024 (Warewulf's "secure" mode).
	InsecurePorts bool
	// AnySourceAddr serves the runtime overlay to any source address.
	// Off by default: the request must come from one of the node's
	// configured addresses.
	AnySourceAddr bool

	// Admin says who may read /status and /metrics; the zero value allows
	// loopback only.
	Admin Admin
	// SystemSecrets serves a system overlay that carries private files
	// (see ErrSystemSecret) though anyone may fetch it, as Warewulf does
	// with ssh.host_keys in its system overlay. Off by default: such an
	// overlay is refused (500) with an error naming the files.
	SystemSecrets bool

	// RetryMax and RetryDelay (seconds) tune the default script's retry
	// loop; 0 means package ipxe's defaults (5 tries, 5 s apart).
	RetryMax, RetryDelay int
	// UnknownWait is how long the unknown-node script waits before it
	// asks again; 0 means 30 s.
	UnknownWait time.Duration

	// Registry receives the handler's metrics and is what /metrics serves;
	// nil means a private registry. Give the same registry to the DHCP and
	// TFTP metrics so one scrape sees them all.
	Registry *prometheus.Registry
	// Logger receives refusals and failures (Warn, Error), finished
	// transfers (Info) and every request (Debug). Nil discards.
	Logger *slog.Logger
	// Now is the clock for the status; nil means time.Now.
	Now func() time.Time

	// WatchInterval is how often, while node agents wait on their runtime
	// overlay (long-poll), the handler looks for a new inventory snapshot;
	// 0 means DefaultWatchInterval. A change reaches the waiting agents
	// within about this, plus the inventory's own check interval.
	WatchInterval time.Duration
	// RecheckInterval is how often, while agents wait, each one's runtime
	// overlay is rendered again though nothing said it changed, to catch
	// changes of server files templates read (a cache hit per agent when
	// nothing changed); 0 means DefaultRecheckInterval, negative never.
	RecheckInterval time.Duration
	// HeartbeatTimeout is how long after its last heartbeat a node counts
	// as down; 0 means DefaultHeartbeatTimeout.
	HeartbeatTimeout time.Duration
	// BootTimeout is how long after its last boot request a node that has
	// sent no heartbeat since counts as booting; 0 means
	// DefaultBootTimeout.
	BootTimeout time.Duration
	// Events, when set, receives node state changes and boot stages (see
	// events.go; Handler.WatchStates publishes the changes time makes).
	Events events.Publisher

	// AgentTLS, when set, turns on the node agents' TLS channel (see
	// enroll.go): POST /agent/enroll/{mac} signs a node's certificate once
	// per boot, the runtime overlay goes only over TLS (ServerConfig's
	// AgentTLSAddr), and plain reports are taken only until the node
	// enrolled. Nil: everything over plain HTTP, as before.
	AgentTLS *AgentTLS
}

// maxCachedScripts bounds the script cache of an Inventory that is not a
// Snapshotter (its nodes may be new values on every lookup).
const maxCachedScripts = 1 << 16

// Handler is the provisioning HTTP service; see the package documentation
// for its routes. Create it with NewHandler. It is safe for concurrent use.
type Handler struct {
	opts     Options
	log      *slog.Logger
	now      func() time.Time
	mux      *http.ServeMux
	scripts  Scripts
	metrics  *metrics
	registry *prometheus.Registry
	status   *tracker
	changes  *changes

	baseHost, basePort string // from Options.BaseURL

	cache atomic.Pointer[scriptCache]

	bases  sync.Map // netip.AddrPort (local address) -> *baseURL
	nbases atomic.Int64

	pruned atomic.Pointer[nodedb.DB] // the last snapshot AgentTLS.Prune saw
}

// baseURL is the server's address as a node reached it.
type baseURL struct{ host, port, base string }

// scriptCache holds the completed ipxe.Data of the nodes of one inventory
// snapshot (db nil: of an Inventory without snapshots).
type scriptCache struct {
	db *nodedb.DB
	m  sync.Map // cacheKey -> *ipxe.Data
	n  atomic.Int64
}

type cacheKey struct {
	node *nodedb.Node
	mac  string
	base string
	img  string // the image's sha256: a rebuilt image changes the memory check
}

// NewHandler returns the provisioning handler for opts.
func NewHandler(opts Options) (*Handler, error) {
	if opts.Inventory == nil {
		return nil, errors.New("provision: Options.Inventory is required")
	}
	h := &Handler{opts: opts, log: opts.Logger, now: opts.Now, scripts: opts.Scripts, registry: opts.Registry}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.now == nil {
		h.now = time.Now
	}
	if h.scripts == nil {
		set, err := ipxe.New(ipxe.Options{Logger: opts.Logger})
		if err != nil {
			return nil, fmt.Errorf("provision: built-in iPXE templates: %w", err)
		}
		h.scripts = set
	}
	if h.registry == nil {
		h.registry = prometheus.NewRegistry()
	}
	m, err := newMetrics(h.registry)
	if err != nil {
		return nil, fmt.Errorf("provision: registering metrics: %w", err)
	}
	h.metrics = m
	if opts.BaseURL != "" {
		u, err := url.Parse(opts.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return nil, fmt.Errorf("provision: Options.BaseURL %q: write it as http://HOST:PORT", opts.BaseURL)
		}
		h.opts.BaseURL = strings.TrimSuffix(opts.BaseURL, "/")
		h.baseHost, h.basePort = u.Hostname(), u.Port()
		if h.basePort == "" {
			h.basePort = map[string]string{"http": "80", "https": "443"}[u.Scheme]
		}
	}
	h.status = newTracker(h.now(), opts.HeartbeatTimeout, opts.BootTimeout)
	h.status.events = opts.Events
	h.changes = newChanges(h, opts.Inventory, opts.WatchInterval, opts.RecheckInterval)
	h.cache.Store(&scriptCache{})
	h.routes()
	return h, nil
}

func (h *Handler) routes() {
	mux := http.NewServeMux()
	node := func(stage string) http.Handler {
		return h.instrument(stage, func(w *recorder, r *http.Request) {
			h.serveNode(w, r, stage, r.PathValue("mac"))
		})
	}
	// wwboot's paths (package ipxe's default script uses them).
	mux.Handle("GET /ipxe/{mac}", node(StageIPXE))
	mux.Handle("GET /kernel/{mac}", node(StageKernel))
	mux.Handle("GET /image/{mac}", node(StageImage))
	mux.Handle("GET /overlay/system/{mac}", node(StageSystem))
	mux.Handle("GET /overlay/runtime/{mac}", node(StageRuntime))
	// Warewulf's paths.
	mux.Handle("GET /container/{mac}", node(StageImage))
	mux.Handle("GET /system/{mac}", node(StageSystem))
	mux.Handle("GET /runtime/{mac}", node(StageRuntime))
	mux.Handle("GET /overlay-system/{mac}", node(StageSystem))
	mux.Handle("GET /overlay-runtime/{mac}", node(StageRuntime))
	mux.Handle("GET /provision/{mac}", h.instrument("provision", func(w *recorder, r *http.Request) {
		stage, ok := warewulfStage(r.URL.Query().Get("stage"))
		if !ok {
			w.stage = "other"
			http.Error(w, fmt.Sprintf("stage %q: wwboot serves stage=ipxe, kernel, image (container), system and runtime",
				truncate(r.URL.Query().Get("stage"), 32)), http.StatusNotFound)
			return
		}
		w.stage = stage
		h.serveNode(w, r, stage, r.PathValue("mac"))
	}))
	mux.Handle("POST /agent/{mac}", h.instrument(StageAgent, h.serveReport))
	mux.Handle("POST /agent/enroll/{mac}", h.instrument(StageEnroll, h.serveEnroll))
	mux.Handle("GET /boot/{file...}", h.instrument(StageBoot, h.serveBoot))
	mux.Handle("GET /status", h.adminOnly(h.instrument("status", h.serveStatus)))
	mux.Handle("GET /healthz", h.instrument("healthz", func(w *recorder, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	}))
	mux.Handle("GET /metrics", h.adminOnly(promhttp.HandlerFor(h.registry, promhttp.HandlerOpts{Registry: h.registry})))
	mux.Handle("GET /", h.instrument("other", func(w *recorder, r *http.Request) {
		http.NotFound(w, r)
	}))
	h.mux = mux
}

// warewulfStage maps Warewulf's ?stage= values to wwboot's stages.
func warewulfStage(s string) (string, bool) {
	switch s {
	case "ipxe", "":
		return StageIPXE, true
	case "kernel":
		return StageKernel, true
	case "image", "container":
		return StageImage, true
	case "system":
		return StageSystem, true
	case "runtime":
		return StageRuntime, true
	}
	return "", false
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mux.ServeHTTP(w, r)
}

// Status returns what the handler has seen of every node, each node's state
// now, and the inventory's nodes it has not seen.
func (h *Handler) Status() Status {
	st := h.status.snapshot(h.now())
	if s, ok := h.opts.Inventory.(Snapshotter); ok {
		if db, err := s.Snapshot(context.Background()); err == nil {
			seen := make(map[string]bool, len(st.Nodes))
			for _, n := range st.Nodes {
				seen[n.Node] = true
			}
			for _, name := range db.Names() {
				if !seen[name] {
					st.Unseen = append(st.Unseen, name)
				}
			}
		}
	}
	return st
}

// Reload re-reads the iPXE templates (when Scripts implements Reloader)
// and drops the cached scripts. On error the previous templates stay.
func (h *Handler) Reload() error {
	var err error
	if rl, ok := h.scripts.(Reloader); ok {
		err = rl.Reload()
	}
	h.cache.Store(&scriptCache{})
	h.Notify()
	return err
}

// recorder wraps a ResponseWriter to learn the status code and the body
// bytes sent, and carries what the status needs about the request. It keeps
// io.ReaderFrom, so http.ServeContent over an *os.File still reaches sendfile.
type recorder struct {
	http.ResponseWriter
	code   int
	n      int64
	stage  string
	node   string // node name, "" if unknown
	hwaddr string // "" if the request named no valid MAC
	// detached: the connection was taken over by a long-poll waiter,
	// which records the request when it answers.
	detached bool
}

func (w *recorder) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

// ReadFrom lets io.Copy use the connection's ReadFrom (sendfile, splice).
func (w *recorder) ReadFrom(src io.Reader) (int64, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(writerOnly{w.ResponseWriter}, src)
	}
	w.n += n
	return n, err
}

// Flush implements http.Flusher when the underlying writer does.
func (w *recorder) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap gives http.ResponseController the underlying writer.
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type writerOnly struct{ io.Writer }

// instrument wraps a route: metrics, status and the debug log line.
func (h *Handler) instrument(stage string, fn func(w *recorder, r *http.Request)) http.Handler {
	// The common case's counters, resolved once rather than per request.
	ok := h.metrics.requests.WithLabelValues(stage, "200")
	sent := h.metrics.sent.WithLabelValues(stage)
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		h.metrics.active.Inc()
		w := &recorder{ResponseWriter: rw, stage: stage}
		start := h.now()
		defer func() {
			h.metrics.active.Dec()
			if w.detached {
				return // a long-poll that answers later, on its own
			}
			code := w.code
			if code == 0 {
				code = http.StatusOK
			}
			if code == http.StatusOK && w.stage == stage {
				ok.Inc()
			} else {
				h.metrics.requests.WithLabelValues(w.stage, codeLabel(code)).Inc()
			}
			if w.n > 0 {
				if w.stage == stage {
					sent.Add(float64(w.n))
				} else {
					h.metrics.sent.WithLabelValues(w.stage).Add(float64(w.n))
				}
			}
			if w.hwaddr != "" {
				h.status.record(w.node, w.hwaddr, w.stage, code, w.n, r.RemoteAddr, h.now())
			}
			if h.log.Enabled(r.Context(), slog.LevelDebug) {
				h.log.Debug("http", "method", r.Method, "path", r.URL.Path, "client", r.RemoteAddr, "node", w.node,
					"stage", w.stage, "code", code, "bytes", w.n, "duration", h.now().Sub(start))
			}
		}()
		fn(w, r)
	})
}

// lookup finds the node of hw, in a snapshot when the inventory has them.
func (h *Handler) lookup(ctx context.Context, hw net.HardwareAddr) (*nodedb.DB, *nodedb.Node, error) {
	if s, ok := h.opts.Inventory.(Snapshotter); ok {
		db, err := s.Snapshot(ctx)
		if err != nil {
			return nil, nil, err
		}
		h.pruneEnrollments(db)
		n, err := db.NodeByHW(ctx, hw)
		return db, n, err
	}
	n, err := h.opts.Inventory.NodeByHW(ctx, hw)
	return nil, n, err
}

// pruneEnrollments drops, once per new inventory snapshot, the enrollment
// records of nodes that are not in it (deleted, renamed, or gone from a
// hand edit of the inventory), so that no certificate outlives its node.
func (h *Handler) pruneEnrollments(db *nodedb.DB) {
	t := h.opts.AgentTLS
	if t == nil || db == nil {
		return
	}
	last := h.pruned.Load()
	if last == db || !h.pruned.CompareAndSwap(last, db) {
		return
	}
	// A request that took its snapshot before a newer one must not prune
	// with it (it would drop a node added since): only the current one.
	if s, ok := h.opts.Inventory.(Snapshotter); !ok {
		return
	} else if cur, err := s.Snapshot(context.Background()); err != nil || cur != db {
		return
	}
	revoked, err := t.Prune(func(name string) bool { _, err := db.Node(name); return err == nil })
	if err != nil {
		h.log.Error("agent TLS: dropping the records of nodes gone from the inventory", "err", err)
	}
	if len(revoked) > 0 {
		h.log.Info("agent TLS: nodes left the inventory; their certificates are revoked", "nodes", revoked)
	}
}

// WatchInventory looks for a new inventory snapshot every interval (0:
// Options.WatchInterval, or DefaultWatchInterval) until ctx ends, and drops
// the enrollment records of nodes that are no longer in it (see
// pruneEnrollments), so that a node removed by a hand edit of nodes.conf
// loses its certificate within about interval plus the inventory's own
// check interval (nodedb.CheckInterval, a second), though no request
// arrives. It returns at once without Options.AgentTLS or an Inventory
// that is a Snapshotter. Server.Serve runs it.
func (h *Handler) WatchInventory(ctx context.Context, interval time.Duration) {
	s, ok := h.opts.Inventory.(Snapshotter)
	if h.opts.AgentTLS == nil || !ok {
		return
	}
	if interval <= 0 {
		interval = h.opts.WatchInterval
	}
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if db, err := s.Snapshot(ctx); err == nil {
			h.pruneEnrollments(db)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// serveNode answers a node's request for stage.
// nodeOf resolves hw to its node for r and records it on w, or answers r
// itself and reports false: 503 when the inventory is unavailable, and for
// a MAC no node has, onUnknown, or when it is nil a 404 that keeps the MAC
// out of the status.
func (h *Handler) nodeOf(w *recorder, r *http.Request, hw net.HardwareAddr, onUnknown func()) (*nodedb.DB, *nodedb.Node, bool) {
	db, node, err := h.lookup(r.Context(), hw)
	switch {
	case errors.Is(err, nodedb.ErrNotFound) || (err == nil && node == nil):
		h.metrics.unknown.Inc()
		if onUnknown != nil {
			onUnknown()
			return nil, nil, false
		}
		w.hwaddr = "" // an unknown MAC is not worth a status entry
		notFound(w, hw)
		return nil, nil, false
	case err != nil:
		h.log.Error("inventory lookup failed", "hwaddr", hw, "err", err)
		http.Error(w, "inventory unavailable", http.StatusServiceUnavailable)
		return nil, nil, false
	}
	w.node = node.ID
	return db, node, true
}

// notFound answers a request for a MAC no node has.
func notFound(w http.ResponseWriter, hw net.HardwareAddr) {
	http.Error(w, fmt.Sprintf("no node has hardware address %s; add it with: wwboot node add NAME --hwaddr %s", hw, hw), http.StatusNotFound)
}

func (h *Handler) serveNode(w *recorder, r *http.Request, stage, macStr string) {
	hw, err := ParseMAC(macStr)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.hwaddr = hw.String()
	q := r.URL.Query()
	if q.Has("overlay") {
		http.Error(w, "overlay=: wwboot serves a node's whole system or runtime overlay, not chosen overlays", http.StatusBadRequest)
		return
	}
	db, node, ok := h.nodeOf(w, r, hw, func() {
		if stage == StageIPXE {
			h.serveUnknown(w, r, hw)
			return
		}
		notFound(w, hw) // the status keeps the unknown MAC's requests
	})
	if !ok {
		return
	}

	if stage != StageRuntime && node.AssetKey != "" &&
		subtle.ConstantTimeCompare([]byte(q.Get("assetkey")), []byte(node.AssetKey)) != 1 {
		// Not the node's request (the runtime overlay checks the key in
		// nodeAllowed): the node's status, its events and its enrollment
		// stay as they are.
		w.hwaddr = ""
		if stage == StageIPXE && !q.Has("assetkey") {
			h.serveAssetChain(w, r, hw)
			return
		}
		h.refuse(w, r, node, stage, RefusedAssetKey, "wrong or missing asset key (?assetkey=)")
		return
	}
	compress := q.Get("compress")
	if compress != "" && compress != "gz" {
		http.Error(w, fmt.Sprintf("compress=%q: wwboot serves compress=gz or nothing", truncate(compress, 16)), http.StatusBadRequest)
		return
	}

	if t := h.opts.AgentTLS; t != nil && (stage == StageIPXE || stage == StageKernel || stage == StageImage) {
		t.bootSeen(node.ID) // a new boot: the node may enroll again
	}
	switch stage {
	case StageIPXE:
		h.serveScript(w, r, db, node, hw)
	case StageKernel:
		if compress != "" {
			http.Error(w, "the kernel is not served compressed (compress=gz applies to images and overlays)", http.StatusNotFound)
			return
		}
		h.serveImageFile(w, r, node, true, false)
	case StageImage:
		h.serveImageFile(w, r, node, false, compress == "gz")
	case StageSystem:
		h.serveOverlay(w, r, db, node, overlay.System)
	case StageRuntime:
		if reason, msg := h.nodeAllowed(r, node); reason != "" {
			h.refuse(w, r, node, stage, reason, msg)
			return
		}
		h.serveRuntime(w, r, db, node, hw)
	}
}

// nodeAllowed checks what only the node itself may ask for: its runtime
// overlay. With the agent TLS channel on (Options.AgentTLS),
// the runtime overlay goes only over TLS, and a request over TLS must
// carry the node's current certificate; otherwise plainAllowed.
func (h *Handler) nodeAllowed(r *http.Request, node *nodedb.Node) (reason, msg string) {
	if t := h.opts.AgentTLS; t != nil {
		if r.TLS != nil {
			return t.certAllowed(r.TLS, node)
		}
		return RefusedTLSOnly, fmt.Sprintf("the runtime overlay goes only over TLS (port %d), to the node agent "+
			"(wwboot-agent) once it enrolled; iPXE and plain HTTP do not get it", t.Port)
	}
	return h.plainAllowed(r, node, whatRuntime)
}

// What plainAllowed's messages say is refused.
const (
	whatRuntime = "the runtime overlay goes"
	whatReport  = "a node's report is taken"
	whatEnroll  = "an enrollment (POST /agent/enroll/{mac}) is taken"
)

// plainAllowed checks a node's request over plain HTTP: the asset key,
// then runtimeAllowed. what names the request in the refusal message
// (whatRuntime, whatReport, whatEnroll). Every other check of a node's
// request comes after these, so that a refusal tells a caller who is not
// the node nothing about the node's state.
func (h *Handler) plainAllowed(r *http.Request, node *nodedb.Node, what string) (reason, msg string) {
	if node.AssetKey != "" &&
		subtle.ConstantTimeCompare([]byte(r.URL.Query().Get("assetkey")), []byte(node.AssetKey)) != 1 {
		return RefusedAssetKey, "wrong or missing asset key (?assetkey=)"
	}
	return h.runtimeAllowed(r, node, what)
}

// runtimeAllowed checks that a request comes from its node: a privileged
// source port (unless InsecurePorts) and one of the node's addresses
// (unless AnySourceAddr).
func (h *Handler) runtimeAllowed(r *http.Request, node *nodedb.Node, what string) (reason, msg string) {
	ap := remoteAddr(r)
	if !h.opts.InsecurePorts && (!ap.IsValid() || ap.Port() >= 1024) {
		return RefusedPort, what + " only from a privileged source port (below 1024), which only root on the node can bind"
	}
	if !h.opts.AnySourceAddr {
		for _, a := range nodeAddrs(node) {
			if a == ap.Addr() {
				return "", ""
			}
		}
		return RefusedAddress, what + " only from the node's own address (its network devices' addresses in the inventory)"
	}
	return "", ""
}

func (h *Handler) refuse(w *recorder, r *http.Request, node *nodedb.Node, stage, reason, msg string) {
	h.metrics.refused.WithLabelValues(reason).Inc()
	level := slog.LevelWarn
	if reason == RefusedPort || reason == RefusedTLSOnly {
		// iPXE asks from an unprivileged port on every boot in secure mode
		// and the node's agent fetches the overlay after boot: the normal
		// path, not something for an administrator to act on.
		level = slog.LevelInfo
	}
	h.log.Log(r.Context(), level, "refused", "node", node.ID, "stage", stage, "client", r.RemoteAddr, "reason", reason)
	http.Error(w, msg, refusalCode(reason))
}

// refusalCode is the status of a refusal: 401 for a certificate that is
// not the node's, 403 otherwise.
func refusalCode(reason string) int {
	if reason == RefusedCert {
		return http.StatusUnauthorized
	}
	return http.StatusForbidden
}

// base returns the server's host, port and base URL for request r.
func (h *Handler) base(r *http.Request) (host, port, base string) {
	if h.opts.BaseURL != "" {
		return h.baseHost, h.basePort, h.opts.BaseURL
	}
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr); ok {
		ap := la.AddrPort()
		if v, ok := h.bases.Load(ap); ok {
			b := v.(*baseURL)
			return b.host, b.port, b.base
		}
		if host, port, ok := hostPort(la); ok {
			b := &baseURL{host, port, "http://" + joinHostPort(host, port)}
			if h.nbases.Add(1) < 1024 { // a server has few addresses
				h.bases.Store(ap, b)
			}
			return b.host, b.port, b.base
		}
	}
	// No local address (a test calling ServeHTTP directly): the Host header.
	host, port, err := net.SplitHostPort(r.Host)
	if err != nil {
		host, port = r.Host, "80"
	}
	return host, port, "http://" + joinHostPort(host, port)
}

// serveScript sends the node's iPXE script, rendered once per node, MAC,
// server address and inventory snapshot.
func (h *Handler) serveScript(w *recorder, r *http.Request, db *nodedb.DB, node *nodedb.Node, hw net.HardwareAddr) {
	host, port, base := h.base(r)
	c := h.cache.Load()
	if c.db != db {
		fresh := &scriptCache{db: db}
		if h.cache.CompareAndSwap(c, fresh) {
			c = fresh
		} else {
			c = h.cache.Load()
		}
	}
	var meta *image.Meta
	if h.opts.Images != nil && node.ImageName != "" {
		if m, err := h.opts.Images.Lookup(r.Context(), node.ImageName); err == nil {
			meta = &m
		}
	}
	key := cacheKey{node: node, mac: w.hwaddr, base: base}
	if meta != nil {
		key.img = meta.SHA256
	}
	var d *ipxe.Data
	if v, ok := c.m.Load(key); ok {
		d = v.(*ipxe.Data)
	} else {
		d = h.scriptData(node, hw, host, port, base, meta)
		if c.db == nil && c.n.Load() >= maxCachedScripts {
			h.cache.CompareAndSwap(c, &scriptCache{})
		}
		if v, loaded := c.m.LoadOrStore(key, d); loaded {
			d = v.(*ipxe.Data)
		} else {
			c.n.Add(1)
		}
	}
	script, err := h.scripts.Script(node.Ipxe, d)
	if err != nil {
		h.log.Error("iPXE script", "node", node.ID, "template", node.Ipxe, "err", err)
		http.Error(w, fmt.Sprintf("node %s: iPXE template %q: %v", node.ID, node.Ipxe, err), http.StatusInternalServerError)
		return
	}
	writeScript(w, script)
}

func writeScript(w http.ResponseWriter, script []byte) {
	hd := w.Header()
	hd["Content-Type"] = []string{"text/plain; charset=utf-8"}
	hd["Cache-Control"] = []string{"no-store"}
	hd["Content-Length"] = []string{strconv.Itoa(len(script))}
	_, _ = w.Write(script)
}

// scriptData fills the template data for node booting from hw; meta is
// the node's image (nil if unknown), for the memory check.
func (h *Handler) scriptData(node *nodedb.Node, hw net.HardwareAddr, host, port, base string, meta *image.Meta) *ipxe.Data {
	mac := hw.String()
	d := &ipxe.Data{
		Id:         node.ID,
		Cluster:    node.ClusterName,
		Hwaddr:     mac,
		Port:       port,
		Authority:  joinHostPort(host, port),
		BaseURL:    base,
		ImageName:  node.ImageName,
		Root:       node.Root,
		Ipxe:       node.Ipxe,
		Tags:       node.Tags,
		NetDevs:    map[string]*ipxe.NetDev{},
		RetryMax:   h.opts.RetryMax,
		RetryDelay: h.opts.RetryDelay,
	}
	if strings.IndexByte(host, ':') >= 0 {
		d.Ipaddr6 = host
	} else {
		d.Ipaddr = host
	}
	if node.Kernel != nil {
		d.KernelVersion = node.Kernel.Version
		d.KernelArgs = strings.Join(node.Kernel.Args, " ")
	}
	if meta != nil {
		d.MemNeed, d.MemDetail = ipxe.MemNeed(ipxe.Memory{Kernel: meta.KernelSize(), Image: meta.Size,
			Unpacked: meta.MemUnpacked(), KernelArgs: d.KernelArgs})
	}
	for name, nd := range node.NetDevs {
		if nd == nil {
			continue
		}
		d.NetDevs[name] = &ipxe.NetDev{
			Device: nd.Device, Hwaddr: nd.Hwaddr, Ipaddr: nd.Ipaddr, Ipaddr6: nd.Ipaddr6, Netmask: nd.Netmask,
			Gateway: nd.Gateway, Type: nd.Type, MTU: nd.MTU, Primary: name == node.Primary, Tags: nd.Tags,
		}
	}
	if nd := netDevByHW(node, hw); nd != nil {
		if p, err := nodedb.ParseIPv4(nd.Ipaddr); err == nil {
			d.NodeIpaddr = p.Addr().String()
		}
	}
	if node.AssetKey != "" {
		// iPXE expands ${asset} (the SMBIOS asset tag) in command arguments.
		q := "?assetkey=${asset}"
		d.KernelURL = base + "/kernel/" + mac + q
		d.ImageURL = base + "/image/" + mac + q
		d.SystemOverlayURL = base + "/overlay/system/" + mac + q
		d.RuntimeOverlayURL = base + "/overlay/runtime/" + mac + q
	}
	d.Complete()
	return d
}

// serveAssetChain answers a request for the iPXE script of a node that has
// an asset key when the request carries none (?assetkey= absent): a script
// that asks again with the machine's asset tag (iPXE's ${asset}, SMBIOS),
// and names nothing of the node. wwboot's DHCP hands iPXE
// /ipxe/${mac:hexhyp} with no key (dhcp.DefaultIPXEScriptURL); Warewulf's
// dhcpd template adds ?assetkey=${asset}&uuid=${uuid} and warewulfd
// refuses (401) an iPXE request without the right key. A wrong key is
// refused (403), so a machine whose tag does not match does not loop here.
func (h *Handler) serveAssetChain(w *recorder, r *http.Request, hw net.HardwareAddr) {
	_, _, base := h.base(r)
	script := "#!ipxe\n" +
		"chain --replace --autofree " + base + "/ipxe/" + hw.String() + "?assetkey=${asset} || goto refused\n" +
		":refused\n" +
		"echo wwboot: the server refused this machine's asset tag (SMBIOS): it must match the node's asset key (wwboot node set NAME --asset KEY)\n" +
		"sleep 30\n" +
		"reboot\n"
	writeScript(w, []byte(script))
}

// serveUnknown sends the unknown-node script, which asks again later.
func (h *Handler) serveUnknown(w *recorder, r *http.Request, hw net.HardwareAddr) {
	host, port, base := h.base(r)
	wait := h.opts.UnknownWait
	if wait <= 0 {
		wait = 30 * time.Second
	}
	d := &ipxe.Data{Hwaddr: hw.String(), Port: port, BaseURL: base, Authority: joinHostPort(host, port),
		WaitTime: fmt.Sprint(int((wait + time.Second - 1) / time.Second))}
	if strings.IndexByte(host, ':') >= 0 {
		d.Ipaddr6 = host
	} else {
		d.Ipaddr = host
	}
	d.Complete()
	var buf bytes.Buffer
	if err := h.scripts.Render(&buf, ipxe.UnknownTemplate, d); err != nil {
		h.log.Error("unknown-node iPXE script", "hwaddr", hw, "err", err)
		http.Error(w, "unknown-node script: "+err.Error(), http.StatusInternalServerError)
		return
	}
	writeScript(w, buf.Bytes())
}

// serveImageFile sends the node's kernel or image file.
func (h *Handler) serveImageFile(w *recorder, r *http.Request, node *nodedb.Node, kernel, wantGzip bool) {
	what := "image"
	if kernel {
		what = "kernel"
	}
	if node.ImageName == "" {
		http.Error(w, fmt.Sprintf("node %s has no image; set one with: wwboot node set %s --image NAME", node.ID, node.ID), http.StatusNotFound)
		return
	}
	if h.opts.Images == nil {
		http.Error(w, "this server serves no images", http.StatusNotFound)
		return
	}
	meta, err := h.opts.Images.Lookup(r.Context(), node.ImageName)
	if errors.Is(err, image.ErrNotFound) {
		http.Error(w, fmt.Sprintf("node %s: image %q does not exist; build it with wwboot image", node.ID, node.ImageName), http.StatusNotFound)
		return
	}
	if err != nil {
		h.log.Error("image lookup", "node", node.ID, "image", node.ImageName, "err", err)
		http.Error(w, "image store unavailable", http.StatusServiceUnavailable)
		return
	}
	path, sum := meta.Path, meta.SHA256
	if kernel {
		path, sum = meta.KernelPath, meta.KernelSHA256
		// Warewulf's rule: a prefix of the kernel's version, or its path.
		if node.Kernel != nil && node.Kernel.Version != "" && meta.KernelVersion != "" && !meta.KernelSelectedBy(node.Kernel.Version) {
			h.log.Warn("node asks for a kernel version its image does not have; serving the image's",
				"node", node.ID, "image", meta.Name, "wanted", node.Kernel.Version, "serving", meta.KernelVersion)
		}
	} else if wantGzip && meta.Compression != "" && meta.Compression != image.Gzip {
		http.Error(w, fmt.Sprintf("image %s is %s-compressed, not gzip; rebuild it with gzip or drop compress=gz", meta.Name, meta.Compression), http.StatusNotFound)
		return
	}
	if path == "" {
		http.Error(w, fmt.Sprintf("image %s has no %s", meta.Name, what), http.StatusNotFound)
		return
	}
	f, err := os.Open(path)
	if err != nil {
		h.log.Error("opening "+what, "node", node.ID, "image", meta.Name, "path", path, "err", err)
		http.Error(w, what+" file missing on the server", http.StatusInternalServerError)
		return
	}
	defer f.Close()
	mod := meta.BuiltAt
	if mod.IsZero() {
		if fi, err := f.Stat(); err == nil {
			mod = fi.ModTime()
		}
	}
	hd := w.Header()
	hd["Content-Type"] = []string{"application/octet-stream"}
	if sum != "" {
		hd["Etag"] = []string{`"` + sum + `"`}
	}
	http.ServeContent(w, r, "", mod, f)
	h.logTransfer(w, r, what)
}

// serveOverlay sends the node's overlay archive of kind.
func (h *Handler) serveOverlay(w *recorder, r *http.Request, db *nodedb.DB, node *nodedb.Node, kind overlay.Kind) {
	if h.opts.Overlays == nil {
		http.Error(w, "this server serves no overlays", http.StatusNotFound)
		return
	}
	a, err := h.opts.Overlays.Render(r.Context(), db, node, kind)
	if err != nil {
		h.log.Error("rendering overlay", "node", node.ID, "kind", kind, "err", err)
		code := http.StatusInternalServerError
		if errors.Is(err, overlay.ErrNotFound) {
			code = http.StatusNotFound
		}
		http.Error(w, fmt.Sprintf("node %s: %s overlay: %v", node.ID, kind, err), code)
		return
	}
	if kind == overlay.System && !h.opts.SystemSecrets {
		// A walk of the archive's records, no I/O: cheaper than a cache.
		if files := a.Private(); len(files) > 0 {
			err := systemSecretError(node.ID, files)
			h.log.Error("refused a system overlay with private files", "node", node.ID, "client", r.RemoteAddr, "err", err)
			h.metrics.refused.WithLabelValues(RefusedSystemSecret).Inc()
			// The node's console shows this; it names no secret.
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
	}
	hd := w.Header()
	hd["Content-Type"] = []string{"application/octet-stream"}
	hd["Etag"] = []string{a.ETag()}
	http.ServeContent(w, r, "", a.ModTime, a.NewReader())
	h.logTransfer(w, r, string(kind)+" overlay")
}

func (h *Handler) logTransfer(w *recorder, r *http.Request, what string) {
	if w.code == http.StatusOK || w.code == http.StatusPartialContent {
		h.log.Info("sent "+what, "node", w.node, "client", r.RemoteAddr, "code", w.code, "bytes", w.n)
	}
}

// serveBoot sends an iPXE binary to a UEFI HTTP Boot client.
func (h *Handler) serveBoot(w *recorder, r *http.Request) {
	name := r.PathValue("file")
	if h.opts.BootFS == nil || !fs.ValidPath(name) || strings.ContainsAny(name, "\\\x00") {
		http.NotFound(w, r)
		return
	}
	f, err := h.opts.BootFS.Open(name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	if rs, ok := f.(io.ReadSeeker); ok {
		http.ServeContent(w, r, "", fi.ModTime(), rs)
		return
	}
	w.Header().Set("Content-Length", fmt.Sprint(fi.Size()))
	if r.Method != http.MethodHead {
		_, _ = io.Copy(w, f)
	}
}

func (h *Handler) serveStatus(w *recorder, _ *http.Request) {
	b, err := json.MarshalIndent(h.Status(), "", "  ")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(append(b, '\n'))
}
