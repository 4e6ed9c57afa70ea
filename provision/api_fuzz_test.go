package provision_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/wwboot/wwboot/events"
	"github.com/wwboot/wwboot/nodedb"
	"github.com/wwboot/wwboot/overlay"
	"github.com/wwboot/wwboot/provision"
)

// FuzzAPIName: an accepted name is short and made only of the characters
// the rule allows, so it is safe as a file name and in a URL path.
func FuzzAPIName(f *testing.F) {
	for _, s := range []string{"n1", "node-001.cluster", "a+b_c", "", ".", "..", "-x", "a/b", "a\x00", strings.Repeat("a", 300), "ñ"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := provision.ValidAPIName("node", s)
		if err != nil {
			if !utf8.ValidString(err.Error()) && utf8.ValidString(s) {
				t.Fatalf("error text not UTF-8: %q", err)
			}
			return
		}
		if len(s) == 0 || len(s) > provision.MaxNameLen || strings.ContainsAny(s, "/\\ \x00%?#") || s[0] == '.' || s[0] == '-' {
			t.Fatalf("accepted %q", s)
		}
	})
}

// FuzzAPIBody: the JSON decoder of request bodies takes one object of
// known fields or refuses, and what it takes encodes again.
func FuzzAPIBody(f *testing.F) {
	for _, s := range []string{`{}`, `{"comment":"x"}`, `{"bogus":1}`, `{"action":"on"}`, `{} {}`, `[`, `null`,
		`{"network devices":{"eth0":{"ipaddr":"10.0.0.1"}}}`, `{"resources":{"a":[1,{"b":null}]}}`, `{"tags":{"a":"b"},"tags":{"c":"d"}}`,
		`{"kernel":{"args":["a"]},"ipmi":{"password":"***"}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var rec nodedb.Record
		if err := provision.DecodeJSONBody(strings.NewReader(string(b)), 1<<12, &rec); err == nil {
			if len(b) > 1<<12 {
				t.Fatalf("took a body of %d bytes", len(b))
			}
			if _, err := json.Marshal(rec); err != nil {
				t.Fatalf("decoded record does not encode: %v", err)
			}
		}
		var pr provision.PowerRequest
		if err := provision.DecodeJSONBody(strings.NewReader(string(b)), 64, &pr); err == nil {
			_ = provision.ValidPowerAction(pr.Action)
		}
	})
}

// FuzzAPIRequest sends hostile methods, paths, queries and bodies to the
// API with the token: it must not panic or fail with a 500, every error
// must be a JSON {"error"}, and no secret of the inventory may come out.
func FuzzAPIRequest(f *testing.F) {
	const secret = "bmc-secret-pw"
	store, err := nodedb.NewMemoryStore(&nodedb.Config{
		NodeProfiles: map[string]*nodedb.Record{"default": {Comment: "d", Ipmi: &nodedb.IPMI{Password: secret}}},
		Nodes: map[string]*nodedb.Record{"n1": {Profiles: []string{"default"}, AssetKey: secret,
			NetDevs: map[string]*nodedb.NetDev{"default": {Hwaddr: mac1, Ipaddr: "10.0.0.1"}}}},
	})
	if err != nil {
		f.Fatal(err)
	}
	ovl, err := overlay.New(overlay.Options{})
	if err != nil {
		f.Fatal(err)
	}
	api, err := provision.NewAPI(provision.APIOptions{
		Store: store, Overlays: ovl, Auth: provision.TokenAuth{Token: []byte(apiToken)}, MaxBody: 4 << 10,
		Events: events.NewBus(events.Options{Capacity: 4}),
		Status: func() provision.Status { return provision.Status{} },
		Power:  func(ctx context.Context, node, action string) (string, error) { return "on", nil },
	})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []struct {
		method uint8
		target string
		body   string
	}{
		{0, "/api/v1/nodes", ""}, {0, "/api/v1/nodes/n1", ""}, {0, "/api/v1/nodes/..%2F..", ""},
		{1, "/api/v1/nodes/n1/power", `{"action":"on"}`}, {1, "/api/v1/nodes/n1/power", `{"action":"explode"}`},
		{1, "/api/v1/profiles/p", `{"comment":"c"}`}, {2, "/api/v1/profiles/default", `{"ipmi":{"password":"***"}}`},
		{3, "/api/v1/profiles/default", ""}, {0, "/api/v1/overlays/hostname/render?node=n1&file=etc/hostname.ww", ""},
		{0, "/api/v1/overlays/hostname/render?node=n1&file=%00", ""}, {0, "/api/v1/events?types=node.state&after=99999999999999999999", ""},
		{0, "/api/v1/images/%2e%2e", ""}, {4, "/api/v1/profiles", "{}"}, {0, "/api/v1/status", ""},
	} {
		f.Add(s.method, s.target, s.body)
	}
	methods := []string{"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"}
	f.Fuzz(func(t *testing.T, m uint8, target, body string) {
		if !strings.HasPrefix(target, "/") {
			target = "/api/v1/" + target
		}
		req, err := http.NewRequest(methods[int(m)%len(methods)], "http://x"+target, strings.NewReader(body))
		if err != nil {
			return
		}
		// A stream lasts until its client goes: this one is gone already.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		req = req.WithContext(ctx)
		req.RemoteAddr = "192.0.2.9:4000"
		req.Header.Set("Authorization", "Bearer "+apiToken)
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, req)
		if rec.Code >= 500 && rec.Code != http.StatusNotImplemented && rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("%s %q: %d %s", req.Method, target, rec.Code, rec.Body)
		}
		if strings.Contains(rec.Body.String(), secret) {
			t.Fatalf("%s %q leaked a secret: %s", req.Method, target, rec.Body)
		}
		if rec.Code >= 400 && req.Method != "HEAD" {
			var e struct{ Error string }
			if json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Error == "" {
				t.Fatalf("%s %q: %d without a JSON error: %q", req.Method, target, rec.Code, rec.Body)
			}
		}
	})
}
