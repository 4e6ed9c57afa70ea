package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/overlay"
)

// run executes the command tree in-process against root.
func run(t *testing.T, root string, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := newRootCmd(&out, &errb, func(string) string { return "" })
	cmd.SetArgs(append([]string{"--root", root}, args...))
	err := cmd.ExecuteContext(context.Background())
	return out.String() + errb.String(), err
}

func mustRun(t *testing.T, root string, args ...string) string {
	t.Helper()
	out, err := run(t, root, args...)
	require.NoError(t, err, out)
	return out
}

// buildBinary compiles wwboot once per test binary run, and the node agent
// next to it (where wwboot serve looks for it, as an install puts it).
var buildBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "wwboot-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "wwboot")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", &exec.ExitError{Stderr: out}
	}
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(dir, agentName), "../wwboot-agent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", &exec.ExitError{Stderr: out}
	}
	return bin, nil
})

// withAgent points ROOT/wwboot.conf's agent: at the node agent built by
// buildBinary, for in-process commands that render the wwclient overlay
// (the test binary has no wwboot-agent next to it).
func withAgent(t *testing.T, root string) string {
	t.Helper()
	bin, err := buildBinary()
	require.NoError(t, err)
	agent := filepath.Join(filepath.Dir(bin), agentName)
	conf := filepath.Join(root, "wwboot.conf")
	b, err := os.ReadFile(conf)
	require.NoError(t, err)
	line := fmt.Sprintf("agent: %q", agent)
	text := regexp.MustCompile(`(?m)^agent:.*$`).ReplaceAllLiteralString(string(b), line)
	if !strings.Contains(text, line) {
		text += line + "\n"
	}
	require.NoError(t, os.WriteFile(conf, []byte(text), 0o644))
	return agent
}

func TestInitTwiceChangesNothing(t *testing.T) {
	root := t.TempDir()
	out := mustRun(t, root, "init")
	assert.Contains(t, out, "created "+filepath.Join(root, "wwboot.conf"), "init names every file it writes")
	snap := func() map[string]string {
		m := map[string]string{}
		_ = filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
			if err == nil && !fi.IsDir() {
				b, _ := os.ReadFile(p)
				m[p] = fi.ModTime().String() + string(b)
			}
			if err == nil && fi.IsDir() {
				m[p] = "dir"
			}
			return nil
		})
		return m
	}
	first := snap()
	for _, d := range []string{"overlays", "images", "tftp", "wwboot.conf", "nodes.conf"} {
		assert.Contains(t, first, filepath.Join(root, d))
	}
	out = mustRun(t, root, "init")
	assert.Contains(t, out, filepath.Join(root, "wwboot.conf")+" exists: left as it is")
	assert.Equal(t, first, snap())
	out = mustRun(t, root, "profile", "show", "default", "-o", "json")
	for _, want := range []string{`"init": "/sbin/init"`, `"root": "initramfs"`, `"wwinit"`, `"hosts"`} {
		assert.Contains(t, out, want)
	}
}

func TestNodeCommandsLikeWwctl(t *testing.T) {
	root := t.TempDir()
	mustRun(t, root, "init")
	mustRun(t, root, "node", "add", "n1", "--netdev", "default", "--hwaddr", "AA-BB-CC-DD-EE-01", "--ipaddr", "10.0.0.1",
		"--netmask", "255.255.255.0", "--gateway", "10.0.0.254", "--device", "eth0", "--mtu", "1500", "--image", "deb",
		"--comment", "first", "--kernelargs", "console=ttyS0", "--system-overlays", "wwinit,hostname", "--tagadd", "rack=r1", "--discoverable")
	mustRun(t, root, "node", "add", "n2", "--hwaddr", "aa:bb:cc:dd:ee:02", "--ipaddr", "10.0.0.2")
	out := mustRun(t, root, "node", "list")
	assert.Contains(t, out, "n1")
	assert.Contains(t, out, "aa:bb:cc:dd:ee:01")

	out = mustRun(t, root, "node", "show", "n1", "-o", "json")
	for _, want := range []string{`"id": "n1"`, `"image name": "deb"`, `"hwaddr": "aa:bb:cc:dd:ee:01"`, `"mtu": "1500"`,
		`"discoverable": "true"`, `"rack": "r1"`, `"panic=30"`, `"console=ttyS0"`} {
		assert.Contains(t, out, want, "show prints the effective node with nodes.conf's keys")
	}
	out = mustRun(t, root, "node", "list", "-o", "yaml")
	assert.Contains(t, out, "network devices:")

	// Errors name the node and field and change nothing.
	before, _ := os.ReadFile(filepath.Join(root, "nodes.conf"))
	out, err := run(t, root, "node", "set", "n2", "--ipaddr", "10.0.0.1")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "network devices.default.ipaddr")
	_, err = run(t, root, "node", "add", "n1")
	assert.ErrorContains(t, err, "already exists")
	_, err = run(t, root, "node", "set", "n1", "--hwaddr", "nonsense")
	assert.ErrorContains(t, err, "not a MAC address")
	_, err = run(t, root, "node", "set", "n1", "--profile", "nosuch")
	assert.ErrorContains(t, err, `unknown profile "nosuch"`)
	after, _ := os.ReadFile(filepath.Join(root, "nodes.conf"))
	assert.Equal(t, string(before), string(after), out)

	mustRun(t, root, "node", "set", "n*", "--tagadd", "site=lab")
	mustRun(t, root, "node", "unset", "n1", "--field", "image", "--tag", "rack")
	out = mustRun(t, root, "node", "show", "n1", "-o", "json")
	assert.NotContains(t, out, `"image name"`)
	assert.NotContains(t, out, `"rack"`)
	assert.Contains(t, out, `"site": "lab"`)
	mustRun(t, root, "node", "unset", "n1", "--netdev", "default", "--netdev-field", "gateway")
	assert.NotContains(t, mustRun(t, root, "node", "show", "n1", "-o", "json"), "10.0.0.254")

	mustRun(t, root, "profile", "add", "gpu", "--kernelargs", "nvidia.modeset=0", "--tagadd", "accel=a100")
	mustRun(t, root, "node", "set", "n2", "--profile", "default,gpu")
	assert.Contains(t, mustRun(t, root, "node", "show", "n2", "-o", "json"), "nvidia.modeset=0")
	_, err = run(t, root, "profile", "delete", "gpu")
	assert.ErrorContains(t, err, `unknown profile "gpu"`, "a profile in use cannot go")
	mustRun(t, root, "node", "delete", "n2")
	mustRun(t, root, "profile", "delete", "gpu")
	assert.NotContains(t, mustRun(t, root, "node", "list"), "n2")
}

func TestNodeImportMergesAWarewulfFile(t *testing.T) {
	root := t.TempDir()
	mustRun(t, root, "init")
	src := filepath.Join("..", "..", "nodedb", "testdata", "full.conf")
	// Right after init, the file's default profile replaces init's.
	out := mustRun(t, root, "node", "import", src)
	assert.Contains(t, out, "4 added, 1 replaced")
	_, err := run(t, root, "node", "import", src)
	assert.ErrorContains(t, err, `profile "default" is already in the inventory`)
	out = mustRun(t, root, "node", "import", src, "--overwrite")
	assert.Contains(t, out, "0 added, 5 replaced")
	out = mustRun(t, root, "node", "show", "n1", "-o", "json")
	assert.Contains(t, out, `"image name": "rocky-9"`)
}

// TestHundredConcurrentNodeSets runs 100 wwboot processes at once, each adding
// its own tag to the same node: every tag must be there afterwards.
func TestHundredConcurrentNodeSets(t *testing.T) {
	bin, err := buildBinary()
	require.NoError(t, err)
	root := t.TempDir()
	mustRun(t, root, "init")
	mustRun(t, root, "node", "add", "n1", "--hwaddr", "02:00:00:00:00:01")
	const procs = 100
	var wg sync.WaitGroup
	errs := make([]error, procs)
	outs := make([][]byte, procs)
	for i := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], errs[i] = exec.Command(bin, "--root", root, "node", "set", "n1", "--tagadd", fmt.Sprintf("t%03d=v", i)).CombinedOutput()
		}()
	}
	wg.Wait()
	for i := range procs {
		require.NoError(t, errs[i], string(outs[i]))
	}
	out := mustRun(t, root, "node", "show", "n1", "-o", "json")
	for i := range procs {
		assert.Contains(t, out, fmt.Sprintf(`"t%03d": "v"`, i))
	}
}

// TestDefaultProfileOverlaysExist: every overlay the default profile names is
// one package overlay has built in, so a new site's nodes get their system
// and runtime overlays without any site overlay.
func TestDefaultProfileOverlaysExist(t *testing.T) {
	p := defaultProfile()
	for _, name := range append(append([]string{}, p.SystemOverlay...), p.RuntimeOverlay...) {
		assert.Contains(t, overlay.BuiltinNames(), name, "default profile overlay %q", name)
	}
}
