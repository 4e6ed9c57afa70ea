package events

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// StreamOptions tune Stream.
type StreamOptions struct {
	// Buffer is each client's queue (events) before it lags; 0 means 256.
	// A lagging client is told to reconnect (its browser or client resumes
	// with Last-Event-ID from the ring).
	Buffer int
	// KeepAlive is how often a comment line goes out on a quiet stream so
	// proxies and clients see it alive; 0 means 15 s.
	KeepAlive time.Duration
	// Retry is the reconnection delay sent to clients (SSE retry:); 0
	// means 1 s.
	Retry time.Duration
	// Done, when closed, ends the stream (a server shutting down: streams
	// never end on their own, and http.Server.Shutdown waits for them).
	Done <-chan struct{}
}

// MaxTypes bounds the types= values a stream request may give.
const MaxTypes = 8

// StreamRequest is what a client asked a stream for: resume after ID After
// (Last-Event-ID header, or ?after=; Resume false: neither was given, so
// only new events), only the Types listed (?types=a,b).
type StreamRequest struct {
	After  uint64
	Resume bool
	Types  []string
}

// ParseStreamRequest reads and checks the Last-Event-ID header and the
// after= and types= query parameters. Unknown types and malformed IDs are
// errors that say what to send.
func ParseStreamRequest(r *http.Request) (StreamRequest, error) {
	var sr StreamRequest
	q := r.URL.Query()
	for _, k := range []string{"after", "types"} {
		if len(q[k]) > 1 {
			return sr, fmt.Errorf("%s= given %d times: give it once", k, len(q[k]))
		}
	}
	id := r.Header.Get("Last-Event-ID")
	if id == "" {
		id = q.Get("after")
	}
	if id != "" {
		n, err := strconv.ParseUint(id, 10, 64)
		if err != nil {
			return sr, fmt.Errorf("last event ID %q: send the decimal id of the last event received", truncate(id, 24))
		}
		sr.After, sr.Resume = n, true
	}
	if t := q.Get("types"); t != "" {
		parts := strings.Split(t, ",")
		if len(parts) > MaxTypes {
			return sr, fmt.Errorf("types=: at most %d types", MaxTypes)
		}
		for _, p := range parts {
			if !validType(p) {
				return sr, fmt.Errorf("types=: %q is not an event type; use %s", truncate(p, 24), strings.Join(Types(), ", "))
			}
			sr.Types = append(sr.Types, p)
		}
	}
	return sr, nil
}

func validType(t string) bool {
	for _, v := range Types() {
		if t == v {
			return true
		}
	}
	return false
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// Stream serves b's events to one client as Server-Sent Events
// (text/event-stream; https://html.spec.whatwg.org/multipage/server-sent-events.html):
// each event as "id: N", "event: TYPE" and "data: JSON", first the ones the
// client missed (after Last-Event-ID, from the ring), then new ones as they
// come, until the client goes away or falls behind. When events it asked
// for fell out of the ring, a "gap" event says how many. The request must
// have been checked (ParseStreamRequest) and authorized by the caller.
func Stream(w http.ResponseWriter, r *http.Request, b *Bus, sr StreamRequest, opts StreamOptions) {
	if opts.Buffer <= 0 {
		opts.Buffer = 256
	}
	if opts.KeepAlive <= 0 {
		opts.KeepAlive = 15 * time.Second
	}
	if opts.Retry <= 0 {
		opts.Retry = time.Second
	}
	rc := http.NewResponseController(w)
	after := sr.After
	if !sr.Resume {
		after = b.LastID()
	}
	sub, backlog, missed := b.Subscribe(after, opts.Buffer, sr.Types...)
	defer sub.Close()
	// A stream outlives the server's write timeout.
	_ = rc.SetWriteDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, "retry: %d\n\n", opts.Retry.Milliseconds())
	if missed > 0 {
		fmt.Fprintf(w, "event: gap\ndata: {\"missed\":%d}\n\n", missed)
	}
	for _, e := range backlog {
		if writeEvent(w, e) != nil {
			return
		}
	}
	if rc.Flush() != nil {
		return
	}
	tick := time.NewTicker(opts.KeepAlive)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-opts.Done:
			return
		case e, ok := <-sub.C:
			if !ok {
				// Lagged: end the response; the client reconnects with
				// Last-Event-ID and reads the rest from the ring.
				return
			}
			if writeEvent(w, e) != nil {
				return
			}
			// Send what is queued too before flushing.
			for more := true; more; {
				select {
				case e, ok := <-sub.C:
					if !ok {
						_ = rc.Flush()
						return
					}
					if writeEvent(w, e) != nil {
						return
					}
				default:
					more = false
				}
			}
			if rc.Flush() != nil {
				return
			}
		case <-tick.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil || rc.Flush() != nil {
				return
			}
		}
	}
}

func writeEvent(w http.ResponseWriter, e Event) error {
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", e.ID, e.Type, data)
	return err
}
