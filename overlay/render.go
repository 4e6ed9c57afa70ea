package overlay

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/template"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/wwboot/wwboot/nodedb"
)

// DefaultSystemOverlays is the system overlay list of a node whose own list
// is empty (unless Options.DefaultSystem says otherwise). Nothing in it is
// private to a node: anyone may fetch a system overlay, so ssh.host_keys is
// a runtime overlay here, where Warewulf's default profile has it in the
// system overlays. (The profile `wwboot init` writes adds wwclient, the
// node agent, which needs ServerInfo.Paths.Agent.)
func DefaultSystemOverlays() []string {
	return []string{"wwinit", "hostname", "machine-id", "udev.netname", "systemd.netname",
		"ifupdown", "NetworkManager", "systemd-networkd", "fstab", "resolv"}
}

// DefaultRuntimeOverlays is the runtime overlay list of a node whose own
// list is empty (unless Options.DefaultRuntime says otherwise): what only
// the node gets.
func DefaultRuntimeOverlays() []string {
	return []string{"hosts", "ssh.authorized_keys", "ssh.host_keys"}
}

// Options configure a Renderer.
type Options struct {
	// SiteDir holds site overlays, NAME/rootfs/... (usually ROOT/overlays).
	// Empty means built-in overlays only.
	SiteDir string
	// Server is what templates know about the server.
	Server ServerInfo
	// KeyDir keeps the generated SSH host keys (usually ROOT/keys). Needed
	// when a node's overlays use ssh.host_keys.
	KeyDir string
	// SharedHostKeys makes every node use one host key set (KeyDir/shared)
	// instead of its own. Off by default: one node's keys must not let it
	// impersonate another.
	SharedHostKeys bool
	// RSABits is the size of generated RSA host keys (3072 when 0: about
	// 0.3 s of CPU per node, once). RSA keys are generated when
	// Server.Ssh.KeyTypes lists "rsa", as it does by default.
	RSABits int
	// DefaultSystem and DefaultRuntime replace DefaultSystemOverlays and
	// DefaultRuntimeOverlays for nodes with an empty list. A non-nil empty
	// slice means "no overlays".
	DefaultSystem, DefaultRuntime []string
	// ImageRoot returns the root directory of an image's files for
	// IncludeFrom ("" if unknown). Nil: IncludeFrom returns "".
	ImageRoot func(image string) string
	// BuildDir is where Build stores archives: BuildDir/NODE/KIND.cpio.gz
	// (usually ROOT/overlays-built). Empty: Build keeps them in memory only.
	BuildDir string
	// CheckInterval bounds how often a site overlay's files, and the server
	// files templates read (Include..., host keys), are re-checked for
	// changes (2s when 0; negative: on every render).
	CheckInterval time.Duration
	// Level is the gzip level, 1-9 (6 when 0).
	Level int
	// Workers bounds Build's parallelism (GOMAXPROCS when 0).
	Workers int
	// Log receives debug and warning messages (discarded when nil).
	Log *slog.Logger
	// Now returns the current time (time.Now when nil); tests pin it.
	Now func() time.Time
}

// Stats count what a Renderer did.
type Stats struct {
	Renders       int64 // node archives rendered (cache misses)
	Hits          int64 // requests answered from the cache
	SharedRenders int64 // shared (node-independent) parts rendered
	Fallbacks     int64 // archives built without sharing (path conflicts)
}

// Renderer renders overlay archives per node, caching them. It is safe for
// concurrent use.
type Renderer struct {
	opts       Options
	log        *slog.Logger
	keys       *hostKeys
	sharedKeys *hostKeys // KeyDir/shared, for Include "keys/..." (Warewulf's cluster-wide keys)
	gz         *gzipPool
	serverHash string
	// redacted stands in for every secret of the inventory (BMC
	// passwords, other nodes' asset keys) in the data of system overlay
	// renders, which anyone may fetch: the real values never enter them,
	// and an output that contains the stand-in is private (redactedData).
	redacted  string
	redactedB []byte // redacted, for bytes.Contains

	mu         sync.Mutex
	overlays   map[string]*overlayCache
	layouts    map[string]*layout
	shared     map[string]*sharedEntry // by layout key
	cache      map[string]*cacheEntry  // by node + "\x00" + kind
	invs       []*invEntry             // recent inventories
	nodeHashes map[*nodedb.Node]string

	sf singleflight.Group

	renders, hits, sharedRenders, fallbacks atomic.Int64
}

// New returns a Renderer.
func New(opts Options) (*Renderer, error) {
	if opts.CheckInterval == 0 {
		opts.CheckInterval = 2 * time.Second
	}
	if opts.Level == 0 {
		opts.Level = 6
	}
	if opts.Level < 1 || opts.Level > 9 {
		return nil, fmt.Errorf("overlay: gzip level %d: use 1-9", opts.Level)
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	opts.Server = opts.Server.normalize()
	for _, t := range opts.Server.Ssh.KeyTypes {
		if !validKeyType(t) {
			return nil, fmt.Errorf("overlay: ssh key type %q: use ed25519, ecdsa or rsa", t)
		}
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sh, _ := json.Marshal(opts.Server)
	sum := sha256.Sum256(sh)
	var nonce [12]byte
	rand.Read(nonce[:])
	redacted := "wwboot-redacted-secret-" + hex.EncodeToString(nonce[:])
	return &Renderer{
		redacted:   redacted,
		redactedB:  []byte(redacted),
		opts:       opts,
		log:        log,
		keys:       &hostKeys{dir: opts.KeyDir, shared: opts.SharedHostKeys, rsa: opts.RSABits, types: opts.Server.Ssh.KeyTypes},
		sharedKeys: &hostKeys{dir: opts.KeyDir, shared: true, rsa: opts.RSABits, types: opts.Server.Ssh.KeyTypes},
		gz:         &gzipPool{level: opts.Level},
		serverHash: hex.EncodeToString(sum[:8]),
		overlays:   map[string]*overlayCache{},
		layouts:    map[string]*layout{},
		shared:     map[string]*sharedEntry{},
		cache:      map[string]*cacheEntry{},
		nodeHashes: map[*nodedb.Node]string{},
	}, nil
}

// Stats returns the counters so far.
func (r *Renderer) Stats() Stats {
	return Stats{Renders: r.renders.Load(), Hits: r.hits.Load(), SharedRenders: r.sharedRenders.Load(), Fallbacks: r.fallbacks.Load()}
}

func (r *Renderer) now() time.Time { return r.opts.Now() }

// OverlayNames returns the overlay list of kind for node n (its own, or
// the default when empty).
func (r *Renderer) OverlayNames(n *nodedb.Node, kind Kind) []string {
	var names, def []string
	switch kind {
	case System:
		names, def = n.SystemOverlay, r.opts.DefaultSystem
		if def == nil {
			def = DefaultSystemOverlays()
		}
	default:
		names, def = n.RuntimeOverlay, r.opts.DefaultRuntime
		if def == nil {
			def = DefaultRuntimeOverlays()
		}
	}
	if len(names) == 0 {
		return def
	}
	return names
}

// instance is a clone of a template whose state functions write into st.
type instance struct {
	t  *template.Template
	st *state
}

// parseTemplate parses f and prepares its instance pool.
func (r *Renderer) parseTemplate(o *Overlay, f *File) error {
	name := strings.ReplaceAll(path.Base(f.Path), ":", "_")
	t, err := template.New(name).Option("missingkey=default").Funcs(baseFuncs()).Parse(string(f.Data))
	if err != nil {
		return &TemplateError{Overlay: o.Name, File: f.Path, Line: errLine(err), Err: err}
	}
	f.tmpl = t
	f.deps = analyze(t)
	f.setup = func() *instance {
		st := &state{}
		c := template.Must(t.Clone())
		c.Funcs(st.funcs())
		return &instance{t: c, st: st}
	}
	return nil
}

// errLine extracts the line number text/template puts in its errors
// ("template: NAME:LINE:COL: ...").
func errLine(err error) int {
	msg := err.Error()
	rest, ok := strings.CutPrefix(msg, "template: ")
	if !ok {
		return 0
	}
	parts := strings.SplitN(rest, ":", 3)
	if len(parts) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(parts[1])
	return n
}

// tmplRef is a template of a layout.
type tmplRef struct {
	layer int
	o     *Overlay
	f     *File
}

// layout is the layering of one overlay list: which file wins each path,
// the static member, and the templates split by what they read.
type layout struct {
	key       string
	names     []string
	static    *segment
	layers    map[string]int // static path → layer
	shared    []tmplRef      // templates that do not read the node
	perNode   []tmplRef      // templates that do
	sharedInv bool           // some shared template reads the inventory
	nodeInv   bool           // some per-node template reads the inventory
	hostKeys  bool
	machineID bool
	closed    map[string]bool // overlay directories others may not enter (markHidden)
}

func (r *Renderer) layout(names []string) (*layout, error) {
	ovs := make([]*Overlay, len(names))
	var kb strings.Builder
	for i, n := range names {
		o, err := r.Overlay(n)
		if err != nil {
			return nil, err
		}
		ovs[i] = o
		kb.WriteString(n + "\x00" + o.Hash + "\x00")
	}
	key := kb.String()
	r.mu.Lock()
	l := r.layouts[key]
	r.mu.Unlock()
	if l != nil {
		return l, nil
	}
	v, err, _ := r.sf.Do("layout\x00"+key, func() (any, error) { return r.buildLayout(key, names, ovs) })
	if err != nil {
		return nil, err
	}
	l = v.(*layout)
	r.mu.Lock()
	if len(r.layouts) > 256 {
		clear(r.layouts)
	}
	r.layouts[key] = l
	r.mu.Unlock()
	return l, nil
}

func (r *Renderer) buildLayout(key string, names []string, ovs []*Overlay) (*layout, error) {
	type win struct {
		layer int
		o     *Overlay
		f     *File
	}
	winners := map[string]win{}
	for i, o := range ovs {
		for _, f := range o.Files {
			winners[f.OutputPath()] = win{i, o, f}
		}
	}
	paths := make([]string, 0, len(winners))
	for p := range winners {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	l := &layout{key: key, names: names, layers: map[string]int{}}
	var dirs, files []*record
	for _, p := range paths {
		w := winners[p]
		f := w.f
		switch {
		case f.IsTemplate():
			ref := tmplRef{w.layer, w.o, f}
			if f.deps.node {
				l.perNode = append(l.perNode, ref)
				l.nodeInv = l.nodeInv || f.deps.allNodes
			} else {
				l.shared = append(l.shared, ref)
				l.sharedInv = l.sharedInv || f.deps.allNodes
			}
			l.hostKeys = l.hostKeys || f.deps.hostKeys
			l.machineID = l.machineID || f.deps.machineID
			continue
		case f.Mode.IsDir():
			dirs = append(dirs, &record{path: p, mode: sIFDIR | unixPerm(f.Mode), uid: f.UID, gid: f.GID, mtime: f.MTime.Unix()})
		case f.Mode&0o170000000 == 0 && f.Mode.IsRegular():
			files = append(files, &record{path: p, mode: sIFREG | unixPerm(f.Mode), uid: f.UID, gid: f.GID, mtime: f.MTime.Unix(), data: f.Data,
				private: f.Mode&0o004 == 0 || hasPrivateKey(f.Data)})
		default: // symlink
			files = append(files, &record{path: p, mode: sIFLNK | 0o777, uid: f.UID, gid: f.GID, mtime: f.MTime.Unix(), data: []byte(f.Target)})
		}
		l.layers[p] = w.layer
	}
	l.closed = markHidden(dirs, files)
	recs := withParents(append(dirs, files...), nil, l.layers, len(ovs))
	if err := checkTree(recs, nil); err != nil {
		return nil, fmt.Errorf("overlays %v: %w (one overlay has a file where another has a directory)", names, err)
	}
	seg, err := r.gz.newSegment(recs, false)
	if err != nil {
		return nil, err
	}
	l.static = seg
	return l, nil
}

// withParents returns recs with a directory record (0755 root) inserted
// before the first record under each directory not in have and not
// already in recs; added directories are recorded in layers at layer.
func withParents(recs []*record, have map[string]bool, layers map[string]int, layer int) []*record {
	seen := map[string]bool{}
	for _, r := range recs {
		if r.mode&0o170000 == sIFDIR {
			seen[r.path] = true
		}
	}
	out := make([]*record, 0, len(recs))
	var add func(dir string)
	add = func(dir string) {
		if dir == "." || dir == "" || seen[dir] || have[dir] {
			return
		}
		add(path.Dir(dir))
		seen[dir] = true
		if layers != nil {
			if _, ok := layers[dir]; !ok {
				layers[dir] = -1
			}
		}
		out = append(out, &record{path: dir, mode: sIFDIR | 0o755})
	}
	emitted := map[string]bool{}
	for _, r := range recs {
		add(path.Dir(r.path))
		if r.mode&0o170000 == sIFDIR {
			if emitted[r.path] {
				continue
			}
			emitted[r.path] = true
		}
		out = append(out, r)
	}
	return out
}

// sharedEntry is the rendered shared part of a layout for one inventory.
type sharedEntry struct {
	inv  string
	seg  *segment // nil if the layout has no shared templates
	outs []layered
	err  error
	stamped
}

// layered is a template output with the layer and template it came from.
type layered struct {
	layer int
	rec   *record
	file  string // template path inside its overlay
}

// invEntry memoizes what the renderer derives from one inventory snapshot.
type invEntry struct {
	db   *nodedb.DB
	once sync.Once
	hash string
	all  []*Node

	sysOnce sync.Once
	sysAll  []*Node // all with their secrets redacted, for system overlays
}

// allFor returns the inventory's nodes as templates of kind see them: for
// system overlays with every secret replaced by r.redacted (built once per
// inventory).
func (r *Renderer) allFor(inv *invEntry, kind Kind) []*Node {
	if inv == nil {
		return nil
	}
	if kind != System {
		return inv.all
	}
	inv.sysOnce.Do(func() {
		inv.sysAll = make([]*Node, len(inv.all))
		for i, n := range inv.all {
			inv.sysAll[i] = redactedNode(n, r.redacted, false)
		}
	})
	return inv.sysAll
}

func (r *Renderer) inventory(db *nodedb.DB) *invEntry {
	r.mu.Lock()
	var e *invEntry
	for _, c := range r.invs {
		if c.db == db {
			e = c
			break
		}
	}
	if e == nil {
		e = &invEntry{db: db}
		r.invs = append(r.invs, e)
		if len(r.invs) > 4 {
			r.invs = r.invs[1:]
		}
	}
	r.mu.Unlock()
	e.once.Do(func() {
		if db == nil {
			e.hash = "none"
			return
		}
		b, _ := json.Marshal(db.Config())
		s := sha256.Sum256(b)
		e.hash = hex.EncodeToString(s[:16])
		e.all = allNodesData(db)
	})
	return e
}

// cacheEntry is a rendered archive and what it depends on.
type cacheEntry struct {
	key string
	a   *Archive
	stamped
}

// stamped is what a cache entry was rendered from on the server's file
// system, and when that was last checked.
type stamped struct {
	stamps  []fileStamp
	checked atomic.Int64 // unix nanos of the last stamp check
}

// fresh reports whether the server files e was rendered from are unchanged,
// checking them (a stat each) at most every CheckInterval.
func (r *Renderer) fresh(e *stamped) bool {
	if len(e.stamps) == 0 {
		return true
	}
	now := r.now().UnixNano()
	if now-e.checked.Load() < int64(r.opts.CheckInterval) {
		return true
	}
	if !stampsValid(e.stamps) {
		return false
	}
	e.checked.Store(now)
	return true
}

// nodeHash returns a hash of node's effective record, memoized per node
// (snapshots, and their nodes, never change).
func (r *Renderer) nodeHash(node *nodedb.Node) (string, error) {
	r.mu.Lock()
	h, ok := r.nodeHashes[node]
	r.mu.Unlock()
	if ok {
		return h, nil
	}
	b, err := json.Marshal(node)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	h = string(sum[:])
	r.mu.Lock()
	if len(r.nodeHashes) >= 1<<16 {
		clear(r.nodeHashes)
	}
	r.nodeHashes[node] = h
	r.mu.Unlock()
	return h, nil
}

// Render returns node's archive of kind, from the cache when nothing it
// depends on has changed. db is the inventory snapshot node comes from
// (templates that range over .AllNodes read it); it may be nil when no
// template of the node's overlays uses .AllNodes.
func (r *Renderer) Render(ctx context.Context, db *nodedb.DB, node *nodedb.Node, kind Kind) (*Archive, error) {
	if node == nil {
		return nil, errors.New("overlay: Render: nil node")
	}
	if kind != System && kind != Runtime {
		return nil, fmt.Errorf("overlay: kind %q: use system or runtime", kind)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	names := r.OverlayNames(node, kind)
	l, err := r.layout(names)
	if err != nil {
		return nil, fmt.Errorf("node %s, %s overlays %v: %w", node.ID, kind, names, err)
	}
	var inv *invEntry
	if l.sharedInv || l.nodeInv {
		inv = r.inventory(db)
	}
	nh, err := r.nodeHash(node)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", node.ID, err)
	}
	h := sha256.New()
	h.Write([]byte(l.key))
	h.Write([]byte(nh))
	h.Write([]byte(r.serverHash))
	h.Write([]byte(kind))
	if l.nodeInv {
		h.Write([]byte(inv.hash))
	}
	var shared *sharedEntry
	if len(l.shared) > 0 {
		if shared, err = r.sharedPart(l, inv, kind); err != nil {
			return nil, fmt.Errorf("node %s, %s overlays %v: %w", node.ID, kind, names, err)
		}
		h.Write(shared.seg.sum[:])
	}
	key := hex.EncodeToString(h.Sum(nil))
	ck := node.ID + "\x00" + string(kind)
	r.mu.Lock()
	ce := r.cache[ck]
	r.mu.Unlock()
	if ce != nil && ce.key == key && r.fresh(&ce.stamped) {
		r.hits.Add(1)
		return ce.a, nil
	}
	v, err, _ := r.sf.Do("node\x00"+ck+"\x00"+key, func() (any, error) {
		r.mu.Lock()
		ce := r.cache[ck]
		r.mu.Unlock()
		if ce != nil && ce.key == key && stampsValid(ce.stamps) {
			return ce, nil
		}
		start := time.Now()
		a, stamps, err := r.renderNode(l, shared, inv, node, kind)
		if err != nil {
			r.log.Warn("overlay: render failed", "node", node.ID, "kind", kind, "err", err)
			return nil, err
		}
		r.log.Debug("overlay: rendered", "node", node.ID, "kind", kind, "overlays", names, "bytes", a.Size(), "took", time.Since(start))
		ce = &cacheEntry{key: key, a: a}
		ce.stamps = stamps
		ce.checked.Store(r.now().UnixNano())
		r.mu.Lock()
		r.cache[ck] = ce
		r.mu.Unlock()
		return ce, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*cacheEntry).a, nil
}

// sharedPart returns the layout's shared member for inventory inv.
func (r *Renderer) sharedPart(l *layout, inv *invEntry, kind Kind) (*sharedEntry, error) {
	invKey := ""
	if l.sharedInv {
		invKey = inv.hash
	}
	// System and runtime renders of one overlay list see different data
	// (allFor), so they are cached apart.
	sk := l.key + "\x00" + string(kind)
	r.mu.Lock()
	e := r.shared[sk]
	r.mu.Unlock()
	if e != nil && e.inv == invKey && r.fresh(&e.stamped) {
		return e, e.err
	}
	v, _, _ := r.sf.Do("shared\x00"+sk+"\x00"+invKey, func() (any, error) {
		r.mu.Lock()
		e := r.shared[sk]
		r.mu.Unlock()
		if e != nil && e.inv == invKey && stampsValid(e.stamps) {
			return e, nil
		}
		e = r.renderShared(l, inv, invKey, kind)
		e.checked.Store(r.now().UnixNano())
		r.mu.Lock()
		r.shared[sk] = e
		r.mu.Unlock()
		return e, nil
	})
	e = v.(*sharedEntry)
	return e, e.err
}

func (r *Renderer) renderShared(l *layout, inv *invEntry, invKey string, kind Kind) *sharedEntry {
	r.sharedRenders.Add(1)
	e := &sharedEntry{inv: invKey}
	data := r.opts.Server.newData(nil, r.allFor(inv, kind), r.now())
	outs, stamps, err := r.execAll(l.shared, data, "")
	l.markOutputs(outs)
	if err != nil {
		e.err = err
		return e
	}
	e.stamps = stamps
	e.outs = outs
	var recs []*record
	for _, o := range outs {
		recs = append(recs, o.rec)
	}
	recs = withParents(recs, l.static.dirs, nil, 0)
	if err := checkTree(recs, staticLookup(l)); err != nil {
		e.err = templateConflict(err, outs, l.names, "")
		return e
	}
	e.seg, e.err = r.gz.newSegment(recs, false)
	return e
}

// execAll runs templates (in layer order) and returns their outputs, the
// later of two outputs of the same path winning.
func (r *Renderer) execAll(refs []tmplRef, data *TemplateData, node string) ([]layered, []fileStamp, error) {
	var outs []layered
	var stamps []fileStamp
	index := map[string]int{}
	sorted := append([]tmplRef(nil), refs...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].layer < sorted[j].layer })
	for _, ref := range sorted {
		o, st, err := r.exec(ref, data, node)
		stamps = append(stamps, st...)
		if err != nil && ref.f.parseErr != nil {
			continue // logged when the overlay was loaded; the other files render
		}
		if err != nil {
			return nil, stamps, err
		}
		for _, out := range o {
			rec := &record{path: out.path, uid: ref.f.UID, gid: ref.f.GID, mtime: ref.f.MTime.Unix()}
			if out.isLink {
				rec.mode, rec.data = sIFLNK|0o777, []byte(out.link)
			} else {
				rec.mode, rec.data = sIFREG|unixPerm(ref.f.Mode), out.data
				rec.private = privateOutput(ref.f, out)
			}
			if i, ok := index[out.path]; ok {
				outs[i] = layered{ref.layer, rec, ref.f.Path}
				continue
			}
			index[out.path] = len(outs)
			outs = append(outs, layered{ref.layer, rec, ref.f.Path})
		}
	}
	return outs, stamps, nil
}

// exec executes one template.
func (r *Renderer) exec(ref tmplRef, data *TemplateData, node string) ([]output, []fileStamp, error) {
	f := ref.f
	if f.parseErr != nil {
		te := *f.parseErr.(*TemplateError)
		te.Node = node
		return nil, nil, &te
	}
	inst, _ := f.pool.Get().(*instance)
	if inst == nil {
		inst = f.setup()
	}
	defer f.pool.Put(inst)
	st := inst.st
	var nonce [8]byte
	rand.Read(nonce[:])
	*st = state{r: r, overlay: ref.o.Name, file: f.Path, nonce: hex.EncodeToString(nonce[:])}
	if node != "" {
		st.node = data.Node
	}
	data.Overlay = ref.o.Name
	data.BuildSource = r.buildSource(ref.o, f)
	var buf bytes.Buffer
	if err := inst.t.Execute(&buf, data); err != nil {
		return nil, st.reads, &TemplateError{Overlay: ref.o.Name, File: f.Path, Line: errLine(err), Node: node, Err: err}
	}
	if st.aborted {
		return nil, st.reads, nil
	}
	outs, err := st.split(buf.Bytes(), f.OutputPath())
	if err != nil {
		return nil, st.reads, &TemplateError{Overlay: ref.o.Name, File: f.Path, Node: node, Err: err}
	}
	// A secret however the template reached it (toJson .AllNodes,
	// index, printf): in system renders, the only ones whose privacy
	// matters (anyone may fetch them), every secret is r.redacted (allFor,
	// redactedNode). A value check behind the analysis of secretField.
	for i := range outs {
		outs[i].secret = st.secret || bytes.Contains(outs[i].data, r.redactedB)
	}
	return outs, st.reads, nil
}

// renderNode builds node's archive from the layout's static member, the
// shared member and the node's own member.
func (r *Renderer) renderNode(l *layout, shared *sharedEntry, inv *invEntry, node *nodedb.Node, kind Kind) (*Archive, []fileStamp, error) {
	r.renders.Add(1)
	nd := NodeData(node)
	if kind == System {
		nd = redactedNode(nd, r.redacted, true)
	}
	data := r.opts.Server.newData(nd, r.allFor(inv, kind), r.now())
	outs, stamps, err := r.execAll(l.perNode, data, node.ID)
	l.markOutputs(outs)
	if err != nil {
		return nil, stamps, err
	}
	var sharedLayers map[string]int
	if shared != nil {
		stamps = append(stamps, shared.stamps...)
		sharedLayers = make(map[string]int, len(shared.outs))
		for _, o := range shared.outs {
			sharedLayers[o.rec.path] = o.layer
		}
	}
	// Which outputs survive, and is the fast (shared) path exact?
	fast := true
	var mine []*record
	if kind == System {
		// The end marker is the renderer's: an overlay file at its path
		// (static or shared) forces the slow path, which drops it.
		if _, ok := l.layers[MarkerPath]; ok {
			fast = false
		}
		if _, ok := sharedLayers[MarkerPath]; ok {
			fast = false
		}
	}
	for _, o := range outs {
		p := o.rec.path
		if kind == System && p == MarkerPath {
			continue
		}
		sl, inStatic := l.layers[p]
		hl, inShared := sharedLayers[p]
		switch {
		case inStatic && sl > o.layer, inShared && hl > o.layer:
			continue // an overlay later in the list wins
		case inStatic || inShared:
			fast = false
		}
		mine = append(mine, o.rec)
	}
	if shared != nil {
		for _, o := range shared.outs {
			if sl, ok := l.layers[o.rec.path]; ok && sl <= o.layer {
				fast = false
			}
		}
	}
	now := r.now()
	if fast {
		have := make(map[string]bool, len(l.static.dirs))
		for d := range l.static.dirs {
			have[d] = true
		}
		// Empty members are left out: the kernel insists that a gzip member
		// ends between two cpio records, and at the start of the initramfs
		// an empty member ends before the first one.
		var segs []*segment
		if len(l.static.recs) > 0 {
			segs = append(segs, l.static)
		}
		if shared != nil && len(shared.seg.recs) > 0 {
			segs = append(segs, shared.seg)
			for d := range shared.seg.dirs {
				have[d] = true
			}
		}
		var before int
		for _, s := range segs {
			before += len(s.recs)
		}
		recs := withParents(mine, have, nil, 0)
		static := staticLookup(l)
		if err := checkTree(recs, func(p string) (bool, bool) {
			if ok, dir := static(p); ok {
				return ok, dir
			}
			if shared == nil {
				return false, false
			}
			_, out := sharedLayers[p]
			return out || shared.seg.dirs[p], shared.seg.dirs[p]
		}); err != nil {
			return nil, stamps, templateConflict(err, outs, l.names, node.ID)
		}
		if kind == System {
			recs = appendMarker(recs, have, before, node)
		}
		seg, err := r.gz.newSegment(recs, true)
		if err != nil {
			return nil, nil, err
		}
		return newArchive(node.ID, kind, append(segs, seg), now), stamps, nil
	}
	// Slow path: merge everything by layer into one member.
	r.fallbacks.Add(1)
	type ent struct {
		layer int
		rec   *record
	}
	merged := map[string]ent{}
	put := func(layer int, rec *record) {
		if e, ok := merged[rec.path]; ok && e.layer > layer {
			return
		}
		merged[rec.path] = ent{layer, rec}
	}
	for _, rec := range l.static.recs {
		put(l.layers[rec.path], rec)
	}
	if shared != nil {
		for _, o := range shared.outs {
			put(o.layer, o.rec)
		}
	}
	for _, o := range outs {
		put(o.layer, o.rec)
	}
	if kind == System {
		delete(merged, MarkerPath)
	}
	var dirs, files []*record
	for _, e := range merged {
		if e.rec.mode&0o170000 == sIFDIR {
			dirs = append(dirs, e.rec)
		} else {
			files = append(files, e.rec)
		}
	}
	sort.Slice(dirs, func(i, j int) bool { return dirs[i].path < dirs[j].path })
	sort.Slice(files, func(i, j int) bool { return files[i].path < files[j].path })
	recs := withParents(append(dirs, files...), nil, nil, 0)
	if err := checkTree(recs, nil); err != nil {
		return nil, stamps, templateConflict(err, outs, l.names, node.ID)
	}
	if kind == System {
		recs = appendMarker(recs, nil, 0, node)
	}
	seg, err := r.gz.newSegment(recs, true)
	if err != nil {
		return nil, nil, err
	}
	return newArchive(node.ID, kind, []*segment{seg}, now), stamps, nil
}

// Entry describes one path of an archive.
type Entry struct {
	Path   string      // path in the archive (no leading "/")
	Mode   fs.FileMode // type and permissions
	UID    int         // owner
	GID    int         // group
	Size   int         // bytes of data (symlink: target length)
	Target string      // symlink target
}

// Entries lists the archive's paths in archive order.
func (a *Archive) Entries() []Entry {
	var out []Entry
	for _, s := range a.parts {
		for _, rec := range s.recs {
			e := Entry{Path: rec.path, UID: rec.uid, GID: rec.gid, Size: len(rec.data)}
			perm := fs.FileMode(rec.mode & 0o777)
			switch rec.mode & 0o170000 {
			case sIFDIR:
				e.Mode = fs.ModeDir | perm
			case sIFLNK:
				e.Mode = fs.ModeSymlink | perm
				e.Target = string(rec.data)
			default:
				e.Mode = perm
			}
			if rec.mode&0o4000 != 0 {
				e.Mode |= fs.ModeSetuid
			}
			if rec.mode&0o2000 != 0 {
				e.Mode |= fs.ModeSetgid
			}
			if rec.mode&0o1000 != 0 {
				e.Mode |= fs.ModeSticky
			}
			out = append(out, e)
		}
	}
	return out
}

// parallel runs fn(0..n-1) on up to workers goroutines.
func parallel(n, workers int, fn func(i int)) {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers && w < n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				fn(i)
			}
		}()
	}
	wg.Wait()
}

// buildSource is the template's source path as Warewulf sets BuildSource
// (the file it walked, internal/pkg/overlay BuildOverlayIndir): the site
// overlay's file, or where Warewulf keeps its distribution overlays
// (Paths.Datadir/warewulf/overlays/NAME/rootfs) for a built-in one.
func (r *Renderer) buildSource(o *Overlay, f *File) string {
	if o.Source == Site {
		return filepath.Join(o.Dir, filepath.FromSlash(f.Path))
	}
	return path.Join(r.opts.Server.Paths.Datadir, "warewulf", "overlays", o.Name, "rootfs", f.Path)
}

// RenderFile renders one file of an overlay for node, as `wwboot overlay
// show NAME FILE --render NODE` shows it: a template gives the files it
// produces (none if it aborts), any other file itself. Nothing is cached.
func (r *Renderer) RenderFile(ctx context.Context, db *nodedb.DB, node *nodedb.Node, overlay, file string) ([]*File, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	o, err := r.Overlay(overlay)
	if err != nil {
		return nil, err
	}
	file = strings.TrimPrefix(path.Clean("/"+file), "/")
	for _, f := range o.Files {
		if f.Path != file {
			continue
		}
		if !f.IsTemplate() {
			return []*File{f}, nil
		}
		var all []*Node
		if f.deps.allNodes && db != nil {
			all = r.inventory(db).all
		}
		data := r.opts.Server.newData(NodeData(node), all, r.now())
		outs, _, err := r.exec(tmplRef{0, o, f}, data, node.ID)
		if err != nil {
			return nil, err
		}
		res := make([]*File, 0, len(outs))
		for _, out := range outs {
			rf := &File{Path: out.path, Mode: f.Mode.Perm(), UID: f.UID, GID: f.GID, MTime: f.MTime, Data: out.data}
			if out.isLink {
				rf.Mode, rf.Target, rf.Data = fs.ModeSymlink|0o777, out.link, nil
			}
			res = append(res, rf)
		}
		return res, nil
	}
	return nil, fmt.Errorf("overlay %s (%s): file %q: %w: see wwboot overlay show %s", overlay, o.Dir, file, ErrNotFound, overlay)
}
