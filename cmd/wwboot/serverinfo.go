package main

import (
	"context"
	"os"
	"path/filepath"
	"sync"

	"github.com/wwboot/wwboot/image"
	"github.com/wwboot/wwboot/overlay"
	"github.com/wwboot/wwboot/provision"
)

// templateServer is what templates know about this server, the same for
// `wwboot serve` and the overlay commands so that both render the same
// files: Warewulf's defaults for what wwboot has no setting for
// (overlay.DefaultServerInfo), then wwboot.conf's settings (port, secure,
// DHCP on/off and its dynamic range, TFTP, sysconfdir, identity, the agent
// TLS channel with the cluster CA in root/tls), the server's address and
// netmask (addr may be "") and the node agent binary.
func templateServer(cfg serveConfig, root, addr, netmask, agent string) overlay.ServerInfo {
	s := overlay.DefaultServerInfo()
	s.BuildHost, _ = os.Hostname()
	s.Ipaddr, s.Netmask = addr, netmask
	s.Warewulf.Port, s.Warewulf.Secure = cfg.HTTPPort, cfg.Secure
	s.Dhcp.Enabled = cfg.DHCP != "off"
	if start, end, ok, err := cfg.dhcpRange(); err == nil && ok {
		s.Dhcp.RangeStart, s.Dhcp.RangeEnd = start.String(), end.String()
	}
	s.Tftp.Enabled = cfg.TFTP
	s.Paths.Sysconfdir = cfg.Sysconfdir
	s.Paths.Agent = agent
	if cfg.AgentTLS {
		// node.conf's WWBOOT_TLS_URL and the wwclient overlay's
		// /etc/wwboot/ca.crt (absent until serve or init made the CA).
		s.Warewulf.TLSEnabled, s.Warewulf.TLSPort = true, cfg.AgentTLSPort
		s.Paths.CACert = filepath.Join(root, "tls", provision.CACertFile)
	}
	cfg.identityConfig.apply(&s)
	return s
}

// imageRoots returns an overlay.Options.ImageRoot over the image store in
// ROOT/images, opened at the first IncludeFrom (commands that render no
// such template never open it). An image the store does not hold has no
// root ("").
func imageRoots(a *app) func(string) string {
	open := sync.OnceValues(func() (*image.Store, error) { return image.OpenStore(a.path("images")) })
	return func(name string) string {
		st, err := open()
		if err != nil {
			a.log.Warn("IncludeFrom: the image store cannot be opened", "dir", a.path("images"), "err", err)
			return ""
		}
		m, err := st.Lookup(context.Background(), name)
		if err != nil {
			return ""
		}
		return m.Root
	}
}
