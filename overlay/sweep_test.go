package overlay

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSweepBuiltHelperProcess is not a test: it is the child process
// TestSweepBuiltAfterKilledBuild starts and kills -9. It builds
// WWBOOT_SWEEP_NODES nodes' archives into WWBOOT_SWEEP_DIR.
func TestSweepBuiltHelperProcess(t *testing.T) {
	dir := os.Getenv("WWBOOT_SWEEP_DIR")
	if dir == "" {
		t.Skip("helper process only")
	}
	n, _ := strconv.Atoi(os.Getenv("WWBOOT_SWEEP_NODES"))
	r := newTestRenderer(t, func(o *Options) { o.BuildDir = dir })
	if _, err := r.Build(context.Background(), testDB(t, testConfig(n))); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// TestSweepBuiltAfterKilledBuild kills a real overlay build with SIGKILL
// while it writes its temporary archives (issue 11 item 7). While it runs,
// SweepBuilt leaves its files alone; after the kill it removes every
// temporary archive and nothing else, and the next build sweeps too.
func TestSweepBuiltAfterKilledBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("kills real processes")
	}
	dir := t.TempDir()
	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSweepBuiltHelperProcess$")
		cmd.Env = append(os.Environ(), "WWBOOT_SWEEP_DIR="+dir, "WWBOOT_SWEEP_NODES=800")
		cmd.Stderr = os.Stderr
		require.NoError(t, cmd.Start())
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
		return cmd
	}
	waitTemps := func(cmd *exec.Cmd) {
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			if m, _ := filepath.Glob(filepath.Join(dir, "*", ".tmp-*")); len(m) >= 5 {
				return
			}
			time.Sleep(time.Millisecond)
		}
		t.Fatal("no temporary archives appeared")
	}

	cmd := start()
	waitTemps(cmd)
	removed, ran, err := SweepBuilt(dir)
	require.NoError(t, err)
	assert.False(t, ran, "a live build holds the directory: no sweep")
	assert.Empty(t, removed)
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	err = cmd.Wait()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "killed")

	left, _ := filepath.Glob(filepath.Join(dir, "*", ".tmp-*"))
	require.NotEmpty(t, left, "the kill left temporary archives")
	built, _ := filepath.Glob(filepath.Join(dir, "*", "*.cpio.gz"))
	removed, ran, err = SweepBuilt(dir)
	require.NoError(t, err)
	assert.True(t, ran)
	assert.ElementsMatch(t, left, removed)
	after, _ := filepath.Glob(filepath.Join(dir, "*", ".tmp-*"))
	assert.Empty(t, after)
	still, _ := filepath.Glob(filepath.Join(dir, "*", "*.cpio.gz"))
	assert.Equal(t, built, still, "finished archives are kept")
	t.Logf("killed build left %d temporary archives; swept", len(left))

	// A build started after another kill sweeps before it stores.
	cmd = start()
	waitTemps(cmd)
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
	r := newTestRenderer(t, func(o *Options) { o.BuildDir = dir })
	_, err = r.Build(context.Background(), testDB(t, testConfig(2)))
	require.NoError(t, err)
	after, _ = filepath.Glob(filepath.Join(dir, "*", ".tmp-*"))
	assert.Empty(t, after)
}
