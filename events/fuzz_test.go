package events

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// FuzzParseStreamRequest: whatever the Last-Event-ID header and the query
// say, the parser returns known types only (at most MaxTypes) or an error.
func FuzzParseStreamRequest(f *testing.F) {
	for _, s := range [][2]string{{"", ""}, {"5", "types=node.state"}, {"x", ""}, {"", "after=18446744073709551616"},
		{"", "types=node.state,node.power,node.stage"}, {"-1", "types=,"}, {"", "after=1&after=2"}, {"", "types=%00"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, lastID, query string) {
		r := &http.Request{Header: http.Header{}, URL: &url.URL{RawQuery: query}}
		if lastID != "" {
			r.Header.Set("Last-Event-ID", lastID)
		}
		sr, err := ParseStreamRequest(r)
		if err != nil {
			if strings.Contains(err.Error(), "\n") && !strings.Contains(lastID+query, "\n") {
				t.Fatalf("error has a newline: %q", err)
			}
			return
		}
		if len(sr.Types) > MaxTypes {
			t.Fatalf("%d types", len(sr.Types))
		}
		for _, ty := range sr.Types {
			if !validType(ty) {
				t.Fatalf("unknown type %q accepted", ty)
			}
		}
		if sr.Resume != (lastID != "" || r.URL.Query().Get("after") != "") {
			t.Fatalf("resume %v for %q %q", sr.Resume, lastID, query)
		}
	})
}
