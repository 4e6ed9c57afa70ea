package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/nodedb"
	"github.com/wwboot/wwboot/power/ipmisim"
	"github.com/wwboot/wwboot/provision/netlab"
)

// imageHelper is where the nodes have the node_features/helpers helper.
const imageHelper = "/usr/local/sbin/wwboot-image-feature"

// slurmPackages is the compute node image: debianPackages plus Debian's
// Slurm node daemon and munge.
var slurmPackages = append(append([]string(nil), debianPackages...), "munge", "slurmd")

// The Slurm test's power saving settings (seconds). ResumeTimeout is
// generous: a TCG boot on a loaded machine takes minutes.
const (
	slurmSuspendTime   = 30
	slurmSuspendTimout = 15
	slurmResumeTimeout = 900
	slurmBMCUser       = "admin"
	slurmBMCPass       = "Slurm-bmc-42"
)

// TestSlurmPowerSaving is the proof with Debian's real Slurm (slurm-wlm
// 22.05). munged and slurmctld run in the server's namespace beside wwboot
// serve; slurm.conf's power saving calls `wwboot slurm resume|suspend`
// through two wrapper scripts. The compute node n1 is a QEMU VM behind
// OpenIPMI's ipmi_sim, whose chassis hook starts and stops the QEMU process;
// it starts powered off (State=CLOUD: Slurm treats it as powered down). It
// boots from wwboot into a Debian image carrying slurmd and munge, with the
// munge key and slurm.conf delivered by a site runtime overlay ("slurm") and
// a site system overlay ("slurm.node") that holds munge and slurmd until
// the node agent has applied that runtime overlay (secure mode: iPXE's
// unprivileged request for the runtime overlay is refused, so it arrives
// only through the agent).
//
// `srun -w n1 hostname` must make slurmctld call ResumeProgram, wwboot
// power the VM on through IPMI, the node boot, slurmd register and the job
// print "n1"; after SuspendTime idle, SuspendProgram must power it off (the
// BMC reports off, the QEMU process is gone). Then an image per job:
// `srun --constraint=image=debian12b` (node_features/helpers, helpers.conf
// from `wwboot slurm helpers-conf`) makes slurmctld resume n1 with that
// feature, wwboot switches n1 to image debian12b, and the job reports the
// node booted it. The test logs SLURM-TIMING lines: seconds from submit to
// each stage.
func TestSlurmPowerSaving(t *testing.T) {
	if !*flagDebian {
		t.Skip("-debian=false")
	}
	netlab.Require(t)
	requireTools(t, "qemu-system-x86_64", "go", "ssh", "ssh-keygen", "ipmi_sim", "munged", "slurmctld",
		"srun", "sinfo", "scontrol")
	tree := debianTreeWith(t, slurmPackages)
	mungeUID, mungeGID := imageUser(t, tree, "munge")
	host, err := os.Hostname()
	require.NoError(t, err)
	host, _, _ = strings.Cut(host, ".")

	lab := netlab.NewNS(t)
	lab.Bridge(bridge, netip.MustParsePrefix(serverCIDR))
	n := testNode{Name: "n1", MAC: "52:54:00:77:03:01", IP: "10.77.0.31", Firmware: bios, Tap: "tap1"}
	lab.Tap(n.Tap, bridge)
	key, pub := sshKey(t)
	work := t.TempDir()

	// The munge key, shared by the server's munged and the node's.
	mungeKey := make([]byte, 1024)
	_, err = rand.Read(mungeKey)
	require.NoError(t, err)

	ww := newWwboot(t, lab)
	ww.run(t, "init")
	ww.authorizedKeys(t, pub)
	// Two images from one tree, so a job can ask for the other one
	// (--constraint=image=debian12b): an image per job.
	ww.run(t, "image", "import", tree, "debian12")
	ww.run(t, "image", "import", tree, "debian12b")
	helpers := ww.run(t, "slurm", "helpers-conf", "--helper", imageHelper, "--boot-time", strconv.Itoa(slurmResumeTimeout))

	// Site overlays. runtime "slurm": slurm.conf and the munge key (owned by
	// the image's munge user, as munged insists). system "slurm.node":
	// munge and slurmd wait for the agent's first runtime overlay.
	rt := filepath.Join(ww.root, "overlays", "slurm", "rootfs")
	writeFile(t, filepath.Join(rt, "etc/slurm/slurm.conf"), 0o644, slurmConf(host, ""))
	writeFile(t, filepath.Join(rt, "etc/slurm/helpers.conf"), 0o644, helpers)
	mungeDir := filepath.Join(rt, "etc/munge")
	writeFile(t, filepath.Join(mungeDir, "munge.key"), 0o400, string(mungeKey))
	must(t, os.Chmod(mungeDir, 0o700))
	for _, p := range []string{mungeDir, filepath.Join(mungeDir, "munge.key")} {
		must(t, os.Lchown(p, mungeUID, mungeGID))
	}
	sys := filepath.Join(ww.root, "overlays", "slurm.node", "rootfs", "etc/systemd/system")
	for _, unit := range []string{"munge", "slurmd"} {
		writeFile(t, filepath.Join(sys, unit+".service.d", "wwboot-runtime.conf"), 0o644, waitRuntimeDropIn)
	}
	// The helper that tells slurmd which image the node booted (it reads
	// the system overlay's node.conf, so it belongs to the system overlay).
	writeFile(t, filepath.Join(ww.root, "overlays", "slurm.node", "rootfs", strings.TrimPrefix(imageHelper, "/")), 0o755,
		ww.run(t, "slurm", "helper-script"))
	ww.run(t, "profile", "add", "slurm", "--system-overlays", "slurm.node", "--runtime-overlays", "slurm")
	ww.run(t, "node", "add", n.Name, "--profile", "default,slurm", "--image", "debian12", "--netdev", "default",
		"--hwaddr", n.MAC, "--ipaddr", n.IP, "--netmask", netmask)
	ww.run(t, "profile", "set", "default", "--kernelargs", "console=ttyS0")

	// The node's BMC: ipmi_sim on the namespace's loopback; its chassis
	// hook is the VM's power.
	bmcDir := filepath.Join(work, "bmc")
	must(t, os.MkdirAll(bmcDir, 0o755))
	vmDir := filepath.Join(work, "vm")
	must(t, os.MkdirAll(vmDir, 0o755))
	console := listenConsole(t, filepath.Join(vmDir, "console.sock"))
	hook := filepath.Join(vmDir, "power")
	writeFile(t, hook, 0o755, powerHook(t, vmDir, n))
	t.Cleanup(func() { killVM(vmDir) })
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	sim, err := ipmisim.Start(ctx, ipmisim.Options{Dir: bmcDir, Addr: "127.0.0.1", Username: slurmBMCUser,
		Password: slurmBMCPass, Hook: hook, Command: lab.Command})
	cancel()
	require.NoError(t, err)
	t.Cleanup(func() { _ = sim.Close() })
	store, err := nodedb.Open(t.Context(), filepath.Join(ww.root, "nodes.conf"))
	require.NoError(t, err)
	require.NoError(t, store.Update(t.Context(), func(c *nodedb.Config) error {
		c.NodeProfiles["slurm"].Ipmi = &nodedb.IPMI{UserName: slurmBMCUser, Password: slurmBMCPass, Interface: "lanplus"}
		c.Nodes[n.Name].Ipmi = &nodedb.IPMI{Ipaddr: "127.0.0.1", Port: sim.PortString()}
		return nil
	}))
	ww.run(t, "node", "list")
	ww.run(t, "power", "status", n.Name)

	ww.serve(t, "--interface", bridge, "--listen", serverIP, "--dhcp", "full", "--tftp",
		"--http-port", httpPort, fmt.Sprintf("--ipv6-ra=%v", *flagRA))

	// The controller: munged and slurmctld in the server's namespace.
	ctl := startSlurmctld(t, lab, ww, host, work, mungeKey, helpers)

	sinfo := ctl.run(t, "sinfo", "-h", "-N", "-o", "%N %T")
	assert.Equal(t, "n1 idle~", strings.TrimSpace(sinfo), "n1 starts powered down in Slurm")
	on, err := sim.Power()
	require.NoError(t, err)
	require.False(t, on, "the BMC starts with the power off")

	// The job.
	submit := time.Now()
	srunCtx, srunCancel := context.WithTimeout(t.Context(), (slurmResumeTimeout+120)*time.Second)
	defer srunCancel()
	srun := ctl.command(srunCtx, "srun", "--chdir=/tmp", "-w", n.Name, "-N1", "hostname")
	srunOut := &stampedLines{}
	srun.Stdout = srunOut
	srun.Stderr = srunOut
	t.Logf("$ srun --chdir=/tmp -w %s -N1 hostname", n.Name)
	srunErr := srun.Run()
	srunDone := time.Now()
	out := srunOut.lines()
	if srunErr != nil || !srunOut.has(n.Name) {
		t.Logf("slurmctld log:\n%s", indent(ctl.log(t)))
		t.Logf("wwboot slurm log:\n%s", indent(readOr(filepath.Join(work, "wwboot-slurm.log"))))
		t.Logf("console:\n%s", console.transcript(submit))
		node := sshNode{lab: lab, key: key, ip: n.IP}
		sctx, scancel := context.WithTimeout(t.Context(), time.Minute)
		diag, _ := node.run(sctx, "systemctl --no-pager status munge slurmd wwboot-agent; journalctl -b --no-pager -u munge -u slurmd -u wwboot-agent | tail -n 80; ls -la /etc/munge /etc/slurm")
		scancel()
		t.Logf("node diagnostics over ssh:\n%s", indent([]byte(diag)))
		t.Fatalf("srun: %v\n%s", srunErr, formatLines(out, submit))
	}
	t.Logf("srun output:\n%s", formatLines(out, submit))
	var jobLine time.Time
	for _, l := range out {
		if l.text == n.Name {
			jobLine = l.at
		}
	}
	assert.Equal(t, []string{n.Name}, srunOut.texts(func(s string) bool { return !strings.HasPrefix(s, "srun:") }),
		"the job's output is the node's hostname")

	// The stages, from each witness's own clock.
	events := readEvents(t, filepath.Join(vmDir, "events"))
	ctlLog := ctl.log(t)
	mark := func(name string, at time.Time, ok bool) string {
		if !ok || at.IsZero() {
			return " " + name + "=-"
		}
		return fmt.Sprintf(" %s=%.1f", name, at.Sub(submit).Seconds())
	}
	var b strings.Builder
	b.WriteString("SLURM-TIMING")
	at, ok := events.first("resume-program")
	b.WriteString(mark("resume-call", at, ok))
	at, ok = events.first("on")
	powerOn := at
	b.WriteString(mark("power-on", at, ok))
	at, ok = events.first("resume-program-exit")
	b.WriteString(mark("resume-exit", at, ok))
	for _, m := range []struct{ name, re string }{
		{"ipxe", `iPXE initialising devices`},
		{"ipxe-script", `^wwboot: booting `},
		{"kernel", `Linux version `},
		{"wwinit", `^wwboot: node `},
		{"systemd", `Welcome to .*Debian`},
	} {
		at, ok := console.find(regexp.MustCompile(m.re))
		b.WriteString(mark(m.name, at, ok))
	}
	at, ok = logTime(ctlLog, regexp.MustCompile(`(?i)node n1 now responding|n1.*returned to service|Node n1 .*respond`))
	b.WriteString(mark("slurmd-register", at, ok))
	at, ok = logTime(ctlLog, regexp.MustCompile(`Resetting JobId=\d+ start time for node power up|Configuration for JobId=\d+ is complete`))
	b.WriteString(mark("job-start", at, ok))
	b.WriteString(mark("job-output", jobLine, true))
	b.WriteString(mark("srun-exit", srunDone, true))
	if !powerOn.IsZero() {
		fmt.Fprintf(&b, " power-on-to-job=%.1f", jobLine.Sub(powerOn).Seconds())
	}
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Fprintf(&b, " load=%s", strings.Fields(string(load) + " -")[0])
	t.Log(b.String())
	t.Logf("slurmctld's lines about n1 and the job:\n%s", indent([]byte(grepLines(ctlLog, regexp.MustCompile(`n1|JobId=|power_save|POWER`)))))
	calls, _ := sim.Calls()
	assert.Contains(t, calls, "set power 1", "ipmi_sim was asked to power on")
	// Where the node's own boot went (systemd's view), while it is up.
	sctx, scancel := context.WithTimeout(t.Context(), 2*time.Minute)
	node := sshNode{lab: lab, key: key, ip: n.IP}
	chain, err := node.run(sctx, "systemd-analyze critical-chain slurmd.service wwboot-agent.service; "+
		"journalctl -b -o short-monotonic --no-pager -u wwboot-agent -u munge -u slurmd | head -n 30")
	scancel()
	t.Logf("node's boot (ssh; err=%v):\n%s", err, indent([]byte(chain)))

	// Idle for SuspendTime: SuspendProgram powers the node off.
	idleFrom := time.Now()
	deadline := idleFrom.Add(time.Duration(slurmSuspendTime+slurmSuspendTimout+180) * time.Second)
	var offAt time.Time
	for time.Now().Before(deadline) {
		if on, err := sim.Power(); err == nil && !on {
			if _, ok := events.reread(t).first("suspend-program"); ok && !vmRunning(vmDir) {
				offAt = time.Now()
				break
			}
		}
		time.Sleep(time.Second)
	}
	events = readEvents(t, filepath.Join(vmDir, "events"))
	if !assert.False(t, offAt.IsZero(), "SuspendProgram powered n1 off within %v of the job's end", time.Until(deadline)) {
		t.Logf("slurmctld log:\n%s", indent(ctl.log(t)))
		t.Logf("wwboot slurm log:\n%s", indent(readOr(filepath.Join(work, "wwboot-slurm.log"))))
	} else {
		sus, _ := events.first("suspend-program")
		off, _ := events.first("off")
		t.Logf("SLURM-TIMING suspend: job-end-to-suspend-call=%.1f suspend-call-to-power-off=%.1f (SuspendTime=%d)",
			sus.Sub(srunDone).Seconds(), off.Sub(sus).Seconds(), slurmSuspendTime)
		on, err := sim.Power()
		require.NoError(t, err)
		assert.False(t, on, "the BMC reports the power off")
		assert.False(t, vmRunning(vmDir), "the QEMU process is gone")
		calls, _ := sim.Calls()
		assert.Contains(t, calls, "set power 0", "ipmi_sim was asked to power off")
		out := ww.run(t, "power", "status", n.Name)
		assert.Contains(t, out, "off", "wwboot power status after the suspend")
	}

	// An image per job: a job that asks for the other image gets n1 booted
	// into it (node_features/helpers; wwboot switches the image in
	// nodes.conf from the feature slurmctld hands its programs).
	if !t.Failed() {
		events = readEvents(t, filepath.Join(vmDir, "events"))
		before := len(events.ev)
		submit2 := time.Now()
		ctx2, cancel2 := context.WithTimeout(t.Context(), (slurmResumeTimeout+120)*time.Second)
		srun2 := ctl.command(ctx2, "srun", "--chdir=/tmp", "-w", n.Name, "-N1", "--constraint=image=debian12b",
			"sh", "-c", ". /etc/wwboot/node.conf; echo booted=$WWBOOT_IMAGE")
		out2 := &stampedLines{}
		srun2.Stdout, srun2.Stderr = out2, out2
		t.Logf("$ srun --chdir=/tmp -w n1 -N1 --constraint=image=debian12b sh -c '. /etc/wwboot/node.conf; echo booted=$WWBOOT_IMAGE'")
		err := srun2.Run()
		cancel2()
		t.Logf("srun output:\n%s", formatLines(out2.lines(), submit2))
		events = readEvents(t, filepath.Join(vmDir, "events"))
		var progs []string
		for _, e := range events.ev[before:] {
			progs = append(progs, fmt.Sprintf("%.1fs %s", e.at.Sub(submit2).Seconds(), e.text))
		}
		t.Logf("programs and power after the submit:\n%s", indent([]byte(strings.Join(progs, "\n"))))
		if assert.NoError(t, err, "srun --constraint=image=debian12b") && assert.True(t, out2.has("booted=debian12b"), "the job ran on n1 booted into debian12b") {
			var at time.Time
			for _, l := range out2.lines() {
				if l.text == "booted=debian12b" {
					at = l.at
				}
			}
			t.Logf("SLURM-TIMING image-per-job: submit-to-job-output=%.1f", at.Sub(submit2).Seconds())
		} else {
			t.Logf("slurmctld log:\n%s", indent(ctl.log(t)))
		}
		assert.Contains(t, ww.run(t, "node", "show", n.Name, "-o", "json"), `"image name": "debian12b"`, "nodes.conf: n1 switched")
	}

	wwLog := string(readOr(filepath.Join(work, "wwboot-slurm.log")))
	assert.Contains(t, wwLog, `msg="slurm resume done"`, "wwboot logged the resume")
	assert.Contains(t, wwLog, `msg="slurm suspend done"`, "wwboot logged the suspend")
	assert.NotContains(t, wwLog, "level=WARN", "the programs ran cleanly under slurmctld (scontrol found without PATH)")
	assert.Contains(t, wwLog, `job=1 nodes=n1 features=""`, "22.05's resume file, the job's features from scontrol")
	t.Logf("wwboot slurm log:\n%s", indent([]byte(wwLog)))
	t.Logf("SLURM_RESUME_FILE as slurmctld wrote it:\n%s", indent(readOr(filepath.Join(work, "resume-file.json"))))
}

// waitRuntimeDropIn holds a daemon (the check runs as root: "+", munged runs as munge) until the node agent has applied the
// runtime overlay once (its state file exists; the image has none, the node
// is stateless), so munge and slurmd start with the key and the
// configuration the runtime overlay carries.
const waitRuntimeDropIn = `# wwboot: start after the node agent applied the runtime overlay (munge key, slurm.conf)
[Unit]
After=wwboot-agent.service

[Service]
TimeoutStartSec=15min
ExecStartPre=+/bin/sh -c 'while [ ! -e /var/lib/wwboot/runtime-overlay.state ]; do sleep 1; done'
`

// slurmConf is the cluster's slurm.conf: the server's (authSocket names its
// private munged socket) or the node's (authSocket "": the default socket).
// Programs and state paths only the controller uses come from dir.
func slurmConf(host, dir string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# The wwboot Slurm test's cluster: one CLOUD node, powered by wwboot.
ClusterName=wwboot
SlurmctldHost=%s(%s)
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
PrivateData=cloud
DebugFlags=NO_CONF_HASH,Power
SlurmctldDebug=info
SlurmdDebug=info
LogTimeFormat=iso8601_ms
SuspendTime=%d
SuspendTimeout=%d
ResumeTimeout=%d
NodeFeaturesPlugins=node_features/helpers
NodeName=n1 NodeAddr=10.77.0.31 CPUs=1 State=CLOUD Features=image=debian12,image=debian12b
PartitionName=compute Nodes=n1 Default=YES MaxTime=INFINITE State=UP
`, host, serverIP, slurmSuspendTime, slurmSuspendTimout, slurmResumeTimeout)
	if dir != "" {
		fmt.Fprintf(&b, `# The controller's own (private socket and paths).
AuthInfo=socket=%[1]s/munge/munge.socket
StateSaveLocation=%[1]s/state
SlurmctldPidFile=%[1]s/slurmctld.pid
SlurmctldLogFile=%[1]s/slurmctld.log
ResumeProgram=%[1]s/resume
SuspendProgram=%[1]s/suspend
ResumeFailProgram=%[1]s/resume-fail
RebootProgram=%[1]s/reboot
SlurmctldParameters=reboot_from_controller
`, dir)
	}
	return b.String()
}

// slurmctl is the controller the test runs.
type slurmctl struct {
	lab  *netlab.NS
	dir  string
	conf string
}

func (c *slurmctl) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := c.lab.Command(ctx, name, args...)
	cmd.Env = append(os.Environ(), "SLURM_CONF="+c.conf)
	return cmd
}

func (c *slurmctl) run(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	out, err := c.command(ctx, name, args...).CombinedOutput()
	t.Logf("$ %s %s\n%s", name, strings.Join(args, " "), indent(out))
	require.NoError(t, err, "%s %s: %s", name, strings.Join(args, " "), out)
	return string(out)
}

func (c *slurmctl) log(t *testing.T) []byte {
	b, _ := os.ReadFile(filepath.Join(c.dir, "slurmctld.log"))
	return b
}

// startSlurmctld writes the controller's slurm.conf and the power saving
// wrappers, starts munged and slurmctld in lab, and waits until slurmctld
// answers. Both are stopped when the test ends.
func startSlurmctld(t *testing.T, lab *netlab.NS, ww *wwboot, host, work string, mungeKey []byte, helpers string) *slurmctl {
	t.Helper()
	dir := filepath.Join(work, "slurm")
	for _, d := range []string{"state", "munge"} {
		must(t, os.MkdirAll(filepath.Join(dir, d), 0o755))
	}
	c := &slurmctl{lab: lab, dir: dir, conf: filepath.Join(dir, "slurm.conf")}
	writeFile(t, c.conf, 0o644, slurmConf(host, dir))
	writeFile(t, filepath.Join(dir, "helpers.conf"), 0o644, helpers)
	// The programs slurm.conf names: wrappers that stamp the call (the
	// test's timing) and run wwboot as a site would.
	events := filepath.Join(work, "vm", "events")
	for _, p := range []struct{ file, cmd string }{
		{"resume", "resume"}, {"suspend", "suspend"}, {"resume-fail", "resume-fail"}, {"reboot", "reboot"},
	} {
		writeFile(t, filepath.Join(dir, p.file), 0o755, fmt.Sprintf(`#!/bin/sh
# slurm.conf's %[1]s program: wwboot powers the nodes through their BMCs.
echo "$(date +%%s.%%N) %[1]s-program $*" >> %[2]s
[ -n "$SLURM_RESUME_FILE" ] && cp "$SLURM_RESUME_FILE" %[7]s
SLURM_CONF=%[3]s %[4]s --root %[5]s slurm %[1]s --log %[6]s "$@"
rc=$?
echo "$(date +%%s.%%N) %[1]s-program-exit $rc" >> %[2]s
exit $rc
`, p.cmd, events, c.conf, ww.bin, ww.root, filepath.Join(work, "wwboot-slurm.log"), filepath.Join(work, "resume-file.json")))
	}
	keyFile := filepath.Join(dir, "munge", "munge.key")
	writeFile(t, keyFile, 0o400, string(mungeKey))
	must(t, os.Chmod(filepath.Join(dir, "munge"), 0o711))
	daemon(t, lab, "munged", filepath.Join(dir, "munged.out"), nil, "munged", "--foreground", "--force",
		"--socket="+filepath.Join(dir, "munge", "munge.socket"), "--key-file="+keyFile,
		"--pid-file="+filepath.Join(dir, "munge", "munged.pid"), "--log-file="+filepath.Join(dir, "munge", "munged.log"),
		"--seed-file="+filepath.Join(dir, "munge", "munged.seed"))
	waitFor(t, time.Minute, "munged's socket", func() bool {
		_, err := os.Stat(filepath.Join(dir, "munge", "munge.socket"))
		return err == nil
	})
	daemon(t, lab, "slurmctld", filepath.Join(dir, "slurmctld.out"), []string{"SLURM_CONF=" + c.conf},
		"slurmctld", "-D", "-i", "-f", c.conf)
	waitFor(t, 2*time.Minute, "slurmctld answering", func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		out, err := c.command(ctx, "scontrol", "ping").CombinedOutput()
		return err == nil && strings.Contains(string(out), "UP")
	})
	return c
}

// daemon starts a foreground daemon in lab, logging to out, and stops it
// with SIGTERM when the test ends.
func daemon(t *testing.T, lab *netlab.NS, name, out string, env []string, prog string, args ...string) {
	t.Helper()
	f, err := os.Create(out)
	require.NoError(t, err)
	cmd := lab.Command(context.Background(), prog, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	t.Logf("$ %s %s &", prog, strings.Join(args, " "))
	require.NoError(t, cmd.Start(), "start %s", name)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); f.Close(); close(done) }()
	t.Cleanup(func() {
		// ip netns exec execs the daemon: the process is the daemon.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
}

func waitFor(t *testing.T, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// powerHook is the BMC's chassis hook: `power on|off|reset` starts or
// stops n's QEMU process (pid in DIR/qemu.pid), whose serial console
// connects to the test's socket DIR/console.sock. Every call is stamped in
// DIR/events.
func powerHook(t *testing.T, dir string, n testNode) string {
	t.Helper()
	args := qemuArgs(t, vm{Name: n.Name, Firmware: n.Firmware, MAC: n.MAC, Tap: n.Tap, Memory: debianMemory})
	var q []string
	for i := 0; i < len(args); i++ {
		switch {
		case args[i] == "-serial":
			q = append(q, "-serial", "unix:"+filepath.Join(dir, "console.sock"))
			i++
		default:
			q = append(q, args[i])
		}
	}
	quoted := make([]string, len(q))
	for i, a := range q {
		quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return fmt.Sprintf(`#!/bin/sh
# Chassis power of %[2]s: its QEMU process (ipmi_sim runs this as HOOK on|off|reset).
dir=%[1]s
echo "$(date +%%s.%%N) $1" >> $dir/events
pid=$(cat $dir/qemu.pid 2>/dev/null)
running() {
	[ -n "$pid" ] && [ -e /proc/$pid/stat ] && ! grep -q '^[0-9]* ([^)]*) Z' /proc/$pid/stat
}
stop() {
	if running; then
		kill $pid
		i=0
		while running && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
		running && kill -9 $pid
	fi
	rm -f $dir/qemu.pid
}
start() {
	setsid qemu-system-x86_64 %[3]s </dev/null >>$dir/qemu.out 2>&1 &
	echo $! > $dir/qemu.pid
}
case $1 in
on) running || start ;;
off) stop ;;
reset) stop; pid=; start ;;
*) exit 1 ;;
esac
`, dir, n.Name, strings.Join(quoted, " "))
}

// vmPID returns the QEMU process the hook started, 0 if none.
func vmPID(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, "qemu.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// vmRunning reports whether the hook's QEMU process runs. A zombie counts
// as gone: it has exited, and nothing here reaps the hook's orphans.
func vmRunning(dir string) bool {
	pid := vmPID(dir)
	if pid == 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z") && strings.Contains(string(b), "(qemu-system-x86")
}

// killVM cuts the VM's power when the test ends.
func killVM(dir string) {
	if vmRunning(dir) {
		_ = syscall.Kill(vmPID(dir), syscall.SIGKILL)
	}
}

// consoleLog collects the VM's serial console from a Unix socket QEMU
// connects to at each power-on, stamping each line.
type consoleLog struct {
	mu    sync.Mutex
	lines []stamped
}

type stamped struct {
	at   time.Time
	text string
}

func listenConsole(t *testing.T, path string) *consoleLog {
	t.Helper()
	l, err := net.Listen("unix", path)
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	c := &consoleLog{}
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				sc := bufio.NewScanner(conn)
				sc.Buffer(make([]byte, 64<<10), 1<<20)
				sc.Split(scanConsoleLines)
				for sc.Scan() {
					text := strings.TrimSpace(ansi.ReplaceAllString(sc.Text(), ""))
					if text == "" {
						continue
					}
					c.mu.Lock()
					c.lines = append(c.lines, stamped{time.Now(), text})
					c.mu.Unlock()
					if *flagConsole {
						t.Logf("n1 console | %s", text)
					}
				}
			}()
		}
	}()
	return c
}

func (c *consoleLog) find(re *regexp.Regexp) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.lines {
		if re.MatchString(l.text) {
			return l.at, true
		}
	}
	return time.Time{}, false
}

func (c *consoleLog) transcript(from time.Time) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return formatLines(c.lines, from)
}

func formatLines(lines []stamped, from time.Time) string {
	var b strings.Builder
	for _, l := range lines {
		fmt.Fprintf(&b, "%8.2fs %s\n", l.at.Sub(from).Seconds(), l.text)
	}
	return b.String()
}

// stampedLines is an io.Writer that stamps each line as it arrives.
type stampedLines struct {
	mu   sync.Mutex
	part []byte
	all  []stamped
}

func (s *stampedLines) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.part = append(s.part, p...)
	for {
		i := strings.IndexByte(string(s.part), '\n')
		if i < 0 {
			break
		}
		s.all = append(s.all, stamped{time.Now(), strings.TrimSpace(string(s.part[:i]))})
		s.part = s.part[i+1:]
	}
	return len(p), nil
}

func (s *stampedLines) lines() []stamped {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := append([]stamped(nil), s.all...)
	if len(s.part) > 0 {
		out = append(out, stamped{time.Now(), strings.TrimSpace(string(s.part))})
	}
	return out
}

func (s *stampedLines) has(text string) bool {
	for _, l := range s.lines() {
		if l.text == text {
			return true
		}
	}
	return false
}

func (s *stampedLines) texts(keep func(string) bool) []string {
	var out []string
	for _, l := range s.lines() {
		if l.text != "" && keep(l.text) {
			out = append(out, l.text)
		}
	}
	return out
}

// eventLog is DIR/events: "UNIXTIME.NANOS WHAT [ARGS]" lines the hook and
// the program wrappers append.
type eventLog struct {
	path string
	ev   []stamped
}

func readEvents(t *testing.T, path string) *eventLog {
	e := &eventLog{path: path}
	return e.reread(t)
}

func (e *eventLog) reread(t *testing.T) *eventLog {
	b, err := os.ReadFile(e.path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Errorf("events: %v", err)
	}
	e.ev = nil
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		sec, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		e.ev = append(e.ev, stamped{time.Unix(0, int64(sec*1e9)), strings.Join(f[1:], " ")})
	}
	return e
}

func (e *eventLog) first(what string) (time.Time, bool) {
	for _, l := range e.ev {
		if l.text == what || strings.HasPrefix(l.text, what+" ") {
			return l.at, true
		}
	}
	return time.Time{}, false
}

// logTime returns the time of the first slurmctld log line matching re
// (LogTimeFormat=iso8601_ms, local time).
func logTime(log []byte, re *regexp.Regexp) (time.Time, bool) {
	for _, line := range strings.Split(string(log), "\n") {
		if !re.MatchString(line) || !strings.HasPrefix(line, "[") {
			continue
		}
		stamp, _, _ := strings.Cut(line[1:], "]")
		at, err := time.ParseInLocation("2006-01-02T15:04:05.000", stamp, time.Local)
		if err == nil {
			return at, true
		}
	}
	return time.Time{}, false
}

func grepLines(b []byte, re *regexp.Regexp) string {
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if re.MatchString(line) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// imageUser returns the uid and gid of user name in the image tree.
func imageUser(t *testing.T, tree, name string) (int, int) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(tree, "etc/passwd"))
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) > 3 && f[0] == name {
			uid, err1 := strconv.Atoi(f[2])
			gid, err2 := strconv.Atoi(f[3])
			require.NoError(t, errors.Join(err1, err2))
			return uid, gid
		}
	}
	t.Fatalf("no user %s in %s/etc/passwd", name, tree)
	return 0, 0
}

func writeFile(t *testing.T, path string, mode os.FileMode, body string) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Dir(path), 0o755))
	must(t, os.WriteFile(path, []byte(body), mode))
	must(t, os.Chmod(path, mode))
}

func readOr(path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		return []byte(err.Error())
	}
	return b
}
