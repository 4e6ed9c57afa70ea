//go:build linux

package dhcp

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestShutdownUnderBacklogKeepsItsLimit fills the queue of a server with
// two slow workers (each request takes up to half a second) with 1,000
// real packets, then shuts it down with a one-second limit: Shutdown and
// Serve must both return within about that second, not after the backlog
// (250 s of work) is served. Issue 11 item 2: stopping took 45-50 s, past
// the 30-s drain.
func TestShutdownUnderBacklogKeepsItsLimit(t *testing.T) {
	l := newLab(t, netip.MustParsePrefix("10.77.0.2/24"))
	var started, finished atomic.Int64
	slow := HandlerFunc(func(ctx context.Context, req *Request) (*dhcpv4.DHCPv4, error) {
		started.Add(1)
		defer finished.Add(1)
		select {
		case <-time.After(500 * time.Millisecond):
		case <-ctx.Done():
		}
		return nil, nil
	})
	srv, err := NewServer(slow, ServerConfig{Interfaces: []string{"eth0"}, Workers: 2, Queue: 2048,
		ProbeWait: -1, Logger: testLogger(t)})
	require.NoError(t, err)
	var conns []*Conn
	require.NoError(t, l.srv.Do(func() (err error) {
		conns, err = srv.Listen()
		return err
	}))
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background(), conns...) }()

	var c *net.UDPConn
	require.NoError(t, l.cli.Do(func() (err error) {
		c, err = net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(10, 77, 0, 1), Port: ServerPort})
		return err
	}))
	defer c.Close()
	for i := range 1000 {
		m, err := dhcpv4.NewDiscovery(net.HardwareAddr{2, 0, 0, 0, byte(i >> 8), byte(i)})
		require.NoError(t, err)
		_, err = c.Write(m.ToBytes())
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return started.Load() >= 2 }, 5*time.Second, 10*time.Millisecond, "the workers are busy")
	time.Sleep(100 * time.Millisecond)

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	t0 := time.Now()
	err = srv.Shutdown(ctx)
	took := time.Since(t0)
	assert.Less(t, took, 1500*time.Millisecond, "Shutdown keeps its limit")
	select {
	case err := <-served:
		assert.NoError(t, err)
	case <-time.After(2 * time.Second):
		t.Fatalf("Serve still running 2 s after Shutdown's 1-s limit (%d requests handled of 1,000)", finished.Load())
	}
	t.Logf("Shutdown returned after %v (err %v); %d of 1,000 queued requests were handled, the rest dropped",
		took, err, finished.Load())
	assert.Less(t, finished.Load(), int64(20), "the backlog was dropped, not served")
}

// TestUnknownLimitPerMACAndGlobal: one chatty MAC is cut at its burst while
// other MACs still pass, and all unknown MACs together are cut at the
// global burst; both refill with time.
func TestUnknownLimitPerMACAndGlobal(t *testing.T) {
	l := newLimiter(UnknownLimit{Rate: 10, Burst: 20, PerMAC: 1, PerMACBurst: 3})
	now := time.Unix(1000, 0)
	chatty := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	for range 3 {
		assert.True(t, l.allow(chatty, now))
	}
	assert.False(t, l.allow(chatty, now), "past its burst")
	assert.True(t, l.allow(net.HardwareAddr{2, 0, 0, 0, 0, 2}, now), "another MAC still passes")
	n := 0
	for i := range 100 {
		if l.allow(net.HardwareAddr{2, 0, 1, 0, 0, byte(i)}, now) {
			n++
		}
	}
	assert.Equal(t, 20-4, n, "all unknown MACs together stop at the global burst")
	assert.True(t, l.allow(chatty, now.Add(time.Second)), "a second later the MAC has a token again")
	assert.Nil(t, newLimiter(UnknownLimit{Rate: -1}), "a negative rate turns the limit off")
}

// macClassifier is a Classifier that knows one MAC and records what it
// was asked.
type macClassifier struct {
	known net.HardwareAddr
	asked net.HardwareAddr
}

func (c *macClassifier) Known(_ context.Context, mac net.HardwareAddr) bool {
	c.asked = append(c.asked[:0], mac...)
	return string(mac) == string(c.known)
}

// FuzzPickQueue feeds arbitrary bytes to the receive path's queue choice,
// which reads the client hardware address from the raw packet: it must not
// panic, must ask about at most 16 bytes, and must send a packet to the
// known queue only when the classifier knows the address it read, which is
// the one the parser reads.
func FuzzPickQueue(f *testing.F) {
	known := net.HardwareAddr{0x52, 0x54, 0, 0, 0, 1}
	f.Add(must(dhcpv4.NewDiscovery(known)).ToBytes())
	f.Add(must(dhcpv4.NewDiscovery(net.HardwareAddr{2, 0, 0, 0, 0, 9})).ToBytes())
	f.Add([]byte{})
	f.Add(make([]byte, 44))
	for _, form := range ibForms(f) {
		f.Add(ibRequest(f, dhcpv4.MessageTypeDiscover, form.hlen, form.id).ToBytes())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cls := &macClassifier{known: known}
		q := queues{cls: cls, known: make(chan *packet), unknown: make(chan *packet)}
		got := q.pick(context.Background(), b)
		if len(cls.asked) > 16 {
			t.Fatalf("asked about %d bytes", len(cls.asked))
		}
		if got == q.known {
			m, err := dhcpv4.FromBytes(b)
			if err == nil && string(m.ClientHWAddr) != string(known) {
				t.Fatalf("known queue for %v", m.ClientHWAddr)
			}
		}
	})
}

// TestPoolSweepsStaleLeaseTemps: a temporary lease file a killed writer
// left is removed when the pool opens, one being written now is not.
func TestPoolSweepsStaleLeaseTemps(t *testing.T) {
	dir := t.TempDir()
	lf := filepath.Join(dir, "dhcp.leases")
	stale := filepath.Join(dir, ".dhcp.leases.tmp-123")
	fresh := filepath.Join(dir, ".dhcp.leases.tmp-456")
	require.NoError(t, os.WriteFile(stale, []byte("half"), 0o644))
	old := time.Now().Add(-2 * staleTempAge)
	require.NoError(t, os.Chtimes(stale, old, old))
	require.NoError(t, os.WriteFile(fresh, []byte("being written"), 0o644))
	_, err := NewPool(PoolConfig{Start: netip.MustParseAddr("10.0.0.100"), End: netip.MustParseAddr("10.0.0.110"),
		Netmask: net.CIDRMask(24, 32), LeaseFile: lf, Reserver: ReserverFunc(func(netip.Addr) bool { return false })})
	require.NoError(t, err)
	assert.NoFileExists(t, stale)
	assert.FileExists(t, fresh)
}
