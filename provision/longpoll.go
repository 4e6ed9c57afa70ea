package provision

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wwboot/wwboot/nodedb"
	"github.com/wwboot/wwboot/overlay"
)

// MaxWait is the longest a runtime overlay request may ask to be held
// (?wait=SECONDS).
const MaxWait = 300 * time.Second

// DefaultWatchInterval is how often, while agents wait, the handler looks
// for a new inventory snapshot (Options.WatchInterval when 0).
const DefaultWatchInterval = 250 * time.Millisecond

// changes wakes the long-poll requests when what their overlays are made of
// may have changed. It costs nothing per waiting request beyond the request
// itself: waiters block on one shared channel, closed (and replaced) on a
// change; one watcher goroutine, running only while someone waits, takes a
// snapshot of the inventory every interval and compares its pointer to the
// last (nodedb snapshots are immutable, so a new pointer is a new
// inventory). Its cost does not grow with the inventory or the waiters.
type changes struct {
	inv   Snapshotter // nil: only Notify wakes waiters
	every time.Duration

	mu       sync.Mutex
	ch       chan struct{} // closed on the next change
	waiters  int
	watching bool
	last     *nodedb.DB // snapshot the watcher compares to
	stopped  bool       // StopWaiting was called
	stopCh   chan struct{}
}

func newChanges(inv Inventory, every time.Duration) *changes {
	c := &changes{every: every, ch: make(chan struct{}), stopCh: make(chan struct{})}
	if c.every <= 0 {
		c.every = DefaultWatchInterval
	}
	if s, ok := inv.(Snapshotter); ok {
		c.inv = s
	}
	return c
}

// enter registers a waiter and starts the watcher if none runs. It
// returns the channel closed on the next change, and one closed when the
// handler stops holding requests.
func (c *changes) enter() (changed, stop <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waiters++
	if c.inv != nil && !c.watching {
		c.watching = true
		// The first snapshot is taken now, before the waiter compares its
		// own to the current one, so no change falls between the two.
		c.last, _ = c.inv.Snapshot(context.Background())
		go c.watch()
	}
	return c.ch, c.stopCh
}

// current returns the channel closed on the next change.
func (c *changes) current() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ch
}

func (c *changes) leave() {
	c.mu.Lock()
	c.waiters--
	c.mu.Unlock()
}

// notify wakes every waiter.
func (c *changes) notify() {
	c.mu.Lock()
	close(c.ch)
	c.ch = make(chan struct{})
	c.mu.Unlock()
}

func (c *changes) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.stopped {
		c.stopped = true
		close(c.stopCh)
	}
}

// watch polls the inventory's snapshot until nobody waits.
func (c *changes) watch() {
	t := time.NewTicker(c.every)
	defer t.Stop()
	for range t.C {
		c.mu.Lock()
		if c.waiters == 0 {
			c.watching = false
			c.mu.Unlock()
			return
		}
		last := c.last
		c.mu.Unlock()
		db, err := c.inv.Snapshot(context.Background())
		if err != nil || db == last {
			continue
		}
		c.mu.Lock()
		c.last = db
		c.mu.Unlock()
		c.notify()
	}
}

// Notify wakes every agent waiting on its runtime overlay (long-poll), so
// each gets its overlay again if it changed. Changes of an inventory that is
// a Snapshotter are noticed without it (within Options.WatchInterval);
// call it when something else an overlay is made of changed (site overlay
// files, files templates include). Reload calls it.
func (h *Handler) Notify() { h.changes.notify() }

// StopWaiting answers every long-poll request held now with 304, and
// holds no new ones: call it before http.Server.Shutdown, which waits for
// requests under way. Server.Shutdown does.
func (h *Handler) StopWaiting() { h.changes.stop() }

// parseWait reads ?wait=SECONDS (0 to 300).
func parseWait(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("wait=%q: give whole seconds, 0 to %d", truncate(s, 16), int(MaxWait/time.Second))
	}
	return min(time.Duration(n)*time.Second, MaxWait), nil
}

// etagMatch reports whether an If-None-Match header names etag (strong or
// weak, one of a list, or *).
func etagMatch(header, etag string) bool {
	for t := range strings.SplitSeq(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || (t != "" && t == etag) {
			return true
		}
	}
	return false
}

// serveRuntime sends the node's runtime overlay. With ?wait=SECONDS and an
// If-None-Match naming the current archive, it holds the request until the
// archive changes (200 with the new one) or the wait ends (304).
func (h *Handler) serveRuntime(w *recorder, r *http.Request, db *nodedb.DB, node *nodedb.Node, hw net.HardwareAddr) {
	wait, err := parseWait(r.URL.Query().Get("wait"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	inm := r.Header.Get("If-None-Match")
	if wait == 0 || inm == "" || h.opts.Overlays == nil {
		h.serveOverlay(w, r, db, node, overlay.Runtime)
		return
	}
	ctx := r.Context()
	changed, stop := h.changes.enter()
	defer h.changes.leave()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		a, err := h.opts.Overlays.Render(ctx, db, node, overlay.Runtime)
		if err != nil || !etagMatch(inm, a.ETag()) {
			h.serveOverlay(w, r, db, node, overlay.Runtime) // the new archive, or the error
			return
		}
		// A change between the lookup and now would not wake us: look again.
		if cur, _, err := h.lookup(ctx, hw); err == nil && cur != db {
			db, node, err = h.relookup(w, r, hw)
			if err != nil {
				return
			}
			continue
		}
		select {
		case <-changed:
			changed = h.changes.current()
			if db, node, err = h.relookup(w, r, hw); err != nil {
				return
			}
		case <-timer.C:
			h.notModified(w, a.ETag())
			return
		case <-stop:
			h.notModified(w, a.ETag())
			return
		case <-ctx.Done():
			return
		}
	}
}

func (h *Handler) notModified(w *recorder, etag string) {
	w.Header()["Etag"] = []string{etag}
	w.Header()["Cache-Control"] = []string{"no-store"}
	w.WriteHeader(http.StatusNotModified)
}

// relookup finds the node of hw again after a change, and checks it still
// may have its runtime overlay; on failure it has answered the request.
func (h *Handler) relookup(w *recorder, r *http.Request, hw net.HardwareAddr) (*nodedb.DB, *nodedb.Node, error) {
	db, node, err := h.lookup(r.Context(), hw)
	switch {
	case errors.Is(err, nodedb.ErrNotFound) || (err == nil && node == nil):
		http.Error(w, fmt.Sprintf("no node has hardware address %s any more", hw), http.StatusNotFound)
		return nil, nil, errors.New("gone")
	case err != nil:
		h.log.Error("inventory lookup failed", "hwaddr", hw, "err", err)
		http.Error(w, "inventory unavailable", http.StatusServiceUnavailable)
		return nil, nil, err
	}
	w.node = node.ID
	if reason, msg := h.nodeAllowed(r, node); reason != "" {
		h.refuse(w, r, node, StageRuntime, reason, msg)
		return nil, nil, errors.New(reason)
	}
	return db, node, nil
}
