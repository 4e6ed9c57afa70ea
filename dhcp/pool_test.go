package dhcp

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func testPool(t *testing.T, start, end string, file string, res Reserver, clk *clock) *Pool {
	t.Helper()
	if res == nil {
		res = ReserverFunc(func(netip.Addr) bool { return false })
	}
	cfg := PoolConfig{Start: netip.MustParseAddr(start), End: netip.MustParseAddr(end), Netmask: net.CIDRMask(24, 32),
		LeaseFile: file, Reserver: res, LeaseTime: time.Hour}
	if clk != nil {
		cfg.Now = clk.Now
	}
	p, err := NewPool(cfg)
	require.NoError(t, err)
	return p
}

func hw(i int) net.HardwareAddr { return net.HardwareAddr{0x52, 0x54, 0, 0, byte(i >> 8), byte(i)} }

func TestPoolLeaseFileIsAtomicAndSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "leases")
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	p := testPool(t, "10.1.0.10", "10.1.0.20", file, nil, clk)
	a, err := p.Offer(hw(1), netip.Addr{})
	require.NoError(t, err)
	assert.Equal(t, "10.1.0.10", a.String())
	_, err = p.Ack(hw(1), a)
	require.NoError(t, err)

	data, err := os.ReadFile(file)
	require.NoError(t, err)
	assert.Equal(t, leaseFileHeader+"52:54:00:00:00:01 10.1.0.10 1800003600\n", string(data))
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no temp file left behind")

	// After a restart the client keeps its address and others do not get it.
	p = testPool(t, "10.1.0.10", "10.1.0.20", file, nil, clk)
	got, ok := p.Lookup(hw(1))
	require.True(t, ok)
	assert.Equal(t, a, got)
	b, err := p.Offer(hw(2), a)
	require.NoError(t, err)
	assert.NotEqual(t, a, b)

	// Expired leases are dropped when loading.
	clk.Add(2 * time.Hour)
	p = testPool(t, "10.1.0.10", "10.1.0.20", file, nil, clk)
	_, ok = p.Lookup(hw(1))
	assert.False(t, ok)
}

// A damaged lease file loses its damaged entries only, each with a warning
// naming file:line; the good leases load and the pool starts (issue 11 item 9:
// one bad line used to stop serve from starting).
func TestPoolDamagedLeaseFileLosesOnlyTheBadEntries(t *testing.T) {
	const exp = "1800003000" // within the hour's lease time of the clock below
	good := func(i int, addr string) string { return hw(i).String() + " " + addr + " " + exp + "\n" }
	cases := []struct {
		name string
		body string
		// want maps each MAC index that must keep its lease to its address.
		want map[int]string
		// gone lists MAC indexes that must have no lease.
		gone []int
		// lines lists the lines the warnings must name (file:line).
		lines []int
		// warn lists substrings the warnings must contain.
		warn []string
	}{
		{
			name:  "garbage line",
			body:  good(1, "10.1.0.10") + "not-a-lease\n\x00\xff\xfe garbage \x01\n" + good(2, "10.1.0.11"),
			want:  map[int]string{1: "10.1.0.10", 2: "10.1.0.11"},
			lines: []int{3, 4},
			warn:  []string{"want 3 fields"},
		},
		{
			name:  "truncated last line",
			body:  good(1, "10.1.0.10") + hw(2).String() + " 10.1.0.1", // cut inside 10.1.0.11
			want:  map[int]string{1: "10.1.0.10"},
			gone:  []int{2},
			lines: []int{3},
			warn:  []string{"no newline"},
		},
		{
			name:  "truncated last line inside the MAC",
			body:  good(1, "10.1.0.10") + "52:54:00:0",
			want:  map[int]string{1: "10.1.0.10"},
			lines: []int{3},
			warn:  []string{"no newline"},
		},
		{
			name:  "bad MAC",
			body:  "52:54:00:00:00:zz 10.1.0.12 " + exp + "\n" + "52:54:00:00:00:00:00:01 10.1.0.13 " + exp + "\n" + good(1, "10.1.0.10"),
			want:  map[int]string{1: "10.1.0.10"},
			lines: []int{2, 3},
			warn:  []string{"MAC"},
		},
		{
			name: "bad IP",
			body: hw(2).String() + " 10.1.0.300 " + exp + "\n" + hw(3).String() + " fe80::1 " + exp + "\n" +
				hw(4).String() + " 10.9.9.9 " + exp + "\n" + good(1, "10.1.0.10"),
			want:  map[int]string{1: "10.1.0.10"},
			gone:  []int{2, 3, 4},
			lines: []int{2, 3, 4},
			warn:  []string{"not an IPv4 address", "outside the pool"},
		},
		{
			name:  "bad expiry",
			body:  hw(2).String() + " 10.1.0.11 soon\n" + good(1, "10.1.0.10"),
			want:  map[int]string{1: "10.1.0.10"},
			gone:  []int{2},
			lines: []int{2},
			warn:  []string{"expiry"},
		},
		{
			name:  "duplicate MAC: the later expiry wins",
			body:  hw(1).String() + " 10.1.0.10 " + exp + "\n" + hw(1).String() + " 10.1.0.11 1800002000\n",
			want:  map[int]string{1: "10.1.0.10"},
			lines: []int{3},
			warn:  []string{"duplicate"},
		},
		{
			name:  "duplicate address: the later line wins a tie",
			body:  good(1, "10.1.0.10") + good(2, "10.1.0.10"),
			want:  map[int]string{2: "10.1.0.10"},
			gone:  []int{1},
			lines: []int{2},
			warn:  []string{"duplicate"},
		},
		{
			name:  "overlong line",
			body:  good(1, "10.1.0.10") + strings.Repeat("x", 100_000) + "\n" + good(2, "10.1.0.11"),
			want:  map[int]string{1: "10.1.0.10", 2: "10.1.0.11"},
			lines: []int{3},
			warn:  []string{"longer than"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "dhcp.leases")
			require.NoError(t, os.WriteFile(file, []byte(leaseFileHeader+tc.body), 0o644))
			var logs logBuffer
			p, err := NewPool(PoolConfig{Start: netip.MustParseAddr("10.1.0.10"), End: netip.MustParseAddr("10.1.0.20"),
				Netmask: net.CIDRMask(24, 32), LeaseFile: file, LeaseTime: time.Hour, Logger: logs.logger(),
				Reserver: ReserverFunc(func(netip.Addr) bool { return false }), Now: (&clock{t: time.Unix(1_800_000_000, 0)}).Now})
			require.NoError(t, err, "a damaged lease file must not stop the pool")
			for i, addr := range tc.want {
				got, ok := p.Lookup(hw(i))
				require.True(t, ok, "lease of %s lost", hw(i))
				assert.Equal(t, addr, got.String())
			}
			for _, i := range tc.gone {
				_, ok := p.Lookup(hw(i))
				assert.False(t, ok, "%s must have no lease", hw(i))
			}
			out := logs.String()
			assert.Contains(t, out, "level=WARN")
			assert.Contains(t, out, "at="+file+":")
			for _, n := range tc.lines {
				assert.Regexp(t, regexp.MustCompile(`at=`+regexp.QuoteMeta(file)+`:`+strconv.Itoa(n)+`\s`), out)
			}
			for _, w := range tc.warn {
				assert.Contains(t, out, w)
			}

			// The next acknowledgement rewrites the file without the damage.
			a, err := p.Offer(hw(9), netip.Addr{})
			require.NoError(t, err)
			_, err = p.Ack(hw(9), a)
			require.NoError(t, err)
			var clean logBuffer
			_, err = NewPool(PoolConfig{Start: netip.MustParseAddr("10.1.0.10"), End: netip.MustParseAddr("10.1.0.20"),
				Netmask: net.CIDRMask(24, 32), LeaseFile: file, LeaseTime: time.Hour, Logger: clean.logger(),
				Reserver: ReserverFunc(func(netip.Addr) bool { return false }), Now: (&clock{t: time.Unix(1_800_000_000, 0)}).Now})
			require.NoError(t, err)
			assert.NotContains(t, clean.String(), "WARN", "the rewritten file is clean")
		})
	}
}

// A lease expiring past now+LeaseTime (a flipped digit) is shortened, not
// kept for years.
func TestPoolLeaseFileExpiryIsBounded(t *testing.T) {
	file := filepath.Join(t.TempDir(), "dhcp.leases")
	require.NoError(t, os.WriteFile(file, []byte(leaseFileHeader+hw(1).String()+" 10.1.0.10 9800000000\n"), 0o644))
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	p := testPool(t, "10.1.0.10", "10.1.0.20", file, nil, clk)
	_, ok := p.Lookup(hw(1))
	require.True(t, ok)
	clk.Add(time.Hour + time.Second)
	_, ok = p.Lookup(hw(1))
	assert.False(t, ok, "the lease ends one lease time after loading")
}

func TestPoolNeverHandsOutReservedAddresses(t *testing.T) {
	reserved := map[string]bool{"10.1.0.10": true, "10.1.0.11": true, "10.1.0.13": true}
	res := ReserverFunc(func(a netip.Addr) bool { return reserved[a.String()] })
	file := filepath.Join(t.TempDir(), "leases")
	p := testPool(t, "10.1.0.10", "10.1.0.14", file, res, nil)
	var got []string
	for i := range 2 {
		a, err := p.Offer(hw(i), netip.MustParseAddr("10.1.0.10")) // asks for a reserved one
		require.NoError(t, err)
		got = append(got, a.String())
	}
	assert.Equal(t, "10.1.0.12 10.1.0.14", strings.Join(got, " "))
	_, err := p.Offer(hw(3), netip.Addr{})
	assert.ErrorIs(t, err, ErrPoolFull)
}

func TestPoolExhaustionAndNetworkBroadcastSkipped(t *testing.T) {
	p := testPool(t, "10.1.0.0", "10.1.0.255", "", nil, nil)
	seen := map[string]bool{}
	for i := range 254 {
		a, err := p.Offer(hw(i), netip.Addr{})
		require.NoError(t, err)
		seen[a.String()] = true
	}
	assert.False(t, seen["10.1.0.0"])
	assert.False(t, seen["10.1.0.255"])
	_, err := p.Offer(hw(1000), netip.Addr{})
	assert.ErrorIs(t, err, ErrPoolFull)
}

func TestPoolRenewalsCostNoWrite(t *testing.T) {
	file := filepath.Join(t.TempDir(), "leases")
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	p := testPool(t, "10.1.0.10", "10.1.0.20", file, nil, clk)
	a, _ := p.Offer(hw(1), netip.Addr{})
	lt, err := p.Ack(hw(1), a)
	require.NoError(t, err)
	assert.Equal(t, time.Hour, lt)
	assert.Equal(t, uint64(1), p.written)

	clk.Add(10 * time.Minute)
	lt, err = p.Ack(hw(1), a)
	require.NoError(t, err)
	assert.Equal(t, 50*time.Minute, lt, "the saved expiry is kept and the client told the time left")
	assert.Equal(t, uint64(1), p.written, "no write")

	clk.Add(10 * time.Minute) // past a quarter of the lease: extend and save
	lt, err = p.Ack(hw(1), a)
	require.NoError(t, err)
	assert.Equal(t, time.Hour, lt)
	assert.Equal(t, uint64(2), p.written)
}

func TestPoolDeclineQuarantinesTheAddress(t *testing.T) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	p := testPool(t, "10.1.0.10", "10.1.0.11", "", nil, clk)
	a, _ := p.Offer(hw(1), netip.Addr{})
	require.NoError(t, p.Decline(hw(1), a))
	b, err := p.Offer(hw(2), a)
	require.NoError(t, err)
	assert.NotEqual(t, a, b)
	_, err = p.Offer(hw(3), netip.Addr{})
	assert.ErrorIs(t, err, ErrPoolFull)
	clk.Add(11 * time.Minute)
	c, err := p.Offer(hw(3), netip.Addr{})
	require.NoError(t, err)
	assert.Equal(t, a, c)
}

func TestPoolExpiredLeasesAreReusedLast(t *testing.T) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	p := testPool(t, "10.1.0.10", "10.1.0.11", "", nil, clk)
	a, _ := p.Offer(hw(1), netip.Addr{})
	_, err := p.Ack(hw(1), a)
	require.NoError(t, err)
	clk.Add(2 * time.Hour)
	b, err := p.Offer(hw(2), netip.Addr{})
	require.NoError(t, err)
	assert.NotEqual(t, a, b, "a never-used address first")
	// hw(1) comes back after its lease expired: same address.
	again, err := p.Offer(hw(1), netip.Addr{})
	require.NoError(t, err)
	assert.Equal(t, a, again)
	// A third client takes the expired binding only when nothing else is left.
	_, err = p.Ack(hw(2), b)
	require.NoError(t, err)
	clk.Add(2 * time.Hour)
	c, err := p.Offer(hw(3), netip.Addr{})
	require.NoError(t, err)
	assert.Contains(t, []netip.Addr{a, b}, c)
}

func TestPoolConcurrentAcksShareWrites(t *testing.T) {
	file := filepath.Join(t.TempDir(), "leases")
	p := testPool(t, "10.1.0.1", "10.1.0.254", file, nil, nil)
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			a, err := p.Offer(hw(i), netip.Addr{})
			if !assert.NoError(t, err) {
				return
			}
			_, err = p.Ack(hw(i), a)
			assert.NoError(t, err)
		})
	}
	wg.Wait()
	assert.LessOrEqual(t, p.written, uint64(200))
	q := testPool(t, "10.1.0.1", "10.1.0.254", file, nil, nil)
	addrs := map[netip.Addr]bool{}
	for i := range 200 {
		a, ok := q.Lookup(hw(i))
		require.True(t, ok, "lease of %s lost", hw(i))
		require.False(t, addrs[a], "address %v given twice", a)
		addrs[a] = true
	}
}

func TestPoolAckFailsWhenTheLeaseFileCannotBeWritten(t *testing.T) {
	file := filepath.Join(t.TempDir(), "missing-dir", "leases")
	p := testPool(t, "10.1.0.10", "10.1.0.20", file, nil, nil)
	a, _ := p.Offer(hw(1), netip.Addr{})
	_, err := p.Ack(hw(1), a)
	require.Error(t, err)
	assert.Contains(t, err.Error(), file)
}

func TestPoolConfigErrors(t *testing.T) {
	res := ReserverFunc(func(netip.Addr) bool { return false })
	for name, cfg := range map[string]PoolConfig{
		"no reserver":    {Start: netip.MustParseAddr("10.0.0.1"), End: netip.MustParseAddr("10.0.0.9"), Netmask: net.CIDRMask(24, 32)},
		"reversed range": {Start: netip.MustParseAddr("10.0.0.9"), End: netip.MustParseAddr("10.0.0.1"), Netmask: net.CIDRMask(24, 32), Reserver: res},
		"across subnets": {Start: netip.MustParseAddr("10.0.0.9"), End: netip.MustParseAddr("10.0.1.1"), Netmask: net.CIDRMask(24, 32), Reserver: res},
		"ipv6":           {Start: netip.MustParseAddr("fe80::1"), End: netip.MustParseAddr("fe80::9"), Netmask: net.CIDRMask(24, 32), Reserver: res},
		"bad mask":       {Start: netip.MustParseAddr("10.0.0.1"), End: netip.MustParseAddr("10.0.0.9"), Netmask: net.IPMask{255, 0, 255, 0}, Reserver: res},
	} {
		_, err := NewPool(cfg)
		assert.Error(t, err, name)
	}
}
