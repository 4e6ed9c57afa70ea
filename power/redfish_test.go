package power

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/wwboot/wwboot/nodedb"
)

// mockup is a Redfish service of the DMTF mockup kind: static resources
// (service root, one ComputerSystem) plus the one action power needs,
// #ComputerSystem.Reset, which changes PowerState. No real Redfish BMC can
// run here; gofish, the client, is the real one.
type mockup struct {
	mu      sync.Mutex
	power   string
	resets  []string
	allowed []string
	user    string
	pass    string
}

func (m *mockup) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u, p, ok := r.BasicAuth()
	if r.URL.Path != "/redfish/v1/" && r.URL.Path != "/redfish/v1" && (!ok || u != m.user || p != m.pass) {
		w.Header().Set("WWW-Authenticate", `Basic realm="bmc"`)
		http.Error(w, `{"error":{"code":"Base.1.0.GeneralError","message":"unauthorized"}}`, http.StatusUnauthorized)
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	send := func(v any) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
	switch {
	case r.Method == http.MethodGet && (r.URL.Path == "/redfish/v1/" || r.URL.Path == "/redfish/v1"):
		send(map[string]any{
			"@odata.id": "/redfish/v1/", "@odata.type": "#ServiceRoot.v1_5_0.ServiceRoot",
			"Id": "RootService", "RedfishVersion": "1.6.0",
			"Systems": map[string]string{"@odata.id": "/redfish/v1/Systems"},
		})
	case r.Method == http.MethodGet && r.URL.Path == "/redfish/v1/Systems":
		send(map[string]any{
			"@odata.id": "/redfish/v1/Systems", "Members@odata.count": 1,
			"Members": []map[string]string{{"@odata.id": "/redfish/v1/Systems/node1"}},
		})
	case r.Method == http.MethodGet && r.URL.Path == "/redfish/v1/Systems/node1":
		send(map[string]any{
			"@odata.id": "/redfish/v1/Systems/node1", "@odata.type": "#ComputerSystem.v1_10_0.ComputerSystem",
			"Id": "node1", "PowerState": m.power,
			"Actions": map[string]any{"#ComputerSystem.Reset": map[string]any{
				"target":                            "/redfish/v1/Systems/node1/Actions/ComputerSystem.Reset",
				"ResetType@Redfish.AllowableValues": m.allowed,
			}},
		})
	case r.Method == http.MethodPost && r.URL.Path == "/redfish/v1/Systems/node1/Actions/ComputerSystem.Reset":
		var body struct{ ResetType string }
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		m.resets = append(m.resets, body.ResetType)
		switch body.ResetType {
		case "On", "ForceRestart", "PowerCycle":
			m.power = "On"
		case "ForceOff":
			m.power = "Off"
		default:
			http.Error(w, "unsupported ResetType", http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		http.NotFound(w, r)
	}
}

func startMockup(t *testing.T, allowed []string) (*mockup, *Redfish) {
	t.Helper()
	m := &mockup{power: "Off", user: "root", pass: "Redfish-pw-9", allowed: allowed}
	srv := httptest.NewUnstartedServer(m)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake of the bad-certificate case
	srv.StartTLS()
	t.Cleanup(srv.Close)
	host, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	require.NoError(t, err)
	p, _ := strconv.Atoi(port)
	c, err := ConfigFromIPMI(&nodedb.IPMI{Ipaddr: host, Port: port, UserName: "root", Password: "Redfish-pw-9", Template: "redfish"})
	require.NoError(t, err)
	require.Equal(t, p, c.Port)
	b, err := New(c)
	require.NoError(t, err)
	rf := b.(*Redfish)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	rf.TLS = &tls.Config{RootCAs: pool}
	return m, rf
}

func TestRedfishPower(t *testing.T) {
	m, b := startMockup(t, []string{"On", "ForceOff", "ForceRestart", "PowerCycle"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := b.Status(ctx)
	require.NoError(t, err)
	assert.Equal(t, StateOff, st)
	require.NoError(t, b.On(ctx))
	st, err = b.Status(ctx)
	require.NoError(t, err)
	assert.Equal(t, StateOn, st)
	require.NoError(t, b.Reset(ctx))
	require.NoError(t, b.Cycle(ctx))
	require.NoError(t, b.Off(ctx))
	st, err = b.Status(ctx)
	require.NoError(t, err)
	assert.Equal(t, StateOff, st)
	assert.Equal(t, []string{"On", "ForceRestart", "PowerCycle", "ForceOff"}, m.resets)
}

func TestRedfishCycleWithoutPowerCycle(t *testing.T) {
	m, b := startMockup(t, []string{"On", "ForceOff"})
	require.NoError(t, b.Cycle(context.Background()))
	assert.Equal(t, []string{"ForceOff", "On"}, m.resets)
}

func TestRedfishWrongPasswordAndBadCert(t *testing.T) {
	_, b := startMockup(t, nil)
	b.cfg.Password = "Other-pw-77"
	_, err := b.Status(context.Background())
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "Other-pw-77")
	assert.Contains(t, err.Error(), "redfish https://127.0.0.1:")

	// With verification on and no trust in the test CA, the handshake fails.
	_, b2 := startMockup(t, nil)
	b2.TLS = &tls.Config{RootCAs: x509.NewCertPool()}
	_, err = b2.Status(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "certificate")
}
