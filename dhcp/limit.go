package dhcp

import (
	"context"
	"errors"
	"hash/maphash"
	"net"
	"sync"
	"time"
)

// Defaults for [UnknownLimit].
const (
	// DefaultUnknownRate is how many requests per second from MACs the
	// inventory does not know a Policy acts on, all such MACs together.
	DefaultUnknownRate = 100
	// DefaultUnknownPerMAC is how many requests per second one unknown MAC
	// gets acted on. A PXE ROM, then iPXE, each send a DISCOVER and a
	// REQUEST within a second or two; the burst lets both through at once.
	DefaultUnknownPerMAC = 1
	// DefaultUnknownPerMACBurst is how many requests one unknown MAC may
	// send at once before its rate applies.
	DefaultUnknownPerMACBurst = 8
)

// UnknownLimit bounds the work a [Policy] does for clients its inventory
// does not know: discovery (which writes the inventory), the dynamic pool,
// logging. Requests over the limit are dropped and counted
// (DropRateLimited). Known nodes are never limited: their lookup is the
// only thing an unknown request shares with them, and it does not grow with
// the inventory. Unauthenticated traffic is bounded this way so that a flood
// of made-up MACs cannot starve the nodes (issue 11, item 2).
type UnknownLimit struct {
	// Rate is requests per second, all unknown MACs together; 0 means
	// DefaultUnknownRate, negative means no limit at all (nor per MAC).
	Rate float64
	// Burst is how many may come at once; 0 means twice Rate.
	Burst int
	// PerMAC is requests per second from one unknown MAC; 0 means
	// DefaultUnknownPerMAC.
	PerMAC float64
	// PerMACBurst is how many one MAC may send at once; 0 means
	// DefaultUnknownPerMACBurst.
	PerMACBurst int
}

// macBuckets is the number of per-MAC buckets. MACs hash into them, so the
// limiter's memory is fixed however many MACs a flood makes up; two MACs
// sharing a bucket share its allowance.
const macBuckets = 4096

// limiter is a token-bucket limiter: one global bucket and macBuckets
// per-MAC ones. A nil *limiter allows everything. Every call is O(1).
type limiter struct {
	seed maphash.Seed

	mu     sync.Mutex
	global bucket
	perMAC [macBuckets]bucket

	rate, burst       float64
	macRate, macBurst float64
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(l UnknownLimit) *limiter {
	if l.Rate < 0 {
		return nil
	}
	if l.Rate == 0 {
		l.Rate = DefaultUnknownRate
	}
	if l.Burst <= 0 {
		l.Burst = max(1, int(2*l.Rate))
	}
	if l.PerMAC <= 0 {
		l.PerMAC = DefaultUnknownPerMAC
	}
	if l.PerMACBurst <= 0 {
		l.PerMACBurst = DefaultUnknownPerMACBurst
	}
	return &limiter{seed: maphash.MakeSeed(), rate: l.Rate, burst: float64(l.Burst),
		macRate: l.PerMAC, macBurst: float64(l.PerMACBurst)}
}

// take takes a token from b if it has one, refilling it at rate up to burst.
func (b *bucket) take(now time.Time, rate, burst float64) bool {
	if b.last.IsZero() {
		b.tokens = burst
	} else if d := now.Sub(b.last); d > 0 {
		b.tokens = min(burst, b.tokens+d.Seconds()*rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// allow reports whether a request from the unknown mac may be acted on now.
// The MAC's own bucket is asked first, so one chatty MAC does not use up
// the allowance of all the others.
func (l *limiter) allow(mac net.HardwareAddr, now time.Time) bool {
	if l == nil {
		return true
	}
	i := maphash.Bytes(l.seed, mac) % macBuckets
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.perMAC[i].take(now, l.macRate, l.macBurst) {
		return false
	}
	return l.global.take(now, l.rate, l.burst)
}

// errRateLimited is lookup's answer for an unknown MAC over the limit.
var errRateLimited = errors.New("dhcp: unknown client over the rate limit")

// Classifier is an optional capability of a [Handler]: Known reports whether
// a client hardware address is one the handler serves as a known node. It
// must be cheap (no work that grows with the inventory) and must not block,
// since the [Server] calls it on its receive path for every packet. A Server
// whose handler has it queues packets from other clients apart, on their
// own few workers (ServerConfig.UnknownWorkers, UnknownQueue), so a flood of
// them cannot crowd known nodes out of the queue or the workers. *Policy
// implements it.
type Classifier interface {
	Known(ctx context.Context, mac net.HardwareAddr) bool
}

// Known reports whether the inventory has a host for mac (one HostByHW).
func (p *Policy) Known(ctx context.Context, mac net.HardwareAddr) bool {
	_, err := p.hosts.HostByHW(ctx, mac)
	return err == nil
}
