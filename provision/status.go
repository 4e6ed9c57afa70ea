package provision

import (
	"sort"
	"sync"
	"time"
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
}

// Status is the server's view of every node that has asked it something,
// as /status serves it.
type Status struct {
	// Started is when the handler was created.
	Started time.Time `json:"started"`
	// Nodes are the inventory's nodes that have asked, by name.
	Nodes []NodeStatus `json:"nodes"`
	// Unknown are MACs not in the inventory that asked for a script, the
	// most recent ones (at most maxUnknown), by MAC.
	Unknown []NodeStatus `json:"unknown"`
}

// maxUnknown bounds the unknown MACs the status remembers, since anyone on
// the network can invent them.
const maxUnknown = 256

// tracker keeps the per-node status. It is safe for concurrent use.
type tracker struct {
	started time.Time
	mu      sync.Mutex
	nodes   map[string]*NodeStatus // by node name
	unknown map[string]*NodeStatus // by MAC
}

func newTracker(now time.Time) *tracker {
	return &tracker{started: now, nodes: map[string]*NodeStatus{}, unknown: map[string]*NodeStatus{}}
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

// snapshot copies the status, sorted.
func (t *tracker) snapshot() Status {
	t.mu.Lock()
	st := Status{Started: t.started, Nodes: make([]NodeStatus, 0, len(t.nodes)), Unknown: make([]NodeStatus, 0, len(t.unknown))}
	for _, s := range t.nodes {
		st.Nodes = append(st.Nodes, *s)
	}
	for _, s := range t.unknown {
		st.Unknown = append(st.Unknown, *s)
	}
	t.mu.Unlock()
	sort.Slice(st.Nodes, func(i, j int) bool { return st.Nodes[i].Node < st.Nodes[j].Node })
	sort.Slice(st.Unknown, func(i, j int) bool { return st.Unknown[i].Hwaddr < st.Unknown[j].Hwaddr })
	return st
}
