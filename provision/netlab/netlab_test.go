package netlab

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestVethConnectsTwoNamespaces(t *testing.T) {
	a, b := NewNS(t), NewNS(t)
	Veth(t, a, "eth0", netip.MustParsePrefix("10.77.0.1/24"), b, "eth0", netip.MustParsePrefix("10.77.0.2/24"))

	var l net.Listener
	require.NoError(t, a.Do(func() (err error) {
		l, err = net.Listen("tcp", "10.77.0.1:0")
		return err
	}))
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			_, _ = c.Write([]byte("hello from a"))
			c.Close()
		}
	}()
	port := l.Addr().(*net.TCPAddr).Port
	out, err := b.Command(context.Background(), "bash", "-c",
		"exec 3<>/dev/tcp/10.77.0.1/"+strconv.Itoa(port)+"; cat <&3").CombinedOutput()
	require.NoError(t, err, string(out))
	require.Equal(t, "hello from a", string(out))

	// The address exists only inside the lab: the test's own namespace cannot reach it.
	_, err = net.DialTimeout("tcp", l.Addr().String(), 200e6)
	require.Error(t, err)
}
