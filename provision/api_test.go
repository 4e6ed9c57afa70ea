package provision_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/events"
	"github.com/wwboot/wwboot/nodedb"
	"github.com/wwboot/wwboot/power"
	"github.com/wwboot/wwboot/provision"
	"github.com/wwboot/wwboot/provision/netlab"
)

const apiToken = "0123456789abcdef0123456789abcdef"

// fakeBMC is an embedder's BMC in memory.
type fakeBMC struct {
	mu    sync.Mutex
	state power.State
	fail  error
}

func (b *fakeBMC) set(s power.State) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return b.fail
	}
	b.state = s
	return nil
}
func (b *fakeBMC) On(context.Context) error    { return b.set(power.StateOn) }
func (b *fakeBMC) Off(context.Context) error   { return b.set(power.StateOff) }
func (b *fakeBMC) Cycle(context.Context) error { return b.set(power.StateOn) }
func (b *fakeBMC) Reset(context.Context) error { return b.set(power.StateOn) }
func (b *fakeBMC) Status(context.Context) (power.State, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state, b.fail
}

// apiLab is the lab's provisioning handler with the API in front, an event
// bus both publish to, and BMCs for n1 (works) and n2 (fails).
type apiLab struct {
	*lab
	bus  *events.Bus
	h    *provision.Handler
	api  *provision.API
	bmcs map[string]*fakeBMC
	srv  http.Handler
}

func newAPILab(t *testing.T) *apiLab {
	l := &apiLab{lab: newLab(t), bus: events.NewBus(events.Options{}),
		bmcs: map[string]*fakeBMC{"n1": {state: power.StateOff}, "n2": {fail: errors.New("BMC unreachable")}}}
	opts := l.options(t)
	opts.Events = l.bus
	opts.InsecurePorts, opts.AnySourceAddr = true, true
	var err error
	l.h, err = provision.NewHandler(opts)
	require.NoError(t, err)
	l.api, err = provision.NewAPI(provision.APIOptions{
		Store: l.store, Images: l.images, Overlays: l.overlays, Events: l.bus,
		Auth: provision.TokenAuth{Token: []byte(apiToken)}, MaxBody: 4 << 10,
		Power: func(ctx context.Context, node, action string) (string, error) {
			a, err := power.ParseAction(action)
			if err != nil {
				return "", err
			}
			r := power.Run(ctx, []power.Target{{Node: node, BMC: l.bmcs[node]}}, a, power.Options{Events: l.bus})
			return string(r[0].State), r[0].Err
		},
	})
	require.NoError(t, err)
	l.srv = l.api.Wrap(l.h)
	return l
}

// serveOn serves the lab on addr ("127.0.0.1:0" or a non-loopback one).
func (l *apiLab) serveOn(t *testing.T, addr string) string {
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	ts := httptest.NewUnstartedServer(l.srv)
	ts.Listener.Close()
	ts.Listener = ln
	ts.Start()
	t.Cleanup(ts.Close)
	return ts.URL
}

// call does one API request; token "" sends none.
func call(t *testing.T, method, url, token, body string) (int, []byte) {
	t.Helper()
	return callWith(t, http.DefaultClient, method, url, token, body)
}

// callWith is call through client c.
func callWith(t *testing.T, c *http.Client, method, url, token, body string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	require.NoError(t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if resp.StatusCode >= 400 {
		var e struct{ Error string }
		require.NoError(t, json.Unmarshal(b, &e), "error bodies are JSON: %s", b)
		require.NotEmpty(t, e.Error)
	}
	return resp.StatusCode, b
}

// nonLoopback returns an address of this machine that is not loopback.
func nonLoopback(t *testing.T) string {
	addrs, err := net.InterfaceAddrs()
	require.NoError(t, err)
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() && !ipn.IP.IsLinkLocalUnicast() {
			return ipn.IP.String()
		}
	}
	t.Skip("no non-loopback IPv4 address on this machine")
	return ""
}

func TestAPIAuth(t *testing.T) {
	l := newAPILab(t)
	local := l.serveOn(t, "127.0.0.1:0")
	profile := `{"comment":"from the API"}`
	// A real other machine: a client in its own network namespace.
	netlab.Require(t)
	srvNS, cliNS := netlab.NewNS(t), netlab.NewNS(t)
	netlab.Veth(t, srvNS, "wwb0", netip.MustParsePrefix("10.97.0.1/24"), cliNS, "eth0", netip.MustParsePrefix("10.97.0.2/24"))
	var ln net.Listener
	require.NoError(t, srvNS.Do(func() (err error) { ln, err = net.Listen("tcp4", "0.0.0.0:9873"); return err }))
	ts := httptest.NewUnstartedServer(l.srv)
	ts.Listener.Close()
	ts.Listener = ln
	ts.Start()
	t.Cleanup(ts.Close)
	nsClient := func(ns *netlab.NS) *http.Client {
		d := &net.Dialer{Timeout: 5 * time.Second}
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
				err = ns.Do(func() error { c, err = d.DialContext(ctx, network, addr); return err })
				return c, err
			}}}
	}
	const remote = "http://10.97.0.1:9873"
	other := nsClient(cliNS)
	callLocal := func(method, url, token, body string) int {
		code, _ := call(t, method, url, token, body)
		return code
	}

	// Loopback reads need no token; changes do, always.
	code := callLocal("GET", local+"/api/v1/nodes", "", "")
	assert.Equal(t, http.StatusOK, code)
	code = callLocal("POST", local+"/api/v1/profiles/p1", "", profile)
	assert.Equal(t, http.StatusUnauthorized, code)
	code = callLocal("POST", local+"/api/v1/profiles/p1", "wrong-token", profile)
	assert.Equal(t, http.StatusForbidden, code)
	code = callLocal("POST", local+"/api/v1/nodes/n1/power", "", `{"action":"on"}`)
	assert.Equal(t, http.StatusUnauthorized, code)
	code = callLocal("GET", local+"/api/v1/overlays/hostname/render?node=n1&file=etc/hostname.ww", "", "")
	assert.Equal(t, http.StatusUnauthorized, code, "previews may show secrets: token even from loopback")
	db, err := l.store.Snapshot(context.Background())
	require.NoError(t, err)
	_, err = db.Profile("p1")
	assert.Error(t, err, "a refused change changed nothing")
	assert.Equal(t, power.StateOff, l.bmcs["n1"].state)

	// The server's own machine is one rule for the listings and the API:
	// loopback, or a connection from the server's own (non-loopback)
	// address. Both get reads without a token; changes still need it.
	srvClient := nsClient(srvNS)
	for _, p := range []string{"/api/v1/nodes", "/status"} {
		resp, err := srvClient.Get(remote + p)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode, "%s from the server's own address 10.97.0.1", p)
	}
	resp, err := srvClient.Post(remote+"/api/v1/profiles/p9", "application/json", strings.NewReader(profile))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "changes need the token, from the server too")
	// The scheme of Authorization is case-insensitive (RFC 9110 section 11.1).
	for _, scheme := range []string{"bearer", "BEARER", "Bearer"} {
		req, err := http.NewRequest("GET", remote+"/api/v1/nodes", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", scheme+" "+apiToken)
		resp, err := other.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode, "scheme %q", scheme)
	}

	// From another address, reads need the token too.
	for _, p := range []string{"/api/v1/nodes", "/api/v1/nodes/n1", "/api/v1/status", "/api/v1/profiles", "/api/v1/images", "/api/v1/overlays", "/api/v1/events"} {
		code, _ = callWith(t, other, "GET", remote+p, "", "")
		assert.Equal(t, http.StatusUnauthorized, code, p)
		code, _ = callWith(t, other, "GET", remote+p, "nope", "")
		assert.Equal(t, http.StatusForbidden, code, p)
	}
	code, body := callWith(t, other, "GET", remote+"/api/v1/nodes", apiToken, "")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, string(body), `"id": "n1"`)
	code, _ = callWith(t, other, "GET", remote+"/api/v1/openapi.json", "", "")
	assert.Equal(t, http.StatusOK, code, "the API's description is public")

	// The token is accepted for changes.
	code, _ = callWith(t, other, "POST", remote+"/api/v1/profiles/p1", apiToken, profile)
	assert.Equal(t, http.StatusCreated, code)
	code, body = callWith(t, other, "POST", remote+"/api/v1/nodes/n1/power", apiToken, `{"action":"on"}`)
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, string(body), `"state": "on"`)
	assert.Equal(t, power.StateOn, l.bmcs["n1"].state)

	// A server without a token refuses every change.
	noTok, err := provision.NewAPI(provision.APIOptions{Store: l.store})
	require.NoError(t, err)
	ts = httptest.NewServer(noTok)
	defer ts.Close()
	code, _ = call(t, "DELETE", ts.URL+"/api/v1/profiles/p1", "anything", "")
	assert.Equal(t, http.StatusForbidden, code)
	code, _ = call(t, "DELETE", ts.URL+"/api/v1/profiles/p1", "", "")
	assert.Equal(t, http.StatusUnauthorized, code)
}

func TestAPIProfiles(t *testing.T) {
	l := newAPILab(t)
	u := l.serveOn(t, "127.0.0.1:0") + "/api/v1/profiles/"
	code, body := call(t, "POST", u+"gpu", apiToken, `{"comment":"GPU nodes","tags":{"gpu":"a100"},"ipmi":{"username":"admin","password":"hunter2"},"kernel":{"args":["quiet"]}}`)
	require.Equal(t, http.StatusCreated, code, string(body))
	assert.NotContains(t, string(body), "hunter2")
	assert.Contains(t, string(body), `"password": "***"`)
	code, _ = call(t, "POST", u+"gpu", apiToken, `{}`)
	assert.Equal(t, http.StatusConflict, code)

	// Reads show the redacted record; writing it back keeps the password.
	code, body = call(t, "GET", u+"gpu", "", "")
	require.Equal(t, http.StatusOK, code)
	var p provision.Profile
	require.NoError(t, json.Unmarshal(body, &p))
	assert.Equal(t, "gpu", p.Name)
	assert.Equal(t, "a100", p.Tags["gpu"])
	p.Comment = "GPU nodes, changed"
	b, err := json.Marshal(p.Record)
	require.NoError(t, err)
	code, body = call(t, "PUT", u+"gpu", apiToken, string(b))
	require.Equal(t, http.StatusOK, code, string(body))
	db, err := l.store.Snapshot(context.Background())
	require.NoError(t, err)
	rec, err := db.Profile("gpu")
	require.NoError(t, err)
	assert.Equal(t, "hunter2", rec.Ipmi.Password)
	assert.Equal(t, "GPU nodes, changed", rec.Comment)
	file, err := os.ReadFile(filepath.Join(l.root, "nodes.conf"))
	require.NoError(t, err)
	assert.Contains(t, string(file), "GPU nodes, changed", "the change is in nodes.conf")

	code, body = call(t, "GET", l.serveOn(t, "127.0.0.1:0")+"/api/v1/profiles", "", "")
	require.Equal(t, http.StatusOK, code)
	var list provision.ProfileList
	require.NoError(t, json.Unmarshal(body, &list))
	var names []string
	for _, p := range list.Profiles {
		names = append(names, p.Name)
	}
	assert.Equal(t, []string{"default", "gpu"}, names)

	for _, c := range []struct {
		method, name, body string
		code               int
	}{
		{"PUT", "missing", `{}`, http.StatusNotFound},
		{"GET", "missing", ``, http.StatusNotFound},
		{"DELETE", "missing", ``, http.StatusNotFound},
		{"DELETE", "default", ``, http.StatusConflict}, // n1 and n2 use it
		{"POST", "bad..name%2F", `{}`, http.StatusBadRequest},
		{"POST", "-x", `{}`, http.StatusBadRequest},
		{"POST", "p2", `{"bogus":1}`, http.StatusBadRequest},
		{"POST", "p2", `{} {}`, http.StatusBadRequest},
		{"POST", "p2", `[1]`, http.StatusBadRequest},
		{"POST", "p2", `{"comment":"` + strings.Repeat("x", 5000) + `"}`, http.StatusRequestEntityTooLarge},
		{"POST", "p2", `{"network devices":{"eth0":{"ipaddr":"not-an-ip"}}}`, http.StatusUnprocessableEntity},
		{"POST", "p2", `{"profiles":["nonexistent-profile"]}`, http.StatusUnprocessableEntity},
		{"POST", "p2", `{"profiles":["default"]}`, http.StatusCreated},
		{"DELETE", "gpu", ``, http.StatusNoContent},
		{"GET", "gpu", ``, http.StatusNotFound},
	} {
		code, body := call(t, c.method, u+c.name, apiToken, c.body)
		assert.Equal(t, c.code, code, "%s %s %s: %s", c.method, c.name, c.body, body)
	}
	// Not JSON.
	req, _ := http.NewRequest("POST", u+"p3", strings.NewReader("comment: x"))
	req.Header.Set("Authorization", "Bearer "+apiToken)
	req.Header.Set("Content-Type", "application/yaml")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusUnsupportedMediaType, resp.StatusCode)
}

func TestAPINodesImagesOverlays(t *testing.T) {
	l := newAPILab(t)
	base := l.serveOn(t, "127.0.0.1:0") + "/api/v1"
	code, body := call(t, "GET", base+"/nodes", "", "")
	require.Equal(t, http.StatusOK, code)
	var nodes provision.NodeList
	require.NoError(t, json.Unmarshal(body, &nodes))
	require.Len(t, nodes.Nodes, 2)
	assert.Equal(t, "n1", nodes.Nodes[0].ID)
	assert.Equal(t, "/sbin/init", nodes.Nodes[0].Init, "effective: merged from the default profile")
	assert.Equal(t, "***", nodes.Nodes[1].AssetKey)
	assert.NotContains(t, string(body), asset)

	code, body = call(t, "GET", base+"/nodes/n2", "", "")
	require.Equal(t, http.StatusOK, code)
	assert.NotContains(t, string(body), asset)
	code, _ = call(t, "GET", base+"/nodes/n9", "", "")
	assert.Equal(t, http.StatusNotFound, code)
	resp, _ := get(t, base+"/nodes/..%2f..%2fprofiles")
	assert.NotEqual(t, http.StatusOK, resp.StatusCode)

	code, body = call(t, "GET", base+"/images", "", "")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, string(body), `"name": "img"`)
	code, body = call(t, "GET", base+"/images/img", "", "")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, string(body), l.meta.SHA256)
	code, _ = call(t, "GET", base+"/images/nope", "", "")
	assert.Equal(t, http.StatusNotFound, code)
	code, _ = call(t, "GET", base+"/images/-bad", "", "")
	assert.Equal(t, http.StatusBadRequest, code)

	code, body = call(t, "GET", base+"/overlays", "", "")
	require.Equal(t, http.StatusOK, code)
	var ol provision.OverlayList
	require.NoError(t, json.Unmarshal(body, &ol))
	assert.Contains(t, ol.Overlays, "hostname")
	code, body = call(t, "GET", base+"/overlays/hostname", "", "")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, string(body), `"path": "etc/hostname.ww"`)
	code, body = call(t, "GET", base+"/overlays/hostname/render?node=n1&file=etc/hostname.ww", apiToken, "")
	require.Equal(t, http.StatusOK, code, string(body))
	var ra provision.RenderAnswer
	require.NoError(t, json.Unmarshal(body, &ra))
	require.Len(t, ra.Files, 1)
	assert.Equal(t, "etc/hostname", ra.Files[0].Path)
	assert.Equal(t, "n1", strings.TrimSpace(ra.Files[0].Content))
	for q, want := range map[string]int{
		"?node=n1":                                   http.StatusBadRequest,
		"?node=n1&file=a&file=b":                     http.StatusBadRequest,
		"?node=n9&file=etc/hostname.ww":              http.StatusNotFound,
		"?node=n1&file=etc/nothing":                  http.StatusNotFound,
		"?node=%2F&file=x":                           http.StatusBadRequest,
		"?node=n1&file=" + strings.Repeat("a", 2000): http.StatusBadRequest,
		"?node=n1&file=..%2F..%2F..%2Fetc%2Fpasswd":  http.StatusNotFound,
	} {
		code, _ := call(t, "GET", base+"/overlays/hostname/render"+q, apiToken, "")
		assert.Equal(t, want, code, q)
	}
	code, _ = call(t, "GET", base+"/overlays/nope", "", "")
	assert.Equal(t, http.StatusNotFound, code)
	code, _ = call(t, "GET", base+"/nothing", "", "")
	assert.Equal(t, http.StatusNotFound, code)
	code, _ = call(t, "PATCH", base+"/nodes/n1", apiToken, "{}")
	assert.Equal(t, http.StatusMethodNotAllowed, code)

	// The provisioning routes still answer beside the API.
	resp, _ = get(t, strings.TrimSuffix(base, "/api/v1")+"/ipxe/"+mac1)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	code, body = call(t, "GET", base+"/status", "", "")
	require.Equal(t, http.StatusOK, code)
	var st provision.Status
	require.NoError(t, json.Unmarshal(body, &st))
	require.NotEmpty(t, st.Nodes)
	assert.Equal(t, provision.StateBooting, st.Nodes[0].State)
}

// sseReader reads events off a stream.
func sseReader(t *testing.T, url, token string) <-chan events.Event {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	ch := make(chan events.Event, 64)
	go func() {
		defer resp.Body.Close()
		defer close(ch)
		buf := make([]byte, 0, 4096)
		tmp := make([]byte, 4096)
		for {
			n, err := resp.Body.Read(tmp)
			buf = append(buf, tmp[:n]...)
			for {
				i := bytes.Index(buf, []byte("\n\n"))
				if i < 0 {
					break
				}
				for _, line := range strings.Split(string(buf[:i]), "\n") {
					if d, ok := strings.CutPrefix(line, "data: "); ok {
						var e events.Event
						if json.Unmarshal([]byte(d), &e) == nil && e.ID > 0 {
							ch <- e
						}
					}
				}
				buf = buf[i+2:]
			}
			if err != nil {
				return
			}
		}
	}()
	return ch
}

// A client reading /api/v1/events sees a node's state change, and a power
// action made through the API, within a second.
func TestAPIEventStream(t *testing.T) {
	l := newAPILab(t)
	base := l.serveOn(t, net.JoinHostPort(nonLoopback(t), "0"))
	stream := sseReader(t, base+"/api/v1/events", apiToken)
	// The stream is subscribed once its headers came back (sseReader
	// waits for them); anything published from now on reaches it.
	next := func(typ string) (events.Event, time.Duration) {
		start := time.Now()
		for {
			select {
			case e, ok := <-stream:
				require.True(t, ok, "stream ended")
				if e.Type == typ {
					return e, time.Since(start)
				}
			case <-time.After(time.Second):
				t.Fatalf("no %s event within a second", typ)
			}
		}
	}
	resp, _ := get(t, base+"/ipxe/"+mac1)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	e, took := next(events.TypeState)
	assert.Equal(t, "n1", e.Node)
	assert.Equal(t, provision.StateBooting, e.State)
	t.Logf("state change reached the stream in %s", took)

	code, body := call(t, "POST", base+"/api/v1/nodes/n2/power", apiToken, `{"action":"cycle"}`)
	assert.Equal(t, http.StatusBadGateway, code)
	assert.Contains(t, string(body), "BMC unreachable")
	e, _ = next(events.TypePower)
	assert.Equal(t, "n2", e.Node)
	assert.Equal(t, "cycle", e.Action)
	assert.Contains(t, e.Error, "BMC unreachable")

	// Resume: a new stream from the first event's ID gets what came after.
	first := e.ID
	l.bus.Publish(events.Event{Type: events.TypeStage, Node: "n1", Stage: "kernel"})
	again := sseReader(t, fmt.Sprintf("%s/api/v1/events?after=%d&types=node.stage", base, first), apiToken)
	select {
	case e := <-again:
		assert.Equal(t, "kernel", e.Stage)
		assert.Greater(t, e.ID, first)
	case <-time.After(time.Second):
		t.Fatal("no resumed event")
	}
}

// The committed OpenAPI document describes exactly the API's routes.
func TestAPIOpenAPIMatchesRoutes(t *testing.T) {
	var doc struct {
		OpenAPI    string                                `json:"openapi"`
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components struct {
			Schemas map[string]json.RawMessage `json:"schemas"`
		} `json:"components"`
	}
	require.NoError(t, json.Unmarshal(provision.OpenAPI, &doc))
	assert.True(t, strings.HasPrefix(doc.OpenAPI, "3."))
	var documented []string
	for p, ops := range doc.Paths {
		for m, op := range ops {
			if m == "parameters" {
				continue
			}
			documented = append(documented, strings.ToUpper(m)+" "+p)
			var o struct {
				OperationID string                     `json:"operationId"`
				Responses   map[string]json.RawMessage `json:"responses"`
			}
			require.NoError(t, json.Unmarshal(op, &o))
			assert.NotEmpty(t, o.OperationID, m+" "+p)
			assert.NotEmpty(t, o.Responses, m+" "+p)
		}
	}
	api, err := provision.NewAPI(provision.APIOptions{Store: &nodedb.MemoryStore{}})
	require.NoError(t, err)
	routes := api.Routes()
	sort.Strings(routes)
	sort.Strings(documented)
	assert.Equal(t, routes, documented)

	// Every $ref resolves.
	for _, ref := range refs(provision.OpenAPI) {
		name, ok := strings.CutPrefix(ref, "#/components/schemas/")
		require.True(t, ok, ref)
		assert.Contains(t, doc.Components.Schemas, name, ref)
	}
	// The server serves the same bytes.
	ts := httptest.NewServer(api)
	defer ts.Close()
	code, body := call(t, "GET", ts.URL+"/api/v1/openapi.json", "", "")
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, provision.OpenAPI, body)
}

func refs(b []byte) []string {
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				if s, ok := c.(string); ok && k == "$ref" {
					out = append(out, s)
				}
				walk(c)
			}
		case []any:
			for _, c := range x {
				walk(c)
			}
		}
	}
	var v any
	_ = json.Unmarshal(b, &v)
	walk(v)
	return out
}

// Close ends the streams under way, so a server's drain does not wait for
// them.
func TestAPICloseEndsStreams(t *testing.T) {
	l := newAPILab(t)
	base := l.serveOn(t, "127.0.0.1:0")
	stream := sseReader(t, base+"/api/v1/events", apiToken)
	l.api.Close()
	select {
	case _, ok := <-stream:
		assert.False(t, ok, "no event was published")
	case <-time.After(time.Second):
		t.Fatal("the stream did not end within a second of Close")
	}
}
