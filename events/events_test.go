package events

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBusNumbersAndFansOut(t *testing.T) {
	b := NewBus(Options{Capacity: 4})
	a, backlog, missed := b.Subscribe(b.LastID(), 8)
	defer a.Close()
	assert.Empty(t, backlog)
	assert.Zero(t, missed)
	power, _, _ := b.Subscribe(b.LastID(), 8, TypePower)
	defer power.Close()
	e1 := b.Publish(Event{Type: TypeState, Node: "n1", State: "up"})
	e2 := b.Publish(Event{Type: TypePower, Node: "n1", Action: "on"})
	assert.Equal(t, uint64(1), e1.ID)
	assert.Equal(t, uint64(2), e2.ID)
	assert.False(t, e1.Time.IsZero())
	assert.Equal(t, e1, <-a.C)
	assert.Equal(t, e2, <-a.C)
	assert.Equal(t, e2, <-power.C, "the type filter passes power events only")
	select {
	case e := <-power.C:
		t.Fatalf("filtered subscription got %v", e)
	default:
	}
}

func TestBusResumeFromRingAndMissed(t *testing.T) {
	b := NewBus(Options{Capacity: 4})
	for i := range 6 {
		b.Publish(Event{Type: TypeStage, Node: fmt.Sprint("n", i)})
	}
	// Ring holds 3..6. Resuming after 4 gives 5, 6.
	s, backlog, missed := b.Subscribe(4, 1)
	s.Close()
	require.Len(t, backlog, 2)
	assert.Equal(t, []uint64{5, 6}, []uint64{backlog[0].ID, backlog[1].ID})
	assert.Zero(t, missed)
	// Resuming after 1: 2 fell out of the ring.
	s, backlog, missed = b.Subscribe(1, 1)
	s.Close()
	require.Len(t, backlog, 4)
	assert.Equal(t, uint64(3), backlog[0].ID)
	assert.Equal(t, uint64(1), missed)
	// Resuming at the end: nothing.
	s, backlog, missed = b.Subscribe(6, 1)
	s.Close()
	assert.Empty(t, backlog)
	assert.Zero(t, missed)
	assert.ErrorIs(t, s.Err(), ErrClosed)
}

// A subscriber that does not read is cut off instead of blocking Publish.
func TestBusLaggingSubscriberIsDropped(t *testing.T) {
	b := NewBus(Options{})
	s, _, _ := b.Subscribe(b.LastID(), 2)
	done := make(chan struct{})
	go func() {
		for range 10 {
			b.Publish(Event{Type: TypeState})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Publish blocked on a subscriber that does not read")
	}
	n := 0
	for range s.C {
		n++
	}
	assert.Equal(t, 2, n)
	assert.ErrorIs(t, s.Err(), ErrLagged)
	// It resumes from the ring after the last one read.
	s2, backlog, missed := b.Subscribe(2, 16)
	defer s2.Close()
	assert.Len(t, backlog, 8)
	assert.Zero(t, missed)
}

// sseEvent is one event read off a stream.
type sseEvent struct {
	id, typ, data string
}

// readSSE parses a text/event-stream into events on a channel.
func readSSE(r io.Reader) <-chan sseEvent {
	ch := make(chan sseEvent, 64)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(r)
		var cur sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if cur.data != "" {
					ch <- cur
				}
				cur = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				cur.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				cur.typ = line[7:]
			case strings.HasPrefix(line, "data: "):
				cur.data = line[6:]
			}
		}
	}()
	return ch
}

func streamServer(t *testing.T, b *Bus) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sr, err := ParseStreamRequest(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		Stream(w, r, b, sr, StreamOptions{KeepAlive: 50 * time.Millisecond})
	}))
	t.Cleanup(srv.Close)
	return srv
}

func openStream(t *testing.T, ctx context.Context, url, lastID string) <-chan sseEvent {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(t, err)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { resp.Body.Close() })
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	return readSSE(resp.Body)
}

func TestStreamDeliversAndResumes(t *testing.T) {
	b := NewBus(Options{Capacity: 8})
	srv := streamServer(t, b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := openStream(t, ctx, srv.URL, "")
	// The subscription exists once the first bytes came; publish until
	// the client sees one, within a second of its publication.
	var got sseEvent
	deadline := time.After(5 * time.Second)
	for got.data == "" {
		start := time.Now()
		b.Publish(Event{Type: TypeState, Node: "n1", State: "up"})
		select {
		case got = <-ch:
			assert.Less(t, time.Since(start), time.Second)
		case <-time.After(200 * time.Millisecond):
		case <-deadline:
			t.Fatal("no event on the stream")
		}
	}
	var e Event
	require.NoError(t, json.Unmarshal([]byte(got.data), &e))
	assert.Equal(t, TypeState, got.typ)
	assert.Equal(t, fmt.Sprint(e.ID), got.id)
	assert.Equal(t, "n1", e.Node)
	cancel()

	// Reconnecting with Last-Event-ID resumes after it.
	last := b.Publish(Event{Type: TypePower, Node: "n2", Action: "off"})
	b.Publish(Event{Type: TypeStage, Node: "n3", Stage: "kernel"})
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	ch2 := openStream(t, ctx2, srv.URL, fmt.Sprint(last.ID-1))
	for _, want := range []string{"n2", "n3"} {
		select {
		case ev := <-ch2:
			require.NoError(t, json.Unmarshal([]byte(ev.data), &e))
			assert.Equal(t, want, e.Node)
		case <-time.After(5 * time.Second):
			t.Fatal("no backlog on resume")
		}
	}
}

func TestStreamGapAndBadRequests(t *testing.T) {
	b := NewBus(Options{Capacity: 2})
	for range 5 {
		b.Publish(Event{Type: TypeState})
	}
	srv := streamServer(t, b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := openStream(t, ctx, srv.URL+"?types=node.state", "1")
	ev := <-ch
	assert.Equal(t, "gap", ev.typ)
	assert.JSONEq(t, `{"missed":2}`, ev.data)
	ev = <-ch
	assert.Equal(t, "4", ev.id)

	for _, q := range []string{"?types=node.bogus", "?after=x", "?after=1&after=2", "?types=" + strings.Repeat("node.state,", 9) + "node.state"} {
		resp, err := http.Get(srv.URL + q)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, q)
	}
}

func TestProgramHookGetsEvent(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	script := filepath.Join(dir, "hook.sh")
	require.NoError(t, os.WriteFile(script, []byte("#!/bin/sh\n{ echo \"$1 $WWBOOT_EVENT_TYPE $WWBOOT_EVENT_NODE $WWBOOT_EVENT_STATE $WWBOOT_EVENT_PREVIOUS $WWBOOT_EVENT_ID\"; cat; } > "+out+"\n"), 0o755))
	e := Event{ID: 7, Type: TypeState, Time: time.Unix(100, 0).UTC(), Node: "n1", State: "down", Previous: "up", Reason: "no heartbeat"}
	require.NoError(t, (&Program{Path: script, Args: []string{"arg"}}).Deliver(context.Background(), e))
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	first, rest, _ := strings.Cut(string(b), "\n")
	assert.Equal(t, "arg node.state n1 down up 7", first)
	var got Event
	require.NoError(t, json.Unmarshal([]byte(rest), &got))
	assert.Equal(t, e, got)

	// A failing program's error carries its output; a slow one is killed.
	require.NoError(t, os.WriteFile(script, []byte("#!/bin/sh\necho oops >&2\nexit 3\n"), 0o755))
	err = (&Program{Path: script}).Deliver(context.Background(), e)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "oops")
	require.NoError(t, os.WriteFile(script, []byte("#!/bin/sh\nexec sleep 30\n"), 0o755))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = (&Program{Path: script}).Deliver(ctx, e)
	require.Error(t, err)
	assert.Less(t, time.Since(start), 5*time.Second)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestWebhookSignsAndRetries(t *testing.T) {
	secret := []byte("s3cret")
	var mu sync.Mutex
	var bodies [][]byte
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		n := calls.Add(1)
		if !VerifySignature(secret, body, r.Header.Get(HeaderSignature)) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		assert.Equal(t, "application/json", r.Header.Get("Content-Type"))
		assert.Equal(t, TypePower, r.Header.Get(HeaderEvent))
		assert.Equal(t, "9", r.Header.Get(HeaderDelivery))
		if n == 1 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		mu.Lock()
		bodies = append(bodies, body)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	e := Event{ID: 9, Type: TypePower, Node: "n1", Action: "on", State: "on", Time: time.Unix(5, 0).UTC()}
	wh := &Webhook{URL: srv.URL, Secret: secret, Retries: 2, Backoff: 10 * time.Millisecond}
	require.NoError(t, wh.Deliver(context.Background(), e))
	assert.Equal(t, int32(2), calls.Load(), "a 503 is retried")
	require.Len(t, bodies, 1)
	var got Event
	require.NoError(t, json.Unmarshal(bodies[0], &got))
	assert.Equal(t, e, got)

	// A wrong secret gets 401, which is not retried.
	calls.Store(10)
	err := (&Webhook{URL: srv.URL, Secret: []byte("wrong"), Retries: 3, Backoff: time.Millisecond}).Deliver(context.Background(), e)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "401")
	assert.Equal(t, int32(11), calls.Load())
	assert.False(t, VerifySignature(secret, []byte("x"), Sign([]byte("other"), []byte("x"))))
}

func TestWebhookGivesUpAfterRetries(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer srv.Close()
	err := (&Webhook{URL: srv.URL + "?token=abc", Retries: 2, Backoff: time.Millisecond}).Deliver(context.Background(), Event{ID: 1, Type: TypeState})
	require.Error(t, err)
	assert.Equal(t, int32(3), calls.Load())
	assert.NotContains(t, err.Error(), "abc", "the query may hold a secret")
	assert.Equal(t, "https://h/p", redactURL("https://user:pw@h/p?x=1"))
}

// hookFunc adapts a function to Hook.
type hookFunc func(context.Context, Event) error

func (f hookFunc) Deliver(ctx context.Context, e Event) error { return f(ctx, e) }

func TestDispatcherBoundsConcurrencyAndFilters(t *testing.T) {
	b := NewBus(Options{})
	var running, peak atomic.Int32
	var got sync.Map
	var n atomic.Int32
	slow := hookFunc(func(ctx context.Context, e Event) error {
		r := running.Add(1)
		defer running.Add(-1)
		for {
			p := peak.Load()
			if r <= p || peak.CompareAndSwap(p, r) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
		got.Store(e.ID, true)
		n.Add(1)
		return nil
	})
	var powers atomic.Int32
	onlyPower := hookFunc(func(ctx context.Context, e Event) error {
		assert.Equal(t, TypePower, e.Type)
		powers.Add(1)
		return nil
	})
	d := &Dispatcher{Bus: b, Concurrency: 2, Hooks: []HookConfig{
		{Name: "slow", Hook: slow}, {Name: "power", Hook: onlyPower, Types: []string{TypePower}}}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- d.Run(ctx) }()
	// Wait until the dispatcher subscribed: its subscription is the bus's.
	require.Eventually(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.subs) == 1 }, 5*time.Second, time.Millisecond)
	for i := range 40 {
		typ := TypeState
		if i%4 == 0 {
			typ = TypePower
		}
		b.Publish(Event{Type: typ})
	}
	require.Eventually(t, func() bool { return n.Load() == 40 && powers.Load() == 10 }, 10*time.Second, 5*time.Millisecond)
	assert.LessOrEqual(t, peak.Load(), int32(2))
	cancel()
	require.NoError(t, <-done)
}

func TestDispatcherTimesOutHooks(t *testing.T) {
	b := NewBus(Options{})
	errs := make(chan error, 1)
	stuck := hookFunc(func(ctx context.Context, e Event) error {
		<-ctx.Done()
		errs <- ctx.Err()
		return ctx.Err()
	})
	d := &Dispatcher{Bus: b, Hooks: []HookConfig{{Name: "stuck", Hook: stuck, Timeout: 50 * time.Millisecond}}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Run(ctx)
	require.Eventually(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.subs) == 1 }, 5*time.Second, time.Millisecond)
	b.Publish(Event{Type: TypeState})
	select {
	case err := <-errs:
		assert.ErrorIs(t, err, context.DeadlineExceeded)
	case <-time.After(5 * time.Second):
		t.Fatal("hook not timed out")
	}
}

// A hook gets each node's events in order, though deliveries of different
// nodes overlap.
func TestDispatcherKeepsNodeOrder(t *testing.T) {
	b := NewBus(Options{})
	var mu sync.Mutex
	seen := map[string][]uint64{}
	var running, peak atomic.Int32
	var n atomic.Int32
	h := hookFunc(func(ctx context.Context, e Event) error {
		r := running.Add(1)
		defer running.Add(-1)
		for {
			p := peak.Load()
			if r <= p || peak.CompareAndSwap(p, r) {
				break
			}
		}
		time.Sleep(time.Duration(e.ID%3) * time.Millisecond)
		mu.Lock()
		seen[e.Node] = append(seen[e.Node], e.ID)
		mu.Unlock()
		n.Add(1)
		return nil
	})
	d := &Dispatcher{Bus: b, Concurrency: 4, Hooks: []HookConfig{{Name: "h", Hook: h}}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- d.Run(ctx) }()
	require.Eventually(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.subs) == 1 }, 5*time.Second, time.Millisecond)
	for i := range 200 {
		b.Publish(Event{Type: TypeState, Node: fmt.Sprint("n", i%7)})
	}
	require.Eventually(t, func() bool { return n.Load() == 200 }, 20*time.Second, 5*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	for node, ids := range seen {
		for i := 1; i < len(ids); i++ {
			assert.Less(t, ids[i-1], ids[i], "node %s out of order", node)
		}
	}
	assert.Greater(t, peak.Load(), int32(1), "different nodes overlap")
	assert.LessOrEqual(t, peak.Load(), int32(4))
}
