package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"

	"go.yaml.in/yaml/v3"

	"github.com/wwboot/wwboot/provision"
)

// defaultConfigText is the wwboot.conf that `wwboot init` writes; `wwboot
// serve` reads it, and its flags override it.
const defaultConfigText = `# wwboot server settings. Flags of 'wwboot serve' override these.
# listen: the server's IPv4 address on the cluster network (one address). HTTP, the agents' TLS port
# and TFTP bind only it and 127.0.0.1 (local commands use that). Empty or 0.0.0.0: they bind every
# address of this machine, and the server's address is the first address of interface
listen: ""
# interface: the cluster network interface DHCP answers on
interface: ""
# dhcp: full (addresses and boot), proxy (boot information beside another DHCP server) or off
dhcp: full
# tftp: serve the iPXE binaries over TFTP
tftp: true
# http port of the provisioning service
http port: 9873
# secure: send the runtime overlay only to privileged source ports (below 1024), as Warewulf does
secure: true
# range start, range end: addresses for machines not in the inventory (full DHCP only); empty: none,
# unknown machines are ignored (or taken by a discoverable node). Leases are kept in ROOT/dhcp.leases.
range start: ""
range end: ""
# agent: the node agent binary (built from ./cmd/wwboot-agent) the wwclient overlay puts on every
# node; empty: wwboot-agent next to the wwboot executable, else on $PATH
agent: ""
# agent tls: the node agent fetches the runtime overlay (the node's private SSH host keys) and sends
# its reports over TLS, with a certificate it gets once per boot from the cluster CA in ROOT/tls;
# the runtime overlay then never crosses the network in clear text. false: plain HTTP, as Warewulf
agent tls: true
# agent tls port: the HTTPS port of that channel
agent tls port: 9874
# sysconfdir: Warewulf's SYSCONFDIR as templates see it: relative Include paths are read below
# SYSCONFDIR/warewulf (Warewulf's ssh.host_keys overlay reads keys/ssh_host_*_key there, else the
# cluster-wide keys in ROOT/keys/shared are used); empty: /etc
sysconfdir: ""
` + identityConfigText + accessConfigText + eventsConfigText

// serveConfig is wwboot.conf: the settings of `wwboot serve`.
type serveConfig struct {
	// Listen is the server's address on the cluster network, which HTTP,
	// the TLS port and TFTP bind (with 127.0.0.1); "" or 0.0.0.0: every
	// address (see parseListen, bindAddrs).
	Listen string `yaml:"listen"`
	// Interface is the cluster network interface.
	Interface string `yaml:"interface"`
	// DHCP is full, proxy or off.
	DHCP string `yaml:"dhcp"`
	// TFTP serves the iPXE binaries over TFTP.
	TFTP bool `yaml:"tftp"`
	// HTTPPort is the provisioning service's port.
	HTTPPort int `yaml:"http port"`
	// Secure sends the runtime overlay only to privileged source ports.
	Secure bool `yaml:"secure"`
	// RangeStart and RangeEnd bound the dynamic pool for unknown machines.
	RangeStart string `yaml:"range start"`
	RangeEnd   string `yaml:"range end"`
	// Agent is the node agent binary the wwclient overlay delivers ("":
	// see agentPath).
	Agent string `yaml:"agent"`
	// AgentTLS serves the runtime overlay and the agents' reports over
	// TLS, with per-node certificates from the cluster CA (ROOT/tls).
	AgentTLS bool `yaml:"agent tls"`
	// AgentTLSPort is that channel's HTTPS port.
	AgentTLSPort int `yaml:"agent tls port"`
	// Sysconfdir is Warewulf's SYSCONFDIR as templates see it
	// (.Paths.Sysconfdir): relative Include paths are read below
	// Sysconfdir/warewulf ("" = /etc, Warewulf's default).
	Sysconfdir string `yaml:"sysconfdir"`
	// identityConfig: authorized keys, host keys, DNS defaults for nodes.
	identityConfig `yaml:",inline"`
	// accessConfig: admin networks, system overlay secrets.
	accessConfig `yaml:",inline"`
	// Events: hooks for node events (apiserve.go).
	Events eventsConfig `yaml:"events"`
}

// dhcpRange returns the dynamic pool's bounds, or ok=false when none is set.
func (c *serveConfig) dhcpRange() (start, end netip.Addr, ok bool, err error) {
	if c.RangeStart == "" && c.RangeEnd == "" {
		return start, end, false, nil
	}
	start, err1 := netip.ParseAddr(c.RangeStart)
	end, err2 := netip.ParseAddr(c.RangeEnd)
	switch {
	case err1 != nil || !start.Is4():
		return start, end, false, fmt.Errorf("range start: %q: give an IPv4 address (and range end)", c.RangeStart)
	case err2 != nil || !end.Is4():
		return start, end, false, fmt.Errorf("range end: %q: give an IPv4 address (and range start)", c.RangeEnd)
	case end.Less(start):
		return start, end, false, fmt.Errorf("range end %s is below range start %s", end, start)
	case c.DHCP != "full":
		return start, end, false, fmt.Errorf("range start/end: a dynamic range needs dhcp: full (it is %s)", c.DHCP)
	}
	return start, end, true, nil
}

// defaultServeConfig is what a missing key means.
func defaultServeConfig() serveConfig {
	return serveConfig{DHCP: "full", TFTP: true, HTTPPort: 9873, Secure: true, AgentTLS: true, AgentTLSPort: provision.DefaultAgentTLSPort}
}

// loadServeConfig reads path over the defaults. A missing file means the
// defaults; an unknown key or a bad value is an error naming the file and line.
func loadServeConfig(path string) (serveConfig, error) {
	cfg := defaultServeConfig()
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return cfg, nil
	}
	if err != nil {
		return cfg, fmt.Errorf("reading %s: %w", path, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return cfg, fmt.Errorf("%s: %w (keys: listen, interface, dhcp, tftp, http port, secure, range start, range end, agent, agent tls, agent tls port, sysconfdir, authorized keys, shared host keys, ssh key types, dns servers, dns search, admin networks, system overlay secrets, events)", path, err)
	}
	if err := cfg.validate(); err != nil {
		return cfg, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

func (c *serveConfig) validate() error {
	switch c.DHCP {
	case "full", "proxy", "off":
	default:
		return fmt.Errorf("dhcp: %q: use full, proxy or off", c.DHCP)
	}
	if _, _, err := parseListen(c.Listen); err != nil {
		return err
	}
	if c.HTTPPort <= 0 || c.HTTPPort > 65535 {
		return fmt.Errorf("http port: %d: use a port number from 1 to 65535", c.HTTPPort)
	}
	if c.AgentTLSPort <= 0 || c.AgentTLSPort > 65535 {
		return fmt.Errorf("agent tls port: %d: use a port number from 1 to 65535", c.AgentTLSPort)
	}
	if c.AgentTLS && c.AgentTLSPort == c.HTTPPort {
		return fmt.Errorf("agent tls port: %d is the http port too: give it another (default 9874)", c.AgentTLSPort)
	}
	if _, _, _, err := c.dhcpRange(); err != nil {
		return err
	}
	if err := c.accessConfig.validate(); err != nil {
		return err
	}
	if err := c.Events.validate(); err != nil {
		return err
	}
	if c.Sysconfdir != "" && !filepath.IsAbs(c.Sysconfdir) {
		return fmt.Errorf("sysconfdir: %q: give an absolute path (Warewulf's is /etc)", c.Sysconfdir)
	}
	return c.identityConfig.validate()
}
