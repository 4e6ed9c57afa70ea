package provision

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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

// DefaultRecheckInterval is how often every waiting agent's overlay is
// rendered again even though nothing said it changed
// (Options.RecheckInterval when 0).
const DefaultRecheckInterval = time.Minute

// longPollWrite bounds the writing of one held request's answer.
const longPollWrite = time.Minute

// The long-poll (GET /overlay/runtime/{mac}?wait=SECONDS with
// If-None-Match) is built to make 10,000 waiting agents cheap:
//
//   - A request whose overlay has not changed is detached from net/http:
//     its connection is hijacked and the handler returns, so no goroutine,
//     no read or write buffer and no request object stays behind. What is
//     left is the connection, a small waiter and a timer (about 2 KB).
//   - One watcher goroutine, running only while someone waits, takes a
//     snapshot of the inventory every WatchInterval and compares its
//     pointer to the last (nodedb snapshots are immutable, so a new pointer
//     is a new inventory); nothing else runs while nothing changes.
//   - On a change (or Notify), the waiters are handed to a few workers
//     (4 per CPU), which render each node's overlay again (a cache hit for
//     whatever did not change) and answer those whose ETag changed; the
//     others wait on.
//   - The wait's end is the waiter's timer, which answers 304.
//   - Every RecheckInterval (a minute) the watcher wakes every waiter as
//     if the inventory had changed: a server file an overlay reads (the
//     root's authorized_keys, a site overlay) may have, and the renderer
//     notices that. It costs a cache hit per waiting agent, far less than
//     the agents asking again, and bounds how late such a change arrives,
//     as Warewulf's 60-s poll does.
//
// A ResponseWriter that cannot be hijacked (HTTP/2, a test recorder) waits
// in the handler instead, woken the same way.

// waiter is one detached long-poll request.
type waiter struct {
	conn   net.Conn
	hw     net.HardwareAddr
	hwaddr string
	inm    string        // the If-None-Match header
	req    *http.Request // remote address and query, for the checks on a change
	node   string        // the node's name
	etag   string        // the archive's ETag, for the 304
	timer  *time.Timer

	expired bool // the wait ended while a worker held it (guarded by changes.mu)
}

// changes tracks what waits and wakes it.
type changes struct {
	h       *Handler
	inv     Snapshotter // nil: only Notify and the recheck wake waiters
	every   time.Duration
	recheck time.Duration // <0: never

	mu       sync.Mutex
	ch       chan struct{} // closed on the next change, for in-handler waits
	set      map[*waiter]struct{}
	held     int // in-handler waits
	watching bool
	last     *nodedb.DB // snapshot the watcher compares to
	stopped  bool
	stopCh   chan struct{}
}

func newChanges(h *Handler, inv Inventory, every, recheck time.Duration) *changes {
	c := &changes{h: h, every: every, recheck: recheck, ch: make(chan struct{}), set: map[*waiter]struct{}{}, stopCh: make(chan struct{})}
	if c.every <= 0 {
		c.every = DefaultWatchInterval
	}
	if c.recheck == 0 {
		c.recheck = DefaultRecheckInterval
	}
	if s, ok := inv.(Snapshotter); ok {
		c.inv = s
	}
	return c
}

// watchLocked starts the watcher unless it runs. The first snapshot is
// taken now, before the caller compares its own to the current one, so no
// change falls between the two. c.mu is held.
func (c *changes) watchLocked() {
	if c.watching {
		return
	}
	c.watching = true
	if c.inv != nil {
		c.last, _ = c.inv.Snapshot(context.Background())
	}
	go c.watch()
}

// watch polls the inventory's snapshot, and rechecks every waiter now and
// then, until nobody waits.
func (c *changes) watch() {
	t := time.NewTicker(c.every)
	defer t.Stop()
	lastRecheck := time.Now()
	for now := range t.C {
		c.mu.Lock()
		if len(c.set) == 0 && c.held == 0 {
			c.watching = false
			c.mu.Unlock()
			return
		}
		last := c.last
		c.mu.Unlock()
		if c.recheck > 0 && now.Sub(lastRecheck) >= c.recheck {
			lastRecheck = now
			c.notify()
			continue
		}
		if c.inv == nil {
			continue
		}
		db, err := c.inv.Snapshot(context.Background())
		if err != nil || db == last {
			continue
		}
		c.mu.Lock()
		c.last = db
		c.mu.Unlock()
		c.h.pruneEnrollments(db)
		lastRecheck = now
		c.notify()
	}
}

// notify wakes every waiter: in-handler ones through the channel, detached
// ones by handing them to workers.
func (c *changes) notify() {
	c.mu.Lock()
	close(c.ch)
	c.ch = make(chan struct{})
	batch := make([]*waiter, 0, len(c.set))
	for w := range c.set {
		batch = append(batch, w)
	}
	clear(c.set)
	c.mu.Unlock()
	c.h.metrics.waiting.Set(0)
	if len(batch) == 0 {
		return
	}
	var next atomic.Int64
	for range min(len(batch), 4*runtime.GOMAXPROCS(0)) {
		go func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(batch) {
					return
				}
				c.h.recheck(batch[i])
			}
		}()
	}
}

// add puts w in the set of waiters, or answers it when its wait ended or
// the handler stopped holding requests.
func (c *changes) add(w *waiter) {
	c.mu.Lock()
	if c.stopped || w.expired {
		c.mu.Unlock()
		c.h.answerNotModified(w)
		return
	}
	c.set[w] = struct{}{}
	n := len(c.set)
	c.watchLocked()
	c.mu.Unlock()
	c.h.metrics.waiting.Set(float64(n))
}

// take removes w from the set; false if it was not there (a worker or its
// timer has it).
func (c *changes) take(w *waiter) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.set[w]; !ok {
		return false
	}
	delete(c.set, w)
	return true
}

// expire ends w's wait: answered now if it waits, or when the worker that
// holds it is done.
func (c *changes) expire(w *waiter) {
	c.mu.Lock()
	_, waiting := c.set[w]
	if waiting {
		delete(c.set, w)
	} else {
		w.expired = true
	}
	n := len(c.set)
	c.mu.Unlock()
	if waiting {
		c.h.metrics.waiting.Set(float64(n))
		c.h.answerNotModified(w)
	}
}

// stop answers every waiter with 304 and holds no new requests.
func (c *changes) stop() {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return
	}
	c.stopped = true
	close(c.stopCh)
	batch := make([]*waiter, 0, len(c.set))
	for w := range c.set {
		batch = append(batch, w)
	}
	clear(c.set)
	c.mu.Unlock()
	c.h.metrics.waiting.Set(0)
	for _, w := range batch {
		w.timer.Stop()
		go c.h.answerNotModified(w)
	}
}

// Notify wakes every agent waiting on its runtime overlay (long-poll), so
// each gets its overlay again if it changed. Changes of an inventory that is
// a Snapshotter are noticed without it (within Options.WatchInterval);
// call it when something else an overlay is made of changed (site overlay
// files, files templates include). Reload calls it.
func (h *Handler) Notify() { h.changes.notify() }

// StopWaiting answers every long-poll request held now with 304 and holds
// no new ones. Held requests are detached from the http.Server (their
// connections hijacked), so its Shutdown neither waits for them nor closes
// them: call StopWaiting before it. Server.Shutdown does.
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
	if wait == 0 || inm == "" || h.opts.Overlays == nil || r.Method != http.MethodGet {
		h.serveOverlay(w, r, db, node, overlay.Runtime)
		return
	}
	a, err := h.opts.Overlays.Render(r.Context(), db, node, overlay.Runtime)
	if err != nil || !etagMatch(inm, a.ETag()) {
		h.serveOverlay(w, r, db, node, overlay.Runtime) // the new archive, or the error
		return
	}
	select {
	case <-h.changes.stopCh:
		h.notModified(w, a.ETag())
		return
	default:
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		h.holdInHandler(w, r, db, node, hw, inm, wait)
		return
	}
	w.detached = true
	wt := &waiter{conn: conn, hw: hw, hwaddr: w.hwaddr, inm: inm, node: node.ID, etag: a.ETag(),
		req: &http.Request{RemoteAddr: r.RemoteAddr, URL: &url.URL{Path: r.URL.Path, RawQuery: r.URL.RawQuery}, TLS: r.TLS}}
	if brw != nil && brw.Reader.Buffered() > 0 {
		// Bytes after the request (a pipelined one): not how an agent
		// asks; answer now rather than leave them unread.
		wt.timer = time.NewTimer(0)
		h.answerNotModified(wt)
		return
	}
	wt.timer = time.AfterFunc(wait, func() { h.changes.expire(wt) })
	h.changes.add(wt)
	// A change between the lookup and now would not wake it: look again.
	if h.changes.inv != nil {
		if cur, err := h.changes.inv.Snapshot(context.Background()); err == nil && cur != db && h.changes.take(wt) {
			h.recheck(wt)
		}
	}
}

// recheck renders a woken waiter's overlay again: a changed archive is sent
// (200), an unchanged one waits on.
func (h *Handler) recheck(w *waiter) {
	ctx, cancel := context.WithTimeout(context.Background(), longPollWrite)
	defer cancel()
	db, node, err := h.lookup(ctx, w.hw)
	switch {
	case errors.Is(err, nodedb.ErrNotFound) || (err == nil && node == nil):
		h.answer(w, http.StatusNotFound, nil, fmt.Sprintf("no node has hardware address %s any more\n", w.hwaddr))
		return
	case err != nil:
		h.log.Error("inventory lookup failed", "hwaddr", w.hwaddr, "err", err)
		h.answer(w, http.StatusServiceUnavailable, nil, "inventory unavailable\n")
		return
	}
	if reason, msg := h.nodeAllowed(w.req, node); reason != "" {
		h.metrics.refused.WithLabelValues(reason).Inc()
		h.log.Warn("refused", "node", node.ID, "stage", StageRuntime, "client", w.req.RemoteAddr, "reason", reason)
		h.answer(w, refusalCode(reason), nil, msg+"\n")
		return
	}
	a, err := h.opts.Overlays.Render(ctx, db, node, overlay.Runtime)
	if err != nil {
		h.log.Error("rendering overlay", "node", node.ID, "kind", overlay.Runtime, "err", err)
		h.answer(w, http.StatusInternalServerError, nil, fmt.Sprintf("node %s: runtime overlay: %v\n", node.ID, err))
		return
	}
	w.node = node.ID
	if !etagMatch(w.inm, a.ETag()) {
		h.answer(w, http.StatusOK, a, "")
		return
	}
	w.etag = a.ETag()
	h.changes.add(w)
}

// answerNotModified ends w's wait with 304.
func (h *Handler) answerNotModified(w *waiter) { h.answer(w, http.StatusNotModified, nil, "") }

// answer writes the response to a detached request, closes its connection
// and records it in the metrics and the status.
func (h *Handler) answer(w *waiter, code int, a *overlay.Archive, msg string) {
	w.timer.Stop()
	defer w.conn.Close()
	_ = w.conn.SetWriteDeadline(time.Now().Add(longPollWrite))
	bw := bufio.NewWriterSize(w.conn, 1024)
	fmt.Fprintf(bw, "HTTP/1.1 %d %s\r\nDate: %s\r\nCache-Control: no-store\r\nConnection: close\r\n",
		code, http.StatusText(code), time.Now().UTC().Format(http.TimeFormat))
	var n int64
	switch {
	case a != nil:
		fmt.Fprintf(bw, "Content-Type: application/octet-stream\r\nEtag: %s\r\nContent-Length: %d\r\n\r\n", a.ETag(), a.Size())
		if err := bw.Flush(); err == nil {
			n, _ = a.WriteTo(w.conn)
		}
	case code == http.StatusNotModified:
		fmt.Fprintf(bw, "Etag: %s\r\n\r\n", w.etag)
		_ = bw.Flush()
	default:
		fmt.Fprintf(bw, "Content-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nContent-Length: %d\r\n\r\n%s", len(msg), msg)
		_ = bw.Flush()
		n = int64(len(msg))
	}
	h.metrics.requests.WithLabelValues(StageRuntime, codeLabel(code)).Inc()
	if n > 0 {
		h.metrics.sent.WithLabelValues(StageRuntime).Add(float64(n))
	}
	h.status.record(w.node, w.hwaddr, StageRuntime, code, n, w.req.RemoteAddr, h.now())
	if code == http.StatusOK {
		h.log.Info("sent runtime overlay", "node", w.node, "client", w.req.RemoteAddr, "code", code, "bytes", n, "long_poll", true)
	}
}

// holdInHandler waits inside the handler, for a ResponseWriter that cannot
// be hijacked; woken by the same changes.
func (h *Handler) holdInHandler(w *recorder, r *http.Request, db *nodedb.DB, node *nodedb.Node, hw net.HardwareAddr, inm string, wait time.Duration) {
	ctx := r.Context()
	c := h.changes
	c.mu.Lock()
	c.held++
	c.watchLocked()
	changed := c.ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.held--
		c.mu.Unlock()
	}()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		a, err := h.opts.Overlays.Render(ctx, db, node, overlay.Runtime)
		if err != nil || !etagMatch(inm, a.ETag()) {
			h.serveOverlay(w, r, db, node, overlay.Runtime)
			return
		}
		if c.inv != nil {
			if cur, err := c.inv.Snapshot(ctx); err == nil && cur != db {
				if db, node, err = h.relookup(w, r, hw); err != nil {
					return
				}
				continue
			}
		}
		select {
		case <-changed:
			c.mu.Lock()
			changed = c.ch
			c.mu.Unlock()
			if db, node, err = h.relookup(w, r, hw); err != nil {
				return
			}
		case <-timer.C:
			h.notModified(w, a.ETag())
			return
		case <-c.stopCh:
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
