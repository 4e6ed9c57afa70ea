package power

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"

	"github.com/wwboot/wwboot/nodedb"
)

// DialFunc opens a connection to addr ("host:port") over network ("udp" for
// IPMI, "tcp" for Redfish), like net.Dialer.DialContext. Tests use it to
// reach BMCs inside a network namespace.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Config is how to reach and log in to one BMC: the ipmi: fields of a node
// in nodes.conf.
type Config struct {
	// Host is the BMC's address (ipmi: ipaddr).
	Host string
	// Port is the BMC's port; 0 means the protocol's default (623 for IPMI,
	// 443 for Redfish over https, 80 over http).
	Port int
	// Username and Password log in to the BMC.
	Username string
	Password string
	// Interface is "lan" (IPMI 1.5), "lanplus" (IPMI 2.0/RMCP+, the default
	// for IPMI, as for ipmitool -H since 1.8.19), or for Redfish "https"
	// (default) or "http".
	Interface string
	// EscapeChar ends a serial-over-LAN console ("~" when empty).
	EscapeChar string
	// Template selects the driver, the way Warewulf's ipmi: template names
	// the command template: "", "ipmitool.tmpl", "ipmitool" or "ipmi" for
	// IPMI; "redfish" or "redfish.tmpl" for Redfish.
	Template string
	// Dial, when set, opens the connections (see DialFunc).
	Dial DialFunc
}

// ErrNoBMC is returned for a node without a BMC address, or whose template
// says it has none (Warewulf's nobmc.tmpl).
var ErrNoBMC = errors.New("no BMC configured")

// Driver names a BMC protocol.
type Driver string

// The drivers New knows.
const (
	DriverIPMI    Driver = "ipmi"
	DriverRedfish Driver = "redfish"
)

// Driver returns the protocol the template selects.
func (c Config) Driver() (Driver, error) {
	switch strings.ToLower(strings.TrimSuffix(c.Template, ".tmpl")) {
	case "", "ipmitool", "ipmi":
		return DriverIPMI, nil
	case "redfish":
		return DriverRedfish, nil
	case "nobmc":
		return "", ErrNoBMC
	}
	return "", fmt.Errorf("ipmi template %q: wwboot speaks IPMI (template ipmitool.tmpl) and Redfish (template redfish); set one of them", c.Template)
}

// String describes the BMC without its password.
func (c Config) String() string {
	d, _ := c.Driver()
	pw := ""
	if c.Password != "" {
		pw = " password=***"
	}
	return fmt.Sprintf("%s://%s@%s interface=%s%s", d, c.Username, net.JoinHostPort(c.Host, strconv.Itoa(c.Port)), c.Interface, pw)
}

// LogValue keeps the password out of slog records.
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }

// ConfigFromIPMI reads a node's effective ipmi: block. Errors name the field
// (ipmi.port...) and say what is wrong; a missing block or address is
// ErrNoBMC.
func ConfigFromIPMI(ipmi *nodedb.IPMI) (Config, error) {
	if ipmi == nil || strings.TrimSpace(ipmi.Ipaddr) == "" {
		return Config{}, fmt.Errorf("%w: set ipmi ipaddr", ErrNoBMC)
	}
	c := Config{
		Host:       strings.TrimSpace(ipmi.Ipaddr),
		Username:   ipmi.UserName,
		Password:   ipmi.Password,
		Interface:  strings.ToLower(strings.TrimSpace(ipmi.Interface)),
		EscapeChar: ipmi.EscapeChar,
		Template:   strings.TrimSpace(ipmi.Template),
	}
	if strings.ContainsAny(c.Host, " /[]") {
		return Config{}, fmt.Errorf("ipmi.ipaddr %q: not a host name or address", c.Host)
	}
	if p := strings.TrimSpace(ipmi.Port); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return Config{}, fmt.Errorf("ipmi.port %q: not a port number (1-65535)", p)
		}
		c.Port = n
	}
	if len([]rune(c.EscapeChar)) > 1 {
		return Config{}, fmt.Errorf("ipmi.escapechar %q: one character", c.EscapeChar)
	}
	d, err := c.Driver()
	if err != nil {
		return Config{}, err
	}
	switch {
	case d == DriverIPMI && c.Interface != "" && c.Interface != "lan" && c.Interface != "lanplus":
		return Config{}, fmt.Errorf("ipmi.interface %q: use lan or lanplus", ipmi.Interface)
	case d == DriverRedfish && c.Interface != "" && c.Interface != "https" && c.Interface != "http":
		return Config{}, fmt.Errorf("ipmi.interface %q: Redfish uses https (default) or http", ipmi.Interface)
	}
	return c, nil
}

// New returns the BMC driver c.Template selects.
func New(c Config) (BMC, error) {
	d, err := c.Driver()
	if err != nil {
		return nil, err
	}
	if c.Host == "" {
		return nil, fmt.Errorf("%w: no address", ErrNoBMC)
	}
	if d == DriverRedfish {
		return NewRedfish(c), nil
	}
	return NewIPMI(c), nil
}
