package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/events"
)

func TestAPITokenFile(t *testing.T) {
	root := t.TempDir()
	out := mustRun(t, root, "init")
	assert.Contains(t, out, "admin.token")
	p := filepath.Join(root, apiTokenFile)
	fi, err := os.Stat(p)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	tok, err := readAPIToken(p)
	require.NoError(t, err)
	assert.Len(t, tok, 64)
	mustRun(t, root, "init")
	again, err := readAPIToken(p)
	require.NoError(t, err)
	assert.Equal(t, tok, again, "init again keeps the token")

	// Concurrent creators agree on one token.
	p2 := filepath.Join(t.TempDir(), apiTokenFile)
	var wg sync.WaitGroup
	toks := make([][]byte, 8)
	for i := range toks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			toks[i], _, _ = ensureAPIToken(p2)
		}()
	}
	wg.Wait()
	for _, tk := range toks {
		assert.Equal(t, toks[0], tk)
	}
	ents, err := os.ReadDir(filepath.Dir(p2))
	require.NoError(t, err)
	assert.Len(t, ents, 1, "no temporaries left")

	require.NoError(t, os.Chmod(p, 0o644))
	_, err = readAPIToken(p)
	assert.ErrorContains(t, err, "chmod 600")
}

func TestEventsConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.conf")
	require.NoError(t, os.WriteFile(good, []byte(`events:
  concurrency: 2
  hooks:
    - program: /bin/true
      types: [node.state]
      timeout: 5s
    - webhook: https://user:pw@example.com/hook?x=1
      retries: 3
      backoff: 500ms
`), 0o644))
	cfg, err := loadServeConfig(good)
	require.NoError(t, err)
	require.Len(t, cfg.Events.Hooks, 2)
	assert.Equal(t, 5*time.Second, cfg.Events.Hooks[0].Timeout)
	assert.Equal(t, 500*time.Millisecond, cfg.Events.Hooks[1].Backoff)
	hooks, err := cfg.Events.hooks()
	require.NoError(t, err)
	assert.Equal(t, "https://example.com/hook", hooks[1].Name, "no credentials in the hook's name (logs)")

	for conf, want := range map[string]string{
		"events:\n  hooks:\n    - types: [node.state]\n":                                                     "hooks[0]: give either program: or webhook:",
		"events:\n  hooks:\n    - program: relative/path\n":                                                  "absolute path",
		"events:\n  hooks:\n    - webhook: ftp://x/\n":                                                       "http:// or https://",
		"events:\n  hooks:\n    - program: /bin/true\n    - program: /bin/true\n      types: [node.bogus]\n": "hooks[1]: types",
		"events:\n  hooks:\n    - webhook: http://x/\n      retries: 99\n":                                   "use 0 to 20",
		"events:\n  concurrency: -1\n":                                                                       "concurrency",
		"events:\n  hooks:\n    - program: /bin/true\n      retries: 2\n":                                    "webhooks only",
		"events:\n  hooks:\n    - webhook: http://x/\n      timeout: soon\n":                                 "bad.conf",
	} {
		bad := filepath.Join(dir, "bad.conf")
		require.NoError(t, os.WriteFile(bad, []byte(conf), 0o644))
		_, err := loadServeConfig(bad)
		assert.ErrorContains(t, err, want, conf)
	}
	cfg = serveConfig{Events: eventsConfig{Hooks: []hookConfig{{Webhook: "http://x/", SecretFile: filepath.Join(dir, "missing")}}}}
	_, err = cfg.Events.hooks()
	assert.ErrorContains(t, err, "hooks[0]: secret file")
}

// lockedBuffer is a bytes.Buffer safe for a writer and a reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestServeEventsAndAPI runs wwboot serve with a hook program and a signed
// webhook: a node's boot request reaches both as a node.state event, wwboot
// status reads the API with the token, and wwboot power --server goes
// through the API (the node has no BMC: its error comes back, and the
// webhook sees the node.power event).
func TestServeEventsAndAPI(t *testing.T) {
	root := t.TempDir()
	mustRun(t, root, "init")
	mustRun(t, root, "node", "add", "n1", "--netdev", "default", "--hwaddr", "52:54:00:12:34:56", "--ipaddr", "127.0.0.1", "--netmask", "255.0.0.0")

	hookOut := filepath.Join(root, "hook.out")
	script := filepath.Join(root, "hook.sh")
	require.NoError(t, os.WriteFile(script, []byte("#!/bin/sh\necho \"$WWBOOT_EVENT_TYPE $WWBOOT_EVENT_NODE $WWBOOT_EVENT_STATE\" >> "+hookOut+"\n"), 0o755))
	secret := []byte("webhook-secret-1")
	require.NoError(t, os.WriteFile(filepath.Join(root, "webhook.secret"), append(secret, '\n'), 0o600))
	got := make(chan events.Event, 64)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if !events.VerifySignature(secret, body, r.Header.Get(events.HeaderSignature)) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var e events.Event
		if json.Unmarshal(body, &e) != nil {
			http.Error(w, "bad JSON", http.StatusBadRequest)
			return
		}
		got <- e
		w.WriteHeader(http.StatusNoContent)
	}))
	defer recv.Close()
	conf, err := os.ReadFile(filepath.Join(root, "wwboot.conf"))
	require.NoError(t, err)
	conf = append(conf, []byte("events:\n  hooks:\n    - program: "+script+"\n      types: [node.state]\n"+
		"    - webhook: "+recv.URL+"/hook\n      secret file: "+filepath.Join(root, "webhook.secret")+"\n      retries: 2\n")...)
	require.NoError(t, os.WriteFile(filepath.Join(root, "wwboot.conf"), conf, 0o644))

	port := freePort(t)
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	ctx, cancel := context.WithCancel(context.Background())
	logs := &lockedBuffer{}
	done := make(chan error, 1)
	go func() {
		cmd := newRootCmd(logs, logs, func(string) string { return "" })
		cmd.SetArgs([]string{"--root", root, "serve", "--dhcp", "off", "--no-tftp", "--http-port", strconv.Itoa(port), "--agent-tls-port", strconv.Itoa(freePort(t))})
		done <- cmd.ExecuteContext(ctx)
	}()
	defer func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(20 * time.Second):
			t.Error("serve did not stop")
		}
		if t.Failed() {
			t.Logf("serve:\n%s", logs.String())
		}
	}()
	require.Eventually(t, func() bool {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	}, 20*time.Second, 20*time.Millisecond)

	start := time.Now()
	resp, err := http.Get(base + "/ipxe/52-54-00-12-34-56")
	require.NoError(t, err)
	resp.Body.Close()
	wait := func(typ string) events.Event {
		for {
			select {
			case e := <-got:
				if e.Type == typ {
					return e
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("the webhook got no %s event", typ)
			}
		}
	}
	e := wait(events.TypeState)
	t.Logf("boot request to signed webhook delivery: %s", time.Since(start))
	assert.Equal(t, "n1", e.Node)
	assert.Equal(t, "booting", e.State)
	require.Eventually(t, func() bool {
		b, _ := os.ReadFile(hookOut)
		return strings.Contains(string(b), "node.state n1 booting")
	}, 5*time.Second, 20*time.Millisecond, "the hook program ran with the event")

	status := mustRun(t, root, "status", "--server", base)
	assert.Regexp(t, `n1\s+booting\s+52:54:00:12:34:56`, status)

	out, err := run(t, root, "power", "on", "n1", "--server", base, "--timeout", "2s")
	require.Error(t, err)
	assert.Contains(t, out, "no BMC configured")
	e = wait(events.TypePower)
	assert.Equal(t, "n1", e.Node)
	assert.Equal(t, "on", e.Action)
	assert.Contains(t, e.Error, "no BMC configured")

	// Without the token, a change is refused even from loopback.
	req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/nodes/n1/power", strings.NewReader(`{"action":"on"}`))
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	_, err = run(t, root, "power", "on", "n1", "--server", base, "--token-file", filepath.Join(root, "webhook.secret"))
	assert.ErrorContains(t, err, "403")
}
