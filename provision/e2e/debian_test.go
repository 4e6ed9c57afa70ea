package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/provision/netlab"
)

var (
	flagDebian      = flag.Bool("debian", true, "run TestDebianNode (debootstraps a Debian 12 image on first use, then boots it)")
	flagCompression = flag.String("compress", "", "image compression for TestDebianNode (gzip or zstd; empty: wwboot's default)")
)

// The real-distribution node image: Debian 12 as debootstrap makes it, with
// what a cluster node needs (systemd, udev, sshd, a network stack, the
// distribution kernel). Nothing is changed in the tree after debootstrap:
// wwboot's built-in overlays must make it a working node by themselves.
const (
	debianSuite   = "bookworm"
	debianVariant = "minbase"
	debianImage   = "debian12"
	// debianMemory is each VM's RAM (MiB): the unpacked image lives in it.
	debianMemory = 2048
)

var debianPackages = []string{
	"dbus", "ifupdown", "iproute2", "kmod", "linux-image-amd64",
	"openssh-server", "systemd-sysv", "udev",
}

// debianMirror is the Debian archive debootstrap reads: $WWBOOT_DEBIAN_MIRROR,
// else the first Debian archive of the machine's APT sources, else
// deb.debian.org.
func debianMirror() string {
	if m := os.Getenv("WWBOOT_DEBIAN_MIRROR"); m != "" {
		return m
	}
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if u, ok := strings.CutPrefix(strings.TrimSpace(line), "URIs:"); ok {
				u = strings.TrimSpace(u)
				if strings.HasSuffix(u, "/debian") {
					return u
				}
			}
		}
	}
	return "http://deb.debian.org/debian"
}

// testCache is where trees built for tests are kept between runs on this
// machine: $WWBOOT_TEST_CACHE, else /var/cache/wwboot-test.
func testCache() string {
	if d := os.Getenv("WWBOOT_TEST_CACHE"); d != "" {
		return d
	}
	return "/var/cache/wwboot-test"
}

// debianTree returns a Debian 12 root tree made by debootstrap, cached under
// testCache() by the hash of everything that decides its content (suite,
// variant, mirror, package list). The first run on a machine builds it
// (about 1.5 min from a nearby mirror); concurrent runs wait for one build.
func debianTree(t *testing.T) string {
	t.Helper()
	return debianTreeWith(t, debianPackages)
}

// debianTreeWith is debianTree with another package list (each list is its
// own cache entry).
func debianTreeWith(t *testing.T, packages []string) string {
	t.Helper()
	requireTools(t, "debootstrap")
	pkgs := append([]string(nil), packages...)
	sort.Strings(pkgs)
	mirror := debianMirror()
	recipe := fmt.Sprintf("debootstrap --variant=%s --include=%s %s %s (wwboot-test v1)",
		debianVariant, strings.Join(pkgs, ","), debianSuite, mirror)
	sum := sha256.Sum256([]byte(recipe))
	key := "debian-" + debianSuite + "-" + hex.EncodeToString(sum[:6])
	dir := filepath.Join(testCache(), key)
	root := filepath.Join(dir, "root")
	must(t, os.MkdirAll(testCache(), 0o755))

	lock, err := os.OpenFile(filepath.Join(testCache(), key+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	require.NoError(t, err)
	defer lock.Close()
	require.NoError(t, syscall.Flock(int(lock.Fd()), syscall.LOCK_EX))
	if _, err := os.Stat(filepath.Join(dir, "recipe")); err == nil {
		t.Logf("Debian tree from the cache: %s", root)
		return root
	}
	// Build beside the cache entry and rename it into place: a killed build
	// leaves only a .tmp directory, which the next build removes.
	tmp := dir + ".tmp"
	must(t, os.RemoveAll(tmp))
	must(t, os.MkdirAll(tmp, 0o755))
	args := []string{"--variant=" + debianVariant, "--include=" + strings.Join(pkgs, ","), debianSuite, filepath.Join(tmp, "root"), mirror}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, "debootstrap", args...).CombinedOutput()
	if err != nil {
		log := string(out)
		if b, rerr := os.ReadFile(filepath.Join(tmp, "root", "debootstrap", "debootstrap.log")); rerr == nil {
			log += "\ndebootstrap.log:\n" + string(b)
		}
		t.Fatalf("debootstrap %s: %v\n%s", strings.Join(args, " "), err, log)
	}
	must(t, os.WriteFile(filepath.Join(tmp, "recipe"), []byte(recipe+"\n"), 0o644))
	must(t, os.RemoveAll(dir))
	must(t, os.Rename(tmp, dir))
	t.Logf("$ debootstrap %s   (%.0fs; cached as %s)", strings.Join(args, " "), time.Since(start).Seconds(), dir)
	return root
}

// sshKey generates the key the test logs in with.
func sshKey(t *testing.T) (priv, pub string) {
	t.Helper()
	priv = filepath.Join(t.TempDir(), "id_ed25519")
	out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "wwboot-e2e", "-f", priv).CombinedOutput()
	require.NoError(t, err, "ssh-keygen: %s", out)
	b, err := os.ReadFile(priv + ".pub")
	require.NoError(t, err)
	return priv, strings.TrimSpace(string(b))
}

// sshNode runs commands on a booted node over ssh, from the lab namespace.
type sshNode struct {
	lab *netlab.NS
	key string
	ip  string
}

func (s sshNode) run(ctx context.Context, script string) (string, error) {
	cmd := s.lab.Command(ctx, "ssh", "-i", s.key, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR",
		"root@"+s.ip, script)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// hostKeys returns the node's host public keys as ssh-keyscan sees them,
// "TYPE BASE64" sorted.
func (s sshNode) hostKeys(ctx context.Context) ([]string, error) {
	out, err := s.lab.Command(ctx, "ssh-keyscan", "-T", "5", "-t", "rsa,ecdsa,ed25519", s.ip).Output()
	if err != nil {
		return nil, fmt.Errorf("ssh-keyscan %s: %w", s.ip, err)
	}
	var keys []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && !strings.HasPrefix(line, "#") {
			keys = append(keys, f[1]+" "+f[2])
		}
	}
	sort.Strings(keys)
	return keys, nil
}

// waitSSH waits until the node accepts the test's key, and returns the time
// since the VM's power-on.
func (s sshNode) waitSSH(t *testing.T, v *runningVM, timeout time.Duration) time.Duration {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		if v.exited() {
			t.Fatalf("%s powered off before ssh was ready\nconsole:\n%s", v.v.Name, v.result().transcript())
		}
		ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
		out, err := s.run(ctx, "true")
		cancel()
		if err == nil {
			return v.since()
		}
		last = strings.TrimSpace(out)
		time.Sleep(2 * time.Second)
	}
	t.Fatalf("%s: no ssh login within %v (last: %s)\nconsole:\n%s", v.v.Name, timeout, last, v.result().transcript())
	return 0
}

// debianNode is what the test knows of a booted node, to compare boots.
type debianNode struct {
	HostKeys  []string
	MachineID string
}

// TestDebianNode is the product's main job on a real distribution: a Debian
// 12 image, imported and set up exactly as the README shows, boots on BIOS
// and UEFI into a working node — systemd reports "running" with no failed
// unit, the node has its inventory hostname and address on the NIC with its
// MAC, /etc/hosts lists the nodes, root's authorized_keys came from the
// runtime overlay (the test logs in with a key it generated) — and a second
// boot of the same node has the same host keys and machine-id.
func TestDebianNode(t *testing.T) {
	if !*flagDebian {
		t.Skip("-debian=false")
	}
	netlab.Require(t)
	requireTools(t, "qemu-system-x86_64", "go", "ssh", "ssh-keygen", "ssh-keyscan")
	tree := debianTree(t)

	lab := netlab.NewNS(t)
	lab.Bridge(bridge, netip.MustParsePrefix(serverCIDR))
	lab.IP("addr", "add", "fe80::1/64", "dev", bridge, "nodad")
	nodes := []testNode{
		{Name: "n1", MAC: "52:54:00:77:01:01", IP: "10.77.0.21", Firmware: bios, Tap: "tap1"},
		{Name: "n2", MAC: "52:54:00:77:01:02", IP: "10.77.0.22", Firmware: uefi, Tap: "tap2"},
	}
	for _, n := range nodes {
		lab.Tap(n.Tap, bridge)
	}
	key, pub := sshKey(t)

	ww := newWwboot(t, lab)
	ww.run(t, "init")
	// The key the test logs in with is what the nodes' root accepts.
	ww.authorizedKeys(t, pub)
	importArgs := []string{"image", "import", tree, debianImage}
	if *flagCompression != "" {
		importArgs = append(importArgs, "--compress", *flagCompression)
	}
	ww.run(t, importArgs...)
	// The README's node example, as it is.
	for _, n := range nodes {
		ww.run(t, "node", "add", n.Name, "--image", debianImage, "--netdev", "default",
			"--hwaddr", n.MAC, "--ipaddr", n.IP, "--netmask", netmask)
	}
	// A serial console to watch the boot (the README's console example).
	ww.run(t, "profile", "set", "default", "--kernelargs", "console=ttyS0")
	ww.run(t, "node", "list")
	ww.serve(t, "--interface", bridge, "--listen", serverIP, "--dhcp", "full", "--tftp",
		"--http-port", httpPort, fmt.Sprintf("--ipv6-ra=%v", *flagRA))

	var mu sync.Mutex
	first := map[string]debianNode{}
	t.Run("boot", func(t *testing.T) {
		for _, n := range nodes {
			if *flagOnly != "" && *flagOnly != string(n.Firmware) {
				continue
			}
			t.Run(string(n.Firmware)+"-"+n.Name, func(t *testing.T) {
				t.Parallel()
				got := bootDebian(t, lab, ww, n, nodes, key, 1)
				mu.Lock()
				first[n.Name] = got
				mu.Unlock()
				if t.Failed() || n.Firmware != bios {
					return
				}
				// Power cut, power on: the same node again.
				again := bootDebian(t, lab, ww, n, nodes, key, 2)
				assert.Equal(t, got.HostKeys, again.HostKeys, "%s: host keys after a second boot", n.Name)
				assert.Equal(t, got.MachineID, again.MachineID, "%s: machine-id after a second boot", n.Name)
			})
		}
	})
	if len(first) == 2 {
		assert.NotEqual(t, first["n1"].MachineID, first["n2"].MachineID, "machine-id differs between nodes")
		assert.NotEqual(t, first["n1"].HostKeys, first["n2"].HostKeys, "host keys differ between nodes")
	}
	// None of the image's own host keys or machine-id reached a node.
	imageKeys, _ := filepath.Glob(filepath.Join(tree, "etc/ssh/ssh_host_*_key.pub"))
	for _, p := range imageKeys {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		f := strings.Fields(string(b))
		for name, got := range first {
			assert.NotContains(t, got.HostKeys, f[0]+" "+f[1], "%s serves the image's own host key %s", name, filepath.Base(p))
		}
	}
	if b, err := os.ReadFile(filepath.Join(tree, "etc/machine-id")); err == nil {
		for name, got := range first {
			assert.NotEqual(t, strings.TrimSpace(string(b)), got.MachineID, "%s has the image's machine-id", name)
		}
	}
	t.Logf("wwboot status:\n%s", indent([]byte(ww.run(t, "status", "--server", "http://"+serverIP+":"+httpPort))))
}

// bootDebian powers node n on, waits for ssh, checks the node is a working
// cluster node, and powers it off.
func bootDebian(t *testing.T, lab *netlab.NS, ww *wwboot, n testNode, all []testNode, key string, round int) debianNode {
	t.Helper()
	v := startVM(t, lab, vm{Name: fmt.Sprintf("%s#%d", n.Name, round), Firmware: n.Firmware, MAC: n.MAC, Tap: n.Tap,
		Memory: debianMemory, Timeout: 20 * time.Minute})
	defer v.stop()
	node := sshNode{lab: lab, key: key, ip: n.IP}
	ready := node.waitSSH(t, v, 15*time.Minute)
	load, _ := os.ReadFile("/proc/loadavg")
	t.Logf("DEBIAN-TIMING node=%s firmware=%s boot=%d power-on-to-ssh=%.1fs load=%s", n.Name, n.Firmware, round,
		ready.Seconds(), strings.Fields(string(load) + " -")[0])

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	sh := func(script string) string {
		t.Helper()
		out, err := node.run(ctx, script)
		require.NoError(t, err, "%s: %s: %s", n.Name, script, out)
		return strings.TrimSpace(out)
	}
	// systemd's verdict: running, nothing failed.
	state, _ := node.run(ctx, "timeout 300 systemctl is-system-running --wait")
	failed := sh("systemctl list-units --failed --no-legend --plain")
	assert.Equal(t, "running", strings.TrimSpace(state), "%s: systemctl is-system-running; failed units:\n%s\n%s",
		n.Name, failed, sh("systemctl list-units --failed; journalctl -b -p warning --no-pager | tail -n 60"))
	assert.Empty(t, failed, "%s: failed units", n.Name)

	// Identity: the inventory hostname, the address on the NIC with its MAC.
	assert.Equal(t, n.Name, sh("hostname"), "%s: hostname", n.Name)
	links := sh("ip -o link show")
	var dev string
	for _, line := range strings.Split(links, "\n") {
		if strings.Contains(line, "link/ether "+n.MAC) {
			dev = strings.TrimSuffix(strings.Fields(line)[1], ":")
			dev, _, _ = strings.Cut(dev, "@")
		}
	}
	if assert.NotEmpty(t, dev, "%s: a NIC with MAC %s\n%s", n.Name, n.MAC, links) {
		assert.Contains(t, sh("ip -o -4 addr show dev "+dev), " "+n.IP+"/24 ", "%s: address on %s", n.Name, dev)
	}
	// The runtime overlay: /etc/hosts lists the nodes; root's key is there.
	hosts := sh("cat /etc/hosts")
	for _, o := range all {
		assert.Regexp(t, regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(o.IP)+`\s.*\b`+o.Name+`\b`), hosts, "%s: /etc/hosts lists %s", n.Name, o.Name)
	}
	pub, err := os.ReadFile(key + ".pub")
	require.NoError(t, err)
	assert.Contains(t, sh("cat /root/.ssh/authorized_keys"), strings.TrimSpace(string(pub)), "%s: root's authorized_keys", n.Name)

	// The agent's heartbeat: the server knows the node is up.
	assert.Eventually(t, func() bool {
		for _, st := range ww.status(t).Nodes {
			if st.Node == n.Name {
				return st.State == "up"
			}
		}
		return false
	}, 2*time.Minute, time.Second, "%s: wwboot status shows it up (agent heartbeat)", n.Name)

	if round == 1 && n.Firmware == bios {
		// An inventory change reaches the running node through the agent's
		// long-poll, without a reboot: a new node appears in /etc/hosts.
		extra := fmt.Sprintf("x%d", time.Now().UnixNano()%100000)
		start := time.Now()
		ww.run(t, "node", "add", extra, "--image", debianImage, "--netdev", "default",
			"--hwaddr", "52:54:00:77:01:99", "--ipaddr", "10.77.0.99", "--netmask", netmask)
		var took time.Duration
		for time.Since(start) < 2*time.Minute {
			if out, err := node.run(ctx, "grep -w "+extra+" /etc/hosts"); err == nil && strings.Contains(out, "10.77.0.99") {
				took = time.Since(start)
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		assert.NotZero(t, took, "%s: the new node %s never reached /etc/hosts", n.Name, extra)
		t.Logf("DEBIAN-TIMING node=%s inventory-change-to-node=%.2fs (wwboot node add -> /etc/hosts, polled over ssh every 0.2 s)", n.Name, took.Seconds())
		ww.run(t, "node", "delete", extra)
	}

	var got debianNode
	got.MachineID = sh("cat /etc/machine-id")
	assert.Regexp(t, `^[0-9a-f]{32}$`, got.MachineID, "%s: machine-id", n.Name)
	got.HostKeys, err = node.hostKeys(ctx)
	require.NoError(t, err)
	assert.Len(t, got.HostKeys, 3, "%s: rsa, ecdsa and ed25519 host keys", n.Name)
	return got
}

// authorizedKeys makes pub the key the nodes' root accepts.
func (w *wwboot) authorizedKeys(t *testing.T, pub string) {
	t.Helper()
	p := filepath.Join(filepath.Dir(w.root), "authorized_keys")
	must(t, os.WriteFile(p, []byte(pub+"\n"), 0o644))
	f, err := os.OpenFile(filepath.Join(w.root, "wwboot.conf"), os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = fmt.Fprintf(f, "authorized keys: %s\n", p)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	t.Logf("wwboot.conf: authorized keys: %s (the test's own key)", p)
}

var flagCompareCompress = flag.Bool("compare-compress", false,
	"run TestDebianCompression: boot the Debian image built with gzip and with zstd, alternately, and print the times (bench/boot/compress.sh)")

// TestDebianCompression is a measurement, not a check (-compare-compress):
// the same Debian tree imported with gzip and with zstd, node n1 booted on
// each in turn (BIOS), power-on to init (the kernel has unpacked the image)
// and to ssh printed per boot and as ratios. Under TCG the kernel's
// single-threaded decompression is a large part of the boot.
func TestDebianCompression(t *testing.T) {
	if !*flagCompareCompress {
		t.Skip("a measurement: run with -compare-compress (bench/boot/compress.sh)")
	}
	netlab.Require(t)
	requireTools(t, "qemu-system-x86_64", "go", "ssh", "ssh-keygen")
	tree := debianTree(t)
	lab := netlab.NewNS(t)
	lab.Bridge(bridge, netip.MustParsePrefix(serverCIDR))
	lab.IP("addr", "add", "fe80::1/64", "dev", bridge, "nodad")
	n := testNode{Name: "n1", MAC: "52:54:00:77:01:01", IP: "10.77.0.21", Firmware: bios, Tap: "tap1"}
	lab.Tap(n.Tap, bridge)
	key, pub := sshKey(t)
	ww := newWwboot(t, lab)
	ww.run(t, "init")
	ww.authorizedKeys(t, pub)
	comps := []string{"gzip", "zstd"}
	for _, c := range comps {
		ww.run(t, "image", "import", tree, "debian-"+c, "--compress", c)
	}
	ww.run(t, "node", "add", n.Name, "--image", "debian-gzip", "--netdev", "default",
		"--hwaddr", n.MAC, "--ipaddr", n.IP, "--netmask", netmask)
	ww.run(t, "profile", "set", "default", "--kernelargs", "console=ttyS0")
	ww.serve(t, "--interface", bridge, "--listen", serverIP, "--dhcp", "full", "--tftp",
		"--http-port", httpPort, fmt.Sprintf("--ipv6-ra=%v", *flagRA))
	initLine := regexp.MustCompile(`^wwboot: node `)
	kernelLine := regexp.MustCompile(`^wwboot: starting the kernel`)
	sums := map[string][2]float64{}
	const rounds = 2
	for r := 0; r < rounds; r++ {
		for _, c := range comps {
			ww.run(t, "node", "set", n.Name, "--image", "debian-"+c)
			v := startVM(t, lab, vm{Name: n.Name + "-" + c, Firmware: bios, MAC: n.MAC, Tap: n.Tap, Memory: debianMemory, Timeout: 20 * time.Minute})
			ready := sshNode{lab: lab, key: key, ip: n.IP}.waitSSH(t, v, 15*time.Minute)
			v.stop()
			res := v.result()
			k, ok1 := res.find(kernelLine)
			i, ok2 := res.find(initLine)
			require.True(t, ok1 && ok2, "console lacks the kernel or init line:\n%s", res.transcript())
			unpack := (i.At - k.At).Seconds()
			load, _ := os.ReadFile("/proc/loadavg")
			t.Logf("COMPRESS-TIMING compression=%s round=%d kernel-start-to-init=%.1fs power-on-to-ssh=%.1fs load=%s",
				c, r+1, unpack, ready.Seconds(), strings.Fields(string(load) + " -")[0])
			s := sums[c]
			sums[c] = [2]float64{s[0] + unpack, s[1] + ready.Seconds()}
		}
	}
	g, z := sums["gzip"], sums["zstd"]
	t.Logf("COMPRESS-RESULT mean over %d rounds: kernel-start-to-init gzip %.1fs zstd %.1fs (zstd/gzip %.2f); power-on-to-ssh gzip %.1fs zstd %.1fs (zstd/gzip %.2f)",
		rounds, g[0]/rounds, z[0]/rounds, z[0]/g[0], g[1]/rounds, z[1]/rounds, z[1]/g[1])
}
