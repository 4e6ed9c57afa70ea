package provision

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wwboot/wwboot/dhcp"
	"github.com/wwboot/wwboot/ipxe"
	"github.com/wwboot/wwboot/tftp"
)

// DHCPMode says whether and how a Server answers DHCP.
type DHCPMode string

// DHCP modes.
const (
	DHCPOff   DHCPMode = "off"   // no DHCP: the site's DHCP server points nodes at wwboot
	DHCPFull  DHCPMode = "full"  // addresses from the inventory and boot information
	DHCPProxy DHCPMode = "proxy" // boot information only, beside the site's DHCP server
)

// ParseDHCPMode reads "full", "proxy" or "off" ("" means off).
func ParseDHCPMode(s string) (DHCPMode, error) {
	switch DHCPMode(s) {
	case DHCPFull, DHCPProxy, DHCPOff:
		return DHCPMode(s), nil
	case "":
		return DHCPOff, nil
	}
	return "", fmt.Errorf("dhcp mode %q: use full, proxy or off", s)
}

// DefaultAgentTLSPort is the default HTTPS port of the node agents' TLS
// channel (Warewulf's TLS port).
const DefaultAgentTLSPort = 9874

// DefaultDrainTimeout is how long Serve lets transfers under way finish
// after its context ends.
const DefaultDrainTimeout = 30 * time.Second

// ServerConfig configures a Server: the handler's Options plus the network
// services around it.
type ServerConfig struct {
	// Options configure the provisioning handler (inventory, images,
	// overlays, scripts, secure mode, metrics registry, logger).
	Options

	// Middleware, when set, wraps the Handler built from Options (for
	// access logs, authentication of /status, extra routes...); HTTP
	// serves what it returns.
	Middleware func(http.Handler) http.Handler

	// Addr is the server's address on the cluster network: DHCP's server
	// identifier and next-server. Invalid (zero) means the address of the
	// interface each DHCP request arrives on.
	Addr netip.Addr
	// HTTPAddr is the HTTP listen address; "" means ":9873" (all
	// addresses, Warewulf's port).
	HTTPAddr string
	// AgentTLSAddr is the HTTPS listen address of the node agents' TLS
	// channel, opened when Options.AgentTLS is set; "" means ":9874". It
	// serves the same routes as HTTP, within the same connection caps.
	AgentTLSAddr string
	// BindAddrs, when not empty, are the only local addresses HTTP and the
	// agents' TLS channel listen on: each address gets its own socket at
	// the port of HTTPAddr (and of AgentTLSAddr), whose host part is then
	// ignored. With port 0 the first address picks a free port and the
	// others take the same one. Give the cluster address and loopback
	// (127.0.0.1) so that clients on the server itself keep working;
	// duplicates are dropped. Empty: HTTPAddr and AgentTLSAddr as they are
	// (":9873" binds every address). TFTP listens on TFTPAddr alone.
	BindAddrs []netip.Addr
	// AgentTLSConfig is the HTTPS listener's TLS configuration; nil means
	// Options.AgentTLS.ServerConfig for Addr, BindAddrs, the host name and
	// loopback.
	AgentTLSConfig *tls.Config

	// Interfaces are the cluster network interfaces DHCP answers on and
	// router advertisements go out on.
	Interfaces []string
	// DHCP selects the DHCP mode; "" means off.
	DHCP DHCPMode
	// DHCPHandler, when set, replaces the policy built from the Inventory
	// (dhcp.NewPolicy over DHCPHosts(Inventory)).
	DHCPHandler dhcp.Handler
	// Discoverer, when set, gives unknown MACs that ask DHCP to nodes marked
	// discoverable (Discovery over a nodedb.Store does).
	Discoverer dhcp.Discoverer
	// DHCPPools are dynamic ranges for machines the inventory does not
	// know (full mode), so they reach the unknown-node script.
	DHCPPools []*dhcp.Pool
	// DHCPUnknown bounds the DHCP work done for MACs the inventory does
	// not know (discovery, pool); the zero value means dhcp's defaults.
	DHCPUnknown dhcp.UnknownLimit

	// TFTP serves the iPXE binaries over TFTP to PXE firmware.
	TFTP bool
	// TFTPAddr is the TFTP listen address; "" means ":69".
	TFTPAddr string
	// TFTPFS is the tree served over TFTP; nil means Options.BootFS.
	TFTPFS fs.FS
	// TFTPMaxTransfers bounds concurrent TFTP transfers (see
	// tftp.Server.MaxTransfers); 0 derives it when the server starts
	// listening: TFTPTransfersPerNode per node in the inventory, at least
	// tftp.DefaultMaxTransfers.
	TFTPMaxTransfers int

	// RouterAdvertisements answers IPv6 router solicitations on
	// Interfaces with an empty advertisement, so iPXE does not wait 15 s
	// for a router (see ipxe.RouterAdvertiser). It needs CAP_NET_RAW; a
	// failure to start it is logged, not fatal.
	RouterAdvertisements bool

	// HTTPLimits bounds HTTP connections overall and per client, cuts
	// clients that stop reading and sets the keep-alive timeout; the zero
	// value derives the overall cap from RLIMIT_NOFILE (see ConnLimits).
	HTTPLimits ConnLimits

	// DrainTimeout bounds how long Serve, once its context ends, waits for
	// transfers under way; 0 means DefaultDrainTimeout.
	DrainTimeout time.Duration
}

// Server runs the provisioning HTTP service, DHCP, TFTP and the router
// advertiser together. Create it with NewServer, then call Serve (Listen
// first to learn the addresses before serving).
type Server struct {
	cfg     ServerConfig
	log     *slog.Logger
	handler *Handler
	serve   http.Handler
	dhcpH   dhcp.Handler
	dhcpM   *dhcp.Metrics
	tftpM   *tftp.Metrics

	mu       sync.Mutex
	listened bool
	serving  bool
	hs       *http.Server
	httpLns  []net.Listener // one per bind address; the first holds the caps
	tlsLns   []net.Listener // the agents' HTTPS listeners, none without AgentTLS
	ts       *tftp.Server
	tconn    *net.UDPConn
	ds       *dhcp.Server
	dconns   []*dhcp.Conn
	ras      []*ipxe.RouterAdvertiser

	inner    context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	errc     chan error
	stopOnce sync.Once
	stopErr  error
	stopped  chan struct{}
}

// NewServer builds the handler and the services cfg asks for. It opens no
// socket; Listen or Serve do.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.DHCP == "" {
		cfg.DHCP = DHCPOff
	}
	if _, err := ParseDHCPMode(string(cfg.DHCP)); err != nil {
		return nil, fmt.Errorf("provision: %w", err)
	}
	if cfg.DHCP != DHCPOff && len(cfg.Interfaces) == 0 {
		return nil, errors.New("provision: DHCP needs the cluster network interface (ServerConfig.Interfaces; wwboot serve --interface)")
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = ":" + strconv.Itoa(dhcp.DefaultHTTPPort)
	}
	if cfg.TFTPAddr == "" {
		cfg.TFTPAddr = ":69"
	}
	if cfg.TFTPFS == nil {
		cfg.TFTPFS = cfg.BootFS
	}
	if cfg.TFTP && cfg.TFTPFS == nil {
		return nil, errors.New("provision: TFTP needs a tree to serve (ServerConfig.TFTPFS or Options.BootFS)")
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	s := &Server{cfg: cfg, log: cfg.Logger, stopped: make(chan struct{})}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	h, err := NewHandler(cfg.Options)
	if err != nil {
		return nil, err
	}
	s.handler, s.serve = h, h
	if cfg.Middleware != nil {
		s.serve = cfg.Middleware(h)
	}
	if cfg.DHCP != DHCPOff {
		if s.dhcpM, err = dhcp.NewMetrics(cfg.Registry); err != nil {
			return nil, fmt.Errorf("provision: DHCP metrics: %w", err)
		}
	}
	if cfg.TFTP {
		if s.tftpM, err = tftp.NewMetrics(cfg.Registry); err != nil {
			return nil, fmt.Errorf("provision: TFTP metrics: %w", err)
		}
	}
	s.inner, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Handler returns the provisioning handler (for its Status and Reload).
func (s *Server) Handler() *Handler { return s.handler }

// Registry returns the registry the metrics are on.
func (s *Server) Registry() *prometheus.Registry { return s.cfg.Registry }

// Listen opens every socket: HTTP, TFTP, DHCP and the router advertisers.
// On error it closes what it opened. Serve calls it if it was not called.
func (s *Server) Listen() (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listened {
		return nil
	}
	defer func() {
		if err != nil {
			s.closeSockets()
		}
	}()
	lns, err := listenTCP(s.cfg.HTTPAddr, s.cfg.BindAddrs)
	if err != nil {
		return fmt.Errorf("provision: HTTP: %w (another server on the port? set http port in wwboot.conf or --http-port)", err)
	}
	s.httpLns = lns
	lim := s.httpLimits()
	ll, err := newLimitListener(lns[0], lim.Max, lim.PerClient, lim.StallTimeout, s.log, s.cfg.Registry)
	if err != nil {
		return err
	}
	// Every socket counts against the same caps: a node's agent holds
	// one connection, on whichever address or port.
	s.httpLns[0] = ll
	for i := 1; i < len(lns); i++ {
		s.httpLns[i] = ll.share(lns[i])
	}
	if t := s.cfg.AgentTLS; t != nil {
		tc := s.cfg.AgentTLSConfig
		if tc == nil {
			hosts := []string{"localhost", "127.0.0.1", "::1"}
			if s.cfg.Addr.IsValid() {
				hosts = append(hosts, s.cfg.Addr.String())
			}
			for _, a := range s.cfg.BindAddrs {
				if !slices.Contains(hosts, a.WithZone("").String()) {
					hosts = append(hosts, a.WithZone("").String())
				}
			}
			if hn, err := os.Hostname(); err == nil {
				hosts = append(hosts, hn)
			}
			if tc, err = t.ServerConfig(hosts, time.Now()); err != nil {
				return fmt.Errorf("provision: agent TLS: %w", err)
			}
		}
		addr := s.cfg.AgentTLSAddr
		if addr == "" {
			addr = ":" + strconv.Itoa(DefaultAgentTLSPort)
		}
		tlns, err := listenTCP(addr, s.cfg.BindAddrs)
		if err != nil {
			return fmt.Errorf("provision: agent TLS: %w (another server on the port? set agent tls port in wwboot.conf)", err)
		}
		for _, tln := range tlns {
			s.tlsLns = append(s.tlsLns, tls.NewListener(ll.share(tln), tc))
		}
	}
	s.hs = &http.Server{
		Handler:           s.serve,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       lim.IdleTimeout,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	if s.cfg.TFTP {
		if s.tconn, err = tftp.ListenPacket(context.Background(), "udp4", s.cfg.TFTPAddr); err != nil {
			return fmt.Errorf("provision: TFTP: %w", err)
		}
		s.ts = &tftp.Server{FS: s.cfg.TFTPFS, Logger: s.log, Metrics: s.tftpM, MaxTransfers: s.cfg.TFTPMaxTransfers}
		if s.ts.MaxTransfers == 0 {
			// Every node of a storm transfers at once: queueing them
			// behind a fixed cap made 10,000 nodes wait past their
			// ROMs' patience (issue 11 item 12).
			s.ts.MaxTransfers = max(tftp.DefaultMaxTransfers, TFTPTransfersPerNode*s.nodeCount())
		}
		s.log.Info("TFTP transfer limit", "max", s.ts.MaxTransfers)
	}
	if s.cfg.DHCP != DHCPOff {
		h := s.cfg.DHCPHandler
		if h == nil {
			_, port, _ := net.SplitHostPort(s.httpLns[0].Addr().String())
			p, _ := strconv.ParseUint(port, 10, 16)
			mode := dhcp.Full
			if s.cfg.DHCP == DHCPProxy {
				mode = dhcp.Proxy
			}
			h, err = dhcp.NewPolicy(DHCPHosts(s.cfg.Inventory), dhcp.Config{
				Mode: mode, ServerAddr: s.cfg.Addr, HTTPPort: uint16(p), TFTP: s.cfg.TFTP,
				Pools: s.cfg.DHCPPools, Discoverer: s.cfg.Discoverer, Unknown: s.cfg.DHCPUnknown, Logger: s.log, Metrics: s.dhcpM,
			})
			if err != nil {
				return fmt.Errorf("provision: DHCP policy: %w", err)
			}
		}
		s.dhcpH = h
		if s.ds, err = dhcp.NewServer(h, dhcp.ServerConfig{
			Interfaces: s.cfg.Interfaces, Proxy: s.cfg.DHCP == DHCPProxy, Logger: s.log, Metrics: s.dhcpM,
		}); err != nil {
			return fmt.Errorf("provision: DHCP server: %w", err)
		}
		if s.dconns, err = s.ds.Listen(); err != nil {
			return fmt.Errorf("provision: DHCP: %w", err)
		}
	}
	if s.cfg.RouterAdvertisements {
		for _, ifname := range s.cfg.Interfaces {
			ra, err := ipxe.ListenRouterAdvertiser(ifname, s.log)
			if err != nil {
				s.log.Warn("IPv6 router advertiser not started; iPXE may wait about 15 s for a router before fetching its script",
					"interface", ifname, "err", err)
				continue
			}
			s.ras = append(s.ras, ra)
		}
	}
	s.listened = true
	return nil
}

// httpLimits fills in the defaults of the configured ConnLimits.
// nodeCount is how many nodes the inventory holds now (0 when it cannot
// say), for the caps derived from it.
func (s *Server) nodeCount() int {
	if sn, ok := s.cfg.Inventory.(Snapshotter); ok {
		if db, err := sn.Snapshot(context.Background()); err == nil {
			return db.Len()
		}
	}
	return 0
}

func (s *Server) httpLimits() ConnLimits {
	lim := s.cfg.HTTPLimits
	if lim.PerClient == 0 {
		lim.PerClient = DefaultPerClient
	}
	if lim.StallTimeout <= 0 {
		lim.StallTimeout = DefaultStallTimeout
	}
	if lim.IdleTimeout <= 0 {
		lim.IdleTimeout = DefaultIdleTimeout
	}
	if lim.Max > 0 {
		return lim
	}
	budget, nofile := fdBudget()
	nodes := s.nodeCount()
	lim.Max = min(budget, max(MinMaxConns, ConnsPerNode*nodes+MinMaxConns/8))
	if need := nodes + 64; need > lim.Max {
		s.log.Warn("too few file descriptors for one long-lived agent connection per node: raise the limit (LimitNOFILE= in the systemd unit, ulimit -n)",
			"nodes", nodes, "rlimit_nofile", nofile, "http_max_connections", lim.Max, "fds_wanted", 2*need+FDReserve)
	}
	s.log.Info("HTTP connection limits", "max", lim.Max, "per_client", lim.PerClient, "stall_timeout", lim.StallTimeout,
		"idle_timeout", lim.IdleTimeout, "rlimit_nofile", nofile)
	return lim
}

// listenTCP opens the TCP listeners of addr ("host:port"): addr itself when
// binds is empty, else one per address of binds at addr's port (port 0: the
// first picks a free port, the others take it). On error it closes what it
// opened; the error names the address that failed.
func listenTCP(addr string, binds []netip.Addr) ([]net.Listener, error) {
	if len(binds) == 0 {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, err
		}
		return []net.Listener{ln}, nil
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: %w", addr, err)
	}
	var lns []net.Listener
	seen := map[netip.Addr]bool{}
	for _, a := range binds {
		a = a.Unmap()
		if seen[a] {
			continue
		}
		seen[a] = true
		ln, err := net.Listen("tcp", net.JoinHostPort(a.String(), port))
		if err != nil {
			for _, l := range lns {
				_ = l.Close()
			}
			if errors.Is(err, syscall.EADDRNOTAVAIL) {
				return nil, fmt.Errorf("%w: %s is not an address of this host (yet): give an address of the cluster interface, or start after the network is up", err, a)
			}
			return nil, err
		}
		if port == "0" {
			_, port, _ = net.SplitHostPort(ln.Addr().String())
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

func (s *Server) closeSockets() {
	for _, ln := range s.httpLns {
		_ = ln.Close()
	}
	for _, ln := range s.tlsLns {
		_ = ln.Close()
	}
	if s.tconn != nil {
		_ = s.tconn.Close()
	}
	for _, c := range s.dconns {
		_ = c.Close()
	}
	for _, ra := range s.ras {
		_ = ra.Close()
	}
}

// HTTPAddr returns the address HTTP listens on (the first of BindAddrs's
// sockets), nil before Listen.
func (s *Server) HTTPAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.httpLns) == 0 {
		return nil
	}
	return s.httpLns[0].Addr()
}

// HTTPAddrs returns every address HTTP listens on, in BindAddrs's order;
// nil before Listen.
func (s *Server) HTTPAddrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return addrsOf(s.httpLns)
}

// AgentTLSAddr returns the address the agents' HTTPS listener listens on
// (the first of BindAddrs's sockets), nil without Options.AgentTLS or
// before Listen.
func (s *Server) AgentTLSAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.tlsLns) == 0 {
		return nil
	}
	return s.tlsLns[0].Addr()
}

// AgentTLSAddrs returns every address the agents' HTTPS listener listens
// on; nil without Options.AgentTLS or before Listen.
func (s *Server) AgentTLSAddrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return addrsOf(s.tlsLns)
}

func addrsOf(lns []net.Listener) []net.Addr {
	var as []net.Addr
	for _, ln := range lns {
		as = append(as, ln.Addr())
	}
	return as
}

// addrStrings returns the addresses of lns as strings, for logs.
func addrStrings(lns []net.Listener) []string {
	var ss []string
	for _, ln := range lns {
		ss = append(ss, ln.Addr().String())
	}
	return ss
}

// TFTPAddr returns the address TFTP listens on, nil without TFTP or before
// Listen.
func (s *Server) TFTPAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tconn == nil {
		return nil
	}
	return s.tconn.LocalAddr()
}

// TFTPMaxTransfers returns the TFTP transfer cap Listen set
// (ServerConfig.TFTPMaxTransfers, or the one derived from the inventory),
// 0 without TFTP or before Listen.
func (s *Server) TFTPMaxTransfers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ts == nil {
		return 0
	}
	return s.ts.MaxTransfers
}

// Serve runs every service until ctx ends or Shutdown is called, then
// drains: it stops accepting requests and waits up to DrainTimeout for
// transfers under way (HTTP downloads, TFTP transfers, DHCP requests in
// hand) before it returns. It returns nil after a clean stop, or the error
// of a service that failed (the others are then stopped too).
//
// Sockets belong to the network namespace of the thread that opens them:
// Listen's, and for TFTP's per-transfer sockets, the thread running Serve.
// To serve inside a namespace, call Listen and Serve on a thread locked into
// it (netlab.NS.Do in tests).
func (s *Server) Serve(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	s.mu.Lock()
	if s.serving {
		s.mu.Unlock()
		return errors.New("provision: Serve called twice")
	}
	s.serving = true
	s.errc = make(chan error, 4+len(s.ras)+len(s.httpLns)+len(s.tlsLns))
	s.mu.Unlock()

	select {
	case <-s.stopped:
		return http.ErrServerClosed
	default:
	}
	run := func(name string, fn func() error) {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := fn(); err != nil {
				s.errc <- fmt.Errorf("provision: %s: %w", name, err)
			}
		}()
	}
	for _, ln := range s.httpLns {
		run("HTTP", func() error {
			if err := s.hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	for _, ln := range s.tlsLns {
		run("HTTPS", func() error {
			if err := s.hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	if s.ds != nil {
		run("DHCP", func() error {
			if err := s.ds.Serve(s.inner, s.dconns...); err != nil && !errors.Is(err, dhcp.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	for _, ra := range s.ras {
		run("router advertiser", func() error { return ra.Serve(s.inner) })
	}
	if s.cfg.Events != nil {
		run("state watch", func() error { s.handler.WatchStates(s.inner, 0); return nil })
	}
	if s.cfg.AgentTLS != nil {
		// Certificates of nodes gone from the inventory die when the
		// server sees it, not at the next request.
		run("inventory watch", func() error { s.handler.WatchInventory(s.inner, 0); return nil })
	}
	tftpAddr := ""
	if s.tconn != nil {
		tftpAddr = s.tconn.LocalAddr().String()
	}
	s.log.Info("serving", "http", addrStrings(s.httpLns), "agent_tls", addrStrings(s.tlsLns), "tftp", tftpAddr, "dhcp", string(s.cfg.DHCP),
		"interfaces", s.cfg.Interfaces, "router_advertisements", len(s.ras))

	wait := make(chan error, 1)
	go func() { wait <- s.wait(ctx) }()
	if s.ts != nil {
		// TFTP opens a socket per transfer from the goroutine that runs
		// it: this one, so that an embedder calling Serve on a thread in
		// another network namespace gets them there too.
		if err := s.ts.Serve(s.inner, s.tconn); err != nil && !errors.Is(err, tftp.ErrServerClosed) && s.inner.Err() == nil {
			s.errc <- fmt.Errorf("provision: TFTP: %w", err)
		}
	}
	return <-wait
}

// wait blocks until ctx ends, Shutdown is called or a service fails, and
// then drains.
func (s *Server) wait(ctx context.Context) error {
	var failed error
	select {
	case <-ctx.Done():
		s.log.Info("stopping: draining transfers under way", "timeout", s.cfg.DrainTimeout)
	case <-s.stopped:
	case failed = <-s.errc:
		s.log.Error("a service failed; stopping the others", "err", failed)
	}
	dctx, cancel := context.WithTimeout(context.Background(), s.cfg.DrainTimeout)
	defer cancel()
	err := s.Shutdown(dctx)
	if failed != nil {
		return failed
	}
	return err
}

// Shutdown stops every service from taking new requests and waits until the
// requests under way are done or ctx ends; then it closes what is left and
// returns ctx's error. A Serve running returns once Shutdown is done.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() {
		s.mu.Lock()
		serving := s.serving
		s.mu.Unlock()
		if !serving {
			s.closeSockets()
			s.cancel()
			close(s.stopped)
			return
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		var errs []error
		stop := func(name string, fn func(context.Context) error) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := fn(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
					mu.Lock()
					errs = append(errs, fmt.Errorf("%s: %w", name, err))
					mu.Unlock()
				}
			}()
		}
		s.handler.StopWaiting() // held long-polls answer 304 now, rather than hold the drain
		stop("HTTP", func(ctx context.Context) error {
			err := s.hs.Shutdown(ctx)
			if err != nil {
				_ = s.hs.Close()
			}
			return err
		})
		if s.ts != nil {
			stop("TFTP", s.ts.Shutdown)
		}
		if s.ds != nil {
			stop("DHCP", s.ds.Shutdown)
		}
		wg.Wait()
		s.cancel() // the router advertisers, and anything still running
		for _, ra := range s.ras {
			_ = ra.Close()
		}
		// The services were told to stop; a handler that ignores its
		// context must not hold the stop past ctx.
		waited := make(chan struct{})
		go func() { s.wg.Wait(); close(waited) }()
		select {
		case <-waited:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("services still stopping: %w", ctx.Err()))
		}
		s.stopErr = errors.Join(errs...)
		close(s.stopped)
	})
	select {
	case <-s.stopped:
		return s.stopErr
	case <-ctx.Done():
		return ctx.Err()
	}
}
