package power

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/stmcginnis/gofish"
	"github.com/stmcginnis/gofish/redfish"
)

// Redfish is a BMC reached over Redfish (DMTF DSP0266). Every call logs in
// with HTTP basic authentication (no session left behind on the BMC), finds
// the first ComputerSystem of /redfish/v1/Systems and reads its PowerState
// or posts its #ComputerSystem.Reset action.
type Redfish struct {
	cfg Config
	// TLS verifies the BMC's certificate. BMCs ship self-signed
	// certificates, so NewRedfish skips verification unless TLS is set.
	TLS *tls.Config
}

// NewRedfish returns the Redfish driver for c.
func NewRedfish(c Config) *Redfish {
	return &Redfish{cfg: c}
}

// On posts ResetType On.
func (b *Redfish) On(ctx context.Context) error {
	return b.reset(ctx, redfish.OnResetType)
}

// Off posts ResetType ForceOff.
func (b *Redfish) Off(ctx context.Context) error {
	return b.reset(ctx, redfish.ForceOffResetType)
}

// Cycle posts PowerCycle, or ForceOff then On where the system does not list
// PowerCycle among its allowed reset types.
func (b *Redfish) Cycle(ctx context.Context) error {
	return b.system(ctx, "power cycle", func(s *redfish.ComputerSystem) error {
		if len(s.SupportedResetTypes) == 0 || slices.Contains(s.SupportedResetTypes, redfish.PowerCycleResetType) {
			return s.Reset(redfish.PowerCycleResetType)
		}
		if err := s.Reset(redfish.ForceOffResetType); err != nil {
			return err
		}
		return s.Reset(redfish.OnResetType)
	})
}

// Reset posts ResetType ForceRestart.
func (b *Redfish) Reset(ctx context.Context) error {
	return b.reset(ctx, redfish.ForceRestartResetType)
}

// Status reads the system's PowerState.
func (b *Redfish) Status(ctx context.Context) (State, error) {
	st := StateUnknown
	err := b.system(ctx, "read PowerState", func(s *redfish.ComputerSystem) error {
		switch s.PowerState {
		case redfish.OnPowerState:
			st = StateOn
		case redfish.OffPowerState:
			st = StateOff
		}
		return nil
	})
	return st, err
}

func (b *Redfish) reset(ctx context.Context, t redfish.ResetType) error {
	return b.system(ctx, "reset "+string(t), func(s *redfish.ComputerSystem) error { return s.Reset(t) })
}

// endpoint is scheme://host:port.
func (b *Redfish) endpoint() string {
	scheme, port := "https", b.cfg.Port
	if b.cfg.Interface == "http" {
		scheme = "http"
	}
	if port == 0 {
		port = 443
		if scheme == "http" {
			port = 80
		}
	}
	return scheme + "://" + net.JoinHostPort(b.cfg.Host, strconv.Itoa(port))
}

func (b *Redfish) system(ctx context.Context, what string, fn func(*redfish.ComputerSystem) error) error {
	tlsConf := b.TLS
	if tlsConf == nil {
		tlsConf = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // BMC certificates are self-signed; set Redfish.TLS to verify
	}
	tr := &http.Transport{TLSClientConfig: tlsConf, TLSHandshakeTimeout: 10 * time.Second, DisableKeepAlives: true}
	if b.cfg.Dial != nil {
		tr.DialContext = b.cfg.Dial
	}
	defer tr.CloseIdleConnections()
	c, err := gofish.ConnectContext(ctx, gofish.ClientConfig{
		Endpoint:   b.endpoint(),
		Username:   b.cfg.Username,
		Password:   b.cfg.Password,
		BasicAuth:  true,
		HTTPClient: &http.Client{Transport: tr},
	})
	if err != nil {
		return b.wrap("connect", err)
	}
	defer c.Logout()
	systems, err := c.Service.Systems()
	if err != nil {
		return b.wrap("list Systems", err)
	}
	if len(systems) == 0 {
		return b.wrap("list Systems", fmt.Errorf("the service has no ComputerSystem"))
	}
	if err := fn(systems[0]); err != nil {
		return b.wrap(what, err)
	}
	return nil
}

func (b *Redfish) wrap(step string, err error) error {
	return redactError(fmt.Errorf("redfish %s (user %q): %s: %w", b.endpoint(), b.cfg.Username, step, err), b.cfg.Password)
}
