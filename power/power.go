// Package power switches nodes on and off through their baseboard management
// controllers: IPMI over LAN (IPMI 1.5 "lan" and IPMI 2.0/RMCP+ "lanplus",
// pure Go through github.com/bougou/go-ipmi) and Redfish (through
// github.com/stmcginnis/gofish).
//
// A BMC is the small interface every driver satisfies; an embedder may plug
// its own (a PDU, a cloud API, a QEMU monitor). Run applies one Action to
// many nodes at once with bounded concurrency and a timeout per node, and
// returns one Result per node in the order given.
//
// Credentials come from nodes.conf's ipmi: block of the effective node
// (ConfigFromIPMI). Passwords never appear in errors, logs or Results: every
// error leaving a driver is passed through a redactor, and Config formats
// itself without the password.
package power

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/wwboot/wwboot/events"
)

// State is a node's power state as its BMC reports it.
type State string

const (
	// StateOn means the chassis has power.
	StateOn State = "on"
	// StateOff means the chassis is powered down.
	StateOff State = "off"
	// StateUnknown is reported when the BMC answered with something else
	// (Redfish PoweringOn, Paused...) or was not asked.
	StateUnknown State = "unknown"
)

// BMC controls the power of one node. Every method is bounded by ctx. On,
// Off, Cycle and Reset return once the BMC accepted the request, not when the
// node finished booting or stopping.
type BMC interface {
	// On powers the chassis up (IPMI chassis control 1, Redfish On).
	On(ctx context.Context) error
	// Off powers the chassis down hard (IPMI 0, Redfish ForceOff).
	Off(ctx context.Context) error
	// Cycle powers down and up again (IPMI 2, Redfish PowerCycle).
	Cycle(ctx context.Context) error
	// Reset is a hard reset with power kept on (IPMI 3, Redfish ForceRestart).
	Reset(ctx context.Context) error
	// Status reads the current power state.
	Status(ctx context.Context) (State, error)
}

// Action names an operation of BMC.
type Action string

// The actions Run and `wwboot power` accept.
const (
	ActionOn     Action = "on"
	ActionOff    Action = "off"
	ActionCycle  Action = "cycle"
	ActionReset  Action = "reset"
	ActionStatus Action = "status"
)

// ParseAction reads an action name; the error lists the valid ones.
func ParseAction(s string) (Action, error) {
	switch a := Action(strings.ToLower(strings.TrimSpace(s))); a {
	case ActionOn, ActionOff, ActionCycle, ActionReset, ActionStatus:
		return a, nil
	}
	return "", fmt.Errorf("power action %q: use on, off, cycle, reset or status", s)
}

// Do performs a on b and returns the power state afterwards when it is
// known: the state read for ActionStatus, the requested state for on and off
// (the BMC accepted it), StateUnknown for cycle and reset.
func Do(ctx context.Context, b BMC, a Action) (State, error) {
	switch a {
	case ActionStatus:
		return b.Status(ctx)
	case ActionOn:
		return StateOn, b.On(ctx)
	case ActionOff:
		return StateOff, b.Off(ctx)
	case ActionCycle:
		return StateUnknown, b.Cycle(ctx)
	case ActionReset:
		return StateUnknown, b.Reset(ctx)
	}
	return StateUnknown, fmt.Errorf("power action %q: use on, off, cycle, reset or status", a)
}

// Target is one node to act on. A nil BMC with a non-nil Err reports a node
// whose BMC could not be configured; Run passes the error through as that
// node's Result.
type Target struct {
	Node string
	BMC  BMC
	Err  error
}

// Result is the outcome for one node.
type Result struct {
	// Node is the node's name.
	Node string `json:"node"`
	// State is the power state (see Do); StateUnknown when Err is set.
	State State `json:"state"`
	// Err is nil on success. It never contains a password.
	Err error `json:"-"`
	// Error is Err's text, for JSON output.
	Error string `json:"error,omitempty"`
	// Took is how long the node's operation ran.
	Took time.Duration `json:"took_ns"`
}

// Options tune Run.
type Options struct {
	// Concurrency bounds the nodes handled at once (default 32).
	Concurrency int
	// Timeout bounds each node's operation, connect included (default 20s).
	Timeout time.Duration
	// Log receives one debug record per node (never a password); nil
	// discards.
	Log *slog.Logger
	// Events, when set, receives one events.TypePower event per node
	// (action, state afterwards, error), Source "power".
	Events events.Publisher
}

// DefaultConcurrency and DefaultTimeout are Options' defaults.
const (
	DefaultConcurrency = 32
	DefaultTimeout     = 20 * time.Second
)

// Run applies a to every target, at most opt.Concurrency at once, each
// bounded by opt.Timeout, and returns the results in the order of targets.
// It returns early only when ctx ends; the nodes not started then get ctx's
// error.
func Run(ctx context.Context, targets []Target, a Action, opt Options) []Result {
	if opt.Concurrency <= 0 {
		opt.Concurrency = DefaultConcurrency
	}
	if opt.Timeout <= 0 {
		opt.Timeout = DefaultTimeout
	}
	log := opt.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	results := make([]Result, len(targets))
	sem := make(chan struct{}, opt.Concurrency)
	var wg sync.WaitGroup
	for i, t := range targets {
		results[i] = Result{Node: t.Node, State: StateUnknown}
		if t.Err != nil || t.BMC == nil {
			err := t.Err
			if err == nil {
				err = errors.New("no BMC configured")
			}
			results[i].setErr(err)
			publish(opt.Events, a, &results[i])
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			results[i].setErr(fmt.Errorf("not started: %w", ctx.Err()))
			continue
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			start := time.Now()
			nctx, cancel := context.WithTimeout(ctx, opt.Timeout)
			st, err := Do(nctx, t.BMC, a)
			ended := nctx.Err()
			cancel()
			r := &results[i]
			r.Took = time.Since(start)
			if err != nil {
				if ended != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
					err = fmt.Errorf("%w (%w after %s)", err, ended, r.Took.Round(time.Millisecond))
				}
				r.setErr(err)
			} else {
				r.State = st
			}
			log.Debug("power", "node", t.Node, "action", string(a), "state", string(r.State), "took", r.Took, "error", r.Error)
			publish(opt.Events, a, r)
		}()
	}
	wg.Wait()
	return results
}

// publish sends r as a TypePower event to p, if any.
func publish(p events.Publisher, a Action, r *Result) {
	if p != nil {
		p.Publish(events.Event{Type: events.TypePower, Node: r.Node, Action: string(a), State: string(r.State),
			Error: r.Error, Source: "power"})
	}
}

func (r *Result) setErr(err error) {
	r.State = StateUnknown
	r.Err = err
	r.Error = err.Error()
}

// redactError returns err with every occurrence of secret replaced by "***"
// in its text. errors.Is still sees the original chain (a deadline stays a
// deadline); Unwrap is not offered, so the original text cannot be reached.
func redactError(err error, secret string) error {
	if err == nil || secret == "" || !strings.Contains(err.Error(), secret) {
		return err
	}
	return &redacted{err: err, msg: strings.ReplaceAll(err.Error(), secret, "***")}
}

type redacted struct {
	err error
	msg string
}

func (r *redacted) Error() string        { return r.msg }
func (r *redacted) Is(target error) bool { return errors.Is(r.err, target) }
