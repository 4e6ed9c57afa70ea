package storm_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/bench/storm"
	"github.com/wwboot/wwboot/provision/netlab"
)

var (
	flagNodes   = flag.Int("nodes", 50, "nodes in the inventory")
	flagUnknown = flag.Int("unknown", 5, "machines outside the inventory in the mixed run")
	flagLoss    = flag.Float64("loss", 1, "packet loss in percent (tc netem, both directions) in the mixed run")
	flagOnly    = flag.String("only", "", "run only the clean or the mixed storm")
	flagOut     = flag.String("out", "", "append each run's figures as one JSON line to this file")
	flagKernel  = flag.Int("kernel-kib", 256, "size of the simulated kernel in KiB")
	flagImage   = flag.Int("image-kib", 256, "size of the simulated image's other files in KiB (random, incompressible)")
	flagBoots   = flag.Int("boots", 1, "boot attempts per node (a failed boot reboots after -reboot-delay and starts over)")
	flagReboot  = flag.Duration("reboot-delay", 30*time.Second, "time from a failed boot to the node's next DISCOVER")
	flagRamp    = flag.Duration("ramp", 0, "spread the nodes' power-on over this time (0: all at once)")
	flagLog     = flag.String("serve-log", "", "write wwboot serve's whole log (-v) to this file, suffixed with the run's name")
)

const (
	serverIP  = "10.88.0.1"
	clientIP  = "10.88.0.2"
	nodeRange = "10.88.128.0/17" // node addresses: local in the client namespace
	firstNode = "10.88.128.1"
)

// Figures is one storm run's result: the simulator's report, the link's
// ceiling and what the server process used.
type Figures struct {
	Name   string        `json:"name"`
	Report *storm.Report `json:"report"`
	// LinkBytesPerSec is a plain TCP transfer's rate over the same veth
	// (server to client namespace), measured before the storm.
	LinkBytesPerSec float64 `json:"link_bytes_per_s"`
	// ServerCPUSeconds is user+system CPU of `wwboot serve` during the
	// storm; ServerPeakRSS its peak resident memory (VmHWM) in bytes, and
	// ServerRSSStart its resident memory when the storm began.
	ServerCPUSeconds float64 `json:"server_cpu_s"`
	ServerPeakRSS    int64   `json:"server_peak_rss_bytes"`
	ServerRSSStart   int64   `json:"server_rss_start_bytes"`
	// CPUPerNode and RSSPerNode divide by the known nodes.
	CPUPerNode float64 `json:"server_cpu_s_per_node"`
	RSSPerNode float64 `json:"server_rss_bytes_per_node"`
	// LoadBefore and LoadAfter are /proc/loadavg's 1-minute averages; CPUs
	// is the machine's processor count.
	LoadBefore, LoadAfter float64
	CPUs                  int
	Sizes                 map[string]int64 `json:"sizes"`
	// LossBy says how packet loss was made: "tc netem" or "nft numgen".
	LossBy string `json:"loss_by,omitempty"`
}

// addLoss drops loss % of the packets each namespace receives on the link:
// with tc netem on both veth ends where the kernel has sch_netem, else with
// an nftables rule (numgen random) on each namespace's input hook (kernels
// built without CONFIG_NET_SCH_NETEM, like this lab's).
func addLoss(t *testing.T, srv, cli *netlab.NS, loss float64) string {
	pct := strconv.FormatFloat(loss, 'f', -1, 64) + "%"
	var netemErr []byte
	if _, err := exec.LookPath("tc"); err == nil {
		ok := true
		for _, ns := range []*netlab.NS{srv, cli} {
			out, err := ns.Command(t.Context(), "tc", "qdisc", "add", "dev", "eth0", "root", "netem", "loss", pct).CombinedOutput()
			if err != nil {
				ok, netemErr = false, out
				break
			}
		}
		if ok {
			return "tc netem"
		}
		for _, ns := range []*netlab.NS{srv, cli} {
			_ = ns.Command(t.Context(), "tc", "qdisc", "del", "dev", "eth0", "root").Run()
		}
	}
	netlab.RequireTools(t, "nft")
	rule := fmt.Sprintf("table inet storm { chain in { type filter hook input priority 0; policy accept; iifname \"eth0\" numgen random mod 10000 < %d drop; }; }", int(loss*100))
	for _, ns := range []*netlab.NS{srv, cli} {
		out, err := ns.Command(t.Context(), "nft", rule).CombinedOutput()
		require.NoError(t, err, "nft (tc netem failed: %s): %s", netemErr, out)
	}
	t.Logf("packet loss %s by nftables (tc netem: %s)", pct, strings.TrimSpace(string(netemErr)))
	return "nft numgen"
}

// TestStorm boots -nodes simulated nodes through the whole chain against one
// real `wwboot serve` in a network namespace, twice: a clean storm, and one
// with -unknown machines outside the inventory and -loss % packet loss on
// the link. No node may fail. bench/storm/run.sh runs it with 1,000 and
// 10,000 nodes; the default (50) is the CI-sized run.
func TestStorm(t *testing.T) {
	netlab.Require(t)
	bins := build(t)
	for _, run := range []struct {
		name    string
		unknown int
		loss    float64
	}{{"clean", 0, 0}, {"mixed", *flagUnknown, *flagLoss}} {
		if *flagOnly != "" && *flagOnly != run.name {
			continue
		}
		t.Run(run.name, func(t *testing.T) {
			if run.loss > 0 {
				netlab.RequireTools(t, "tc")
			}
			f := stormRun(t, bins, run.name, *flagNodes, run.unknown, run.loss)
			r := f.Report
			t.Logf("%s: %d nodes (+%d unknown, %.1f%% loss): %d done, %d failed; failed boots by stage %v, %d reboots; all done in %.1f s",
				run.name, r.Nodes, r.Unknown, run.loss, r.Done, r.Failed, r.Failures, r.Reboots, r.AllDone)
			t.Logf("stage p50/p99/max (s): %s", stages(r))
			t.Logf("sizes (bytes): %v; storm elapsed %.1f s (long-polls of 5 s included)", f.Sizes, r.Elapsed)
			t.Logf("bytes: TFTP %d, HTTP %d; %.1f MB/s against a link ceiling of %.1f MB/s (%.2f%%)",
				r.TFTPBytes, r.HTTPBytes, r.BytesPerSec/1e6, f.LinkBytesPerSec/1e6, 100*r.BytesPerSec/f.LinkBytesPerSec)
			t.Logf("DHCP: %d sent, %d retransmits; unknown machines sent %d; HTTP retries %d; iPXE runtime refused (secure mode) %d",
				r.DHCPSent, r.DHCPRetransmits, r.UnknownSent, r.HTTPRetries, r.RuntimeRefused)
			t.Logf("server: %.2f CPU-s (%.1f ms per node), RSS %.1f MiB at start, peak %.1f MiB (%.1f KiB per node); load %.2f -> %.2f on %d CPUs",
				f.ServerCPUSeconds, 1000*f.CPUPerNode, float64(f.ServerRSSStart)/(1<<20), float64(f.ServerPeakRSS)/(1<<20), f.RSSPerNode/1024,
				f.LoadBefore, f.LoadAfter, f.CPUs)
			for _, e := range r.Errors {
				t.Log("  ", e)
			}
			if *flagOut != "" {
				b, _ := json.Marshal(f)
				fh, err := os.OpenFile(*flagOut, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
				require.NoError(t, err)
				_, _ = fh.Write(append(b, '\n'))
				require.NoError(t, fh.Close())
			}
			assert.Equal(t, 0, r.Failed, "no node fails")
			assert.Equal(t, *flagNodes, r.Done)
			assert.Equal(t, int64(0), r.UnknownAnswered, "no answer to machines outside the inventory (no pool)")
			assert.Positive(t, r.TFTPBytes)
			assert.Positive(t, r.HTTPBytes)
		})
	}
}

func stages(r *storm.Report) string {
	var b strings.Builder
	for _, s := range []string{storm.StagePXEDHCP, storm.StageTFTP, storm.StageIPXEDHCP, storm.StageHTTP, storm.StageAgent, storm.StageLongPoll} {
		fmt.Fprintf(&b, "%s %.1f/%.1f/%.1f  ", s, r.StageP50[s], r.StageP99[s], r.StageMax[s])
	}
	return b.String()
}

type binaries struct{ wwboot, agent, storm string }

// build builds wwboot, the node agent (next to it, where serve finds it for
// the wwclient overlay) and the simulator.
func build(t *testing.T) binaries {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	require.True(t, ok)
	repo := filepath.Join(filepath.Dir(file), "..", "..")
	dir := t.TempDir()
	b := binaries{wwboot: filepath.Join(dir, "wwboot"), agent: filepath.Join(dir, "wwboot-agent"), storm: filepath.Join(dir, "wwboot-storm")}
	for _, args := range [][]string{
		{"build", "-o", b.wwboot, "./cmd/wwboot"},
		{"build", "-trimpath", "-ldflags=-s -w", "-o", b.agent, "./cmd/wwboot-agent"},
		{"build", "-o", b.storm, "./cmd/wwboot-storm"},
	} {
		cmd := exec.Command("go", args...)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "go %s: %s", strings.Join(args, " "), out)
	}
	return b
}

func stormRun(t *testing.T, b binaries, name string, nodes, unknown int, loss float64) *Figures {
	srv, cli := netlab.NewNS(t), netlab.NewNS(t)
	netlab.Veth(t, srv, "eth0", netip.MustParsePrefix(serverIP+"/24"), cli, "eth0", netip.MustParsePrefix(clientIP+"/24"))
	// The nodes' addresses are all local in the client namespace (one
	// socket per node can bind its own); the server reaches them through
	// the client's eth0, as through a router: one neighbour entry, not one
	// per node (a flat /16 of 10,000 nodes needs gc_thresh3 raised).
	cli.IP("route", "add", "local", nodeRange, "dev", "lo")
	srv.IP("route", "add", nodeRange, "via", clientIP)

	root := filepath.Join(t.TempDir(), "root")
	ww := func(args ...string) string {
		out, err := exec.Command(b.wwboot, append([]string{"--root", root}, args...)...).CombinedOutput()
		require.NoError(t, err, "wwboot %s: %s", strings.Join(args, " "), out)
		return string(out)
	}
	ww("init")
	// One host key type per node keeps key generation (10,000 RSA keys
	// would take longer than the storm) out of what is measured.
	appendFile(t, filepath.Join(root, "wwboot.conf"), "ssh key types: [ed25519]\n")
	tree := filepath.Join(t.TempDir(), "tree")
	sizes := map[string]int64{"kernel": int64(*flagKernel) << 10, "image_files": int64(*flagImage) << 10}
	writeRandom(t, filepath.Join(tree, "boot", "vmlinuz-6.1.0-storm"), sizes["kernel"])
	writeRandom(t, filepath.Join(tree, "sbin", "init"), sizes["image_files"])
	ww("image", "import", tree, "storm")
	writeInventory(t, filepath.Join(root, "nodes.conf"), nodes)

	f := &Figures{Name: name, CPUs: runtime.NumCPU(), Sizes: sizes}
	f.LinkBytesPerSec = linkCeiling(t, srv, cli)
	if loss > 0 {
		f.LossBy = addLoss(t, srv, cli, loss)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	serve := srv.Command(ctx, b.wwboot, "--root", root, "serve",
		"--interface", "eth0", "--listen", serverIP, "--ipv6-ra=false")
	var logs bytes.Buffer
	serve.Stdout, serve.Stderr = &logs, &logs
	if *flagLog != "" {
		lf, err := os.Create(*flagLog + "." + strings.ReplaceAll(t.Name(), "/", "-"))
		require.NoError(t, err)
		defer lf.Close()
		serve.Stdout, serve.Stderr = io.MultiWriter(&logs, lf), io.MultiWriter(&logs, lf)
	}
	serve.Cancel = func() error { return serve.Process.Signal(syscall.SIGTERM) }
	serve.WaitDelay = 60 * time.Second
	require.NoError(t, serve.Start())
	defer func() {
		cancel()
		_ = serve.Wait()
		if t.Failed() {
			t.Logf("wwboot serve log (last 8 KiB):\n%s", tail(logs.Bytes(), 8<<10))
		}
	}()
	waitHealthy(t, cli)
	pid := serve.Process.Pid
	// Sizes as served (the first node's files).
	sizes["system_overlay"], sizes["runtime_overlay"] = overlaySizes(t, cli, storm.Nodes(1, netip.MustParseAddr(firstNode))[0])

	f.LoadBefore = loadavg(t)
	cpu0 := cpuSeconds(t, pid)
	f.ServerRSSStart = statusBytes(t, pid, "VmRSS")
	var out, errb bytes.Buffer
	sim := cli.Command(ctx, b.storm, "-interface", "eth0", "-nodes", strconv.Itoa(nodes), "-first", firstNode,
		"-unknown", strconv.Itoa(unknown), "-boots", strconv.Itoa(*flagBoots), "-reboot-delay", flagReboot.String(), "-ramp", flagRamp.String(),
		// agent tls: true (the default): the agents enroll and use TLS.
		"-tls-url", "https://"+serverIP+":9874", "-ca", filepath.Join(root, "tls", "ca.crt"))
	sim.Stdout, sim.Stderr = &out, &errb
	err := sim.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 { // 3: the report says nodes failed
		require.NoError(t, err, "wwboot-storm: %s", errb.String())
	}
	f.ServerCPUSeconds = cpuSeconds(t, pid) - cpu0
	f.ServerPeakRSS = statusBytes(t, pid, "VmHWM")
	f.LoadAfter = loadavg(t)
	// The server namespace's TCP counters tell a full accept queue
	// (ListenOverflows), TCP memory pressure (TCPAbortOnMemory) and
	// connections the server reset apart (nstat: iproute2).
	if out, err := srv.Command(ctx, "nstat", "-az", "TcpExtListenOverflows", "TcpExtListenDrops", "TcpExtTCPAbortOnMemory",
		"TcpExtTCPAbortOnData", "TcpExtTCPAbortOnClose", "TcpOutRsts", "TcpExtTCPReqQFullDrop", "TcpExtTCPReqQFullDoCookies").CombinedOutput(); err == nil {
		t.Logf("server TCP counters:\n%s", out)
	}
	f.Report = new(storm.Report)
	require.NoError(t, json.Unmarshal(out.Bytes(), f.Report), "report: %s", out.String())
	f.CPUPerNode = f.ServerCPUSeconds / float64(nodes)
	f.RSSPerNode = float64(f.ServerPeakRSS-f.ServerRSSStart) / float64(nodes)
	return f
}

func appendFile(t *testing.T, path, s string) {
	fh, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = fh.WriteString(s)
	require.NoError(t, err)
	require.NoError(t, fh.Close())
}

func writeRandom(t *testing.T, path string, n int64) {
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	fh, err := os.Create(path)
	require.NoError(t, err)
	src, err := os.Open("/dev/urandom")
	require.NoError(t, err)
	defer src.Close()
	_, err = io.CopyN(fh, src, n)
	require.NoError(t, err)
	require.NoError(t, fh.Chmod(0o755))
	require.NoError(t, fh.Close())
}

// writeInventory puts the simulator's nodes in nodes.conf under the
// default profile that wwboot init wrote.
func writeInventory(t *testing.T, path string, n int) {
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	s := string(data)
	require.Contains(t, s, "\nnodes: {}\n", "wwboot init's nodes.conf changed form")
	var b strings.Builder
	b.WriteString("\nnodes:\n")
	for i, nd := range storm.Nodes(n, netip.MustParseAddr(firstNode)) {
		fmt.Fprintf(&b, "  n%05d:\n    profiles:\n      - default\n    image name: storm\n    network devices:\n      default:\n        hwaddr: %q\n        ipaddr: %s\n        netmask: 255.255.0.0\n",
			i+1, nd.MAC.String(), nd.Addr)
	}
	s = strings.Replace(s, "\nnodes: {}\n", b.String(), 1)
	require.NoError(t, os.WriteFile(path, []byte(s), 0o644))
}

// dialIn returns an HTTP client whose connections are made inside ns.
func dialIn(ns *netlab.NS) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		err = ns.Do(func() (err error) {
			var d net.Dialer
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}}}
}

func waitHealthy(t *testing.T, cli *netlab.NS) {
	c := dialIn(cli)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := c.Get("http://" + serverIP + ":9873/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("wwboot serve did not answer /healthz within 60 s")
}

// overlaySizes fetches the first node's system overlay; the runtime
// overlay goes only to the node's own address and port below 1024, which
// this client does not have, so its size is left 0.
func overlaySizes(t *testing.T, cli *netlab.NS, n storm.Node) (system, runtime int64) {
	c := dialIn(cli)
	resp, err := c.Get("http://" + serverIP + ":9873/overlay/system/" + strings.ReplaceAll(n.MAC.String(), ":", "-"))
	require.NoError(t, err)
	defer resp.Body.Close()
	system, _ = io.Copy(io.Discard, resp.Body)
	return system, 0
}

// linkCeiling measures a plain TCP transfer from the server namespace to the
// client namespace for two seconds.
func linkCeiling(t *testing.T, srv, cli *netlab.NS) float64 {
	var l net.Listener
	require.NoError(t, srv.Do(func() (err error) {
		l, err = net.Listen("tcp", serverIP+":5001")
		return err
	}))
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 1<<20)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}()
	var c net.Conn
	require.NoError(t, cli.Do(func() (err error) {
		c, err = net.Dial("tcp", serverIP+":5001")
		return err
	}))
	defer c.Close()
	buf := make([]byte, 1<<20)
	var n int64
	start := time.Now()
	for time.Since(start) < 2*time.Second {
		k, err := c.Read(buf)
		require.NoError(t, err)
		n += int64(k)
	}
	return float64(n) / time.Since(start).Seconds()
}

func cpuSeconds(t *testing.T, pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	require.NoError(t, err)
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseFloat(f[11], 64) // field 14 (utime), counted from field 3
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

func statusBytes(t *testing.T, pid int, key string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, key+":") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatalf("/proc/%d/status has no %s", pid, key)
	return 0
}

func loadavg(t *testing.T) float64 {
	b, err := os.ReadFile("/proc/loadavg")
	require.NoError(t, err)
	v, _ := strconv.ParseFloat(strings.Fields(string(b))[0], 64)
	return v
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
