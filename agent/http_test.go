package agent

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestClientAgainstNetHTTP runs the agent's small HTTP client against
// net/http's server: fixed-length, chunked and empty bodies, the request
// headers and body it sends, its size limit and its deadline.
func TestClientAgainstNetHTTP(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/fixed":
			w.Header().Set("ETag", `"abc"`)
			_, _ = w.Write([]byte("fixed body"))
		case "/chunked":
			for _, part := range []string{"one ", "two ", strings.Repeat("x", 5000)} {
				_, _ = w.Write([]byte(part))
				w.(http.Flusher).Flush()
			}
		case "/echo":
			b := make([]byte, 100)
			n, _ := r.Body.Read(b)
			w.Header().Set("X-Inm", r.Header.Get("If-None-Match"))
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write(append([]byte(r.Method+" "+r.URL.RequestURI()+" "), b[:n]...))
		case "/304":
			w.WriteHeader(http.StatusNotModified)
		case "/slow":
			time.Sleep(2 * time.Second)
		}
	}))
	defer ts.Close()
	ctx := context.Background()
	get := func(p string, req request) (*response, error) {
		req.path = p
		if req.method == "" {
			req.method = "GET"
		}
		return do(ctx, DialAny, ts.URL, nil, req)
	}
	r, err := get("/fixed", request{})
	require.NoError(t, err)
	assert.Equal(t, 200, r.code)
	assert.Equal(t, "fixed body", string(r.body))
	assert.Equal(t, `"abc"`, r.header.Get("ETag"))

	r, err = get("/chunked", request{})
	require.NoError(t, err)
	assert.Equal(t, "one two "+strings.Repeat("x", 5000), string(r.body))

	r, err = get("/echo?a=b", request{method: "POST", body: []byte(`{"x":1}`), header: map[string]string{"If-None-Match": `"e1"`}})
	require.NoError(t, err)
	assert.Equal(t, 201, r.code)
	assert.Equal(t, `POST /echo?a=b {"x":1}`, string(r.body))
	assert.Equal(t, `"e1"`, r.header.Get("X-Inm"))

	r, err = get("/304", request{})
	require.NoError(t, err)
	assert.Equal(t, 304, r.code)
	assert.Empty(t, r.body)

	_, err = get("/chunked", request{limit: 100})
	assert.ErrorContains(t, err, "larger than")
	_, err = get("/fixed", request{limit: 3})
	assert.ErrorContains(t, err, "larger than")

	start := time.Now()
	_, err = get("/slow", request{wait: 300 * time.Millisecond})
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), time.Second)

	for _, bad := range []string{"https://x:1", "x:1", "http://", "http://a b"} {
		_, err := do(ctx, DialAny, bad, nil, request{method: "GET", path: "/"})
		assert.ErrorContains(t, err, "http://HOST:PORT", bad)
	}
}

func TestReadNodeConf(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "node.conf")
	require.NoError(t, os.WriteFile(p, []byte(`# Written by wwboot
WWBOOT_NODE='n1'
WWBOOT_HWADDR='52:54:00:AA:bb:01'
WWBOOT_SERVER='10.0.0.1'
WWBOOT_URL='http://10.0.0.1:9873'
WWBOOT_HWADDRS='52:54:00:aa:bb:01 52:54:00:aa:bb:02'
`), 0o644))
	c, err := ReadNodeConf(p)
	require.NoError(t, err)
	assert.Equal(t, "http://10.0.0.1:9873", c.URL)
	assert.Equal(t, "52:54:00:aa:bb:01", c.HWAddr.String())
	assert.Equal(t, []string{"52:54:00:aa:bb:01", "52:54:00:aa:bb:02"}, c.HWAddrs)
	assert.Equal(t, "n1", c.Node)
	assert.Empty(t, c.TLSURL, "agent tls: false")

	// The TLS channel (agent tls: true).
	require.NoError(t, os.WriteFile(p, []byte("WWBOOT_HWADDR='52:54:00:aa:bb:01'\nWWBOOT_URL='http://10.0.0.1:9873'\n"+
		"WWBOOT_TLS_URL='https://10.0.0.1:9874'\n"), 0o644))
	c, err = ReadNodeConf(p)
	require.NoError(t, err)
	assert.Equal(t, "https://10.0.0.1:9874", c.TLSURL)
	for _, bad := range []string{"WWBOOT_TLS_URL='http://10.0.0.1:9874'", "WWBOOT_URL='https://10.0.0.1:9873'"} {
		require.NoError(t, os.WriteFile(p, []byte("WWBOOT_HWADDR='52:54:00:aa:bb:01'\nWWBOOT_URL='http://10.0.0.1:9873'\n"+bad+"\n"), 0o644))
		_, err = ReadNodeConf(p)
		assert.Error(t, err, bad)
	}

	// An older node.conf without WWBOOT_URL: the server's address, port 9873.
	require.NoError(t, os.WriteFile(p, []byte("WWBOOT_HWADDR='52:54:00:aa:bb:01'\nWWBOOT_SERVER='10.0.0.7'\n"), 0o644))
	c, err = ReadNodeConf(p)
	require.NoError(t, err)
	assert.Equal(t, "http://10.0.0.7:9873", c.URL)

	require.NoError(t, os.WriteFile(p, []byte("WWBOOT_SERVER='10.0.0.7'\n"), 0o644))
	_, err = ReadNodeConf(p)
	assert.ErrorContains(t, err, "WWBOOT_HWADDR")
	_, err = ReadNodeConf(filepath.Join(dir, "missing"))
	assert.ErrorContains(t, err, "-server")
}

func TestJSONString(t *testing.T) {
	for in, want := range map[string]string{
		`plain`:         `"plain"`,
		"q\"b\\\n\x01":  `"q\"b\\\u000a\u0001"`,
		"bad\xffutf8 ü": `"bad` + "\uFFFD" + `utf8 ü"`,
	} {
		assert.Equal(t, want, jsonString(in))
	}
}
