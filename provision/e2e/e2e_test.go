package e2e

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/provision"
	"github.com/wwboot/wwboot/provision/netlab"
)

// Switches for bench/boot/ timing runs and the demo; the defaults are what
// CI runs.
var (
	flagRA      = flag.Bool("ra", true, "let wwboot serve answer IPv6 router solicitations (--ipv6-ra) so iPXE skips its IPv6 wait")
	flagOnly    = flag.String("only", "", "boot only this firmware path (bios or uefi); default both plus the unknown node")
	flagConsole = flag.Bool("console", false, "stream each VM's console and wwboot serve's log as they come, with times since power-on")
	flagWwboot  = flag.String("wwboot", "", "use this wwboot binary instead of building ./cmd/wwboot")
)

// The lab network: a bridge in a namespace the test creates.
const (
	serverIP   = "10.77.0.1"
	serverCIDR = "10.77.0.1/24"
	netmask    = "255.255.255.0"
	httpPort   = "9873"
	bridge     = "br0"
	imageName  = "e2e"
	// Kernel arguments every node gets on top of the default profile's
	// ("quiet crashkernel=no"): serial console, no reboot loop on panic.
	// Comma separated, as `wwboot node add --kernelargs` takes them.
	kernelArgs = "console=ttyS0,panic=-1"
	// siteOverlay is a site system overlay the nodes get on top of the
	// default profile's, holding systemOverlayTemplate.
	siteOverlay = "e2e"
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

// Generous per-boot limits under TCG on a loaded 2-core machine (typical
// idle: BIOS 13 s, UEFI 24 s; add 16 s per iPXE when -ra=false).
func bootTimeout(fw firmware) time.Duration {
	if fw == uefi {
		return 300 * time.Second
	}
	return 200 * time.Second
}

// systemOverlayTemplate is the site overlay's etc/wwboot-node.conf.ww: a
// Warewulf-style template wwboot renders per node into the system overlay;
// the image's /sbin/init (initScript) reads it.
const systemOverlayTemplate = `# rendered by the system overlay for {{.Id}}
WWBOOT_HOSTNAME={{.Id}}
WWBOOT_HWADDR={{(index .NetDevs "default").Hwaddr}}
WWBOOT_IPADDR={{(index .NetDevs "default").Ipaddr}}
WWBOOT_NETMASK={{(index .NetDevs "default").Netmask}}
WWBOOT_SERVER={{.Ipaddr}}
`

var (
	// nodeLine is what the image's init prints from the site overlay's file.
	nodeLine = regexp.MustCompile(`WWBOOT-NODE hostname=(\S*) ip=(\S*) dev=(\S*) server=(\S*) runtime=(\S*) uptime=(\S*)`)
	// agentLine is the test init's report on the node agent.
	agentLine = regexp.MustCompile(`WWBOOT-AGENT runtime=(\S*) hosts=(\S*) uptime=(\S*)`)
	// wwinitLine is what the built-in wwinit overlay's /init prints from the
	// node.conf it rendered.
	wwinitLine = regexp.MustCompile(`^wwboot: node (\S+) address (\S+)`)
)

// TestBoot boots real VMs from `wwboot serve` through both firmware paths and
// checks each node comes up as its inventory says.
func TestBoot(t *testing.T) {
	netlab.Require(t)
	requireTools(t, "qemu-system-x86_64", "go")
	k := fetchKernel(t)

	lab := netlab.NewNS(t)
	lab.Bridge(bridge, netip.MustParsePrefix(serverCIDR))
	// A link-local address that needs no duplicate address detection, so
	// the router advertiser can answer from the first solicitation on.
	lab.IP("addr", "add", "fe80::1/64", "dev", bridge, "nodad")
	nodes := inventory()
	n3 := testNode{Name: "n3", MAC: unknownMAC, IP: "10.77.0.13", Firmware: bios}
	for _, n := range nodes {
		lab.Tap(n.Tap, bridge)
	}
	lab.Tap("tap9", bridge)

	ww := newWwboot(t, lab)
	ww.run(t, "init")
	ww.run(t, "image", "import", buildRootTree(t, k), imageName)
	ww.writeSiteOverlay(t, siteOverlay, "etc/wwboot-node.conf.ww", systemOverlayTemplate)
	for _, n := range nodes {
		ww.run(t, "node", "add", n.Name, "--image", imageName, "--netdev", "default",
			"--hwaddr", n.MAC, "--ipaddr", n.IP, "--netmask", netmask,
			"--kernelargs", kernelArgs, "--system-overlays", siteOverlay)
	}
	ww.run(t, "node", "list")
	ww.serve(t, "--interface", bridge, "--listen", serverIP, "--dhcp", "full", "--tftp",
		"--http-port", httpPort, fmt.Sprintf("--ipv6-ra=%v", *flagRA),
		"--range-start", "10.77.0.200", "--range-end", "10.77.0.220")

	booted := map[string]bool{}
	for _, n := range nodes {
		if *flagOnly != "" && *flagOnly != string(n.Firmware) {
			continue
		}
		booted[n.Name] = t.Run(string(n.Firmware)+"-"+n.Name, func(t *testing.T) {
			res := boot(t, lab, vm{Name: n.Name, Firmware: n.Firmware, MAC: n.MAC, Tap: n.Tap, Timeout: bootTimeout(n.Firmware)})
			t.Logf("QEMU: %s", strings.Join(res.Cmdline, " "))
			logTimings(t, n.Firmware, res)

			assertBooted(t, n, res)
		})
	}
	if *flagOnly == "" {
		t.Run("unknown-node-added-while-waiting", func(t *testing.T) {
			// A machine outside the inventory gets an address from the
			// dynamic range and the unknown-node script, which shows its
			// MAC and asks again after a while. The administrator adds it
			// meanwhile; the running server picks the change up and the
			// machine boots as the new node, nothing restarted.
			n := n3
			var added bool // only the console watcher writes it, before boot returns
			var addErr error
			res := boot(t, lab, vm{Name: "unknown", Firmware: bios, MAC: unknownMAC, Tap: "tap9", Timeout: bootTimeout(bios) + 60*time.Second,
				Until: func(line string) bool {
					if !added && strings.Contains(line, "this node is not in the inventory") {
						added = true
						_, addErr = ww.try(t, "node", "add", n.Name, "--image", imageName, "--netdev", "default",
							"--hwaddr", n.MAC, "--ipaddr", n.IP, "--netmask", netmask,
							"--kernelargs", kernelArgs, "--system-overlays", siteOverlay)
						return addErr != nil
					}
					return false
				}})
			require.True(t, added, "the unknown machine got the unknown-node script\n%s", res.transcript())
			require.NoError(t, addErr)
			_, ok := res.find(regexp.MustCompile(`wwboot: MAC ` + unknownMAC))
			assert.True(t, ok, "the unknown-node script shows the MAC\n%s", res.transcript())
			assertBooted(t, n, res)
			booted[n.Name] = !t.Failed()
		})
	}

	// wwboot status shows both nodes and their last stage.
	out := ww.run(t, "status", "--server", "http://"+serverIP+":"+httpPort)
	st := ww.status(t)
	for _, n := range append(nodes, n3) {
		if !booted[n.Name] {
			continue
		}
		// Booting after iPXE's runtime overlay request (refused in secure
		// mode), or up once its agent (wwclient overlay) sends heartbeats.
		assert.Regexp(t, regexp.MustCompile(`(?m)^`+n.Name+`\s+(booting|up)\s+`+n.MAC+`\s+(runtime \(403\)|runtime|agent)\s`), out,
			"wwboot status: %s booting or up, last at its runtime overlay or agent", n.Name)
		var found *provision.NodeStatus
		for i := range st.Nodes {
			if st.Nodes[i].Node == n.Name {
				found = &st.Nodes[i]
			}
		}
		if assert.NotNil(t, found, "/status lists %s", n.Name) {
			assert.Contains(t, []string{"runtime", "agent"}, found.Stage, "%s's last stage", n.Name)
			assert.Contains(t, []string{provision.StateBooting, provision.StateUp}, found.State, "%s's state", n.Name)
			assert.Equal(t, n.MAC, found.Hwaddr)
			assert.GreaterOrEqual(t, found.Requests, int64(5), "%s fetched script, kernel, image, system and runtime", n.Name)
			assert.Greater(t, found.SentTotal, int64(1<<20), "%s got kernel and image", n.Name)
		}
	}
	if *flagOnly == "" {
		seen := false
		for _, u := range st.Unknown {
			seen = seen || u.Hwaddr == unknownMAC
		}
		assert.True(t, seen, "/status remembers the unknown MAC that asked for a script")
	}
}

// assertBooted checks what a node printed: wwinit's line from its rendered
// node.conf, and the image's line from the site overlay's file.
func assertBooted(t *testing.T, n testNode, res *bootResult) {
	t.Helper()
	// The built-in wwinit overlay's /init, from its rendered node.conf.
	line, ok := res.find(wwinitLine)
	if assert.True(t, ok, "no 'wwboot: node' line from wwinit's /init on %s\nconsole:\n%s", n.Name, res.transcript()) {
		m := wwinitLine.FindStringSubmatch(line.Text)
		assert.Equal(t, n.Name, m[1], "hostname from wwinit's node.conf")
		assert.Equal(t, n.IP, m[2], "address from wwinit's node.conf")
	}
	// The image's init, from the file the site overlay rendered.
	line, ok = res.find(nodeLine)
	require.True(t, ok, "no WWBOOT-NODE line from %s\nconsole:\n%s", n.Name, res.transcript())
	m := nodeLine.FindStringSubmatch(line.Text)
	assert.Equal(t, n.Name, m[1], "hostname from the site system overlay")
	assert.Equal(t, n.IP, m[2], "address from the site system overlay, as configured")
	assert.Equal(t, "reachable", m[4], "the node reaches the server through its NIC driver")
	// Secure mode (wwboot.conf's default): iPXE asks from an
	// unprivileged port, the runtime overlay is refused and the
	// default script boots without it.
	assert.Equal(t, "absent", m[5], "runtime overlay refused in secure mode, boot went on")
	// The agent enrolls and gets it over TLS instead (/etc/hosts is the
	// runtime overlay's).
	line, ok = res.find(agentLine)
	if assert.True(t, ok, "no WWBOOT-AGENT line from %s\nconsole:\n%s", n.Name, res.transcript()) {
		m := agentLine.FindStringSubmatch(line.Text)
		assert.Equal(t, "applied", m[1], "the node agent applied the runtime overlay (enrolled, then over TLS)\n%s", res.transcript())
		assert.Equal(t, "present", m[2], "/etc/hosts from the runtime overlay")
	}
	if _, bad := res.find(regexp.MustCompile(`WWBOOT-ERROR`)); bad {
		t.Errorf("errors on the console:\n%s", res.transcript())
	}
}

// logTimings reports how long each stage took after power-on; "init" is the
// system overlay's /init (the wwinit line), the power-on-to-init figure.
func logTimings(t *testing.T, fw firmware, res *bootResult) {
	t.Helper()
	marks := []struct{ name, re string }{
		{"ipxe", `iPXE initialising devices`},
		{"linkup", `Press Ctrl-B for the iPXE command line`},
		{"configured", `^Configuring \(net0 .*ok`},
		{"script", `^wwboot: booting `},
		{"kernel", `^wwboot: starting the kernel`},
		{"init", `^wwboot: node `},
		{"image-init", `WWBOOT-INIT`},
		{"node", `WWBOOT-NODE`},
		{"agent", `WWBOOT-AGENT`},
	}
	if fw == uefi {
		marks = append([]struct{ name, re string }{
			{"pxe", `Start PXE over IPv4`}, {"nbp", `NBP file downloaded successfully`},
		}, marks...)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "BOOT-TIMING firmware=%s ra=%v", fw, *flagRA)
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
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Fprintf(&b, " load=%s", strings.Fields(string(load) + " -")[0])
	t.Log(b.String())
}

// metric returns the sum of a counter's samples in the server's /metrics
// (0 if it has none yet).
func (w *wwboot) metric(t *testing.T, name string) float64 {
	t.Helper()
	resp, err := w.client.Get("http://" + serverIP + ":" + httpPort + "/metrics")
	if err != nil {
		t.Errorf("GET /metrics: %v", err)
		return 0
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Errorf("GET /metrics: %v", err)
		return 0
	}
	sum := 0.0
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && (f[0] == name || strings.HasPrefix(f[0], name+"{")) {
			v, err := strconv.ParseFloat(f[1], 64)
			if err == nil {
				sum += v
			}
		}
	}
	return sum
}

// status fetches /status from the server inside the lab namespace.
func (w *wwboot) status(t *testing.T) provision.Status {
	t.Helper()
	var st provision.Status
	resp, err := w.client.Get("http://" + serverIP + ":" + httpPort + "/status")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&st))
	return st
}

// labClient is an HTTP client whose connections are opened inside the lab
// namespace (the server's address exists only there).
func labClient(lab *netlab.NS) *http.Client {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := lab.Do(func() (err error) {
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}
}

// writeSiteOverlay writes one file of a site overlay under ROOT/overlays.
func (w *wwboot) writeSiteOverlay(t *testing.T, name, file, content string) {
	t.Helper()
	p := filepath.Join(w.root, "overlays", name, "rootfs", file)
	must(t, os.MkdirAll(filepath.Dir(p), 0o755))
	must(t, os.WriteFile(p, []byte(content), 0o644))
	t.Logf("site system overlay %s: %s:\n%s", name, strings.TrimPrefix(p, w.root+"/"), content)
}
