package e2e

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/ipxe"
	"github.com/wwboot/wwboot/provision/netlab"
)

// Switches for bench/boot/ timing runs; the defaults are what wwboot does.
var (
	flagRA        = flag.Bool("ra", true, "answer IPv6 router solicitations (ipxe.RouterAdvertiser) so iPXE skips its IPv6 wait")
	flagPXEClient = flag.Bool("pxeclient", true, "send DHCP option 60 PXEClient to iPXE so it takes the first offer without waiting for ProxyDHCP")
	flagOnly      = flag.String("only", "", "boot only this firmware path (bios or uefi); default both plus the unknown node")
	flagConsole   = flag.Bool("console", false, "log each VM's whole console transcript, with times since power-on")
)

// The lab network: a bridge in a namespace the test creates.
const (
	serverIP   = "10.77.0.1"
	serverCIDR = "10.77.0.1/24"
	netmask    = "255.255.255.0"
	httpPort   = "9873"
	bridge     = "br0"
	// Kernel arguments every node gets: serial console, little kernel log
	// (each line costs time on the emulated UART), no reboot loop on panic.
	kernelArgs = "console=ttyS0,115200 quiet panic=-1"
)

// testNode is an inventory entry and the VM that boots as it.
type testNode struct {
	Name, MAC, IP string
	Firmware      firmware
	Tap           string
}

func inventory() []testNode {
	return []testNode{
		{Name: "n1", MAC: "52:54:00:77:00:01", IP: "10.77.0.11", Firmware: bios, Tap: "tap1"},
		{Name: "n2", MAC: "52:54:00:77:00:02", IP: "10.77.0.12", Firmware: uefi, Tap: "tap2"},
	}
}

// An unknown node: its MAC is in no inventory.
const unknownMAC = "52:54:00:77:00:99"

// Generous per-boot limits under TCG on a loaded 2-core machine (typical:
// BIOS 13 s, UEFI 24 s; add 16 s per iPXE when -ra=false).
func bootTimeout(fw firmware) time.Duration {
	if fw == uefi {
		return 240 * time.Second
	}
	return 150 * time.Second
}

var nodeLine = regexp.MustCompile(`WWBOOT-NODE hostname=(\S*) ip=(\S*) dev=(\S*) server=(\S*) runtime=(\S*) uptime=(\S*)`)

// TestBoot boots real VMs through both firmware paths and checks each node
// comes up as its inventory says.
func TestBoot(t *testing.T) {
	netlab.Require(t)
	requireTools(t, "qemu-system-x86_64", "dnsmasq")
	k := fetchKernel(t)

	lab := netlab.NewNS(t)
	lab.Bridge(bridge, netip.MustParsePrefix(serverCIDR))
	// A link-local address that needs no duplicate address detection, so
	// the router advertiser can answer from the first solicitation on.
	lab.IP("addr", "add", "fe80::1/64", "dev", bridge, "nodad")
	nodes := inventory()
	for _, n := range nodes {
		lab.Tap(n.Tap, bridge)
	}
	lab.Tap("tap9", bridge)

	root := buildRootTree(t, k)
	image := buildImageStandIn(t, root)
	inv := defineNodesStandIn(t, nodes)
	srv := serveStandIn(t, lab, k, image, inv)

	for _, n := range nodes {
		if *flagOnly != "" && *flagOnly != string(n.Firmware) {
			continue
		}
		t.Run(string(n.Firmware)+"-"+n.Name, func(t *testing.T) {
			res := boot(t, lab, vm{Firmware: n.Firmware, MAC: n.MAC, Tap: n.Tap, Timeout: bootTimeout(n.Firmware)})
			t.Logf("QEMU: %s", strings.Join(res.Cmdline, " "))
			logTimings(t, n.Firmware, res)
			if *flagConsole {
				t.Logf("console of %s:\n%s", n.Name, res.transcript())
			}
			line, ok := res.find(nodeLine)
			require.True(t, ok, "no WWBOOT-NODE line from %s\nconsole:\n%s", n.Name, res.transcript())
			m := nodeLine.FindStringSubmatch(line.Text)
			assert.Equal(t, n.Name, m[1], "hostname from the system overlay")
			assert.Equal(t, n.IP, m[2], "address from the system overlay, as configured")
			assert.Equal(t, "reachable", m[4], "the node reaches the server through its NIC driver")
			if n.Name == "n2" {
				// The stand-in refuses n2's runtime overlay, as a
				// secure-mode server refuses an unprivileged port: the
				// default script boots without it.
				assert.Equal(t, "absent", m[5], "runtime overlay refused, boot went on")
			} else {
				assert.Equal(t, "present", m[5], "runtime overlay loaded")
			}
			if _, bad := res.find(regexp.MustCompile(`WWBOOT-ERROR`)); bad {
				t.Errorf("errors on the console:\n%s", res.transcript())
			}
			srv.checkStages(t, n)
		})
	}
	if *flagOnly == "" {
		t.Run("unknown-node", func(t *testing.T) {
			// The unknown-node script shows the MAC, waits and chains to
			// its own URL again; two rounds prove the loop.
			seen := 0
			res := boot(t, lab, vm{Firmware: bios, MAC: unknownMAC, Tap: "tap9", Timeout: bootTimeout(bios),
				Until: func(line string) bool {
					if strings.Contains(line, "this node is not in the inventory") {
						seen++
					}
					return seen >= 2
				}})
			_, ok := res.find(regexp.MustCompile(`MAC ` + unknownMAC))
			assert.True(t, ok, "the script shows the MAC\n%s", res.transcript())
			assert.GreaterOrEqual(t, srv.count(unknownMAC, "/ipxe/"), 2, "asked for its script again")
		})
	}
}

// logTimings reports how long each stage took after power-on.
func logTimings(t *testing.T, fw firmware, res *bootResult) {
	t.Helper()
	marks := []struct{ name, re string }{
		{"ipxe", `iPXE initialising devices`},
		{"linkup", `Press Ctrl-B for the iPXE command line`},
		{"configured", `^Configuring \(net0 .*ok`},
		{"script", `^wwboot: booting `},
		{"kernel", `^wwboot: starting the kernel`},
		{"init", `WWBOOT-INIT`},
		{"node", `WWBOOT-NODE`},
	}
	if fw == uefi {
		marks = append([]struct{ name, re string }{
			{"pxe", `Start PXE over IPv4`}, {"nbp", `NBP file downloaded successfully`},
		}, marks...)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "BOOT-TIMING firmware=%s ra=%v pxeclient=%v", fw, *flagRA, *flagPXEClient)
	for _, m := range marks {
		if l, ok := res.find(regexp.MustCompile(m.re)); ok {
			fmt.Fprintf(&b, " %s=%.2f", m.name, l.At.Seconds())
		} else {
			fmt.Fprintf(&b, " %s=-", m.name)
		}
	}
	fmt.Fprintf(&b, " poweroff=%.2f", res.Elapsed.Seconds())
	// iPXE's own network configuration (DHCP and the IPv6 wait): from the
	// NIC opening to "Configuring ... ok".
	up, ok1 := res.find(regexp.MustCompile(`Press Ctrl-B for the iPXE command line`))
	cf, ok2 := res.find(regexp.MustCompile(`^Configuring \(net0 .*ok`))
	if ok1 && ok2 {
		fmt.Fprintf(&b, " ipxe-configure=%.2f", (cf.At - up.At).Seconds())
	}
	t.Log(b.String())
}

// --- STAND-IN: image -------------------------------------------------------

// buildImageStandIn packs the root tree as the node image.
//
// STAND-IN for `wwboot image build` (package image): replace with running
// the wwboot binary on root and returning the image name it prints; the
// HTTP side then serves it from the image store.
func buildImageStandIn(t *testing.T, root string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "image.img.gz")
	newcGzip(t, root, out)
	return out
}

// --- STAND-IN: inventory and overlays --------------------------------------

// systemOverlayTemplate is rendered per node into /etc/wwboot-node.conf, the
// way a Warewulf-compatible overlay template (.ww) would be: the variables
// are Warewulf's. With wwboot it becomes a file etc/wwboot-node.conf.ww in a
// site system overlay.
const systemOverlayTemplate = `# rendered by the system overlay for {{.Id}}
WWBOOT_HOSTNAME={{.Id}}
WWBOOT_HWADDR={{(index .NetDevs "default").Hwaddr}}
WWBOOT_IPADDR={{(index .NetDevs "default").Ipaddr}}
WWBOOT_NETMASK={{(index .NetDevs "default").Netmask}}
WWBOOT_SERVER={{.Ipaddr}}
`

// nodeAssets are the per-node files the server hands out.
type nodeAssets struct {
	Node           testNode
	SystemOverlay  string // path of a gzip newc cpio
	RuntimeOverlay string
}

// defineNodesStandIn renders and packs each node's system and runtime
// overlay.
//
// STAND-IN for `wwboot node add NAME --image IMG --netdev default --hwaddr
// MAC --ipaddr IP --netmask MASK` plus an overlay holding
// systemOverlayTemplate (package overlay renders and packs it on demand).
func defineNodesStandIn(t *testing.T, nodes []testNode) map[string]*nodeAssets {
	t.Helper()
	tmpl := template.Must(template.New("wwboot-node.conf.ww").Parse(systemOverlayTemplate))
	inv := map[string]*nodeAssets{}
	for _, n := range nodes {
		dir := t.TempDir()
		sys, rt := filepath.Join(dir, "system"), filepath.Join(dir, "runtime")
		must(t, os.MkdirAll(filepath.Join(sys, "etc"), 0o755))
		must(t, os.MkdirAll(filepath.Join(rt, "etc"), 0o755))
		d := &ipxe.Data{Id: n.Name, Ipaddr: serverIP, NetDevs: map[string]*ipxe.NetDev{
			"default": {Device: "eth0", Hwaddr: n.MAC, Ipaddr: n.IP, Netmask: netmask},
		}}
		f, err := os.Create(filepath.Join(sys, "etc", "wwboot-node.conf"))
		must(t, err)
		must(t, tmpl.Execute(f, d))
		must(t, f.Close())
		must(t, os.WriteFile(filepath.Join(rt, "etc", "wwboot-runtime.conf"), []byte("WWBOOT_RUNTIME=1\n"), 0o600))
		a := &nodeAssets{Node: n, SystemOverlay: filepath.Join(dir, "system.img.gz"), RuntimeOverlay: filepath.Join(dir, "runtime.img.gz")}
		newcGzip(t, sys, a.SystemOverlay)
		newcGzip(t, rt, a.RuntimeOverlay)
		inv[n.MAC] = a
	}
	return inv
}

// --- STAND-IN: the server --------------------------------------------------

// standInServer records what each MAC fetched.
type standInServer struct {
	mu       sync.Mutex
	requests map[string][]string // MAC -> paths in order
	ports    map[string][]string // MAC -> "path from source port" in order
}

func (s *standInServer) record(mac string, r *http.Request) int {
	path := r.URL.Path
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests[mac] = append(s.requests[mac], path)
	if _, port, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		s.ports[mac] = append(s.ports[mac], strings.SplitN(strings.TrimPrefix(path, "/"), "/", 2)[0]+":"+port)
	}
	n := 0
	for _, p := range s.requests[mac] {
		if p == path {
			n++
		}
	}
	return n
}

func (s *standInServer) count(mac, prefix string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, p := range s.requests[mac] {
		if strings.HasPrefix(p, prefix) {
			n++
		}
	}
	return n
}

// checkStages asserts the node fetched every stage, and (n1) retried the
// kernel after the deliberate first failure.
func (s *standInServer) checkStages(t *testing.T, n testNode) {
	t.Helper()
	for _, stage := range []string{"/ipxe/", "/kernel/", "/image/", "/overlay/system/", "/overlay/runtime/"} {
		assert.GreaterOrEqual(t, s.count(n.MAC, stage), 1, "%s fetched %s", n.Name, stage)
	}
	if n.Name == "n1" {
		assert.Equal(t, 2, s.count(n.MAC, "/kernel/"), "the default script retried the refused kernel download once")
	}
	s.mu.Lock()
	t.Logf("%s's iPXE requests (stage:source port): %s", n.Name, strings.Join(s.ports[n.MAC], " "))
	s.mu.Unlock()
}

// serveStandIn runs DHCP, TFTP and HTTP for the lab inside its namespace:
// dnsmasq for DHCP and TFTP, and an HTTP server that renders package ipxe's
// real default script and serves kernel, image and overlays. It also starts
// ipxe.RouterAdvertiser on the bridge (unless -ra=false).
//
// STAND-IN for `wwboot serve --interface br0 --listen 10.77.0.1 --dhcp full
// --tftp --http-port 9873` started with lab.Command (and stopped with
// SIGTERM in t.Cleanup); wwboot's DHCP then points iPXE straight at
// /ipxe/MAC (no boot.ipxe hop), and serve must run the router advertiser
// and send option 60 as this stand-in does.
func serveStandIn(t *testing.T, lab *netlab.NS, k *kernel, image string, inv map[string]*nodeAssets) *standInServer {
	t.Helper()
	srv := &standInServer{requests: map[string][]string{}, ports: map[string][]string{}}
	set, err := ipxe.New(ipxe.Options{})
	require.NoError(t, err)
	data := map[string]*ipxe.Data{}
	for mac, a := range inv {
		d := &ipxe.Data{Id: a.Node.Name, Hwaddr: mac, NodeIpaddr: a.Node.IP, Ipaddr: serverIP, Port: httpPort,
			ImageName: "e2e", KernelVersion: k.Version, KernelArgs: kernelArgs, RetryMax: 3, RetryDelay: 1}
		d.Complete()
		data[mac] = d
	}
	mux := http.NewServeMux()
	// Stand-in only: wwboot's DHCP puts the MAC in the boot file URL itself.
	mux.HandleFunc("GET /boot.ipxe", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "#!ipxe\nchain http://%s:%s/ipxe/${mac}\n", serverIP, httpPort)
	})
	mux.HandleFunc("GET /ipxe/{mac}", func(w http.ResponseWriter, r *http.Request) {
		mac := strings.ToLower(r.PathValue("mac"))
		srv.record(mac, r)
		if d, ok := data[mac]; ok {
			script, err := set.Script("", d)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			_, _ = w.Write(script)
			return
		}
		d := &ipxe.Data{Hwaddr: mac, Ipaddr: serverIP, Port: httpPort, WaitTime: "2"}
		d.Complete()
		if err := set.Render(w, ipxe.UnknownTemplate, d); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	asset := func(pick func(a *nodeAssets) string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			mac := strings.ToLower(r.PathValue("mac"))
			n := srv.record(mac, r)
			a, ok := inv[mac]
			if !ok {
				http.NotFound(w, r)
				return
			}
			// Refuse n1's first kernel download: the script must retry.
			if a.Node.Name == "n1" && strings.HasPrefix(r.URL.Path, "/kernel/") && n == 1 {
				http.Error(w, "deliberate failure (e2e retry check)", http.StatusServiceUnavailable)
				return
			}
			// Refuse n2's runtime overlay: the script must boot without it.
			if a.Node.Name == "n2" && strings.HasPrefix(r.URL.Path, "/overlay/runtime/") {
				http.Error(w, "runtime overlay refused (e2e secure-mode check)", http.StatusForbidden)
				return
			}
			http.ServeFile(w, r, pick(a))
		}
	}
	mux.HandleFunc("GET /kernel/{mac}", asset(func(*nodeAssets) string { return k.Vmlinuz }))
	mux.HandleFunc("GET /image/{mac}", asset(func(*nodeAssets) string { return image }))
	mux.HandleFunc("GET /overlay/system/{mac}", asset(func(a *nodeAssets) string { return a.SystemOverlay }))
	mux.HandleFunc("GET /overlay/runtime/{mac}", asset(func(a *nodeAssets) string { return a.RuntimeOverlay }))

	var l net.Listener
	require.NoError(t, lab.Do(func() (err error) {
		l, err = net.Listen("tcp", net.JoinHostPort(serverIP, httpPort))
		return err
	}))
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(ctx)
	})

	if *flagRA {
		var ra *ipxe.RouterAdvertiser
		require.NoError(t, lab.Do(func() (err error) {
			ra, err = ipxe.ListenRouterAdvertiser(bridge, nil)
			return err
		}))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = ra.Serve(ctx) }()
		t.Cleanup(func() {
			cancel()
			<-done
			t.Logf("router advertiser answered %d solicitations", ra.Answered())
		})
	}

	startDnsmasqStandIn(t, lab, inv)
	return srv
}

// startDnsmasqStandIn runs dnsmasq as the lab's DHCP and TFTP server: fixed
// addresses for the inventory's MACs, a pool for others, undionly.kpxe or
// snponly.efi over TFTP to firmware PXE clients, the HTTP script to iPXE.
//
// STAND-IN for wwboot serve's DHCP (package dhcp) and TFTP (package tftp).
func startDnsmasqStandIn(t *testing.T, lab *netlab.NS, inv map[string]*nodeAssets) {
	t.Helper()
	dir := t.TempDir()
	tftpRoot := filepath.Join(dir, "tftp")
	must(t, os.MkdirAll(tftpRoot, 0o755))
	for _, fw := range []ipxe.Firmware{ipxe.BIOS, ipxe.EFIX8664} {
		p, err := ipxe.Locate(fw)
		if err != nil {
			failOrSkip(t, err.Error())
		}
		copyFile(t, p, filepath.Join(tftpRoot, ipxe.TFTPName(fw)), 0o644)
	}
	args := []string{
		"--no-daemon", "--conf-file=/dev/null", "--user=root", "--port=0", "--log-dhcp",
		"--interface=" + bridge, "--bind-interfaces",
		"--dhcp-leasefile=" + filepath.Join(dir, "leases"), "--pid-file=" + filepath.Join(dir, "pid"),
		"--dhcp-range=10.77.0.100,10.77.0.199," + netmask + ",1h",
		"--enable-tftp", "--tftp-root=" + tftpRoot,
		"--dhcp-userclass=set:ipxe,iPXE",
		"--dhcp-match=set:efi64,option:client-arch,7",
		"--dhcp-match=set:efi64,option:client-arch,9",
		"--dhcp-boot=tag:ipxe,http://" + serverIP + ":" + httpPort + "/boot.ipxe",
		"--dhcp-boot=tag:!ipxe,tag:efi64," + ipxe.TFTPName(ipxe.EFIX8664),
		"--dhcp-boot=tag:!ipxe,tag:!efi64," + ipxe.TFTPName(ipxe.BIOS),
	}
	if *flagPXEClient {
		// iPXE takes an offer at once only from a "PXE-capable" server
		// (vendor class PXEClient in the offer); otherwise it waits about
		// a second more for ProxyDHCP offers.
		args = append(args, "--dhcp-option-force=tag:ipxe,60,PXEClient")
	}
	for mac, a := range inv {
		args = append(args, "--dhcp-host="+mac+","+a.Node.IP+","+a.Node.Name)
	}
	logPath := filepath.Join(dir, "dnsmasq.log")
	logf, err := os.Create(logPath)
	must(t, err)
	cmd := lab.Command(context.Background(), "dnsmasq", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	must(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("dnsmasq log:\n%s", b)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(logPath)
		if strings.Contains(string(b), "TFTP root is") {
			return
		}
		if time.Now().After(deadline) || cmd.ProcessState != nil {
			t.Fatalf("dnsmasq did not start: %s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
