package provision_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/events"
	"github.com/wwboot/wwboot/provision"
)

// nextEvent reads one event or fails after a second.
func nextEvent(t *testing.T, sub *events.Subscription) events.Event {
	t.Helper()
	select {
	case e := <-sub.C:
		return e
	case <-time.After(time.Second):
		t.Fatal("no event within a second")
	}
	return events.Event{}
}

func noEvent(t *testing.T, sub *events.Subscription) {
	t.Helper()
	select {
	case e := <-sub.C:
		t.Fatalf("unexpected event %+v", e)
	case <-time.After(50 * time.Millisecond):
	}
}

// The status tracker publishes each state change and each new boot stage of
// a node, once: a boot's requests, its agent's reports, and (WatchStates)
// the changes time makes.
func TestStatusPublishesTransitions(t *testing.T) {
	l := newLab(t)
	clk := &clock{t: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)}
	bus := events.NewBus(events.Options{})
	opts := l.options(t)
	opts.Now, opts.Events = clk.Now, bus
	opts.InsecurePorts, opts.AnySourceAddr = true, true
	h, err := provision.NewHandler(opts)
	require.NoError(t, err)
	ts := httptest.NewServer(h)
	defer ts.Close()
	sub, _, _ := bus.Subscribe(bus.LastID(), 64)
	defer sub.Close()
	report := func(body string) {
		resp, err := http.Post(ts.URL+"/agent/"+mac1, "application/json", bytes.NewBufferString(body))
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusNoContent, resp.StatusCode)
	}

	resp, _ := get(t, ts.URL+"/ipxe/"+mac1)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	e := nextEvent(t, sub)
	assert.Equal(t, events.Event{ID: e.ID, Type: events.TypeStage, Time: clk.Now(), Node: "n1", Hwaddr: mac1, Stage: "ipxe", Source: "server"}, e)
	e = nextEvent(t, sub)
	assert.Equal(t, events.TypeState, e.Type)
	assert.Equal(t, provision.StateBooting, e.State)
	assert.Empty(t, e.Previous)
	assert.Contains(t, e.Reason, "fetched ipxe")

	resp, _ = get(t, ts.URL+"/kernel/"+mac1)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	e = nextEvent(t, sub)
	assert.Equal(t, "kernel", e.Stage)
	resp, _ = get(t, ts.URL+"/kernel/"+mac1) // a retry: no new stage
	require.Equal(t, http.StatusOK, resp.StatusCode)
	noEvent(t, sub)

	report(`{"state":"booting","stage":"init","reason":"unpacked"}`)
	e = nextEvent(t, sub)
	assert.Equal(t, events.TypeStage, e.Type)
	assert.Equal(t, "init", e.Stage)
	assert.Equal(t, "agent", e.Source)
	noEvent(t, sub) // still booting

	report(`{"state":"up","stage":"agent"}`)
	assert.Equal(t, "agent", nextEvent(t, sub).Stage)
	e = nextEvent(t, sub)
	assert.Equal(t, events.TypeState, e.Type)
	assert.Equal(t, provision.StateUp, e.State)
	assert.Equal(t, provision.StateBooting, e.Previous)
	report(`{"state":"up","stage":"agent"}`) // a heartbeat changes nothing
	noEvent(t, sub)

	// Time passes without heartbeats: WatchStates publishes down.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go h.WatchStates(ctx, 10*time.Millisecond)
	noEvent(t, sub)
	clk.Add(provision.DefaultHeartbeatTimeout + time.Second)
	e = nextEvent(t, sub)
	assert.Equal(t, provision.StateDown, e.State)
	assert.Equal(t, provision.StateUp, e.Previous)
	assert.Contains(t, e.Reason, "no heartbeat")
	noEvent(t, sub)

	report(`{"state":"failed","stage":"agent","reason":"disk gone"}`)
	e = nextEvent(t, sub)
	assert.Equal(t, provision.StateFailed, e.State)
	assert.Equal(t, "agent: disk gone", e.Reason)

	// A new boot starts the stages over.
	clk.Add(time.Second)
	resp, _ = get(t, ts.URL+"/ipxe/"+mac1)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "ipxe", nextEvent(t, sub).Stage)
	assert.Equal(t, provision.StateBooting, nextEvent(t, sub).State)
	resp, _ = get(t, ts.URL+"/kernel/"+mac1)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "kernel", nextEvent(t, sub).Stage)
}

// A Server with Options.Events watches the states itself: a node whose
// heartbeats stop goes down on the stream without any request.
func TestServerWatchesStates(t *testing.T) {
	l := newLab(t)
	clk := &clock{t: time.Now()}
	bus := events.NewBus(events.Options{})
	opts := l.options(t)
	opts.Now, opts.Events = clk.Now, bus
	opts.InsecurePorts, opts.AnySourceAddr = true, true
	srv, err := provision.NewServer(provision.ServerConfig{Options: opts, HTTPAddr: "127.0.0.1:0"})
	require.NoError(t, err)
	require.NoError(t, srv.Listen())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	defer func() {
		cancel()
		assert.NoError(t, <-done)
	}()
	sub, _, _ := bus.Subscribe(bus.LastID(), 16, events.TypeState)
	defer sub.Close()
	resp, err := http.Post("http://"+srv.HTTPAddr().String()+"/agent/"+mac1, "application/json", bytes.NewBufferString(`{"state":"up"}`))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	assert.Equal(t, provision.StateUp, nextEvent(t, sub).State)
	clk.Add(provision.DefaultHeartbeatTimeout + time.Second)
	select {
	case e := <-sub.C:
		assert.Equal(t, provision.StateDown, e.State)
	case <-time.After(3 * time.Second):
		t.Fatal("no down event from the server's state watch")
	}
}
