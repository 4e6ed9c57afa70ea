package dhcp

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ErrPoolFull is returned by [Pool.Offer] when no address is free.
var ErrPoolFull = errors.New("dhcp: pool has no free address")

// errNoLease means the pool holds no offer or lease for that MAC and address.
var errNoLease = errors.New("dhcp: no lease for this client and address")

// errReserved means the address now belongs to a node in the inventory.
var errReserved = errors.New("dhcp: address is reserved by the inventory")

// PoolConfig describes a dynamic address range for clients the inventory
// does not know.
type PoolConfig struct {
	// Start and End bound the range, both included.
	Start, End netip.Addr
	// Netmask is the subnet's mask (option 1). The pool serves requests
	// that arrive on an interface address, or through a relay (giaddr),
	// inside Start/Netmask.
	Netmask net.IPMask
	// Gateway is the default router (option 3).
	Gateway netip.Addr
	// DNS lists the name servers (option 6).
	DNS []netip.Addr
	// Domain is the DNS domain (option 15).
	Domain string
	// MTU is the interface MTU (option 26); 0 leaves it out.
	MTU uint16
	// LeaseTime is the lease length (option 51); default 1h.
	LeaseTime time.Duration
	// OfferTime is how long an offered address is held for the client's
	// REQUEST; default 30s.
	OfferTime time.Duration
	// DeclineTime is how long a declined address stays out of use;
	// default 10m.
	DeclineTime time.Duration
	// LeaseFile persists bound leases across restarts. It is rewritten
	// atomically (temp file, fsync, rename, fsync of the directory) before
	// a lease is acknowledged; concurrent acknowledgements share one
	// write. One pool per file. Empty keeps leases in memory only.
	LeaseFile string
	// Reserver tells which addresses the inventory gives to nodes; the pool
	// never offers those. Required.
	Reserver Reserver
	// Logger receives warnings about the lease file; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now. Tests set it.
	Now func() time.Time
}

type leaseState uint8

const (
	stateOffered leaseState = iota + 1
	stateBound
	stateDeclined
)

type lease struct {
	mac    [6]byte
	addr   uint32
	state  leaseState
	expiry time.Time
	// saved is true when the file holds this binding with this expiry.
	saved bool
}

// Pool hands out addresses from a range to unknown clients and remembers
// them. It is safe for concurrent use.
type Pool struct {
	cfg        PoolConfig
	subnet     netip.Prefix
	start, end uint32
	netAddr    uint32
	bcastAddr  uint32

	mu     sync.Mutex
	byMAC  map[[6]byte]*lease
	byAddr map[uint32]*lease
	cursor uint32
	gen    uint64 // bumped by every change the file must see

	cmu     sync.Mutex
	ccond   *sync.Cond
	written uint64
	writing bool
}

// NewPool validates cfg and loads the lease file if there is one. Expired
// leases are dropped; damaged lines, leases outside the range and duplicates
// are dropped with a warning (file:line) and the rest is loaded, so a
// damaged file never stops the server; only a read error fails.
func NewPool(cfg PoolConfig) (*Pool, error) {
	if !cfg.Start.Is4() || !cfg.End.Is4() {
		return nil, fmt.Errorf("dhcp: pool range %v-%v: start and end must be IPv4 addresses", cfg.Start, cfg.End)
	}
	ones, bits := cfg.Netmask.Size()
	if bits != 32 {
		return nil, fmt.Errorf("dhcp: pool %v-%v: netmask %v is not a contiguous IPv4 mask", cfg.Start, cfg.End, cfg.Netmask)
	}
	subnet := netip.PrefixFrom(cfg.Start, ones).Masked()
	if !subnet.Contains(cfg.End) || u32(cfg.End) < u32(cfg.Start) {
		return nil, fmt.Errorf("dhcp: pool %v-%v: end must follow start inside subnet %v", cfg.Start, cfg.End, subnet)
	}
	if cfg.Reserver == nil {
		return nil, fmt.Errorf("dhcp: pool %v-%v: a Reserver is required so the pool never hands out a node's address", cfg.Start, cfg.End)
	}
	if cfg.LeaseTime <= 0 {
		cfg.LeaseTime = time.Hour
	}
	if cfg.OfferTime <= 0 {
		cfg.OfferTime = 30 * time.Second
	}
	if cfg.DeclineTime <= 0 {
		cfg.DeclineTime = 10 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Pool{
		cfg:    cfg,
		subnet: subnet,
		start:  u32(cfg.Start),
		end:    u32(cfg.End),
		byMAC:  make(map[[6]byte]*lease),
		byAddr: make(map[uint32]*lease),
	}
	p.netAddr = u32(subnet.Addr())
	p.bcastAddr = p.netAddr | ^binary.BigEndian.Uint32(cfg.Netmask)
	p.cursor = p.start
	p.ccond = sync.NewCond(&p.cmu)
	if cfg.LeaseFile != "" {
		sweepLeaseTemps(cfg.LeaseFile)
		if err := p.load(); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Subnet is the subnet the pool serves.
func (p *Pool) Subnet() netip.Prefix { return p.subnet }

// Config returns the pool's configuration with defaults filled in.
func (p *Pool) Config() PoolConfig { return p.cfg }

// Offer picks an address for mac: its current or previous lease if it has
// one, else requested if that is free, else the next free address. The
// address is held for OfferTime. It returns [ErrPoolFull] when nothing is
// free.
func (p *Pool) Offer(mac net.HardwareAddr, requested netip.Addr) (netip.Addr, error) {
	key, ok := macKey(mac)
	if !ok {
		return netip.Addr{}, fmt.Errorf("dhcp: pool: hardware address %v is not Ethernet", mac)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.cfg.Now()
	if l := p.byMAC[key]; l != nil {
		if p.cfg.Reserver.Reserved(ip4(l.addr)) {
			p.remove(l)
		} else {
			if l.state != stateBound || !l.expiry.After(now) {
				if l.state == stateBound {
					l.saved = false // expired binding revived as an offer
				}
				l.state = stateOffered
				if t := now.Add(p.cfg.OfferTime); t.After(l.expiry) {
					l.expiry = t
				}
			}
			return ip4(l.addr), nil
		}
	}
	take := func(a uint32) netip.Addr {
		if old := p.byAddr[a]; old != nil {
			p.remove(old)
		}
		l := &lease{mac: key, addr: a, state: stateOffered, expiry: now.Add(p.cfg.OfferTime)}
		p.byMAC[key] = l
		p.byAddr[a] = l
		return ip4(a)
	}
	if requested.Is4() {
		if a := u32(requested); p.usable(a) && p.free(a, now, false) && !p.cfg.Reserver.Reserved(requested) {
			return take(a), nil
		}
	}
	// First pass: never used addresses; second pass: expired ones.
	for _, reuse := range []bool{false, true} {
		a := p.cursor
		for i := uint32(0); i <= p.end-p.start; i++ {
			if a > p.end || a < p.start {
				a = p.start
			}
			cur := a
			a++
			if p.usable(cur) && p.free(cur, now, reuse) && !p.cfg.Reserver.Reserved(ip4(cur)) {
				p.cursor = a
				return take(cur), nil
			}
		}
	}
	return netip.Addr{}, ErrPoolFull
}

// Ack binds addr to mac if the pool offered or leased it to mac, persists
// the binding, and returns the lease time to tell the client. A client
// renewing early keeps its saved expiry and is told the time left, so
// renewals cost no write. It returns an error wrapping errNoLease when mac
// holds no offer or lease for addr, errReserved when the inventory now
// gives addr to a node, or a lease file error.
func (p *Pool) Ack(mac net.HardwareAddr, addr netip.Addr) (time.Duration, error) {
	key, ok := macKey(mac)
	if !ok || !addr.Is4() {
		return 0, errNoLease
	}
	p.mu.Lock()
	l := p.byMAC[key]
	if l == nil || l.addr != u32(addr) {
		p.mu.Unlock()
		return 0, errNoLease
	}
	if p.cfg.Reserver.Reserved(addr) {
		p.remove(l)
		p.gen++
		p.mu.Unlock()
		return 0, errReserved
	}
	now := p.cfg.Now()
	if l.state == stateBound && l.saved {
		if left := l.expiry.Sub(now); left >= p.cfg.LeaseTime*3/4 {
			p.mu.Unlock()
			return left.Truncate(time.Second), nil
		}
	}
	l.state = stateBound
	l.expiry = now.Add(p.cfg.LeaseTime)
	l.saved = true
	p.gen++
	g := p.gen
	p.mu.Unlock()
	if err := p.commit(g); err != nil {
		return 0, err
	}
	return p.cfg.LeaseTime, nil
}

// Lookup returns the address bound to mac, if its lease has not expired.
func (p *Pool) Lookup(mac net.HardwareAddr) (netip.Addr, bool) {
	key, ok := macKey(mac)
	if !ok {
		return netip.Addr{}, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if l := p.byMAC[key]; l != nil && l.state == stateBound && l.expiry.After(p.cfg.Now()) {
		return ip4(l.addr), true
	}
	return netip.Addr{}, false
}

// Release ends mac's lease on addr (DHCPRELEASE) and persists that.
func (p *Pool) Release(mac net.HardwareAddr, addr netip.Addr) error {
	key, ok := macKey(mac)
	if !ok || !addr.Is4() {
		return nil
	}
	p.mu.Lock()
	l := p.byMAC[key]
	if l == nil || l.addr != u32(addr) {
		p.mu.Unlock()
		return nil
	}
	p.remove(l)
	p.gen++
	g := p.gen
	p.mu.Unlock()
	return p.commit(g)
}

// Decline takes addr out of use for DeclineTime after mac reported it in
// use by another machine (DHCPDECLINE), and persists that.
func (p *Pool) Decline(mac net.HardwareAddr, addr netip.Addr) error {
	key, ok := macKey(mac)
	if !ok || !addr.Is4() {
		return nil
	}
	p.mu.Lock()
	l := p.byMAC[key]
	if l == nil || l.addr != u32(addr) {
		p.mu.Unlock()
		return nil
	}
	p.remove(l)
	d := &lease{addr: l.addr, state: stateDeclined, expiry: p.cfg.Now().Add(p.cfg.DeclineTime)}
	p.byAddr[d.addr] = d
	p.gen++
	g := p.gen
	p.mu.Unlock()
	return p.commit(g)
}

// remove drops l from both maps; p.mu must be held.
func (p *Pool) remove(l *lease) {
	if p.byMAC[l.mac] == l {
		delete(p.byMAC, l.mac)
	}
	if p.byAddr[l.addr] == l {
		delete(p.byAddr, l.addr)
	}
}

// usable excludes the subnet's network and broadcast addresses.
func (p *Pool) usable(a uint32) bool {
	return a >= p.start && a <= p.end && a != p.netAddr && a != p.bcastAddr
}

func (p *Pool) free(a uint32, now time.Time, reuseExpired bool) bool {
	l := p.byAddr[a]
	if l == nil {
		return true
	}
	if l.expiry.After(now) {
		return false
	}
	// An expired offer or quarantine is free at once; an expired binding is
	// reused only when nothing else is left, so clients tend to get their
	// old address back.
	return l.state != stateBound || reuseExpired
}

const leaseFileHeader = "# wwboot dhcp leases v1: MAC address expiry(unix seconds)\n"

func (p *Pool) snapshot() ([]byte, uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var b bytes.Buffer
	b.Grow(len(leaseFileHeader) + 48*len(p.byMAC))
	b.WriteString(leaseFileHeader)
	var line []byte
	for _, l := range p.byMAC {
		if l.state != stateBound || !l.saved {
			continue
		}
		line = line[:0]
		line = append(line, net.HardwareAddr(l.mac[:]).String()...)
		line = append(line, ' ')
		line = ip4(l.addr).AppendTo(line)
		line = append(line, ' ')
		line = strconv.AppendInt(line, l.expiry.Unix(), 10)
		line = append(line, '\n')
		b.Write(line)
	}
	return b.Bytes(), p.gen
}

// commit returns once the lease file holds generation g (or a later one).
// Callers waiting together share one write: the first becomes the writer,
// the others wait for it, and a failed write is retried by the next waiter.
func (p *Pool) commit(g uint64) error {
	if p.cfg.LeaseFile == "" {
		return nil
	}
	p.cmu.Lock()
	for p.written < g && p.writing {
		p.ccond.Wait()
	}
	if p.written >= g {
		p.cmu.Unlock()
		return nil
	}
	p.writing = true
	p.cmu.Unlock()

	data, snap := p.snapshot()
	err := writeFileAtomic(p.cfg.LeaseFile, data)

	p.cmu.Lock()
	p.writing = false
	if err == nil && snap > p.written {
		p.written = snap
	}
	p.ccond.Broadcast()
	p.cmu.Unlock()
	if err != nil {
		return fmt.Errorf("dhcp: save lease file %s: %w (check the directory exists and is writable)", p.cfg.LeaseFile, err)
	}
	return nil
}

// writeFileAtomic replaces path with data: temp file in the same directory,
// fsync, rename, fsync of the directory.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			_ = os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// maxLeaseLine bounds one line of the lease file; wwboot writes about 45
// bytes a line, so anything longer is damage and is skipped.
const maxLeaseLine = 1024

// load reads the lease file. A damaged file costs only its damaged entries:
// a line that does not parse (garbage, a bad MAC or address, an overlong
// line), a last line without its newline (a truncated write; wwboot ends
// every line with one), and the loser of a duplicate (the same MAC or the
// same address twice; the later expiry wins, then the later line) are
// dropped with a warning naming the file and line. Only an error reading
// the file fails.
func (p *Pool) load() error {
	f, err := os.Open(p.cfg.LeaseFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("dhcp: read lease file: %w", err)
	}
	defer f.Close()
	now := p.cfg.Now()
	maxExpiry := now.Add(p.cfg.LeaseTime)
	file := p.cfg.LeaseFile
	warn := func(msg string, n int, args ...any) {
		p.cfg.Logger.Warn("dhcp: lease file: "+msg, append([]any{"at", file + ":" + strconv.Itoa(n)}, args...)...)
	}
	lineOf := map[*lease]int{}
	r := bufio.NewReaderSize(f, 64<<10)
	dropped := 0
	for n := 1; ; n++ {
		raw, rerr := readLeaseLine(r)
		if rerr != nil && !errors.Is(rerr, io.EOF) && !errors.Is(rerr, errLongLine) {
			return fmt.Errorf("dhcp: read lease file %s: %w", file, rerr)
		}
		if errors.Is(rerr, io.EOF) && len(raw) == 0 {
			break
		}
		if errors.Is(rerr, errLongLine) {
			warn("line longer than "+strconv.Itoa(maxLeaseLine)+" bytes dropped", n)
			dropped++
			continue
		}
		line := strings.TrimSpace(string(raw))
		if line == "" || line[0] == '#' {
			if rerr != nil {
				break
			}
			continue
		}
		if errors.Is(rerr, io.EOF) {
			// wwboot ends every line with a newline: this one was cut short.
			warn("last line has no newline (truncated write?), dropped", n, "text", line)
			dropped++
			break
		}
		l, err := parseLeaseLine(line)
		if err != nil {
			warn("unreadable lease dropped", n, "err", err)
			dropped++
			continue
		}
		a := ip4(l.addr)
		switch {
		case !l.expiry.After(now):
			continue
		case !p.usable(l.addr):
			warn("lease outside the pool dropped", n, "addr", a, "pool", p.subnet)
			dropped++
			continue
		case p.cfg.Reserver.Reserved(a):
			warn("lease on an address the inventory now gives a node dropped", n, "addr", a)
			dropped++
			continue
		}
		if l.expiry.After(maxExpiry) {
			warn("lease expiry past the lease time shortened", n, "addr", a, "expiry", l.expiry.Unix(), "now", maxExpiry.Unix())
			l.expiry = maxExpiry
		}
		olds := []*lease{p.byMAC[l.mac]}
		if o := p.byAddr[l.addr]; o != olds[0] {
			olds = append(olds, o)
		}
		var winner *lease
		for _, old := range olds {
			if old != nil && old.expiry.After(l.expiry) {
				winner = old
			}
		}
		if winner != nil {
			warn("duplicate lease dropped: a lease expiring later holds its MAC or address", n,
				"mac", net.HardwareAddr(l.mac[:]), "addr", a, "kept_line", lineOf[winner])
			dropped++
			continue
		}
		for _, old := range olds {
			if old != nil {
				warn("duplicate lease dropped: a later line, expiring no sooner, holds its MAC or address", lineOf[old],
					"mac", net.HardwareAddr(old.mac[:]), "addr", ip4(old.addr), "kept_line", n)
				dropped++
				p.remove(old)
			}
		}
		p.byMAC[l.mac] = l
		p.byAddr[l.addr] = l
		lineOf[l] = n
	}
	if dropped > 0 {
		p.cfg.Logger.Warn("dhcp: lease file damaged: bad entries dropped, the rest loaded; the file is rewritten on the next acknowledgement",
			"file", file, "dropped", dropped, "loaded", len(p.byMAC))
	}
	return nil
}

// errLongLine reports a lease file line longer than maxLeaseLine; the
// reader has skipped the rest of it.
var errLongLine = errors.New("line too long")

// readLeaseLine returns the next line without its newline. At the end of
// the file it returns what is left (maybe a line with no newline) and
// io.EOF. A line longer than maxLeaseLine is consumed and reported as
// errLongLine.
func readLeaseLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	long := false
	for {
		chunk, err := r.ReadSlice('\n')
		if !long {
			line = append(line, chunk...)
			if len(line) > maxLeaseLine+1 {
				long, line = true, nil
			}
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err != nil:
			if long {
				return nil, errLongLine
			}
			return line, err
		}
		if long {
			return nil, errLongLine
		}
		return bytes.TrimSuffix(line, []byte("\n")), nil
	}
}

func parseLeaseLine(line string) (*lease, error) {
	fields := strings.Fields(line)
	if len(fields) != 3 {
		return nil, fmt.Errorf("want 3 fields (MAC address expiry), got %d", len(fields))
	}
	mac, err := net.ParseMAC(fields[0])
	if err != nil {
		return nil, fmt.Errorf("MAC: %w", err)
	}
	key, ok := macKey(mac)
	if !ok {
		return nil, fmt.Errorf("MAC %s: not a 6-byte Ethernet address", fields[0])
	}
	addr, err := netip.ParseAddr(fields[1])
	if err != nil || !addr.Is4() {
		return nil, fmt.Errorf("address %q: not an IPv4 address", fields[1])
	}
	exp, err := strconv.ParseInt(fields[2], 10, 64)
	if err != nil {
		return nil, fmt.Errorf("expiry %q: %w", fields[2], err)
	}
	return &lease{mac: key, addr: u32(addr), state: stateBound, expiry: time.Unix(exp, 0), saved: true}, nil
}

func macKey(mac net.HardwareAddr) ([6]byte, bool) {
	var k [6]byte
	if len(mac) != 6 {
		return k, false
	}
	copy(k[:], mac)
	return k, true
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

func ip4(a uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], a)
	return netip.AddrFrom4(b)
}
