package events

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Hook receives events a Dispatcher hands it. Deliver is bounded by ctx
// (the hook's timeout); an error is logged by the Dispatcher.
type Hook interface {
	Deliver(ctx context.Context, e Event) error
}

// Program runs an executable for each event: the event as JSON on its
// standard input and as environment variables WWBOOT_EVENT_ID, _TYPE,
// _TIME (RFC 3339), _NODE, _HWADDR, _STATE, _PREVIOUS, _STAGE, _SOURCE,
// _ACTION, _REASON and _ERROR (empty ones left out), beside the server's
// own environment's PATH, HOME, LANG and TZ. It succeeds when the program
// exits 0. The program is killed when ctx ends.
type Program struct {
	// Path is the executable (absolute, or found on PATH).
	Path string
	// Args are its arguments.
	Args []string
}

// Env returns the WWBOOT_EVENT_* variables of e, as Program sets them.
func Env(e Event) []string {
	out := []string{"WWBOOT_EVENT_ID=" + strconv.FormatUint(e.ID, 10), "WWBOOT_EVENT_TYPE=" + e.Type,
		"WWBOOT_EVENT_TIME=" + e.Time.Format(time.RFC3339Nano)}
	for _, kv := range [][2]string{{"NODE", e.Node}, {"HWADDR", e.Hwaddr}, {"STATE", e.State}, {"PREVIOUS", e.Previous},
		{"STAGE", e.Stage}, {"SOURCE", e.Source}, {"ACTION", e.Action}, {"REASON", e.Reason}, {"ERROR", e.Error}} {
		if kv[1] != "" {
			out = append(out, "WWBOOT_EVENT_"+kv[0]+"="+strings.ReplaceAll(kv[1], "\x00", " "))
		}
	}
	return out
}

// maxOutput bounds the program output kept for the log.
const maxOutput = 2 << 10

// Deliver implements Hook.
func (p *Program) Deliver(ctx context.Context, e Event) error {
	body, err := json.Marshal(e)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, p.Path, p.Args...)
	cmd.Env = Env(e)
	for _, k := range []string{"PATH", "HOME", "LANG", "TZ"} {
		if v, ok := os.LookupEnv(k); ok {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	cmd.Stdin = bytes.NewReader(append(body, '\n'))
	out := &capped{max: maxOutput}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		if s := strings.TrimSpace(out.String()); s != "" {
			return fmt.Errorf("hook program %s: %w; output: %s", p.Path, err, s)
		}
		return fmt.Errorf("hook program %s: %w", p.Path, err)
	}
	return nil
}

// capped keeps the first max bytes written to it.
type capped struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := c.max - c.buf.Len(); room > 0 {
		c.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (c *capped) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// Webhook headers.
const (
	// HeaderEvent carries the event type.
	HeaderEvent = "X-Wwboot-Event"
	// HeaderDelivery carries the event ID (the same on every retry, so a
	// receiver can drop duplicates).
	HeaderDelivery = "X-Wwboot-Delivery"
	// HeaderSignature carries "sha256=" and the hex HMAC-SHA256 of the
	// body under Webhook.Secret, as GitHub's X-Hub-Signature-256 does.
	HeaderSignature = "X-Wwboot-Signature-256"
)

// Webhook POSTs each event as JSON (Content-Type application/json) to URL.
// A 2xx answer is success; a network error, 408, 429 or 5xx is retried up
// to Retries times, Backoff apart, doubling (capped at 30 s; a Retry-After
// in seconds is honoured within that), while ctx lasts; any other answer
// is a failure at once.
type Webhook struct {
	// URL receives the POSTs (http or https).
	URL string
	// Secret, when set, signs each body (HeaderSignature).
	Secret []byte
	// Retries after the first attempt; 0 means none.
	Retries int
	// Backoff is the first wait between attempts; 0 means 1 s.
	Backoff time.Duration
	// Client sends the requests; nil means a client with no redirects
	// followed and no timeout of its own (ctx bounds each delivery).
	Client *http.Client
}

// Sign returns the HeaderSignature value of body under secret.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// VerifySignature reports whether sig (a HeaderSignature value) is body's
// signature under secret, in constant time.
func VerifySignature(secret, body []byte, sig string) bool {
	return hmac.Equal([]byte(Sign(secret, body)), []byte(sig))
}

const maxBackoff = 30 * time.Second

// Deliver implements Hook.
func (wh *Webhook) Deliver(ctx context.Context, e Event) error {
	body, err := json.Marshal(e)
	if err != nil {
		return err
	}
	client := wh.Client
	if client == nil {
		client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	wait := wh.Backoff
	if wait <= 0 {
		wait = time.Second
	}
	var last error
	for attempt := 0; ; attempt++ {
		retry, after, err := wh.post(ctx, client, body, e)
		if err == nil {
			return nil
		}
		last = fmt.Errorf("webhook %s: attempt %d: %w", redactURL(wh.URL), attempt+1, err)
		if !retry || attempt >= wh.Retries {
			return last
		}
		d := wait
		if after > d && after <= maxBackoff {
			d = after
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w; gave up: %w", last, ctx.Err())
		case <-t.C:
		}
		wait = min(wait*2, maxBackoff)
	}
}

func (wh *Webhook) post(ctx context.Context, client *http.Client, body []byte, e Event) (retry bool, after time.Duration, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, wh.URL, bytes.NewReader(body))
	if err != nil {
		return false, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "wwboot-webhook")
	req.Header.Set(HeaderEvent, e.Type)
	req.Header.Set(HeaderDelivery, strconv.FormatUint(e.ID, 10))
	if len(wh.Secret) > 0 {
		req.Header.Set(HeaderSignature, Sign(wh.Secret, body))
	}
	resp, err := client.Do(req)
	if err != nil {
		return ctx.Err() == nil, 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		return false, 0, nil
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		after = time.Duration(s) * time.Second
	}
	code := resp.StatusCode
	return code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500, after,
		fmt.Errorf("answered %s", resp.Status)
}

// redactURL drops a URL's user info and query (they may hold secrets).
func redactURL(u string) string {
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		u = u[:i]
	}
	if i := strings.Index(u, "://"); i >= 0 {
		if j := strings.LastIndex(u[i+3:], "@"); j >= 0 && !strings.Contains(u[i+3:i+3+j], "/") {
			u = u[:i+3] + u[i+3+j+1:]
		}
	}
	return u
}

// HookConfig is one hook with what a Dispatcher needs to run it.
type HookConfig struct {
	// Name identifies the hook in logs.
	Name string
	// Hook delivers the events.
	Hook Hook
	// Types limits the hook to these event types (none: all).
	Types []string
	// Timeout bounds one delivery, retries included; 0 means 30 s.
	Timeout time.Duration
}

// DefaultHookTimeout is HookConfig's default Timeout.
const DefaultHookTimeout = 30 * time.Second

// DefaultConcurrency bounds the deliveries a Dispatcher runs at once.
const DefaultConcurrency = 8

// Dispatcher delivers a bus's events to hooks: each matching event to each
// hook, at most Concurrency deliveries at once over all hooks, each bounded
// by its hook's Timeout. A hook receives the events of one node in order
// (one after the other, by ID); events of different nodes may overlap.
type Dispatcher struct {
	// Bus is where events come from.
	Bus *Bus
	// Hooks receive them.
	Hooks []HookConfig
	// Concurrency bounds deliveries under way; 0 means DefaultConcurrency.
	Concurrency int
	// Log receives failed deliveries (Warn), lost events (Error) and, at
	// Debug, each delivery. Nil discards.
	Log *slog.Logger
}

// laneQueue is how many events wait in one lane of one hook.
const laneQueue = 64

// Run delivers events published from now on until ctx ends, then waits for
// the deliveries under way (they see ctx's end). Each hook has Concurrency
// lanes; a node's events always take the same lane, so they arrive in
// order. When the hooks fall so far behind that events leave the bus's
// ring unread, it logs how many were lost.
func (d *Dispatcher) Run(ctx context.Context) error {
	if d.Bus == nil {
		return errors.New("events: Dispatcher.Bus is nil")
	}
	log := d.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := d.Concurrency
	if n <= 0 {
		n = DefaultConcurrency
	}
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	lanes := make([][]chan Event, len(d.Hooks))
	for i := range d.Hooks {
		hc := &d.Hooks[i]
		lanes[i] = make([]chan Event, n)
		for l := range lanes[i] {
			ch := make(chan Event, laneQueue)
			lanes[i][l] = ch
			wg.Add(1)
			go func() {
				defer wg.Done()
				for e := range ch {
					select {
					case sem <- struct{}{}:
					case <-ctx.Done():
						continue // drain: the dispatcher is stopping
					}
					d.deliver(ctx, log, hc, e)
					<-sem
				}
			}()
		}
	}
	defer func() {
		for _, ls := range lanes {
			for _, ch := range ls {
				close(ch)
			}
		}
		wg.Wait()
	}()
	enqueue := func(e Event) bool {
		lane := laneOf(e.Node, n)
		for i := range d.Hooks {
			if len(d.Hooks[i].Types) > 0 && !contains(d.Hooks[i].Types, e.Type) {
				continue
			}
			select {
			case lanes[i][lane] <- e:
			case <-ctx.Done():
				return false
			}
		}
		return true
	}
	after := d.Bus.LastID()
	for {
		sub, backlog, missed := d.Bus.Subscribe(after, 4*n)
		if missed > 0 {
			log.Error("event hooks fell behind; events lost", "missed", missed, "after", after)
		}
		for _, e := range backlog {
			after = e.ID
			if !enqueue(e) {
				sub.Close()
				return nil
			}
		}
	read:
		for {
			select {
			case <-ctx.Done():
				sub.Close()
				return nil
			case e, ok := <-sub.C:
				if !ok {
					break read // lagged: resubscribe after the last one taken
				}
				after = e.ID
				if !enqueue(e) {
					sub.Close()
					return nil
				}
			}
		}
	}
}

// deliver runs one delivery of e to hc under its timeout.
func (d *Dispatcher) deliver(ctx context.Context, log *slog.Logger, hc *HookConfig, e Event) {
	t := hc.Timeout
	if t <= 0 {
		t = DefaultHookTimeout
	}
	hctx, cancel := context.WithTimeout(ctx, t)
	defer cancel()
	start := time.Now()
	if err := hc.Hook.Deliver(hctx, e); err != nil {
		log.Warn("event hook failed", "hook", hc.Name, "event", e.ID, "type", e.Type, "node", e.Node, "err", err)
		return
	}
	log.Debug("event hook", "hook", hc.Name, "event", e.ID, "type", e.Type, "node", e.Node, "took", time.Since(start))
}

// laneOf maps a node to one of n lanes (FNV-1a).
func laneOf(node string, n int) int {
	h := uint32(2166136261)
	for i := 0; i < len(node); i++ {
		h ^= uint32(node[i])
		h *= 16777619
	}
	return int(h % uint32(n))
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
