package provision_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/wwboot/wwboot/provision"
)

// FuzzRouter sends hostile request targets (paths, MACs, query strings)
// from any source port: the handler must not panic, must not fail with a
// server error, and must never send a file from outside the served trees.
func FuzzRouter(f *testing.F) {
	l := newLab(f)
	rt, err := os.OpenRoot(l.bootDir)
	if err != nil {
		f.Fatal(err)
	}
	defer rt.Close()
	opts := l.options(f)
	h, err := provision.NewHandler(opts)
	if err != nil {
		f.Fatal(err)
	}
	boot, err := os.ReadFile(filepath.Join(l.bootDir, "undionly.kpxe"))
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		"/ipxe/" + mac1, "/ipxe/AA-BB-CC-DD-EE-01", "/kernel/" + mac1 + "?compress=gz", "/image/" + mac1,
		"/overlay/runtime/" + mac1, "/provision/" + mac2 + "?stage=runtime&assetkey=" + asset,
		"/provision/" + mac1 + "?stage=../../etc/passwd", "/boot/../secret.txt", "/boot/escape", "/boot//undionly.kpxe",
		"/ipxe/..%2f..%2fsecret.txt", "/image/%00", "/status?x=%zz", "/metrics", "/ipxe/aa:bb:cc:dd:ee:01:02:03:04:05:06:07:08:09:10:11:12:13:14:15",
	} {
		f.Add(s, uint16(700))
		f.Add(s, uint16(50000))
	}
	f.Fuzz(func(t *testing.T, target string, port uint16) {
		u, err := url.ParseRequestURI(target)
		if err != nil {
			u = &url.URL{Path: target}
		}
		req := &http.Request{
			Method: http.MethodGet, URL: u, Host: "127.0.0.1:9873", Header: http.Header{},
			Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, RequestURI: target,
			RemoteAddr: "127.0.0.1:" + strconv.Itoa(int(port)),
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		body := w.Body.Bytes()
		if w.Code >= 500 {
			t.Fatalf("%q: %d %s", target, w.Code, body)
		}
		if bytes.Contains(body, []byte(outsideSecret)) {
			t.Fatalf("%q: a file from outside the served trees was sent", target)
		}
		if w.Code == http.StatusOK && strings.HasPrefix(u.Path, "/boot/") && !bytes.Equal(body, boot) {
			t.Fatalf("%q: /boot/ sent something other than the one file of the tree", target)
		}
	})
}

// FuzzParseReport feeds hostile report bodies (POST /agent/{mac}): no
// panic, and what is accepted is a known state, a short stage word and a
// printable reason of bounded length.
func FuzzParseReport(f *testing.F) {
	for _, s := range []string{
		`{"state":"up","stage":"agent","reason":""}`,
		`{"state":"failed","stage":"init","reason":"system overlay incomplete: no end marker"}`,
		`{"state":"booting"}`, `{"state":"up","extra":[1,2,{"a":null}]}`, `{"state":"up"} trailing`,
		`{"state":"failed","reason":"\u0000\u001b[31mred\n\u2028"}`, `{"state":"up","stage":"../../x"}`, `[]`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		rep, err := provision.ParseReport(b)
		if err != nil {
			return
		}
		switch rep.State {
		case provision.StateUp, provision.StateBooting, provision.StateFailed:
		default:
			t.Fatalf("accepted state %q", rep.State)
		}
		if len(rep.Stage) > 32 || strings.ContainsAny(rep.Stage, " /\n") {
			t.Fatalf("accepted stage %q", rep.Stage)
		}
		if len(rep.Reason) > provision.MaxReason+3 {
			t.Fatalf("reason of %d bytes", len(rep.Reason))
		}
		for _, r := range rep.Reason {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("control character %q in the reason", r)
			}
		}
	})
}
