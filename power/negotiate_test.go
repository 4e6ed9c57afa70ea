package power

import (
	"context"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/bougou/go-ipmi/pkg/bmc"
	"github.com/bougou/go-ipmi/pkg/clock"
	"github.com/bougou/go-ipmi/pkg/hal/mock"
	"github.com/bougou/go-ipmi/pkg/server"
	"github.com/bougou/go-ipmi/pkg/transport/udp"
	"github.com/bougou/go-ipmi/pkg/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/wwboot/wwboot/provision/netlab"
)

// goBMC runs go-ipmi's reference BMC on loopback offering only the given
// RMCP+ cipher suites, like a BMC in the field that insists on suite 17.
func goBMC(t *testing.T, suites ...types.CipherSuiteID) (port int, chassis *mock.Chassis) {
	t.Helper()
	h := mock.New()
	var guid [16]byte
	b := bmc.New(bmc.DeviceInfo{DeviceID: 1, IPMIVersion: 0x20, ManufacturerID: 0x000157, ProductID: 1}, guid, h,
		bmc.WithClock(clock.Real), bmc.WithCipherSuites(suites))
	u, err := b.Users.Add(2, simUser)
	require.NoError(t, err)
	u.SetPassword([]byte(simPass))
	u.Enabled = true
	u.ChannelAccess[1] = bmc.UserChannelAccess{MaxPrivilege: bmc.PrivilegeLevelAdministrator, Enabled: true}
	conn, err := udp.Listen("127.0.0.1:0")
	require.NoError(t, err)
	srv := server.NewServer(b, conn)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); _ = srv.Close() })
	_, p, err := net.SplitHostPort(conn.LocalAddr().String())
	require.NoError(t, err)
	port, err = strconv.Atoi(p)
	require.NoError(t, err)
	return port, h.Chassis().(*mock.Chassis)
}

// TestCipherSuiteNegotiation: the same client reaches a BMC that offers only
// suite 17 and one that offers only suite 3 (ipmi_sim's case, tested against
// ipmi_sim itself in TestIPMIAgainstIPMISim): nothing is hard-coded.
func TestCipherSuiteNegotiation(t *testing.T) {
	for _, tc := range []struct {
		name   string
		suites []types.CipherSuiteID
	}{
		{"only-17", []types.CipherSuiteID{types.CipherSuiteID17}},
		{"only-3", []types.CipherSuiteID{types.CipherSuiteID3}},
		{"3-and-17", []types.CipherSuiteID{types.CipherSuiteID3, types.CipherSuiteID17}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port, chassis := goBMC(t, tc.suites...)
			b := NewIPMI(Config{Host: "127.0.0.1", Port: port, Username: simUser, Password: simPass, Interface: "lanplus"})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			start := time.Now()
			require.NoError(t, b.On(ctx))
			assert.Less(t, time.Since(start), 3*time.Second)
			on, err := chassis.PowerState(ctx)
			require.NoError(t, err)
			assert.True(t, on)
			st, err := b.Status(ctx)
			require.NoError(t, err)
			assert.Equal(t, StateOn, st)
		})
	}
}

// TestSuite17OnlyBMCRefusesSuite3: the suite-17 BMC above really refuses a
// client fixed on suite 3 (ipmitool -C 3), so the negotiation test means
// something.
func TestSuite17OnlyBMCRefusesSuite3(t *testing.T) {
	netlab.RequireTools(t, "ipmitool")
	port, _ := goBMC(t, types.CipherSuiteID17)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	run := func(suite string) error {
		cmd := exec.CommandContext(ctx, "ipmitool", "-I", "lanplus", "-C", suite, "-N", "1", "-R", "1", "-H", "127.0.0.1", "-p", strconv.Itoa(port), "-U", simUser, "-E", "chassis", "power", "status")
		cmd.Env = []string{"IPMI_PASSWORD=" + simPass}
		return cmd.Run()
	}
	assert.Error(t, run("3"))
	assert.NoError(t, run("17"))
}
