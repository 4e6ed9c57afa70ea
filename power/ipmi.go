package power

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/command/chassis"
	"github.com/bougou/go-ipmi/pkg/types"
)

// DefaultIPMIPort is the RMCP port.
const DefaultIPMIPort = 623

// IPMI is a BMC reached over IPMI-over-LAN. Every call opens a session, sends
// one command and closes the session, so an IPMI value holds no connection
// and is safe for concurrent use.
//
// Cipher suites (lanplus): the session is opened with the strongest suite
// first, in go-ipmi's order of preference (17: HMAC-SHA256/AES-128, then 3:
// HMAC-SHA1/AES-128, then the other non-RC4 suites); a BMC that does not offer
// a suite refuses it in its Open Session answer and the next is tried. This
// negotiates within the RMCP+ session setup instead of asking Get Channel
// Cipher Suites first, which some BMCs (OpenIPMI's ipmi_sim among them) never
// answer: asking would cost every session the full retry timeout (5 s with
// go-ipmi's defaults) before the same fallback.
type IPMI struct {
	cfg Config
	// timeout is go-ipmi's per-request timeout; retries its resend count.
	timeout time.Duration
	retries int
}

// NewIPMI returns the IPMI driver for c (Port 0 means 623).
func NewIPMI(c Config) *IPMI {
	if c.Port == 0 {
		c.Port = DefaultIPMIPort
	}
	return &IPMI{cfg: c, timeout: time.Second, retries: 3}
}

// On powers the chassis up.
func (b *IPMI) On(ctx context.Context) error {
	return b.control(ctx, chassis.ChassisControlPowerUp)
}

// Off powers the chassis down.
func (b *IPMI) Off(ctx context.Context) error {
	return b.control(ctx, chassis.ChassisControlPowerDown)
}

// Cycle powers the chassis down and up.
func (b *IPMI) Cycle(ctx context.Context) error {
	return b.control(ctx, chassis.ChassisControlPowerCycle)
}

// Reset pulses the chassis reset.
func (b *IPMI) Reset(ctx context.Context) error {
	return b.control(ctx, chassis.ChassisControlHardReset)
}

// Status reads Get Chassis Status.
func (b *IPMI) Status(ctx context.Context) (State, error) {
	st := StateUnknown
	err := b.session(ctx, "chassis status", func(c *client.Client) error {
		res, err := c.GetChassisStatus(ctx)
		if err != nil {
			return err
		}
		st = StateOff
		if res.PowerIsOn {
			st = StateOn
		}
		return nil
	})
	return st, err
}

func (b *IPMI) control(ctx context.Context, ctl chassis.ChassisControl) error {
	return b.session(ctx, fmt.Sprintf("chassis control %d", ctl), func(c *client.Client) error {
		_, err := c.ChassisControl(ctx, ctl)
		return err
	})
}

// Session opens an authenticated session (see the type's comment on cipher
// suites), runs fn and closes the session. Errors name the BMC and the step
// and never contain the password.
func (b *IPMI) Session(ctx context.Context, fn func(c *client.Client) error) error {
	return b.session(ctx, "command", fn)
}

func (b *IPMI) session(ctx context.Context, what string, fn func(c *client.Client) error) error {
	c, err := client.NewClient(b.cfg.Host, b.cfg.Port, b.cfg.Username, b.cfg.Password)
	if err != nil {
		return b.wrap("configure", err)
	}
	c.WithTimeout(b.timeout).WithRetry(b.retries)
	if b.cfg.Dial != nil {
		c.WithUDPProxy(ctxDialer{ctx: ctx, dial: b.cfg.Dial})
	}
	if b.cfg.Interface == "lan" {
		c.WithInterface(client.InterfaceLan)
	} else {
		c.WithInterface(client.InterfaceLanplus).WithCipherSuiteID(types.PreferredCiphers...)
	}
	if err := c.Connect(ctx); err != nil {
		// No session to close: a cancelled context makes Close skip the
		// Close Session request and only release the socket.
		dead, cancel := context.WithCancel(context.Background())
		cancel()
		_ = c.Close(dead)
		return b.wrap("open session", err)
	}
	err = fn(c)
	// Close the session even when ctx ended, so the BMC frees its slot.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_ = c.Close(cctx)
	if err != nil {
		return b.wrap(what, err)
	}
	return nil
}

func (b *IPMI) wrap(step string, err error) error {
	mode := "lanplus"
	if b.cfg.Interface == "lan" {
		mode = "lan"
	}
	return redactError(fmt.Errorf("ipmi %s %s:%d (user %q): %s: %w", mode, b.cfg.Host, b.cfg.Port, b.cfg.Username, step, err), b.cfg.Password)
}

// ctxDialer adapts a DialFunc to the proxy.Dialer go-ipmi accepts.
type ctxDialer struct {
	ctx  context.Context
	dial DialFunc
}

func (d ctxDialer) Dial(network, addr string) (net.Conn, error) { return d.dial(d.ctx, network, addr) }
