package provision

import (
	"context"
	"net/http"
	"time"

	"github.com/wwboot/wwboot/events"
)

// Events: the status tracker publishes to Options.Events
//
//   - events.TypeState when a node's state (up, booting, down, failed, as
//     NodeStatus.State works it out) differs from the one last published
//     for it, checked at each of its requests and reports, and by
//     WatchStates for the changes time alone makes (a heartbeat missed, a
//     boot gone quiet);
//   - events.TypeStage when a node's request of a boot stage (ipxe, kernel,
//     image, system, runtime, boot) succeeds for the first time since its
//     boot began (Source "server"), and when its agent reports a stage
//     other than the last one it reported since then (Source "agent").
//
// Events are published under the tracker's lock, so a node's events come
// in the order the server saw them; a Bus never blocks the publisher.

// published is what the events last said of one node.
type published struct {
	state    string // last TypeState's State
	stage    string // last server stage since the boot began
	reported string // last agent stage since the boot began
}

// publishRequestLocked publishes what a request of s's node changed.
func (t *tracker) publishRequestLocked(s *NodeStatus, stage string, code int, at time.Time) {
	if t.events == nil {
		return
	}
	ok := code/100 == 2 || code == http.StatusNotModified
	if ok && (stage == StageIPXE || stage == StageBoot) {
		s.pub.stage, s.pub.reported = "", ""
	}
	if ok && stage != StageAgent && stage != s.pub.stage && stage != "other" && stage != "provision" {
		s.pub.stage = stage
		t.events.Publish(events.Event{Type: events.TypeStage, Time: at, Node: s.Node, Hwaddr: s.Hwaddr,
			Stage: stage, Source: "server"})
	}
	t.publishStateLocked(s, at)
}

// publishReportLocked publishes what an agent's report changed.
func (t *tracker) publishReportLocked(s *NodeStatus, at time.Time) {
	if t.events == nil {
		return
	}
	if s.ReportedStage != "" && s.ReportedStage != s.pub.reported {
		s.pub.reported = s.ReportedStage
		t.events.Publish(events.Event{Type: events.TypeStage, Time: at, Node: s.Node, Hwaddr: s.Hwaddr,
			Stage: s.ReportedStage, Source: "agent", Reason: s.ReportedReason})
	}
	t.publishStateLocked(s, at)
}

// publishStateLocked publishes s's state at now if it changed.
func (t *tracker) publishStateLocked(s *NodeStatus, now time.Time) {
	state, reason := t.state(s, now)
	if state == s.pub.state {
		return
	}
	prev := s.pub.state
	s.pub.state = state
	t.events.Publish(events.Event{Type: events.TypeState, Time: now, Node: s.Node, Hwaddr: s.Hwaddr,
		State: state, Previous: prev, Reason: reason})
}

// sweep publishes the state changes time made since the last look.
func (t *tracker) sweep(now time.Time) {
	if t.events == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range t.nodes {
		t.publishStateLocked(s, now)
	}
}

// DefaultWatchStatesInterval is WatchStates' default interval.
const DefaultWatchStatesInterval = time.Second

// WatchStates publishes, every interval (0: DefaultWatchStatesInterval)
// until ctx ends, the state changes that time alone makes: a node whose
// heartbeats stopped going down, a boot that went quiet. Changes that
// requests and reports make are published as they happen without it. It
// does nothing without Options.Events.
func (h *Handler) WatchStates(ctx context.Context, interval time.Duration) {
	if h.status.events == nil {
		return
	}
	if interval <= 0 {
		interval = DefaultWatchStatesInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.status.sweep(h.now())
		}
	}
}
