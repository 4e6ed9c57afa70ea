//go:build linux

package ipxe_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/ipxe"
	"github.com/wwboot/wwboot/provision/netlab"
)

// TestRouterAdvertiserAnswersRdisc6 solicits with a real client, ndisc6's
// rdisc6, across a veth pair between two namespaces, and checks that the
// answer announces no router and no prefix.
func TestRouterAdvertiserAnswersRdisc6(t *testing.T) {
	netlab.RequireTools(t, "rdisc6")
	srv, cli := netlab.NewNS(t), netlab.NewNS(t)
	netlab.Veth(t, srv, "prov0", netip.Prefix{}, cli, "eth0", netip.Prefix{})
	// A link-local address must finish duplicate address detection before
	// it can source a packet; give both ends one that skips it.
	srv.IP("addr", "add", "fe80::1/64", "dev", "prov0", "nodad")
	cli.IP("addr", "add", "fe80::2/64", "dev", "eth0", "nodad")

	var ra *ipxe.RouterAdvertiser
	require.NoError(t, srv.Do(func() (err error) {
		ra, err = ipxe.ListenRouterAdvertiser("prov0", nil)
		return err
	}))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- ra.Serve(ctx) }()

	ctx2, cancel2 := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel2()
	// -1: stop at the first answer; -r 5 -w 1000: up to 5 tries, 1 s apart
	// (the client's own link-local address may still be tentative at first).
	out, err := cli.Command(ctx2, "rdisc6", "-1", "-r", "5", "-w", "1000", "eth0").CombinedOutput()
	require.NoError(t, err, "%s", out)
	text := string(out)
	assert.Contains(t, text, "from fe80::1")
	assert.Regexp(t, `Router lifetime\s*:\s*0 `, text)
	assert.Regexp(t, `Stateful address conf.\s*:\s*No`, text)
	assert.Regexp(t, `Stateful other conf.\s*:\s*No`, text)
	assert.NotContains(t, text, "Prefix")
	// Serve counts an answer once it is sent, which may be just after
	// rdisc6 has read it and exited.
	assert.Eventually(t, func() bool { return ra.Answered() >= 1 }, 5*time.Second, 10*time.Millisecond, "Answered counts the reply")

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
}

func TestRouterAdvertiserBadInterface(t *testing.T) {
	_, err := ipxe.ListenRouterAdvertiser("no-such-if0", nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no-such-if0")
}
