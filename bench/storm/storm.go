// Package storm simulates a boot storm against a real wwboot server: N nodes
// go through the whole chain the way PXE firmware and iPXE do it, all at
// once, and the simulator reports what failed and how long it took (issue 11
// item 12).
//
// Per node, in order:
//
//  1. PXE ROM: DHCPDISCOVER and DHCPREQUEST with option 60 PXEClient, 93
//     (architecture 0, BIOS), 94 and 97, then TFTP of the boot file the ACK
//     names (blksize 1468, tsize), checked against its tsize.
//  2. iPXE: DHCPDISCOVER and DHCPREQUEST again with user class (77) "iPXE"
//     and option 175; the ACK's boot file is the script URL.
//  3. iPXE over one keep-alive HTTP connection from an unprivileged port of
//     the node's address: the script, then every kernel and initrd URL in it
//     (kernel, image, system and runtime overlay). A 403 on the runtime
//     overlay is what secure mode answers iPXE, as the script allows.
//  4. The node agent, from a privileged port (512-1023) of the node's
//     address: GET /overlay/runtime/{mac} (must be 200), then a long-poll
//     GET ?wait=W with If-None-Match (304 or 200) while POST /agent/{mac}
//     reports "up". With Config.TLSURL (the server's agent TLS channel),
//     the agent first enrolls (POST /agent/enroll/{mac} with a P-256
//     certificate request, from the privileged port), then does the three
//     requests over TLS with its certificate.
//
// A node has everything when its heartbeat was taken and its long-poll
// returned. Unknown machines (MACs not in the inventory) only send DHCP
// DISCOVERs at the PXE ROM's cadence for as long as the known nodes boot.
//
// All DHCP traffic goes through one socket on port 68 with the broadcast
// flag set, so replies come back by broadcast and are matched by xid; a
// node's own address must be local to the machine the simulator runs on
// (the harness routes the whole node range to its namespace's loopback).
//
// Retries: DHCP retransmits after 1, 2, 4, 8, 8... s (iPXE's and the PXE
// ROM's doubling) until DHCPTimeout; TFTP retries a block 5 times; each HTTP
// fetch is tried up to 3 times, as the built-in script does. A node that
// exhausts them fails, and the report says where.
package storm

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/pin/tftp/v3"
	"golang.org/x/sys/unix"
)

// Node is one simulated machine.
type Node struct {
	// MAC is its Ethernet address.
	MAC net.HardwareAddr
	// Addr is the address the inventory gives it (DHCP must offer it).
	Addr netip.Addr
}

// Config is one storm.
type Config struct {
	// Interface is the client-side interface DHCP is sent on (SO_BINDTODEVICE).
	Interface string
	// Nodes are the machines in the inventory.
	Nodes []Node
	// Unknown are MACs not in the inventory: they send DISCOVERs only.
	Unknown []net.HardwareAddr
	// Ramp spreads the power-on of the nodes uniformly over this time; 0
	// starts them all at once.
	Ramp time.Duration
	// DHCPTimeout is how long a node keeps retransmitting one DHCP
	// exchange before it fails; default 120s.
	DHCPTimeout time.Duration
	// HTTPTimeout bounds one HTTP fetch; default 120s.
	HTTPTimeout time.Duration
	// Wait is the agent's long-poll wait in seconds (?wait=); default 5.
	Wait int
	// Deadline ends the storm; nodes not done by then fail. Default 30m.
	Deadline time.Duration
	// Boots is how many times a node tries the whole chain: a node whose
	// boot fails (a TFTP error such as "server busy" ends a PXE ROM's boot;
	// the built-in script reboots after its retries) reboots after
	// RebootDelay (±25 %) and starts over at PXE DHCP, as nodes set to boot
	// from the network in a loop do. Default 1: no reboot.
	Boots int
	// RebootDelay is the time from a failed boot to the next DHCPDISCOVER
	// (firmware start-up included); default 30s.
	RebootDelay time.Duration
	// TLSURL is the server's agent TLS channel (https://SERVER:9874), ""
	// when the server has agent tls: false; CAs then holds the cluster CA.
	TLSURL string
	CAs    *x509.CertPool
}

// Stage names, in the order a node goes through them.
const (
	StagePXEDHCP  = "pxe-dhcp"
	StageTFTP     = "tftp"
	StageIPXEDHCP = "ipxe-dhcp"
	StageHTTP     = "http"
	StageAgent    = "agent"
	// StageLongPoll is the agent's first long-poll returning (after Wait
	// seconds, or earlier if the overlay changed); it is checked but not
	// part of "has everything".
	StageLongPoll = "longpoll"
)

// Report is what a storm measured. Durations are in seconds since the
// storm started, byte counts are payload bytes the nodes received.
type Report struct {
	Nodes   int `json:"nodes"`
	Unknown int `json:"unknown"`
	Done    int `json:"done"`
	Failed  int `json:"failed"`
	// Failures counts failed boots by the stage they failed in (a node
	// that reboots and then boots counts once here and is Done); Reboots
	// counts the reboots; Errors holds the first 5 errors of each stage.
	Failures map[string]int `json:"failures,omitempty"`
	Reboots  int64          `json:"reboots"`
	Errors   []string       `json:"errors,omitempty"`
	// AllDone is the time until the last node had everything: its runtime
	// overlay from the agent and its heartbeat taken. Elapsed is the whole
	// storm, long-polls included.
	AllDone float64 `json:"all_done_s"`
	Elapsed float64 `json:"elapsed_s"`
	// StageP50, StageP99 and StageMax are per-stage completion times of
	// the nodes (seconds since the storm started).
	StageP50 map[string]float64 `json:"stage_p50_s"`
	StageP99 map[string]float64 `json:"stage_p99_s"`
	StageMax map[string]float64 `json:"stage_max_s"`
	// TFTPBytes, HTTPBytes are the bytes received over TFTP and HTTP.
	TFTPBytes int64 `json:"tftp_bytes"`
	HTTPBytes int64 `json:"http_bytes"`
	// BytesPerSec is (TFTPBytes+HTTPBytes)/AllDone.
	BytesPerSec float64 `json:"bytes_per_s"`
	// DHCPSent counts DHCP packets sent (retransmissions included) by
	// known nodes and unknown machines; DHCPRetransmits the known nodes'
	// retransmissions.
	DHCPSent        int64 `json:"dhcp_sent"`
	DHCPRetransmits int64 `json:"dhcp_retransmits"`
	UnknownSent     int64 `json:"unknown_dhcp_sent"`
	UnknownAnswered int64 `json:"unknown_dhcp_answered"`
	// StrayReplies counts replies to known nodes that no exchange waited
	// for any more (answers to retransmissions that came late).
	StrayReplies int64 `json:"stray_replies"`
	// HTTPRetries counts HTTP fetches tried again; RuntimeRefused counts
	// iPXE's runtime overlay requests answered 403 (secure mode).
	HTTPRetries    int64 `json:"http_retries"`
	RuntimeRefused int64 `json:"runtime_refused_ipxe"`
}

type storm struct {
	cfg     Config
	dhcp    *dhcpClient
	start   time.Time
	mu      sync.Mutex
	stages  map[string][]float64
	fails   map[string]int
	errs    []string
	tftpB   atomic.Int64
	httpB   atomic.Int64
	retries atomic.Int64
	refused atomic.Int64
	rexmit  atomic.Int64
	unkSent atomic.Int64
	reboots atomic.Int64
}

// Run runs the storm until every node is done or has failed, and reports.
// It returns an error only if the storm could not start (the DHCP socket).
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.DHCPTimeout <= 0 {
		cfg.DHCPTimeout = 120 * time.Second
	}
	if cfg.HTTPTimeout <= 0 {
		cfg.HTTPTimeout = 120 * time.Second
	}
	if cfg.Wait <= 0 {
		cfg.Wait = 5
	}
	if cfg.Deadline <= 0 {
		cfg.Deadline = 30 * time.Minute
	}
	if cfg.Boots <= 0 {
		cfg.Boots = 1
	}
	if cfg.RebootDelay <= 0 {
		cfg.RebootDelay = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Deadline)
	defer cancel()
	dc, err := newDHCPClient(cfg.Interface, cfg.Unknown)
	if err != nil {
		return nil, err
	}
	defer dc.close()
	s := &storm{cfg: cfg, dhcp: dc, start: time.Now(), stages: map[string][]float64{}, fails: map[string]int{}}

	uctx, stopUnknown := context.WithCancel(ctx)
	var unk sync.WaitGroup
	for _, mac := range cfg.Unknown {
		unk.Add(1)
		go func() {
			defer unk.Done()
			s.unknown(uctx, mac)
		}()
	}
	var wg sync.WaitGroup
	var done atomic.Int64
	for i, n := range cfg.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if cfg.Ramp > 0 {
				select {
				case <-time.After(time.Duration(float64(cfg.Ramp) * float64(i) / float64(len(cfg.Nodes)))):
				case <-ctx.Done():
				}
			}
			for try := 1; ; try++ {
				stage, err := s.boot(ctx, n)
				if err == nil {
					done.Add(1)
					return
				}
				s.fail(stage, n, err)
				if try >= cfg.Boots || ctx.Err() != nil {
					return
				}
				s.reboots.Add(1)
				d := cfg.RebootDelay * time.Duration(75+rand.IntN(51)) / 100
				select {
				case <-time.After(d):
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(s.start)
	stopUnknown()
	unk.Wait()

	r := &Report{Nodes: len(cfg.Nodes), Unknown: len(cfg.Unknown), Done: int(done.Load()),
		Failures: s.fails, Errors: s.errs, Elapsed: elapsed.Seconds(), Reboots: s.reboots.Load(),
		StageP50: map[string]float64{}, StageP99: map[string]float64{}, StageMax: map[string]float64{},
		TFTPBytes: s.tftpB.Load(), HTTPBytes: s.httpB.Load(),
		DHCPSent: dc.sent.Load(), DHCPRetransmits: s.rexmit.Load(), UnknownSent: s.unkSent.Load(),
		UnknownAnswered: dc.unkAns.Load(), StrayReplies: dc.strays.Load(), HTTPRetries: s.retries.Load(), RuntimeRefused: s.refused.Load()}
	r.Failed = r.Nodes - r.Done
	for st, ts := range s.stages {
		sort.Float64s(ts)
		r.StageP50[st] = ts[len(ts)/2]
		r.StageP99[st] = ts[min(len(ts)-1, len(ts)*99/100)]
		r.StageMax[st] = ts[len(ts)-1]
	}
	r.AllDone = r.StageMax[StageAgent]
	if r.AllDone == 0 {
		r.AllDone = elapsed.Seconds()
	}
	r.BytesPerSec = float64(r.TFTPBytes+r.HTTPBytes) / r.AllDone
	return r, nil
}

func (s *storm) mark(stage string) {
	t := time.Since(s.start).Seconds()
	s.mu.Lock()
	s.stages[stage] = append(s.stages[stage], t)
	s.mu.Unlock()
}

func (s *storm) fail(stage string, n Node, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fails[stage]++
	if s.fails[stage] <= 5 { // the first few of each stage
		s.errs = append(s.errs, fmt.Sprintf("%s (%s) at %.1fs in %s: %v", n.MAC, n.Addr, time.Since(s.start).Seconds(), stage, err))
	}
}

func hexhyp(mac net.HardwareAddr) string { return strings.ReplaceAll(mac.String(), ":", "-") }

// boot takes one node through the chain; on failure it names the stage.
func (s *storm) boot(ctx context.Context, n Node) (string, error) {
	// PXE ROM.
	ack, err := s.lease(ctx, n, false)
	if err != nil {
		return StagePXEDHCP, err
	}
	s.mark(StagePXEDHCP)
	if ack.BootFileName == "" || ack.ServerIPAddr.IsUnspecified() {
		return StagePXEDHCP, fmt.Errorf("ACK without boot file or next-server: %s", ack.Summary())
	}
	if err := s.tftp(ctx, n, netip.AddrFrom4([4]byte(ack.ServerIPAddr.To4())), ack.BootFileName); err != nil {
		return StageTFTP, err
	}
	s.mark(StageTFTP)

	// iPXE.
	ack, err = s.lease(ctx, n, true)
	if err != nil {
		return StageIPXEDHCP, err
	}
	s.mark(StageIPXEDHCP)
	script := strings.ReplaceAll(ack.BootFileName, "${mac:hexhyp}", hexhyp(n.MAC))
	if !strings.HasPrefix(script, "http://") {
		return StageIPXEDHCP, fmt.Errorf("iPXE got boot file %q, not a script URL", ack.BootFileName)
	}
	base, err := s.ipxe(ctx, n, script)
	if err != nil {
		return StageHTTP, err
	}
	s.mark(StageHTTP)

	// The node agent.
	return s.agent(ctx, n, base)
}

// pxeOptions are what a BIOS PXE ROM sends (and iPXE adds 77 and 175).
func pxeOptions(n Node, ipxe bool) []dhcpv4.Modifier {
	guid := append([]byte{0}, make([]byte, 16)...)
	copy(guid[11:], n.MAC)
	mods := []dhcpv4.Modifier{
		dhcpv4.WithBroadcast(true),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithGeneric(dhcpv4.OptionClientSystemArchitectureType, []byte{0, 0}),
		dhcpv4.WithGeneric(dhcpv4.OptionClientNetworkInterfaceIdentifier, []byte{1, 2, 1}),
		dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, guid),
		dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionBootfileName),
	}
	if ipxe {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE")),
			dhcpv4.WithGeneric(dhcpv4.GenericOptionCode(175), []byte{0x13, 1, 1})) // 175.19 (PXEEXT) = 1
	}
	return mods
}

// lease does DISCOVER/OFFER/REQUEST/ACK for n and checks the address.
func (s *storm) lease(ctx context.Context, n Node, ipxe bool) (*dhcpv4.DHCPv4, error) {
	d, err := dhcpv4.NewDiscovery(n.MAC, pxeOptions(n, ipxe)...)
	if err != nil {
		return nil, err
	}
	offer, err := s.dhcp.exchange(ctx, d, dhcpv4.MessageTypeOffer, s.cfg.DHCPTimeout, &s.rexmit)
	if err != nil {
		return nil, fmt.Errorf("DISCOVER: %w", err)
	}
	if got, _ := netip.AddrFromSlice(offer.YourIPAddr.To4()); got != n.Addr {
		return nil, fmt.Errorf("offered %v, the inventory says %v", offer.YourIPAddr, n.Addr)
	}
	r, err := dhcpv4.NewRequestFromOffer(offer, pxeOptions(n, ipxe)...)
	if err != nil {
		return nil, err
	}
	ack, err := s.dhcp.exchange(ctx, r, dhcpv4.MessageTypeAck, s.cfg.DHCPTimeout, &s.rexmit)
	if err != nil {
		return nil, fmt.Errorf("REQUEST: %w", err)
	}
	return ack, nil
}

// unknown is a machine outside the inventory: a PXE ROM that sends
// DISCOVERs at 4, 8, 16, 32 s and then starts over, until ctx ends.
func (s *storm) unknown(ctx context.Context, mac net.HardwareAddr) {
	n := Node{MAC: mac}
	for ctx.Err() == nil {
		for _, wait := range []time.Duration{4, 8, 16, 32} {
			d, err := dhcpv4.NewDiscovery(mac, pxeOptions(n, false)...)
			if err != nil {
				return
			}
			s.dhcp.send(d)
			s.unkSent.Add(1)
			select {
			case <-time.After(wait * time.Second / 4 * time.Duration(1+rand.IntN(4))):
			case <-ctx.Done():
				return
			}
		}
	}
}

// tftp fetches file from server like a PXE ROM, checking the size.
func (s *storm) tftp(ctx context.Context, n Node, server netip.Addr, file string) error {
	c, err := tftp.NewClient(netip.AddrPortFrom(server, 69).String())
	if err != nil {
		return err
	}
	c.SetBlockSize(1468)
	c.SetTimeout(2 * time.Second)
	c.SetRetries(5)
	c.RequestTSize(true)
	var last error
	for range 3 {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wt, err := c.Receive(file, "octet")
		if err != nil {
			last = err
			continue
		}
		want, hasSize := wt.(tftp.IncomingTransfer).Size()
		got, err := wt.WriteTo(io.Discard)
		if err != nil {
			last = err
			continue
		}
		s.tftpB.Add(got)
		if hasSize && got != want {
			return fmt.Errorf("TFTP %s: got %d bytes, tsize said %d", file, got, want)
		}
		return nil
	}
	return fmt.Errorf("TFTP %s: %w", file, last)
}

// httpClient returns a client that connects from the node's address, from
// an unprivileged port (iPXE) or a privileged one (the agent).
func (s *storm) httpClient(n Node, privileged bool, conns int) *http.Client {
	local := n.Addr
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if !privileged {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: local.AsSlice()}, Timeout: 30 * time.Second}
			return d.DialContext(ctx, network, addr)
		}
		start := rand.IntN(512)
		var last error
		for i := range 512 {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: local.AsSlice(), Port: 512 + (start+i)%512}, Timeout: 30 * time.Second}
			c, err := d.DialContext(ctx, network, addr)
			if err == nil || !(errors.Is(err, syscall.EADDRINUSE) || errors.Is(err, syscall.EADDRNOTAVAIL)) {
				return c, err
			}
			last = err
		}
		return nil, last
	}
	return &http.Client{Transport: &http.Transport{DialContext: dial, MaxConnsPerHost: conns, MaxIdleConnsPerHost: conns,
		DisableCompression: true, IdleConnTimeout: 30 * time.Second}}
}

// enroll gets the node's certificate as the agent does (POST
// /agent/enroll/{mac} with a certificate request, over c), and returns a
// client for the TLS channel with it, from the node's address.
func (s *storm) enroll(ctx context.Context, c *http.Client, n Node, base string) (*http.Client, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	if err != nil {
		return nil, err
	}
	csr, err := x509.CreateCertificateRequest(crand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: n.MAC.String()}}, key)
	if err != nil {
		return nil, err
	}
	body := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})
	var chain []byte
	for try := range 3 {
		if try > 0 {
			s.retries.Add(1)
			time.Sleep(time.Second)
		}
		rctx, cancel := context.WithTimeout(ctx, s.cfg.HTTPTimeout)
		req, _ := http.NewRequestWithContext(rctx, http.MethodPost, base+"/agent/enroll/"+hexhyp(n.MAC), bytes.NewReader(body))
		resp, err2 := c.Do(req)
		if err2 == nil {
			chain, err2 = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err2 == nil && resp.StatusCode != http.StatusOK {
				err2 = fmt.Errorf("enroll: %s: %s", resp.Status, bytes.TrimSpace(chain))
			}
		}
		cancel()
		if err = err2; err == nil {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(chain, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	tc := s.httpClient(n, false, 2)
	tc.Transport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: s.cfg.CAs, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	return tc, nil
}

// get fetches url into io.Discard, up to 3 tries; it returns the status of
// the last answer and the bytes received.
func (s *storm) get(ctx context.Context, c *http.Client, url string, hdr http.Header) (*http.Response, []byte, error) {
	var last error
	for try := range 3 {
		if try > 0 {
			s.retries.Add(1)
			select {
			case <-time.After(time.Duration(try) * time.Second):
			case <-ctx.Done():
				return nil, nil, ctx.Err()
			}
		}
		rctx, cancel := context.WithTimeout(ctx, s.cfg.HTTPTimeout)
		req, err := http.NewRequestWithContext(rctx, http.MethodGet, url, nil)
		if err != nil {
			cancel()
			return nil, nil, err
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		resp, err := c.Do(req)
		if err != nil {
			cancel()
			last = err
			continue
		}
		var body []byte
		if strings.Contains(url, "/ipxe/") {
			body, err = io.ReadAll(resp.Body)
		} else {
			var n int64
			n, err = io.Copy(io.Discard, resp.Body)
			s.httpB.Add(n)
		}
		resp.Body.Close()
		cancel()
		s.httpB.Add(int64(len(body)))
		if err != nil {
			last = err
			continue
		}
		if resp.StatusCode >= 500 {
			last = fmt.Errorf("GET %s: %s", url, resp.Status)
			continue
		}
		return resp, body, nil
	}
	return nil, nil, last
}

// ipxe fetches the script and everything it loads; it returns the base
// URL (scheme and host) for the agent.
func (s *storm) ipxe(ctx context.Context, n Node, script string) (string, error) {
	c := s.httpClient(n, false, 1) // iPXE: one keep-alive connection
	defer c.CloseIdleConnections()
	resp, body, err := s.get(ctx, c, script, nil)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK || !bytes.HasPrefix(body, []byte("#!ipxe")) {
		return "", fmt.Errorf("script %s: %s: %.80q", script, resp.Status, body)
	}
	var urls []string
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || (f[0] != "kernel" && f[0] != "initrd") {
			continue
		}
		for _, w := range f[1:] {
			if strings.HasPrefix(w, "http://") {
				urls = append(urls, w)
			}
		}
	}
	if len(urls) < 4 {
		return "", fmt.Errorf("script %s loads %d files, want kernel, image, system and runtime overlay:\n%s", script, len(urls), body)
	}
	for _, u := range urls {
		resp, _, err := s.get(ctx, c, u, nil)
		if err != nil {
			return "", err
		}
		switch {
		case resp.StatusCode == http.StatusOK:
		case resp.StatusCode == http.StatusForbidden && strings.Contains(u, "/overlay/runtime/"):
			s.refused.Add(1) // secure mode; the script boots on without it
		default:
			return "", fmt.Errorf("GET %s: %s", u, resp.Status)
		}
	}
	i := strings.Index(script[len("http://"):], "/")
	return script[:len("http://")+i], nil
}

// agent does what the node agent does after boot: fetch the runtime
// overlay, long-poll for changes, report "up".
func (s *storm) agent(ctx context.Context, n Node, base string) (string, error) {
	c := s.httpClient(n, true, 2)
	defer c.CloseIdleConnections()
	mac := hexhyp(n.MAC)
	if s.cfg.TLSURL != "" {
		tc, err := s.enroll(ctx, c, n, base)
		if err != nil {
			return StageAgent, err
		}
		defer tc.CloseIdleConnections()
		c, base = tc, s.cfg.TLSURL
	}
	resp, _, err := s.get(ctx, c, base+"/overlay/runtime/"+mac, nil)
	if err != nil {
		return StageAgent, err
	}
	if resp.StatusCode != http.StatusOK {
		return StageAgent, fmt.Errorf("runtime overlay: %s", resp.Status)
	}
	etag := resp.Header.Get("ETag")
	poll := make(chan error, 1)
	go func() {
		resp, _, err := s.get(ctx, c, fmt.Sprintf("%s/overlay/runtime/%s?wait=%d", base, mac, s.cfg.Wait), http.Header{"If-None-Match": {etag}})
		if err == nil && resp.StatusCode != http.StatusNotModified && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("long-poll: %s", resp.Status)
		}
		poll <- err
	}()
	var hb error
	for try := range 3 {
		if try > 0 {
			s.retries.Add(1)
			time.Sleep(time.Second)
		}
		rctx, cancel := context.WithTimeout(ctx, s.cfg.HTTPTimeout)
		req, _ := http.NewRequestWithContext(rctx, http.MethodPost, base+"/agent/"+mac,
			strings.NewReader(`{"state":"up","stage":"agent","reason":""}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode/100 != 2 {
				err = fmt.Errorf("heartbeat: %s", resp.Status)
			}
		}
		cancel()
		if hb = err; err == nil {
			break
		}
	}
	if hb != nil {
		return StageAgent, hb
	}
	s.mark(StageAgent)
	if err := <-poll; err != nil {
		return StageLongPoll, err
	}
	s.mark(StageLongPoll)
	return "", nil
}

// dhcpClient is the one DHCP socket every simulated machine shares.
type dhcpClient struct {
	conn    *net.UDPConn
	mu      sync.Mutex
	wait    map[dhcpv4.TransactionID]chan *dhcpv4.DHCPv4
	sent    atomic.Int64
	strays  atomic.Int64 // replies to known nodes nobody waits for (answers to retransmissions)
	unknown map[string]bool
	unkAns  atomic.Int64 // replies to unknown machines
	done    chan struct{}
}

func newDHCPClient(ifname string, unknown []net.HardwareAddr) (*dhcpClient, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1); serr != nil {
				return
			}
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20)
			if ifname != "" {
				serr = unix.BindToDevice(int(fd), ifname)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp4", "0.0.0.0:68")
	if err != nil {
		return nil, fmt.Errorf("storm: DHCP client socket on %s port 68: %w (run as root, no other DHCP client there)", ifname, err)
	}
	c := &dhcpClient{conn: pc.(*net.UDPConn), wait: map[dhcpv4.TransactionID]chan *dhcpv4.DHCPv4{}, done: make(chan struct{}),
		unknown: map[string]bool{}}
	for _, m := range unknown {
		c.unknown[string(m)] = true
	}
	go c.read()
	return c, nil
}

func (c *dhcpClient) close() {
	c.conn.Close()
	<-c.done
}

func (c *dhcpClient) read() {
	defer close(c.done)
	buf := make([]byte, 4096)
	for {
		n, _, err := c.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		m, err := dhcpv4.FromBytes(buf[:n])
		if err != nil || m.OpCode != dhcpv4.OpcodeBootReply {
			continue
		}
		if c.unknown[string(m.ClientHWAddr)] {
			c.unkAns.Add(1)
			continue
		}
		c.mu.Lock()
		ch := c.wait[m.TransactionID]
		c.mu.Unlock()
		if ch == nil {
			c.strays.Add(1)
			continue
		}
		select {
		case ch <- m:
		default:
		}
	}
}

func (c *dhcpClient) send(m *dhcpv4.DHCPv4) {
	c.sent.Add(1)
	_, _ = c.conn.WriteToUDPAddrPort(m.ToBytes(), netip.MustParseAddrPort("255.255.255.255:67"))
}

// exchange sends m until a reply of type want with its xid arrives,
// retransmitting after 1, 2, 4, 8, 8... s, for at most timeout.
func (c *dhcpClient) exchange(ctx context.Context, m *dhcpv4.DHCPv4, want dhcpv4.MessageType, timeout time.Duration, rexmit *atomic.Int64) (*dhcpv4.DHCPv4, error) {
	ch := make(chan *dhcpv4.DHCPv4, 4)
	c.mu.Lock()
	c.wait[m.TransactionID] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.wait, m.TransactionID)
		c.mu.Unlock()
	}()
	giveUp := time.After(timeout)
	wait := time.Second
	for try := 0; ; try++ {
		if try > 0 {
			rexmit.Add(1)
		}
		c.send(m)
		t := time.NewTimer(wait + time.Duration(rand.Int64N(int64(wait/4)+1)))
	recv:
		for {
			select {
			case r := <-ch:
				if r.MessageType() == want {
					t.Stop()
					return r, nil
				}
				if r.MessageType() == dhcpv4.MessageTypeNak {
					t.Stop()
					return nil, fmt.Errorf("NAK: %s", r.Message())
				}
			case <-t.C:
				break recv
			case <-giveUp:
				t.Stop()
				return nil, fmt.Errorf("no %s after %d sends in %v", want, try+1, timeout)
			case <-ctx.Done():
				t.Stop()
				return nil, ctx.Err()
			}
		}
		wait = min(2*wait, 8*time.Second)
	}
}

// Nodes returns n nodes with MACs 02:00:00:00:00:01 upwards and addresses
// from first upwards: the inventory the harness writes and the simulator
// boots agree through it.
func Nodes(n int, first netip.Addr) []Node {
	out := make([]Node, n)
	a := first
	for i := range out {
		k := i + 1
		out[i] = Node{MAC: net.HardwareAddr{0x02, 0, 0, byte(k >> 16), byte(k >> 8), byte(k)}, Addr: a}
		a = a.Next()
	}
	return out
}

// UnknownMACs returns n MACs (06:00:00:...) no inventory of Nodes has.
func UnknownMACs(n int) []net.HardwareAddr {
	out := make([]net.HardwareAddr, n)
	for i := range out {
		k := i + 1
		out[i] = net.HardwareAddr{0x06, 0, 0, byte(k >> 16), byte(k >> 8), byte(k)}
	}
	return out
}
