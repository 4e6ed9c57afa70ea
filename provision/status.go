package provision

import (
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/wwboot/wwboot/events"
)

// Stages of a boot, the values of NodeStatus.Stage and of the "stage" label of
// the metrics.
const (
	StageIPXE    = "ipxe"    // the iPXE script
	StageKernel  = "kernel"  // the kernel
	StageImage   = "image"   // the image
	StageSystem  = "system"  // the system overlay
	StageRuntime = "runtime" // the runtime overlay
	StageBoot    = "boot"    // an iPXE binary over HTTP (UEFI HTTP Boot)
	StageAgent   = "agent"   // a heartbeat or report of the node agent (POST /agent/{mac})
)

// Node states, the values of NodeStatus.State.
const (
	StateUp      = "up"      // the node's agent sent a heartbeat lately
	StateBooting = "booting" // the node is fetching its boot files, or reported it is booting
	StateDown    = "down"    // no heartbeat for HeartbeatTimeout, or a boot that went quiet
	StateFailed  = "failed"  // the node reported a failure (Reason says which) since it last began to boot
)

// Defaults of the status's timeouts.
const (
	// DefaultHeartbeatTimeout is three of the agent's 30-s heartbeats.
	DefaultHeartbeatTimeout = 100 * time.Second
	// DefaultBootTimeout covers a slow boot: firmware, a large image over
	// a busy network, the kernel unpacking it.
	DefaultBootTimeout = 10 * time.Minute
)

// NodeStatus is what the server last saw of one node (or of one unknown MAC).
type NodeStatus struct {
	// Node is the node's name ("" for a MAC not in the inventory).
	Node string `json:"node,omitempty"`
	// Hwaddr is the MAC the node asked with (lower case, colons).
	Hwaddr string `json:"hwaddr"`
	// Stage is the last stage asked for: ipxe, kernel, image, system, runtime.
	Stage string `json:"stage"`
	// Code is the HTTP status of that request (200, 206, 304, 403...).
	Code int `json:"code"`
	// Bytes is how many bytes of body that request sent.
	Bytes int64 `json:"bytes"`
	// Client is the client's address and port.
	Client string `json:"client"`
	// Time is when that request finished.
	Time time.Time `json:"time"`
	// Requests counts every request of the node.
	Requests int64 `json:"requests"`
	// SentTotal counts the body bytes sent to the node in all its requests.
	SentTotal int64 `json:"sent_total"`

	// State is the node's state when the status was taken: up, booting,
	// down or failed ("" for an unknown MAC).
	State string `json:"state,omitempty"`
	// Reason says why the node is in State, for a person: the failure it
	// reported, how long it has been quiet, the request that failed.
	Reason string `json:"reason,omitempty"`
	// BootStarted is when the node last asked for its iPXE script (the
	// start of its last boot); zero if not since the server started.
	BootStarted time.Time `json:"boot_started,omitzero"`
	// Heartbeat is when the node's agent last reported (any state).
	Heartbeat time.Time `json:"heartbeat,omitzero"`
	// Reported is the state of that report (up, booting, failed).
	Reported string `json:"reported,omitempty"`
	// ReportedStage is the stage the node said it was at (init, agent...).
	ReportedStage string `json:"reported_stage,omitempty"`
	// ReportedReason is the reason the node gave.
	ReportedReason string `json:"reported_reason,omitempty"`

	lastBoot time.Time // last request of a boot stage (ipxe to system)
	pub      published // what events said last (events.go)
}

// Status is the server's view of every node that has asked it something,
// as /status serves it.
type Status struct {
	// Started is when the handler was created.
	Started time.Time `json:"started"`
	// Now is when the status was taken (the server's clock).
	Now time.Time `json:"now"`
	// HeartbeatTimeout is how long after its last heartbeat a node counts
	// as down.
	HeartbeatTimeout time.Duration `json:"heartbeat_timeout"`
	// Nodes are the inventory's nodes that have asked, by name.
	Nodes []NodeStatus `json:"nodes"`
	// Unknown are MACs not in the inventory that asked for a script, the
	// most recent ones (at most maxUnknown), by MAC.
	Unknown []NodeStatus `json:"unknown"`
	// Unseen are the inventory's nodes that have asked nothing since the
	// server started (when the Inventory is a Snapshotter), by name: down,
	// or powered off.
	Unseen []string `json:"unseen,omitempty"`
}

// maxUnknown bounds the unknown MACs the status remembers, since anyone on
// the network can invent them.
const maxUnknown = 256

// tracker keeps the per-node status. It is safe for concurrent use.
type tracker struct {
	started   time.Time
	heartbeat time.Duration // HeartbeatTimeout
	boot      time.Duration // BootTimeout
	mu        sync.Mutex
	nodes     map[string]*NodeStatus // by node name
	unknown   map[string]*NodeStatus // by MAC
	events    events.Publisher       // nil: no events
}

func newTracker(now time.Time, heartbeat, boot time.Duration) *tracker {
	if heartbeat <= 0 {
		heartbeat = DefaultHeartbeatTimeout
	}
	if boot <= 0 {
		boot = DefaultBootTimeout
	}
	return &tracker{started: now, heartbeat: heartbeat, boot: boot, nodes: map[string]*NodeStatus{}, unknown: map[string]*NodeStatus{}}
}

// record notes one finished request. node is "" for an unknown MAC.
func (t *tracker) record(node, hwaddr, stage string, code int, bytes int64, client string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m, key := t.nodes, node
	if node == "" {
		m, key = t.unknown, hwaddr
	}
	s := m[key]
	if s == nil {
		if node == "" && len(m) >= maxUnknown {
			t.evictOldestUnknown()
		}
		s = &NodeStatus{Node: node}
		m[key] = s
	}
	s.Hwaddr, s.Stage, s.Code, s.Bytes, s.Client, s.Time = hwaddr, stage, code, bytes, client, at
	s.Requests++
	s.SentTotal += bytes
	switch stage {
	case StageIPXE, StageBoot:
		if code == 200 {
			s.BootStarted = at
		}
		s.lastBoot = at
	case StageKernel, StageImage, StageSystem:
		s.lastBoot = at
	}
	if node != "" {
		t.publishRequestLocked(s, stage, code, at)
	}
}

// report notes a node agent's report. The node must be known (the handler
// looked it up).
func (t *tracker) report(node, hwaddr string, rep Report, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.nodes[node]
	if s == nil {
		s = &NodeStatus{Node: node, Hwaddr: hwaddr}
		t.nodes[node] = s
	}
	s.Heartbeat, s.Reported, s.ReportedStage, s.ReportedReason = at, rep.State, rep.Stage, rep.Reason
	t.publishReportLocked(s, at)
}

// state works out a node's state at now from what it did.
func (t *tracker) state(s *NodeStatus, now time.Time) (state, reason string) {
	ago := func(at time.Time) string { return now.Sub(at).Round(time.Second).String() }
	if !s.Heartbeat.IsZero() && !s.Heartbeat.Before(s.BootStarted) {
		switch s.Reported {
		case StateFailed:
			r := s.ReportedReason
			if r == "" {
				r = "reported failed"
			}
			return StateFailed, joinReason(s.ReportedStage, r)
		case StateBooting:
			if now.Sub(s.Heartbeat) < t.boot {
				return StateBooting, joinReason(s.ReportedStage, s.ReportedReason)
			}
			return StateDown, "reported booting " + ago(s.Heartbeat) + " ago, nothing since"
		default:
			if now.Sub(s.Heartbeat) <= t.heartbeat {
				return StateUp, s.ReportedReason
			}
			return StateDown, "no heartbeat for " + ago(s.Heartbeat)
		}
	}
	if !s.lastBoot.IsZero() && now.Sub(s.lastBoot) < t.boot {
		r := "fetched " + s.Stage
		if s.Code >= 400 {
			r = fmt.Sprintf("%s: %d", s.Stage, s.Code)
		}
		return StateBooting, r + " " + ago(s.Time) + " ago"
	}
	if !s.lastBoot.IsZero() {
		return StateDown, "no heartbeat since its boot " + ago(s.lastBoot) + " ago (last fetched " + s.Stage +
			"); is the wwclient overlay in its system overlays?"
	}
	return StateDown, "no heartbeat for " + ago(s.Time)
}

func joinReason(stage, reason string) string {
	switch {
	case stage == "":
		return reason
	case reason == "":
		return stage
	}
	return stage + ": " + reason
}

func (t *tracker) evictOldestUnknown() {
	var oldest string
	var at time.Time
	for k, s := range t.unknown {
		if oldest == "" || s.Time.Before(at) {
			oldest, at = k, s.Time
		}
	}
	delete(t.unknown, oldest)
}

// snapshot copies the status at now, sorted.
func (t *tracker) snapshot(now time.Time) Status {
	t.mu.Lock()
	st := Status{Started: t.started, Now: now, HeartbeatTimeout: t.heartbeat,
		Nodes: make([]NodeStatus, 0, len(t.nodes)), Unknown: make([]NodeStatus, 0, len(t.unknown))}
	for _, s := range t.nodes {
		c := *s
		c.State, c.Reason = t.state(s, now)
		st.Nodes = append(st.Nodes, c)
	}
	for _, s := range t.unknown {
		st.Unknown = append(st.Unknown, *s)
	}
	t.mu.Unlock()
	sort.Slice(st.Nodes, func(i, j int) bool { return st.Nodes[i].Node < st.Nodes[j].Node })
	sort.Slice(st.Unknown, func(i, j int) bool { return st.Unknown[i].Hwaddr < st.Unknown[j].Hwaddr })
	return st
}
