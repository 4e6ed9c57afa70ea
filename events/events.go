// Package events carries node state changes from where they happen (the
// provisioning status, power actions) to whoever reacts to them: hook
// programs, webhooks and HTTP event streams.
//
// A Bus numbers each Event it is given, keeps the most recent ones in a
// bounded ring (so a stream client that reconnects resumes where it left off)
// and hands them to every Subscription without ever blocking the publisher: a
// subscriber that falls behind by more than its buffer is cut off (Err says
// so) and resubscribes from the last ID it saw. There is no package-level
// state; a program makes one Bus and passes it to the parts that publish.
package events

import (
	"errors"
	"sync"
	"time"
)

// Event types.
const (
	// TypeState is a node's state changing: State is the new one (up,
	// booting, down, failed), Previous the old one ("" the first time the
	// server sees the node), Reason why.
	TypeState = "node.state"
	// TypeStage is a node reaching a boot stage: Stage is ipxe, kernel,
	// image, system, runtime or boot (requests it made) or what its agent
	// reported (init, agent...), Source says which.
	TypeStage = "node.stage"
	// TypePower is a power action on a node's BMC: Action is on, off,
	// cycle, reset or status; State the power state afterwards (on, off,
	// unknown); Error is set when it failed.
	TypePower = "node.power"
)

// Types lists the event types, for validation and documentation.
func Types() []string { return []string{TypeState, TypeStage, TypePower} }

// Event is one change. The fields are flat so that a hook program gets each
// as an environment variable (WWBOOT_EVENT_<FIELD>), and JSON is the same
// object everywhere (stream, webhook body, program stdin).
type Event struct {
	// ID numbers the bus's events from 1, in publish order. Streams use it
	// as the SSE id and resume after it (Last-Event-ID).
	ID uint64 `json:"id"`
	// Type is TypeState, TypeStage or TypePower.
	Type string `json:"type"`
	// Time is when the change happened (the publisher's clock, UTC).
	Time time.Time `json:"time"`
	// Node is the node's name.
	Node string `json:"node"`
	// Hwaddr is the MAC the node used ("" for power events).
	Hwaddr string `json:"hwaddr,omitempty"`
	// State is the node state (TypeState) or power state (TypePower).
	State string `json:"state,omitempty"`
	// Previous is the state before (TypeState).
	Previous string `json:"previous,omitempty"`
	// Stage is the boot stage (TypeStage).
	Stage string `json:"stage,omitempty"`
	// Source says who saw it: "server" (a request of the node), "agent"
	// (the node's report), "power" (a BMC).
	Source string `json:"source,omitempty"`
	// Action is the power action (TypePower).
	Action string `json:"action,omitempty"`
	// Reason explains the change, for a person.
	Reason string `json:"reason,omitempty"`
	// Error is a failed power action's error (never a password).
	Error string `json:"error,omitempty"`
}

// Publisher is what a part that reports changes needs; *Bus satisfies it.
type Publisher interface {
	// Publish numbers e, stamps its Time if zero, delivers it and returns
	// it as delivered. It never blocks on subscribers.
	Publish(e Event) Event
}

// DefaultCapacity is how many events a Bus keeps for resuming streams.
const DefaultCapacity = 1024

// ErrLagged ends a Subscription whose reader fell behind by more than its
// buffer; resubscribe after the last ID read to get the rest from the ring.
var ErrLagged = errors.New("events: subscriber fell behind; resubscribe after the last event ID read")

// ErrClosed ends a Subscription closed by its owner.
var ErrClosed = errors.New("events: subscription closed")

// Bus numbers events, keeps the last Capacity of them and fans them out. The
// zero value is not usable; create one with NewBus. It is safe for
// concurrent use.
type Bus struct {
	now  func() time.Time
	mu   sync.Mutex
	last uint64  // ID of the last event published
	ring []Event // ring[(id-1) % cap] holds event id
	subs map[*Subscription]struct{}
}

// Options configure a Bus.
type Options struct {
	// Capacity bounds the events kept for resuming; 0 means
	// DefaultCapacity.
	Capacity int
	// Now is the clock for events without a Time; nil means time.Now.
	Now func() time.Time
}

// NewBus returns an empty bus.
func NewBus(opts Options) *Bus {
	if opts.Capacity <= 0 {
		opts.Capacity = DefaultCapacity
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Bus{now: opts.Now, ring: make([]Event, opts.Capacity), subs: map[*Subscription]struct{}{}}
}

// Publish implements Publisher.
func (b *Bus) Publish(e Event) Event {
	if e.Time.IsZero() {
		e.Time = b.now()
	}
	e.Time = e.Time.UTC()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.last++
	e.ID = b.last
	b.ring[(e.ID-1)%uint64(len(b.ring))] = e
	for s := range b.subs {
		if !s.match(e.Type) {
			continue
		}
		select {
		case s.ch <- e:
		default:
			b.dropLocked(s, ErrLagged)
		}
	}
	return e
}

// LastID returns the ID of the last event published (0: none yet).
func (b *Bus) LastID() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last
}

// Subscription receives a bus's events from C until it is closed or falls
// behind; then C is closed and Err says why.
type Subscription struct {
	// C delivers the events in ID order.
	C <-chan Event

	ch    chan Event
	bus   *Bus
	types map[string]bool // nil: all
	err   error           // guarded by bus.mu
}

func (s *Subscription) match(t string) bool { return s.types == nil || s.types[t] }

// Err returns why C was closed: ErrLagged, ErrClosed, or nil while open.
func (s *Subscription) Err() error {
	s.bus.mu.Lock()
	defer s.bus.mu.Unlock()
	return s.err
}

// Close ends the subscription; C is closed. Closing twice is harmless.
func (s *Subscription) Close() {
	s.bus.mu.Lock()
	defer s.bus.mu.Unlock()
	if _, ok := s.bus.subs[s]; ok {
		s.bus.dropLocked(s, ErrClosed)
	}
}

func (b *Bus) dropLocked(s *Subscription, err error) {
	delete(b.subs, s)
	s.err = err
	close(s.ch)
}

// Subscribe returns the events after ID after still in the ring (backlog,
// oldest first) and a Subscription for those published from now on, with
// room for buffer events (at least 1) before it lags. types limits both to
// those event types (none: all). missed counts the events after after that
// fell out of the ring before they could be read (0 when nothing was lost).
// Pass LastID() for new events only, 0 for everything the ring holds.
func (b *Bus) Subscribe(after uint64, buffer int, types ...string) (s *Subscription, backlog []Event, missed uint64) {
	if buffer < 1 {
		buffer = 1
	}
	ch := make(chan Event, buffer)
	s = &Subscription{C: ch, ch: ch, bus: b}
	if len(types) > 0 {
		s.types = map[string]bool{}
		for _, t := range types {
			s.types[t] = true
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if after < b.last {
		first := uint64(1)
		if b.last > uint64(len(b.ring)) {
			first = b.last - uint64(len(b.ring)) + 1
		}
		from := after + 1
		if from < first {
			missed = first - from
			from = first
		}
		for id := from; id <= b.last; id++ {
			if e := b.ring[(id-1)%uint64(len(b.ring))]; s.match(e.Type) {
				backlog = append(backlog, e)
			}
		}
	}
	b.subs[s] = struct{}{}
	return s, backlog, missed
}
