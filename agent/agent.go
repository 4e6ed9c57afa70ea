package agent

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults of an Agent's zero fields.
const (
	// DefaultWait is how long one long-poll request asks the server to hold
	// it when nothing changes: the longest the server grants. The server
	// ends the wait when the overlay changes (it watches the inventory, and
	// renders waiting agents' overlays again every minute for changes of
	// the files templates read), so a longer wait only means fewer requests.
	DefaultWait = MaxWait
	// MaxWait is the longest wait the server grants (?wait=300).
	MaxWait = 300 * time.Second
	// DefaultHeartbeat is the interval between heartbeats.
	DefaultHeartbeat = 30 * time.Second
	// DefaultStateFile keeps, below Root, the ETag of the overlay last
	// applied and the files it wrote.
	DefaultStateFile = "var/lib/wwboot/runtime-overlay.state"
	// maxArchive bounds a runtime overlay, compressed and unpacked (bytes).
	maxArchive = 256 << 20
	// maxBackoff bounds the wait between failed requests.
	maxBackoff = time.Minute
)

// States a node reports (the "state" of POST /agent/{mac}).
const (
	StateUp      = "up"      // the node runs and its agent keeps its overlay current
	StateBooting = "booting" // the node is on its way up (/init)
	StateFailed  = "failed"  // the node cannot come up; the reason says why
)

// Agent keeps one node's runtime overlay current and sends its heartbeats.
// Set the exported fields, then call Run (or Sync, or Report); an Agent must
// not be copied after first use. Its methods are safe for concurrent use.
type Agent struct {
	// URL is the provisioning service as the node reaches it
	// (http://10.0.0.1:9873). Required.
	URL string
	// HWAddr is the node's hardware address, which names it to the server.
	// Required.
	HWAddr net.HardwareAddr
	// Root is where the overlay is applied; "" means "/".
	Root string
	// AssetKey is sent (?assetkey=) when the node has one.
	AssetKey string
	// Wait is how long each long-poll request may be held (DefaultWait
	// when 0, at most MaxWait).
	Wait time.Duration
	// Heartbeat is the interval between heartbeats (DefaultHeartbeat when
	// 0; negative: none).
	Heartbeat time.Duration
	// StateFile is where, below Root, the agent keeps what it applied
	// (DefaultStateFile when "").
	StateFile string
	// Dial opens the plain HTTP connections (with TLSURL: the enrollment,
	// and reports before it); nil means DialPrivileged. TLS connections
	// come from any port (DialAny): the certificate proves the node.
	Dial DialFunc
	// Log receives progress and failures; nil discards them.
	Log *slog.Logger

	// TLSURL, when set, is the server's TLS channel for the agent
	// (https://10.0.0.1:9874; node.conf's WWBOOT_TLS_URL): the agent
	// enrolls once per boot over URL (POST /agent/enroll/{mac}, from a
	// privileged port), then fetches its runtime overlay and sends its
	// reports over TLS with the certificate it got. Reports sent before
	// the boot's enrollment go over URL (/init's).
	TLSURL string
	// CAFile is the cluster CA certificate the server's certificate must
	// chain to (DefaultCAFile when ""); read with TLSURL only.
	CAFile string
	// RunDir keeps this boot's key and certificate (DefaultRunDir when
	// ""), shared by the agent processes of a boot; not below Root.
	RunDir string

	tlsMu  sync.Mutex
	tlsCfg *tls.Config // this boot's client configuration, nil before

	mu      sync.Mutex
	loaded  bool
	etag    string   // of the archive last applied
	files   []string // what it wrote
	lastErr string   // of the last sync, "" when it went well
}

func (a *Agent) root() string {
	if a.Root == "" {
		return "/"
	}
	return a.Root
}

func (a *Agent) log() *slog.Logger {
	if a.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return a.Log
}

func (a *Agent) dial() DialFunc {
	if a.Dial == nil {
		return DialPrivileged
	}
	return a.Dial
}

func (a *Agent) stateFile() string {
	if a.StateFile == "" {
		return DefaultStateFile
	}
	return a.StateFile
}

func (a *Agent) check() error {
	if a.URL == "" {
		return errors.New("agent: no server URL (WWBOOT_URL in /etc/wwboot/node.conf, or -server)")
	}
	if len(a.HWAddr) == 0 {
		return errors.New("agent: no hardware address (WWBOOT_HWADDR in /etc/wwboot/node.conf, or --hwaddr)")
	}
	if _, _, secure, err := splitURL(a.URL); err != nil {
		return err
	} else if secure {
		return fmt.Errorf("server URL %q: write it as http://HOST:PORT (the TLS channel is TLSURL, WWBOOT_TLS_URL)", a.URL)
	}
	if a.TLSURL != "" {
		if _, _, secure, err := splitURL(a.TLSURL); err != nil || !secure {
			return fmt.Errorf("agent: TLS URL %q: write it as https://HOST:PORT (WWBOOT_TLS_URL)", a.TLSURL)
		}
	}
	return nil
}

// target is the URL path of the node's resource under prefix, with the
// asset key and extra query.
func (a *Agent) target(prefix, query string) string {
	p := prefix + strings.ReplaceAll(a.HWAddr.String(), ":", "-")
	var q []string
	if a.AssetKey != "" {
		q = append(q, "assetkey="+url.QueryEscape(a.AssetKey))
	}
	if query != "" {
		q = append(q, query)
	}
	if len(q) > 0 {
		p += "?" + strings.Join(q, "&")
	}
	return p
}

// Sync asks for the runtime overlay once and applies it if it changed
// since the last one applied (the ETag kept in StateFile). With wait > 0
// the server holds the request until the overlay changes or wait ends.
// changed reports whether an overlay was applied.
func (a *Agent) Sync(ctx context.Context, wait time.Duration) (changed bool, err error) {
	if err := a.check(); err != nil {
		return false, err
	}
	a.mu.Lock()
	if !a.loaded {
		a.etag, a.files = readState(a.root(), a.stateFile())
		a.loaded = true
	}
	etag := a.etag
	a.mu.Unlock()

	wait = min(wait, MaxWait)
	req := request{method: "GET", header: map[string]string{}, limit: maxArchive, wait: wait + 30*time.Second}
	if wait > 0 {
		req.path = a.target("/overlay/runtime/", "wait="+strconv.Itoa(int(wait/time.Second)))
	} else {
		req.path = a.target("/overlay/runtime/", "")
	}
	if etag != "" {
		req.header["If-None-Match"] = etag
	}
	base, dial, tc, err := a.channel(ctx, true)
	if err != nil {
		return false, err
	}
	resp, err := do(ctx, dial, base, tc, req)
	if err != nil {
		return false, fmt.Errorf("runtime overlay from %s: %w", base, err)
	}
	switch resp.code {
	case 304:
		return false, nil
	case 200:
	case 401:
		if tc != nil {
			a.forget()
			return false, fmt.Errorf("runtime overlay from %s%s: %w: %s: %s", base, req.path, errCertRefused, resp.status, firstLine(resp.body))
		}
		fallthrough
	default:
		return false, fmt.Errorf("runtime overlay from %s%s: %s: %s", base, req.path, resp.status, firstLine(resp.body))
	}
	data, err := gunzip(resp.body)
	if err != nil {
		return false, fmt.Errorf("runtime overlay from %s: %w", base, err)
	}
	// One apply at a time: each starts from the files of the last.
	a.mu.Lock()
	defer a.mu.Unlock()
	files, err := Apply(a.root(), data, a.files)
	if files != nil {
		a.files = files
	}
	if err != nil {
		return false, err
	}
	a.etag = resp.header.Get("ETag")
	if err := writeState(a.root(), a.stateFile(), a.etag, a.files); err != nil {
		a.log().Warn("runtime overlay applied, but its state was not saved", "err", err)
	}
	return true, nil
}

// gunzip unpacks a gzip stream of one or more members (an overlay archive
// is several), or returns data as it is when it is not gzip (an
// uncompressed cpio archive).
func gunzip(data []byte) ([]byte, error) {
	if len(data) < 2 || data[0] != 0x1f || data[1] != 0x8b {
		return data, nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	out, err := io.ReadAll(io.LimitReader(zr, maxArchive+1))
	if err != nil {
		return nil, err
	}
	if len(out) > maxArchive {
		return nil, fmt.Errorf("unpacks to more than %d bytes", maxArchive)
	}
	return out, nil
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// Run keeps the runtime overlay current until ctx ends: it syncs at once,
// then long-polls (Wait), retrying failures after a jittered exponential
// backoff (1 s doubling up to a minute), and sends a heartbeat every
// Heartbeat. It returns nil when ctx ends, or an error for a configuration
// it cannot use.
func (a *Agent) Run(ctx context.Context) error {
	if err := a.check(); err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	if a.TLSURL != "" {
		// Enroll before the first heartbeat, which would otherwise go
		// over plain HTTP and be refused once the enrollment is done;
		// a failure here is retried by the syncs below.
		if _, _, _, err := a.channel(ctx, true); err != nil && ctx.Err() == nil {
			a.log().Error("enrollment", "err", err)
		}
	}
	if a.Heartbeat >= 0 {
		wg.Go(func() { a.heartbeats(ctx) })
	}
	wait := time.Duration(0) // the first sync answers at once
	fails := 0
	for ctx.Err() == nil {
		changed, err := a.Sync(ctx, wait)
		if ctx.Err() != nil {
			break
		}
		if err != nil {
			fails++
			a.setErr(err)
			d := backoff(fails)
			a.log().Error("runtime overlay", "err", err, "retry_in", d.Round(time.Millisecond))
			sleep(ctx, d)
			continue
		}
		if fails > 0 || changed {
			a.log().Info("runtime overlay current", "etag", a.ETag(), "applied", changed)
		}
		fails = 0
		a.setErr(nil)
		wait = a.Wait
		if wait <= 0 {
			wait = DefaultWait
		}
	}
	return nil
}

// ETag returns the ETag of the overlay last applied ("" before the first).
func (a *Agent) ETag() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.etag
}

func (a *Agent) setErr(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.lastErr = ""
	if err != nil {
		a.lastErr = err.Error()
	}
}

// backoff is the wait after the n-th failure in a row: 1 s doubling up to
// maxBackoff, drawn from its upper half so that nodes that failed together
// do not come back together.
func backoff(n int) time.Duration {
	d := maxBackoff
	if n < 7 {
		d = min(time.Second<<(n-1), maxBackoff)
	}
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// heartbeats reports "up" now and then every Heartbeat (±10 %) until ctx
// ends; the reason is the last sync's failure, if any.
func (a *Agent) heartbeats(ctx context.Context) {
	every := a.Heartbeat
	if every == 0 {
		every = DefaultHeartbeat
	}
	for {
		a.mu.Lock()
		reason := a.lastErr
		a.mu.Unlock()
		if err := a.Report(ctx, StateUp, "agent", reason); err != nil && ctx.Err() == nil {
			a.log().Warn("heartbeat", "err", err)
		}
		jitter := every / 10
		sleep(ctx, every-jitter+rand.N(2*jitter+1))
		if ctx.Err() != nil {
			return
		}
	}
}

// Report tells the server the node's state (StateUp, StateBooting or
// StateFailed), the boot stage it is at (init, agent...) and why, with
// POST /agent/{mac}. It returns nil once the server took it (2xx).
func (a *Agent) Report(ctx context.Context, state, stage, reason string) error {
	if err := a.check(); err != nil {
		return err
	}
	switch state {
	case StateUp, StateBooting, StateFailed:
	default:
		return fmt.Errorf("agent: state %q: use up, booting or failed", state)
	}
	body := `{"state":` + jsonString(state) + `,"stage":` + jsonString(stage) + `,"reason":` + jsonString(reason) + "}"
	req := request{method: "POST", path: a.target("/agent/", ""), body: []byte(body), wait: 15 * time.Second, limit: 64 << 10,
		header: map[string]string{"Content-Type": "application/json"}}
	// A report never enrolls: /init's come before the agent runs, and
	// the server takes plain ones until the node enrolled in this boot.
	base, dial, tc, err := a.channel(ctx, false)
	if err != nil {
		return err
	}
	resp, err := do(ctx, dial, base, tc, req)
	if err != nil {
		return fmt.Errorf("report to %s: %w", base, err)
	}
	if resp.code == 401 && tc != nil {
		a.forget()
		return fmt.Errorf("report to %s%s: %w: %s: %s", base, req.path, errCertRefused, resp.status, firstLine(resp.body))
	}
	if resp.code/100 != 2 {
		return fmt.Errorf("report to %s%s: %s: %s", base, req.path, resp.status, firstLine(resp.body))
	}
	return nil
}

// jsonString quotes s as a JSON string (RFC 8259), replacing invalid UTF-8.
func jsonString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x2028 || r == 0x2029:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// readState reads the state file: the ETag on the first line, then one
// applied path per line. A missing or unreadable file means nothing applied.
func readState(root, name string) (etag string, files []string) {
	r, err := os.OpenRoot(root)
	if err != nil {
		return "", nil
	}
	defer r.Close()
	data, err := r.ReadFile(name)
	if err != nil {
		return "", nil
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return lines[0], lines[1:]
}

// writeState replaces the state file atomically (temporary file, fsync,
// rename, fsync of the directory).
func writeState(root, name, etag string, files []string) error {
	r, err := os.OpenRoot(root)
	if err != nil {
		return err
	}
	defer r.Close()
	if err := r.MkdirAll(path.Dir(name), 0o755); err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString(strings.ReplaceAll(etag, "\n", "") + "\n")
	for _, f := range files {
		b.WriteString(f + "\n")
	}
	tmp := name + ".tmp"
	f, err := r.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteString(b.String())
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = r.Rename(tmp, name)
	}
	if err != nil {
		_ = r.Remove(tmp)
		return err
	}
	syncDir(r, path.Dir(name))
	return nil
}
