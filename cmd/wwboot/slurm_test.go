package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/image"
	"github.com/wwboot/wwboot/provision/netlab"
)

// TestSlurmProgramsAsSlurmctldRunsThem runs the programs the way slurmctld
// does: one hostlist argument, standard input, output and error closed, the
// exit status the only answer; the BMCs are ipmi_sim in a namespace.
func TestSlurmProgramsAsSlurmctldRunsThem(t *testing.T) {
	netlab.Require(t)
	netlab.RequireTools(t, "ipmi_sim")
	ns := netlab.NewNS(t)
	root, sims := powerSite(t, ns)
	bin, err := buildBinary()
	require.NoError(t, err)
	dir := t.TempDir()
	logFile := filepath.Join(dir, "wwboot.log")
	downArgs := filepath.Join(dir, "scontrol.args")
	scontrol := filepath.Join(dir, "scontrol")
	require.NoError(t, os.WriteFile(scontrol, []byte("#!/bin/sh\necho \"$@\" >> "+downArgs+"\n"), 0o755))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	program := func(args ...string) (int, time.Duration) {
		full := append([]string{bin, "--root", root, "slurm"}, args[0], "--log", logFile, "--scontrol", scontrol, "--timeout", "8s")
		full = append(full, args[1:]...)
		cmd := ns.Command(ctx, "sh", append([]string{"-c", `exec "$0" "$@" <&- >&- 2>&-`}, full...)...)
		start := time.Now()
		err := cmd.Run()
		took := time.Since(start)
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), took
		}
		require.NoError(t, err)
		return 0, took
	}
	power := func() []bool {
		var out []bool
		for _, s := range sims {
			on, err := s.Power()
			require.NoError(t, err)
			out = append(out, on)
		}
		return out
	}

	code, took := program("resume", "n[1-3]")
	assert.Equal(t, 0, code)
	assert.Equal(t, []bool{true, true, true}, power())
	assert.Less(t, took, 10*time.Second)

	code, _ = program("suspend", "n[1-3]")
	assert.Equal(t, 0, code)
	assert.Equal(t, []bool{false, false, false}, power())

	// n4's BMC does not answer and n5 has none: the run still powers n1 on,
	// exits non-zero, and tells Slurm the two are DOWN.
	code, _ = program("resume", "n1,n[4-5]")
	assert.Equal(t, 1, code)
	assert.Equal(t, []bool{true, false, false}, power())
	down, err := os.ReadFile(downArgs)
	require.NoError(t, err)
	assert.Equal(t, "update NodeName=n[4-5] State=DOWN Reason=wwboot: power on failed\n", string(down))

	code, _ = program("resume-fail", "n1")
	assert.Equal(t, 0, code)
	assert.Equal(t, []bool{false, false, false}, power())

	// reboot_from_controller passes a comma list and the features: an
	// image=NAME feature of an image wwboot does not have fails the nodes
	// and leaves their power alone.
	callsBefore := func() []string {
		c, err := sims[0].Calls()
		require.NoError(t, err)
		return c
	}
	n1Before := callsBefore()
	code, _ = program("reboot", "n1", "image=rocky9")
	assert.Equal(t, 1, code, "no image rocky9 yet")
	assert.Equal(t, n1Before, callsBefore(), "n1's BMC untouched")
	// With the image, the nodes switch to it in nodes.conf, then boot.
	tree := filepath.Join(t.TempDir(), "tree")
	require.NoError(t, os.MkdirAll(filepath.Join(tree, "boot"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tree, "boot/vmlinuz-6.6.1"), []byte("kernel"), 0o644))
	mustRun(t, root, "image", "import", tree, "rocky9")
	require.NoError(t, sims[1].SetPower(true))
	before, err := sims[1].Calls()
	require.NoError(t, err)
	code, _ = program("reboot", "n1,n2", "image=rocky9")
	assert.Equal(t, 0, code)
	for _, n := range []string{"n1", "n2"} {
		out := mustRun(t, root, "node", "show", n, "-o", "json")
		assert.Contains(t, out, `"image name": "rocky9"`, n)
	}
	// n2 was on: power cycle, which ipmi_sim does as off now, on a second later.
	require.Eventually(t, func() bool {
		calls, err := sims[1].Calls()
		require.NoError(t, err)
		sets := []string{}
		for _, c := range calls[len(before):] {
			if strings.HasPrefix(c, "set ") {
				sets = append(sets, c)
			}
		}
		return strings.Join(sets, ",") == "set power 0,set power 1"
	}, 10*time.Second, 50*time.Millisecond)
	// ipmi_sim's chassis program logs the call before it records the
	// state: wait for the state too.
	assert.Eventually(t, func() bool { return power()[1] }, 10*time.Second, 50*time.Millisecond, "n2 back on after the cycle")
	assert.True(t, power()[0], "n1 was off: powered on")

	log, err := os.ReadFile(logFile)
	require.NoError(t, err)
	text := string(log)
	assert.Regexp(t, `msg="slurm resume" program=resume pid=\d+ nodes=3 ok=n\[1-3\] failed=""`, text)
	assert.Regexp(t, `level=ERROR msg="slurm resume: node failed" program=resume pid=\d+ node=n5 error="node n5: no BMC configured`, text)
	assert.Contains(t, text, `features="image=rocky9"`)
	assert.NotContains(t, text, powerTestPass)
	assert.Contains(t, text, `msg="slurm: nodes switched image" program=reboot`)
	assert.Regexp(t, `node=n1 error="node n1: switch to image rocky9: image rocky9: `, text)
	assert.Equal(t, 6, strings.Count(text, ` done" `), text)
}

func TestSlurmConfCommand(t *testing.T) {
	root := t.TempDir()
	conf := `nodeprofiles:
  cpu:
    tags:
      slurm_cpus: "8"
      slurm_memory: "15000"
nodes:
  n01: {profiles: [cpu]}
  n02: {profiles: [cpu]}
  n03: {profiles: [cpu]}
  big: {tags: {slurm_cpus: "128", slurm_partitions: "large"}}
`
	require.NoError(t, os.WriteFile(filepath.Join(root, "nodes.conf"), []byte(conf), 0o644))
	out := mustRun(t, root, "slurm", "conf")
	assert.Equal(t, `# NodeName and PartitionName lines generated by wwboot slurm conf from nodes.conf
NodeName=big CPUs=128
NodeName=n[01-03] CPUs=8 RealMemory=15000
PartitionName=compute Nodes=n[01-03] Default=YES MaxTime=INFINITE State=UP
PartitionName=large Nodes=big Default=NO MaxTime=INFINITE State=UP
`, out)
}

// TestSlurmConfPowerSaveAndImageFeatures: the node lines carry what Slurm's
// power saving and the image-per-job helper need: State=CLOUD for the nodes
// wwboot can power (a BMC address), unless a slurm_state tag says
// otherwise, and Features=image=NAME for every image helpers-conf lists.
func TestSlurmConfPowerSaveAndImageFeatures(t *testing.T) {
	root := t.TempDir()
	mustRun(t, root, "init")
	st, err := image.OpenStore(filepath.Join(root, "images"))
	require.NoError(t, err)
	for _, name := range []string{"rocky9", "debian12"} {
		tree := t.TempDir()
		require.NoError(t, os.MkdirAll(filepath.Join(tree, "boot"), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(tree, "boot", "vmlinuz-6.1.0-9-amd64"), []byte("kernel "+name), 0o644))
		_, err = st.Import(context.Background(), tree, name, image.BuildOptions{})
		require.NoError(t, err)
	}
	conf := `nodeprofiles:
  default: {}
  bmc:
    ipmi: {username: admin, password: pw}
    tags: {slurm_cpus: "8", slurm_features: "gpu,image=rocky9"}
nodes:
  n1: {profiles: [bmc], ipmi: {ipaddr: 10.0.9.1}}
  n2: {profiles: [bmc], ipmi: {ipaddr: 10.0.9.2}}
  n3: {profiles: [bmc]}
  n4: {profiles: [bmc], ipmi: {ipaddr: 10.0.9.4}, tags: {slurm_state: unknown}}
`
	require.NoError(t, os.WriteFile(filepath.Join(root, "nodes.conf"), []byte(conf), 0o644))
	out := mustRun(t, root, "slurm", "conf")
	assert.Equal(t, `# NodeName and PartitionName lines generated by wwboot slurm conf from nodes.conf
NodeName=n[1-2] CPUs=8 Features=gpu,image=rocky9,image=debian12 State=CLOUD
NodeName=n3 CPUs=8 Features=gpu,image=rocky9,image=debian12
NodeName=n4 CPUs=8 Features=gpu,image=rocky9,image=debian12 State=UNKNOWN
PartitionName=compute Nodes=n[1-4] Default=YES MaxTime=INFINITE State=UP
`, out)
	// The feature names are the ones helpers.conf declares.
	helpers := mustRun(t, root, "slurm", "helpers-conf")
	assert.Contains(t, helpers, "Feature=image=debian12 ")
	assert.Contains(t, helpers, "Feature=image=rocky9 ")

	out = mustRun(t, root, "slurm", "conf", "--power-save=false", "--image-features=false")
	assert.Contains(t, out, "NodeName=n[1-3] CPUs=8 Features=gpu,image=rocky9\n")
	assert.Contains(t, out, "NodeName=n4 CPUs=8 Features=gpu,image=rocky9 State=UNKNOWN\n")

	require.NoError(t, os.WriteFile(filepath.Join(root, "nodes.conf"), []byte("nodes:\n  n1: {tags: {slurm_state: sleeping}}\n"), 0o644))
	_, err = run(t, root, "slurm", "conf")
	assert.ErrorContains(t, err, `node n1: tag slurm_state="sleeping": use one of CLOUD, DOWN`)
}

// TestSlurmHelpShowsOnlyTheFlagsEachUses: conf and the helpers commands
// take none of the programs' flags; each program shows the ones it uses,
// and still accepts the others (wrapper scripts pass one set to all).
func TestSlurmHelpShowsOnlyTheFlagsEachUses(t *testing.T) {
	program := []string{"--log", "--deadline", "--concurrency", "--timeout"}
	for _, args := range [][]string{{"slurm", "conf"}, {"slurm", "helpers-conf"}, {"slurm", "helper-script"}, {"slurm"}} {
		out := mustRun(t, t.TempDir(), append(args, "--help")...)
		_, out, _ = strings.Cut(out, "\nFlags:") // the parent's text names --log
		for _, fl := range append(program, "--mark-down", "--scontrol") {
			assert.NotContains(t, out, fl, "%v", args)
		}
	}
	assert.Contains(t, mustRun(t, t.TempDir(), "slurm", "conf", "--help"), "--power-save")
	for _, p := range []string{"resume", "suspend", "resume-fail", "reboot"} {
		out := mustRun(t, t.TempDir(), "slurm", p, "--help")
		for _, fl := range program {
			assert.Contains(t, out, fl, p)
		}
		assert.Equal(t, p == "resume", strings.Contains(out, "--mark-down"), p)
		assert.Equal(t, p == "resume" || p == "reboot", strings.Contains(out, "--scontrol"), p)
	}
	// A flag hidden from suspend's help is still accepted there.
	root := t.TempDir()
	mustRun(t, root, "init")
	_, err := run(t, root, "slurm", "suspend", "nosuch", "--scontrol", "/bin/true", "--mark-down=false", "--log", "-")
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "unknown flag")
}
