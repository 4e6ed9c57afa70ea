package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/Masterminds/sprig/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/wwboot/wwboot/dhcp"
	"github.com/wwboot/wwboot/image"
	"github.com/wwboot/wwboot/ipxe"
	"github.com/wwboot/wwboot/overlay"
	"github.com/wwboot/wwboot/provision"
	"github.com/wwboot/wwboot/tftp"
)

// serveFlags are `wwboot serve`'s flags; each overrides its wwboot.conf key.
type serveFlags struct {
	listen, iface, dhcp  string
	rangeStart, rangeEnd string
	tftp, noTFTP, ra     bool
	secure, agentTLS     bool
	httpPort, tlsPort    int
}

func newServeCmd(a *app) *cobra.Command {
	f := &serveFlags{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the provisioning server: DHCP, TFTP and HTTP for booting nodes",
		Long: `Serves the nodes of ROOT/nodes.conf: DHCP on --interface (full or proxy), the iPXE
binaries over TFTP (ROOT/tftp and the distribution's ipxe package), and over HTTP each node's
iPXE script, kernel, image (ROOT/images), system and runtime overlays (built-in and ROOT/overlays,
host keys in ROOT/keys), /status and /metrics; with agent tls (the default) node agents enroll
once per boot and get the runtime overlay over HTTPS (port 9874, cluster CA in ROOT/tls). Settings come from ROOT/wwboot.conf; flags override
them. Changes to nodes.conf are picked up without a restart; SIGHUP re-reads the iPXE templates
in ROOT/ipxe; SIGTERM stops taking requests and lets transfers under way finish.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadServeConfig(a.path("wwboot.conf"))
			if err != nil {
				return err
			}
			fl := cmd.Flags()
			if fl.Changed("listen") {
				cfg.Listen = f.listen
			}
			if fl.Changed("interface") {
				cfg.Interface = f.iface
			}
			if fl.Changed("dhcp") {
				cfg.DHCP = f.dhcp
			}
			if fl.Changed("tftp") {
				cfg.TFTP = f.tftp
			}
			if fl.Changed("no-tftp") {
				cfg.TFTP = !f.noTFTP
			}
			if fl.Changed("secure") {
				cfg.Secure = f.secure
			}
			if fl.Changed("http-port") {
				cfg.HTTPPort = f.httpPort
			}
			if fl.Changed("agent-tls") {
				cfg.AgentTLS = f.agentTLS
			}
			if fl.Changed("agent-tls-port") {
				cfg.AgentTLSPort = f.tlsPort
			}
			if fl.Changed("range-start") {
				cfg.RangeStart = f.rangeStart
			}
			if fl.Changed("range-end") {
				cfg.RangeEnd = f.rangeEnd
			}
			if err := cfg.validate(); err != nil {
				return fmt.Errorf("serve: %w", err)
			}
			return serve(cmd.Context(), a, cfg, f.ra)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.listen, "listen", "", "the server's IPv4 address on the cluster network; HTTP, the agents' TLS port and TFTP then bind only it and 127.0.0.1 "+
		"(default: wwboot.conf's listen:; empty or 0.0.0.0: they bind every address, and the server's address is the first of --interface)")
	fl.StringVar(&f.iface, "interface", "", "cluster network interface DHCP answers on (default: wwboot.conf's interface:)")
	// The flags' own defaults are never used (a flag counts only when given),
	// so they are zero and the usage names wwboot.conf's key instead.
	fl.StringVar(&f.dhcp, "dhcp", "", "DHCP mode: full, proxy or off (default: wwboot.conf's dhcp:, else full)")
	fl.BoolVar(&f.tftp, "tftp", false, "serve the iPXE binaries over TFTP (default: wwboot.conf's tftp:, else true)")
	fl.BoolVar(&f.noTFTP, "no-tftp", false, "do not run TFTP")
	fl.IntVar(&f.httpPort, "http-port", 0, "HTTP port of the provisioning service (default: wwboot.conf's http port:, else 9873)")
	fl.BoolVar(&f.secure, "secure", false, "send the runtime overlay only to privileged source ports (--secure=false: any port, still only from the node's address; default: wwboot.conf's secure:, else true)")
	fl.BoolVar(&f.agentTLS, "agent-tls", false, "node agents fetch the runtime overlay and report over TLS, with a certificate from the cluster CA in ROOT/tls (default: wwboot.conf's agent tls:, else true)")
	fl.IntVar(&f.tlsPort, "agent-tls-port", 0, "HTTPS port of the agents' TLS channel (default: wwboot.conf's agent tls port:, else 9874)")
	fl.StringVar(&f.rangeStart, "range-start", "", "first address of the dynamic range for machines not in the inventory (full DHCP)")
	fl.StringVar(&f.rangeEnd, "range-end", "", "last address of the dynamic range")
	fl.BoolVar(&f.ra, "ipv6-ra", true, "answer IPv6 router solicitations on --interface so iPXE does not wait 15 s for a router")
	return cmd
}

// raiseNoFile raises RLIMIT_NOFILE to what a server for nodes nodes wants
// (provision.FilesWanted): the soft limit up to the hard one, and, when the
// hard limit is lower and the process may raise it (root, CAP_SYS_RESOURCE),
// the hard limit too, up to fs.nr_open, as a systemd unit's LimitNOFILE=
// would. HTTP's connection cap and TFTP's transfer cap are derived from it,
// so a 10,000-node boot storm is not cut short by the 1,024 or 20,000
// descriptors a login shell gives (issue 11 items 4 and 12).
func raiseNoFile(a *app, nodes int) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return
	}
	want := provision.FilesWanted(nodes)
	if rl.Max < want {
		if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
			if nrOpen, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil {
				want = min(want, nrOpen)
			}
		}
		up := syscall.Rlimit{Cur: want, Max: want}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &up); err != nil {
			a.log.Debug("cannot raise the hard open-file limit (not root?)", "want", want, "hard", rl.Max, "err", err)
		}
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			a.log.Warn("cannot raise the open-file limit to its hard limit", "err", err)
		}
	}
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	a.log.Debug("open-file limit", "soft", rl.Cur, "hard", rl.Max, "wanted", provision.FilesWanted(nodes))
}

// serve runs the server with cfg until ctx ends.
func serve(ctx context.Context, a *app, cfg serveConfig, ra bool) error {
	mode, err := provision.ParseDHCPMode(cfg.DHCP)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	addr, netmask, err := serverAddr(cfg)
	if err != nil {
		return err
	}
	inv, err := a.openInventory(ctx)
	if err != nil {
		return fmt.Errorf("serve: %w (run wwboot init first)", err)
	}
	nodes := 0
	if db, err := inv.Snapshot(ctx); err == nil {
		nodes = db.Len()
	}
	raiseNoFile(a, nodes)
	images, err := image.OpenStore(a.path("images")) // sweeps what killed imports left
	if err != nil {
		return fmt.Errorf("serve: image store: %w", err)
	}
	if removed, _, err := overlay.SweepBuilt(a.path("overlays-built")); err != nil {
		a.log.Warn("sweeping temporary archives of killed overlay builds", "dir", a.path("overlays-built"), "err", err)
	} else if len(removed) > 0 {
		a.log.Info("removed temporary archives of killed overlay builds", "dir", a.path("overlays-built"), "count", len(removed))
	}
	srvIP := ""
	if addr.IsValid() {
		srvIP = addr.String()
	}
	agentBin, found := agentPath(cfg.Agent)
	if !found {
		a.log.Warn("no node agent binary: nodes with the wwclient overlay cannot get their system overlay until it is built",
			"expected", agentBin, "build", "CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "+agentBin+" ./cmd/wwboot-agent",
			"or", "set agent: in wwboot.conf")
	}
	srvInfo := templateServer(cfg, a.root, srvIP, netmask, agentBin)
	overlays, err := overlay.New(overlay.Options{
		SiteDir:        a.path("overlays"),
		KeyDir:         a.path("keys"),
		SharedHostKeys: cfg.SharedHostKeys,
		Server:         srvInfo,
		ImageRoot: func(name string) string {
			m, err := images.Lookup(context.Background(), name)
			if err != nil {
				return ""
			}
			return m.Root
		},
		Log: a.log,
	})
	if err != nil {
		return fmt.Errorf("serve: overlays: %w", err)
	}
	scripts, err := ipxe.New(ipxe.Options{Dir: a.path("ipxe"), Funcs: sprig.TxtFuncMap(), Logger: a.log})
	if err != nil {
		return fmt.Errorf("serve: iPXE templates: %w", err)
	}
	binaries := tftp.FindIPXEBinaries(tftp.DebianIPXEDir)
	for fw, p := range ipxe.LocateAll() {
		if _, ok := binaries[ipxe.TFTPName(fw)]; !ok {
			binaries[ipxe.TFTPName(fw)] = p
		}
	}
	// Warewulf's DHCP template hands out "/warewulf/" and the base name of
	// its iPXE binary for the architecture (its defaults: undionly.kpxe,
	// ipxe-snponly-x86_64.efi, arm64-efi/snponly.efi); serve the same
	// binaries under those names for sites whose DHCP server keeps it.
	for fw, name := range map[ipxe.Firmware]string{ipxe.BIOS: "undionly.kpxe", ipxe.EFIX8664: "ipxe-snponly-x86_64.efi", ipxe.EFIARM64: "snponly.efi"} {
		if p, ok := binaries[ipxe.TFTPName(fw)]; ok {
			binaries["warewulf/"+name] = p
		}
	}
	if len(binaries) == 0 {
		a.log.Warn("no iPXE binaries found (install Debian's ipxe package, or put them in ROOT/tftp); PXE firmware cannot boot", "dirs", ipxe.DefaultDirs())
	}
	boot, err := tftp.OpenBootFS(a.root, binaries)
	if err != nil {
		return fmt.Errorf("serve: TFTP tree: %w", err)
	}
	defer boot.Close()

	parts, err := a.newAPIParts(cfg, inv, images, overlays)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var ifaces []string
	if cfg.Interface != "" {
		ifaces = []string{cfg.Interface}
	}
	var pools []*dhcp.Pool
	if start, end, ok, _ := cfg.dhcpRange(); ok {
		mask := net.IPMask(net.ParseIP(netmask).To4())
		if netmask == "" {
			return errors.New("serve: a dynamic range needs the server's netmask: pass --interface so it can be read")
		}
		pool, err := dhcp.NewPool(dhcp.PoolConfig{
			Start: start, End: end, Netmask: mask,
			LeaseFile: a.path("dhcp.leases"),
			Reserver:  provision.DHCPHosts(inv).(dhcp.Reserver),
			Logger:    a.log, // damaged lease lines are dropped with a warning
		})
		if err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		pools = append(pools, pool)
	}
	admin, err := cfg.admin(a.path(adminTokenFile))
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	agentTLS, err := openAgentTLS(a, cfg)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	listen, _, _ := parseListen(cfg.Listen) // checked by serverAddr
	binds, tftpAddr := bindAddrs(listen, loopbackUp())
	srv, err := provision.NewServer(provision.ServerConfig{
		Options: provision.Options{
			Inventory: inv, Images: images, Overlays: overlays, Scripts: scripts, BootFS: boot,
			InsecurePorts: !cfg.Secure, Registry: reg, Logger: a.log, Events: parts.bus,
			Admin: admin, SystemSecrets: cfg.SystemSecrets, AgentTLS: agentTLS,
		},
		AgentTLSAddr:         ":" + strconv.Itoa(cfg.AgentTLSPort),
		Middleware:           parts.api.Wrap,
		Addr:                 addr,
		HTTPAddr:             ":" + strconv.Itoa(cfg.HTTPPort),
		BindAddrs:            binds,
		TFTPAddr:             tftpAddr,
		Interfaces:           ifaces,
		DHCP:                 mode,
		Discoverer:           &provision.Discovery{Store: inv},
		DHCPPools:            pools,
		TFTP:                 cfg.TFTP,
		RouterAdvertisements: ra && cfg.Interface != "",
	})
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if err := srv.Listen(); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	parts.run(ctx)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			if err := srv.Handler().Reload(); err != nil {
				a.log.Error("reloading iPXE templates", "err", err)
			} else {
				a.log.Info("iPXE templates reloaded")
			}
		}
	}()
	bound := "every address (listen: is empty)"
	if len(binds) > 0 {
		bound = fmt.Sprint(binds)
	}
	a.log.Info("wwboot serve", "root", a.root, "server_address", srvIP, "bound", bound, "interface", cfg.Interface, "dhcp", cfg.DHCP,
		"agent_tls", cfg.AgentTLS, "tftp", cfg.TFTP, "http", fmt.Sprint(srv.HTTPAddrs()), "secure", cfg.Secure, "ipxe_binaries", len(binaries))
	return srv.Serve(ctx)
}

// parseListen reads wwboot.conf's listen: (or --listen): one IPv4 address,
// which the listeners then bind (specific true); "", "0.0.0.0" or "::" mean
// every address (an invalid Addr, specific false).
func parseListen(s string) (addr netip.Addr, specific bool, err error) {
	if s == "" {
		return addr, false, nil
	}
	a, err := netip.ParseAddr(s)
	switch {
	case err == nil && a.IsUnspecified():
		return addr, false, nil
	case err != nil || !a.Is4():
		return addr, false, fmt.Errorf("listen: %q: give one IPv4 address of this server on the cluster network (or leave it empty to bind every address)", s)
	}
	return a, true, nil
}

// bindAddrs returns what HTTP and the agents' TLS port bind
// (provision.ServerConfig.BindAddrs) and TFTP's address for the listen
// address: nothing and ":69" (every address) when listen is invalid; else
// listen and, when loopback is up, 127.0.0.1 — so that wwboot status, node
// status and the API clients, whose default is http://127.0.0.1:9873, keep
// working on the server — and listen:69 (PXE firmware asks the next-server,
// which is listen).
func bindAddrs(listen netip.Addr, loopback bool) ([]netip.Addr, string) {
	if !listen.IsValid() {
		return nil, ":69"
	}
	binds := []netip.Addr{listen}
	if lo := netip.AddrFrom4([4]byte{127, 0, 0, 1}); loopback && listen != lo {
		binds = append(binds, lo)
	}
	return binds, netip.AddrPortFrom(listen, 69).String()
}

// loopbackUp says whether an up loopback interface carries 127.0.0.1 (a
// fresh network namespace has lo down, where binding it would fail).
func loopbackUp() bool {
	ifs, err := net.Interfaces()
	if err != nil {
		return false
	}
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagLoopback == 0 || ifi.Flags&net.FlagUp == 0 {
			continue
		}
		as, _ := ifi.Addrs()
		for _, a := range as {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.Equal(net.IPv4(127, 0, 0, 1)) {
				return true
			}
		}
	}
	return false
}

// serverAddr works out the server's address on the cluster network and its
// netmask: --listen, else the first IPv4 address of --interface.
func serverAddr(cfg serveConfig) (netip.Addr, string, error) {
	addr, _, err := parseListen(cfg.Listen)
	if err != nil {
		return addr, "", fmt.Errorf("serve: %w", err)
	}
	if cfg.Interface == "" {
		if cfg.DHCP != "off" {
			return addr, "", errors.New("serve: DHCP needs the cluster network interface: set interface in wwboot.conf or pass --interface IF (or --dhcp off)")
		}
		return addr, "", nil
	}
	ifi, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return addr, "", fmt.Errorf("serve: interface %q: %w", cfg.Interface, err)
	}
	as, err := ifi.Addrs()
	if err != nil {
		return addr, "", fmt.Errorf("serve: interface %q: %w", cfg.Interface, err)
	}
	var first netip.Prefix
	for _, a := range as {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipn.IP)
		if !ok || !ip.Unmap().Is4() {
			continue
		}
		ones, _ := ipn.Mask.Size()
		p := netip.PrefixFrom(ip.Unmap(), ones)
		if !first.IsValid() {
			first = p
		}
		if addr.IsValid() && p.Addr() == addr {
			return addr, net.IP(ipn.Mask).String(), nil
		}
	}
	if addr.IsValid() {
		return addr, "", nil
	}
	if !first.IsValid() {
		return addr, "", fmt.Errorf("serve: interface %s has no IPv4 address: give it one, or pass --listen IP", cfg.Interface)
	}
	return first.Addr(), net.IP(net.CIDRMask(first.Bits(), 32)).String(), nil
}

// openAgentTLS opens (creating on first use) the cluster CA in ROOT/tls and
// the nodes' enrollment records when wwboot.conf has agent tls: true; nil
// otherwise.
func openAgentTLS(a *app, cfg serveConfig) (*provision.AgentTLS, error) {
	if !cfg.AgentTLS {
		return nil, nil
	}
	ca, err := openCA(a)
	if err != nil {
		return nil, err
	}
	return provision.NewAgentTLS(ca, cfg.AgentTLSPort, a.log)
}

// openCA opens the cluster CA in ROOT/tls, creating it on first use; it is
// named after the server's host name.
func openCA(a *app) (*provision.CA, error) {
	host, _ := os.Hostname()
	return provision.OpenCA(a.path("tls"), host, time.Now())
}
