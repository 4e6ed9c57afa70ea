package provision

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/wwboot/wwboot/events"
	"github.com/wwboot/wwboot/image"
	"github.com/wwboot/wwboot/nodedb"
	"github.com/wwboot/wwboot/overlay"
)

// OpenAPI is the OpenAPI 3 document of the API, as GET
// /api/v1/openapi.json serves it.
//
//go:embed openapi.json
var OpenAPI []byte

// APIPrefix is where the API's routes live.
const APIPrefix = "/api/v1/"

// DefaultMaxBody bounds a JSON request body of the API (bytes).
const DefaultMaxBody = 1 << 20

// ImageLister lists and finds images; *image.Store satisfies it.
type ImageLister interface {
	List(ctx context.Context) ([]image.Meta, error)
	Lookup(ctx context.Context, name string) (image.Meta, error)
}

// OverlaySource lists overlays and renders their files for a node;
// *overlay.Renderer satisfies it.
type OverlaySource interface {
	Names() ([]string, error)
	Overlay(name string) (*overlay.Overlay, error)
	RenderFile(ctx context.Context, db *nodedb.DB, node *nodedb.Node, overlay, file string) ([]*overlay.File, error)
}

// PowerFunc applies action (on, off, cycle, reset or status) to the named
// node's BMC and returns the power state afterwards (on, off, unknown).
// The error is the node's (no BMC, BMC unreachable); it must not contain a
// password.
type PowerFunc func(ctx context.Context, node, action string) (state string, err error)

// APIOptions configure an API. Store is required; a nil Images, Overlays,
// Power or Events makes its routes answer 404 (501 for power).
type APIOptions struct {
	// Store holds the nodes and profiles (the inventory).
	Store nodedb.Store
	// Images lists the images.
	Images ImageLister
	// Overlays lists overlays and renders previews.
	Overlays OverlaySource
	// Status returns the boot status; nil means the status of the handler
	// Wrap wraps, when it has a Status method (a *Handler does).
	Status func() Status
	// Power switches nodes.
	Power PowerFunc
	// Revoke drops a node's enrollment record (AgentTLS.Revoke, or
	// RevokeEnrollments on the CA directory): every certificate of the node
	// gets 401 and the node may enroll again. It reports whether the node
	// had a record. Nil: POST /api/v1/nodes/{name}/revoke answers 501.
	Revoke func(ctx context.Context, node string) (bool, error)
	// Events is streamed at /api/v1/events.
	Events *events.Bus
	// Stream tunes the event stream.
	Stream events.StreamOptions
	// Auth checks callers: reads need its token or a loopback caller,
	// changes and overlay previews (they may show secrets) need the token.
	Auth TokenAuth
	// MaxBody bounds request bodies; 0 means DefaultMaxBody.
	MaxBody int64
	// Logger receives changes made (Info) and failures (Error); nil
	// discards.
	Logger *slog.Logger
}

// access is who may call a route.
type access int

const (
	public    access = iota // anyone
	readAcc                 // token or loopback
	changeAcc               // token
)

// apiRoute is one route of the API; the table drives the mux and is
// checked against OpenAPI in the tests.
type apiRoute struct {
	method, path string
	access       access
	fn           func(w http.ResponseWriter, r *http.Request)
}

// API is the JSON REST API over nodes, profiles, images, overlays, status,
// power and events, under /api/v1/ (see openapi.json). Create it with
// NewAPI; it is safe for concurrent use.
type API struct {
	opts   APIOptions
	log    *slog.Logger
	mux    *http.ServeMux
	routes []apiRoute
	done   chan struct{} // closed by Close: event streams end
	close  sync.Once
}

// Close ends the event streams under way (and any opened later), so a
// server's graceful shutdown need not wait for them. The other routes keep
// working.
func (a *API) Close() {
	a.close.Do(func() { close(a.done) })
}

// NewAPI returns the API for opts.
func NewAPI(opts APIOptions) (*API, error) {
	if opts.Store == nil {
		return nil, errors.New("provision: APIOptions.Store is required")
	}
	if opts.MaxBody <= 0 {
		opts.MaxBody = DefaultMaxBody
	}
	a := &API{opts: opts, log: opts.Logger, done: make(chan struct{})}
	a.opts.Stream.Done = a.done
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	a.routes = []apiRoute{
		{"GET", "/api/v1/openapi.json", public, a.serveOpenAPI},
		{"GET", "/api/v1/status", readAcc, a.serveStatus},
		{"GET", "/api/v1/events", readAcc, a.serveEvents},
		{"GET", "/api/v1/nodes", readAcc, a.listNodes},
		{"GET", "/api/v1/nodes/{name}", readAcc, a.getNode},
		{"POST", "/api/v1/nodes/{name}/power", changeAcc, a.powerNode},
		{"POST", "/api/v1/nodes/{name}/revoke", changeAcc, a.revokeNode},
		{"GET", "/api/v1/profiles", readAcc, a.listProfiles},
		{"GET", "/api/v1/profiles/{name}", readAcc, a.getProfile},
		{"POST", "/api/v1/profiles/{name}", changeAcc, a.createProfile},
		{"PUT", "/api/v1/profiles/{name}", changeAcc, a.updateProfile},
		{"DELETE", "/api/v1/profiles/{name}", changeAcc, a.deleteProfile},
		{"GET", "/api/v1/images", readAcc, a.listImages},
		{"GET", "/api/v1/images/{name}", readAcc, a.getImage},
		{"GET", "/api/v1/overlays", readAcc, a.listOverlays},
		{"GET", "/api/v1/overlays/{name}", readAcc, a.getOverlay},
		{"GET", "/api/v1/overlays/{name}/render", changeAcc, a.renderOverlay},
	}
	a.mux = http.NewServeMux()
	for _, rt := range a.routes {
		h := http.Handler(http.HandlerFunc(rt.fn))
		if rt.access != public {
			h = a.opts.Auth.Require(rt.access == readAcc, h)
		}
		a.mux.Handle(rt.method+" "+rt.path, h)
	}
	a.mux.HandleFunc("/", a.notFound)
	return a, nil
}

// notFound answers a request no route took: 405 with Allow when the path
// has routes for other methods, else 404.
func (a *API) notFound(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range []string{"GET", "POST", "PUT", "DELETE"} {
		c := r.Clone(r.Context())
		c.Method = m
		if _, p := a.mux.Handler(c); p != "" && p != "/" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeAPIError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s %s: use %s", r.Method, truncate(r.URL.Path, 64), strings.Join(allow, ", ")))
		return
	}
	writeAPIError(w, http.StatusNotFound, fmt.Sprintf("%s %s: no such API route; see %sopenapi.json", truncate(r.Method, 16), truncate(r.URL.Path, 64), APIPrefix))
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	a.mux.ServeHTTP(w, r)
}

// Wrap returns a handler that sends /api/v1/ to the API and everything else
// to next, so it fits ServerConfig.Middleware. When Options.Status is nil
// and next has a Status method (a *Handler), the API reports next's status.
func (a *API) Wrap(next http.Handler) http.Handler {
	if a.opts.Status == nil {
		if s, ok := next.(interface{ Status() Status }); ok {
			a.opts.Status = s.Status
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, APIPrefix) {
			a.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// apiError is the body of every error answer.
type apiError struct {
	Error string `json:"error"`
}

func writeAPIError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, apiError{Error: msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"encoding the answer failed"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

// MaxNameLen bounds node, profile and overlay names in API paths.
const MaxNameLen = 253

// ValidAPIName checks a node, profile or overlay name from a request: 1 to
// MaxNameLen letters, digits, '.', '_', '-' and '+', starting with a letter
// or digit.
func ValidAPIName(kind, s string) error {
	ok := s != "" && len(s) <= MaxNameLen && isAlnum(s[0])
	for i := 0; ok && i < len(s); i++ {
		c := s[i]
		ok = isAlnum(c) || c == '.' || c == '_' || c == '-' || c == '+'
	}
	if !ok {
		return fmt.Errorf("%s name %q: use letters, digits, '.', '_', '-' and '+', starting with a letter or digit, at most %d", kind, truncate(s, 64), MaxNameLen)
	}
	return nil
}

func isAlnum(c byte) bool {
	return ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9')
}

// pathName reads and checks the {name} of a route; on error it answers 400.
func pathName(w http.ResponseWriter, r *http.Request, kind string) (string, bool) {
	name := r.PathValue("name")
	if err := ValidAPIName(kind, name); err != nil {
		writeAPIError(w, http.StatusBadRequest, err.Error())
		return "", false
	}
	return name, true
}

// DecodeJSONBody reads one JSON object of at most max bytes from r into v:
// unknown fields, trailing data and a larger body are errors that say so.
func DecodeJSONBody(r io.Reader, max int64, v any) error {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return fmt.Errorf("reading the body: %w", err)
	}
	if int64(len(b)) > max {
		return fmt.Errorf("%w: larger than %d bytes", errBodyTooLarge, max)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("body: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("body: data after the JSON object")
	}
	return nil
}

var errBodyTooLarge = errors.New("body too large")

// decodeBody decodes r's body into v; on error it answers 400 or 413.
func (a *API) decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		writeAPIError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Type %q: send application/json", truncate(ct, 64)))
		return false
	}
	if err := DecodeJSONBody(r.Body, a.opts.MaxBody, v); err != nil {
		code := http.StatusBadRequest
		if errors.Is(err, errBodyTooLarge) {
			code = http.StatusRequestEntityTooLarge
		}
		writeAPIError(w, code, err.Error())
		return false
	}
	return true
}

func (a *API) serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(OpenAPI)
}

func (a *API) serveStatus(w http.ResponseWriter, _ *http.Request) {
	if a.opts.Status == nil {
		writeAPIError(w, http.StatusNotFound, "this server keeps no boot status")
		return
	}
	writeJSON(w, http.StatusOK, a.opts.Status())
}

func (a *API) serveEvents(w http.ResponseWriter, r *http.Request) {
	if a.opts.Events == nil {
		writeAPIError(w, http.StatusNotFound, "this server publishes no events")
		return
	}
	sr, err := events.ParseStreamRequest(r)
	if err != nil {
		writeAPIError(w, http.StatusBadRequest, err.Error())
		return
	}
	events.Stream(w, r, a.opts.Events, sr, a.opts.Stream)
}

// redactRecord returns a copy of r whose BMC password and asset key read
// as nodedb.Redacted ("***"), to any caller, token or not.
func redactRecord(r nodedb.Record) nodedb.Record { return r.Redact() }

// NodeList is the answer of GET /api/v1/nodes.
type NodeList struct {
	// Nodes are the effective (profile-merged) nodes, by name, secrets
	// redacted.
	Nodes []nodedb.Node `json:"nodes"`
}

func (a *API) snapshot(w http.ResponseWriter, r *http.Request) (*nodedb.DB, bool) {
	db, err := a.opts.Store.Snapshot(r.Context())
	if err != nil {
		a.log.Error("API: inventory", "err", err)
		writeAPIError(w, http.StatusServiceUnavailable, "inventory unavailable: "+err.Error())
		return nil, false
	}
	return db, true
}

func (a *API) listNodes(w http.ResponseWriter, r *http.Request) {
	db, ok := a.snapshot(w, r)
	if !ok {
		return
	}
	out := NodeList{Nodes: make([]nodedb.Node, 0, db.Len())}
	for _, n := range db.Nodes() {
		c := *n
		c.Record = redactRecord(n.Record)
		out.Nodes = append(out.Nodes, c)
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) getNode(w http.ResponseWriter, r *http.Request) {
	name, ok := pathName(w, r, "node")
	if !ok {
		return
	}
	db, ok := a.snapshot(w, r)
	if !ok {
		return
	}
	n, err := db.Node(name)
	if err != nil {
		writeAPIError(w, http.StatusNotFound, fmt.Sprintf("node %s: %v", name, err))
		return
	}
	c := *n
	c.Record = redactRecord(n.Record)
	writeJSON(w, http.StatusOK, c)
}

// PowerRequest is the body of POST /api/v1/nodes/{name}/power.
type PowerRequest struct {
	// Action is on, off, cycle, reset or status.
	Action string `json:"action"`
}

// PowerAnswer is its answer.
type PowerAnswer struct {
	Node   string `json:"node"`
	Action string `json:"action"`
	// State is the power state afterwards: on, off or unknown.
	State string `json:"state"`
	// Error is set when the BMC failed (HTTP 502).
	Error string `json:"error,omitempty"`
	// TookMS is how long the BMC took, in milliseconds.
	TookMS int64 `json:"took_ms"`
}

// ValidPowerAction checks a power action name.
func ValidPowerAction(s string) error {
	switch s {
	case "on", "off", "cycle", "reset", "status":
		return nil
	}
	return fmt.Errorf("action %q: use on, off, cycle, reset or status", truncate(s, 32))
}

func (a *API) powerNode(w http.ResponseWriter, r *http.Request) {
	name, ok := pathName(w, r, "node")
	if !ok {
		return
	}
	var req PowerRequest
	if !a.decodeBody(w, r, &req) {
		return
	}
	if err := ValidPowerAction(req.Action); err != nil {
		writeAPIError(w, http.StatusBadRequest, err.Error())
		return
	}
	if a.opts.Power == nil {
		writeAPIError(w, http.StatusNotImplemented, "this server has no power control")
		return
	}
	db, ok := a.snapshot(w, r)
	if !ok {
		return
	}
	if _, err := db.Node(name); err != nil {
		writeAPIError(w, http.StatusNotFound, fmt.Sprintf("node %s: %v", name, err))
		return
	}
	start := time.Now()
	state, err := a.opts.Power(r.Context(), name, req.Action)
	ans := PowerAnswer{Node: name, Action: req.Action, State: state, TookMS: time.Since(start).Milliseconds()}
	code := http.StatusOK
	if err != nil {
		ans.Error, code = err.Error(), http.StatusBadGateway
		if ans.State == "" {
			ans.State = "unknown"
		}
	}
	a.log.Info("API: power", "node", name, "action", req.Action, "state", ans.State, "error", ans.Error, "client", r.RemoteAddr)
	writeJSON(w, code, ans)
}

// RevokeAnswer is the answer of POST /api/v1/nodes/{name}/revoke.
type RevokeAnswer struct {
	// Node is the node's name.
	Node string `json:"node"`
	// Revoked says whether the node had an enrollment record (a current
	// certificate); false: there was nothing to revoke.
	Revoked bool `json:"revoked"`
}

// revokeNode revokes a node's agent certificates (admin token only): the
// node's enrollment record goes, so every certificate of the node gets 401
// and the node's agent enrolls again on its next request.
func (a *API) revokeNode(w http.ResponseWriter, r *http.Request) {
	name, ok := pathName(w, r, "node")
	if !ok {
		return
	}
	if a.opts.Revoke == nil {
		writeAPIError(w, http.StatusNotImplemented, "this server has no agent TLS channel (wwboot.conf: agent tls: false): nothing to revoke")
		return
	}
	db, ok := a.snapshot(w, r)
	if !ok {
		return
	}
	if _, err := db.Node(name); err != nil {
		writeAPIError(w, http.StatusNotFound, fmt.Sprintf("node %s: %v (a node that left the inventory lost its certificate already)", name, err))
		return
	}
	revoked, err := a.opts.Revoke(r.Context(), name)
	if err != nil {
		a.log.Error("API: revoke", "node", name, "err", err)
		writeAPIError(w, http.StatusInternalServerError, fmt.Sprintf("node %s: %v", name, err))
		return
	}
	a.log.Warn("API: revoked a node's certificates", "node", name, "had_record", revoked, "client", r.RemoteAddr)
	writeJSON(w, http.StatusOK, RevokeAnswer{Node: name, Revoked: revoked})
}

// Profile is a profile as the API shows it: its name and its raw record.
type Profile struct {
	Name string `json:"name"`
	nodedb.Record
}

// ProfileList is the answer of GET /api/v1/profiles.
type ProfileList struct {
	Profiles []Profile `json:"profiles"`
}

func (a *API) listProfiles(w http.ResponseWriter, r *http.Request) {
	db, ok := a.snapshot(w, r)
	if !ok {
		return
	}
	out := ProfileList{Profiles: []Profile{}}
	for _, name := range db.ProfileNames() {
		p, err := db.Profile(name)
		if err != nil || p == nil {
			continue
		}
		out.Profiles = append(out.Profiles, Profile{Name: name, Record: redactRecord(*p)})
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) getProfile(w http.ResponseWriter, r *http.Request) {
	name, ok := pathName(w, r, "profile")
	if !ok {
		return
	}
	db, ok := a.snapshot(w, r)
	if !ok {
		return
	}
	p, err := db.Profile(name)
	if err != nil || p == nil {
		writeAPIError(w, http.StatusNotFound, fmt.Sprintf("profile %s: %v", name, nodedb.ErrNotFound))
		return
	}
	writeJSON(w, http.StatusOK, Profile{Name: name, Record: redactRecord(*p)})
}

// errExists and errInUse carry a profile change's conflict to its answer (409).
var (
	errExists = errors.New("exists")
	errInUse  = errors.New("in use")
	errMasked = errors.New("a masked secret with nothing to keep")
)

func (a *API) createProfile(w http.ResponseWriter, r *http.Request) { a.putProfile(w, r, true) }
func (a *API) updateProfile(w http.ResponseWriter, r *http.Request) { a.putProfile(w, r, false) }

// putProfile creates (POST: it must not exist) or replaces (PUT: it must)
// a profile with the record in the body. A redacted secret ("***") keeps
// the stored one.
func (a *API) putProfile(w http.ResponseWriter, r *http.Request, create bool) {
	name, ok := pathName(w, r, "profile")
	if !ok {
		return
	}
	var rec nodedb.Record
	if !a.decodeBody(w, r, &rec) {
		return
	}
	err := a.opts.Store.Update(r.Context(), func(cfg *nodedb.Config) error {
		old, exists := cfg.NodeProfiles[name]
		switch {
		case create && exists:
			return fmt.Errorf("profile %s: %w", name, errExists)
		case !create && !exists:
			return fmt.Errorf("profile %s: %w", name, nodedb.ErrNotFound)
		}
		if missing := rec.Unredact(old); len(missing) > 0 {
			return fmt.Errorf("profile %s: %s: %q stands for the stored value, and there is none: %w: send the secret itself",
				name, strings.Join(missing, ", "), nodedb.Redacted, errMasked)
		}
		if cfg.NodeProfiles == nil {
			cfg.NodeProfiles = map[string]*nodedb.Record{}
		}
		if old != nil {
			rec.Extra = old.Extra // keys wwboot does not know stay as they were
		}
		c := rec
		cfg.NodeProfiles[name] = &c
		return nil
	})
	if !a.changed(w, r, err, "profile", name) {
		return
	}
	code := http.StatusOK
	if create {
		code = http.StatusCreated
	}
	db, ok := a.snapshot(w, r)
	if !ok {
		return
	}
	p, err := db.Profile(name)
	if err != nil || p == nil {
		writeAPIError(w, http.StatusInternalServerError, fmt.Sprintf("profile %s: stored, but not found afterwards", name))
		return
	}
	writeJSON(w, code, Profile{Name: name, Record: redactRecord(*p)})
}

func (a *API) deleteProfile(w http.ResponseWriter, r *http.Request) {
	name, ok := pathName(w, r, "profile")
	if !ok {
		return
	}
	err := a.opts.Store.Update(r.Context(), func(cfg *nodedb.Config) error {
		if _, ok := cfg.NodeProfiles[name]; !ok {
			return fmt.Errorf("profile %s: %w", name, nodedb.ErrNotFound)
		}
		var users []string
		for _, m := range []map[string]*nodedb.Record{cfg.Nodes, cfg.NodeProfiles} {
			for who, rec := range m {
				for _, p := range rec.Profiles {
					if p == name {
						users = append(users, who)
					}
				}
			}
		}
		if len(users) > 0 {
			sort.Strings(users)
			if len(users) > 10 {
				users = append(users[:10], "...")
			}
			return fmt.Errorf("profile %s: %w by %s; take it out of their profiles first", name, errInUse, strings.Join(users, ", "))
		}
		delete(cfg.NodeProfiles, name)
		return nil
	})
	if !a.changed(w, r, err, "profile", name) {
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// changed answers a failed inventory change and logs a done one.
func (a *API) changed(w http.ResponseWriter, r *http.Request, err error, kind, name string) bool {
	switch {
	case err == nil:
		a.log.Info("API: "+kind+" changed", kind, name, "method", r.Method, "client", r.RemoteAddr)
		return true
	case errors.Is(err, nodedb.ErrNotFound):
		writeAPIError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, errMasked):
		writeAPIError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, errExists), errors.Is(err, errInUse):
		writeAPIError(w, http.StatusConflict, err.Error())
	case r.Context().Err() != nil:
		writeAPIError(w, http.StatusServiceUnavailable, err.Error())
	default:
		// The store refused it: the record does not validate.
		writeAPIError(w, http.StatusUnprocessableEntity, err.Error())
	}
	return false
}

// ImageList is the answer of GET /api/v1/images.
type ImageList struct {
	Images []image.Meta `json:"images"`
}

func (a *API) listImages(w http.ResponseWriter, r *http.Request) {
	if a.opts.Images == nil {
		writeAPIError(w, http.StatusNotFound, "this server serves no images")
		return
	}
	list, err := a.opts.Images.List(r.Context())
	if err != nil {
		writeAPIError(w, http.StatusServiceUnavailable, "image store: "+err.Error())
		return
	}
	if list == nil {
		list = []image.Meta{}
	}
	writeJSON(w, http.StatusOK, ImageList{Images: list})
}

func (a *API) getImage(w http.ResponseWriter, r *http.Request) {
	if a.opts.Images == nil {
		writeAPIError(w, http.StatusNotFound, "this server serves no images")
		return
	}
	name := r.PathValue("name")
	if err := image.ValidName(name); err != nil {
		writeAPIError(w, http.StatusBadRequest, err.Error())
		return
	}
	m, err := a.opts.Images.Lookup(r.Context(), name)
	switch {
	case errors.Is(err, image.ErrNotFound):
		writeAPIError(w, http.StatusNotFound, fmt.Sprintf("image %s does not exist", name))
	case err != nil:
		writeAPIError(w, http.StatusServiceUnavailable, "image store: "+err.Error())
	default:
		writeJSON(w, http.StatusOK, m)
	}
}

// OverlayList is the answer of GET /api/v1/overlays.
type OverlayList struct {
	Overlays []string `json:"overlays"`
}

// OverlayInfo is the answer of GET /api/v1/overlays/{name}.
type OverlayInfo struct {
	Name   string        `json:"name"`
	Source string        `json:"source"`
	Hash   string        `json:"hash"`
	Files  []OverlayFile `json:"files"`
}

// OverlayFile is one file of an overlay or of a rendered preview.
type OverlayFile struct {
	Path     string `json:"path"`
	Mode     string `json:"mode"`
	Size     int    `json:"size"`
	Template bool   `json:"template,omitempty"`
	Target   string `json:"target,omitempty"`
	// Content is the rendered file (previews only), UTF-8 text or, when
	// Encoding is "base64", base64.
	Content  string `json:"content,omitempty"`
	Encoding string `json:"encoding,omitempty"`
}

func (a *API) listOverlays(w http.ResponseWriter, _ *http.Request) {
	if a.opts.Overlays == nil {
		writeAPIError(w, http.StatusNotFound, "this server has no overlays")
		return
	}
	names, err := a.opts.Overlays.Names()
	if err != nil {
		writeAPIError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	if names == nil {
		names = []string{}
	}
	writeJSON(w, http.StatusOK, OverlayList{Overlays: names})
}

func (a *API) overlay(w http.ResponseWriter, r *http.Request) (*overlay.Overlay, bool) {
	if a.opts.Overlays == nil {
		writeAPIError(w, http.StatusNotFound, "this server has no overlays")
		return nil, false
	}
	name, ok := pathName(w, r, "overlay")
	if !ok {
		return nil, false
	}
	o, err := a.opts.Overlays.Overlay(name)
	switch {
	case errors.Is(err, overlay.ErrNotFound):
		writeAPIError(w, http.StatusNotFound, fmt.Sprintf("overlay %s does not exist", name))
		return nil, false
	case err != nil:
		writeAPIError(w, http.StatusUnprocessableEntity, fmt.Sprintf("overlay %s: %v", name, err))
		return nil, false
	}
	return o, true
}

func (a *API) getOverlay(w http.ResponseWriter, r *http.Request) {
	o, ok := a.overlay(w, r)
	if !ok {
		return
	}
	info := OverlayInfo{Name: o.Name, Source: string(o.Source), Hash: o.Hash, Files: []OverlayFile{}}
	for _, f := range o.Files {
		info.Files = append(info.Files, OverlayFile{Path: f.Path, Mode: f.Mode.String(), Size: len(f.Data), Template: f.IsTemplate(), Target: f.Target})
	}
	writeJSON(w, http.StatusOK, info)
}

// MaxQueryLen bounds a query parameter's value (bytes).
const MaxQueryLen = 1024

// queryParam returns the single value of query parameter k, checked with
// ok; it answers 400 when the parameter is repeated, too long or rejected.
func queryParam(w http.ResponseWriter, r *http.Request, k string, required bool) (string, bool) {
	vs := r.URL.Query()[k]
	switch {
	case len(vs) > 1:
		writeAPIError(w, http.StatusBadRequest, fmt.Sprintf("%s= given %d times: give it once", k, len(vs)))
		return "", false
	case len(vs) == 0 && required:
		writeAPIError(w, http.StatusBadRequest, fmt.Sprintf("%s= is required", k))
		return "", false
	case len(vs) == 0:
		return "", true
	case len(vs[0]) > MaxQueryLen || !utf8.ValidString(vs[0]) || strings.ContainsRune(vs[0], 0):
		writeAPIError(w, http.StatusBadRequest, fmt.Sprintf("%s=: at most %d bytes of UTF-8 text", k, MaxQueryLen))
		return "", false
	}
	return vs[0], true
}

// RenderAnswer is the answer of GET /api/v1/overlays/{name}/render.
type RenderAnswer struct {
	Overlay string        `json:"overlay"`
	Node    string        `json:"node"`
	File    string        `json:"file"`
	Files   []OverlayFile `json:"files"`
}

// renderOverlay renders one file of an overlay for a node (?node=&file=),
// as `wwboot overlay show --render` does.
func (a *API) renderOverlay(w http.ResponseWriter, r *http.Request) {
	o, ok := a.overlay(w, r)
	if !ok {
		return
	}
	node, ok := queryParam(w, r, "node", true)
	if !ok {
		return
	}
	if err := ValidAPIName("node", node); err != nil {
		writeAPIError(w, http.StatusBadRequest, err.Error())
		return
	}
	file, ok := queryParam(w, r, "file", true)
	if !ok {
		return
	}
	db, ok := a.snapshot(w, r)
	if !ok {
		return
	}
	n, err := db.Node(node)
	if err != nil {
		writeAPIError(w, http.StatusNotFound, fmt.Sprintf("node %s: %v", node, err))
		return
	}
	files, err := a.opts.Overlays.RenderFile(r.Context(), db, n, o.Name, file)
	if errors.Is(err, overlay.ErrNotFound) {
		writeAPIError(w, http.StatusNotFound, fmt.Sprintf("overlay %s has no file %s", o.Name, truncate(file, 64)))
		return
	}
	if err != nil {
		writeAPIError(w, http.StatusUnprocessableEntity, fmt.Sprintf("overlay %s, file %s, node %s: %v", o.Name, truncate(file, 64), node, err))
		return
	}
	ans := RenderAnswer{Overlay: o.Name, Node: node, File: file, Files: []OverlayFile{}}
	for _, f := range files {
		of := OverlayFile{Path: f.Path, Mode: f.Mode.String(), Size: len(f.Data), Target: f.Target}
		if utf8.Valid(f.Data) {
			of.Content = string(f.Data)
		} else {
			of.Content, of.Encoding = base64.StdEncoding.EncodeToString(f.Data), "base64"
		}
		ans.Files = append(ans.Files, of)
	}
	writeJSON(w, http.StatusOK, ans)
}

// Routes lists the API's routes as "METHOD PATH" (paths in OpenAPI's
// template form), in the order they were registered.
func (a *API) Routes() []string {
	out := make([]string, 0, len(a.routes))
	for _, rt := range a.routes {
		out = append(out, rt.method+" "+rt.path)
	}
	return out
}
