package slurm

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestImageFromFeatures(t *testing.T) {
	for _, c := range []struct{ in, image, err string }{
		{"", "", ""},
		{"gpu,knl", "", ""},
		{"image=rocky9", "rocky9", ""},
		{"gpu,image=debian12.5", "debian12.5", ""},
		{"image=rocky9&gpu", "rocky9", ""},
		{"image=rocky9,image=rocky9", "rocky9", ""},
		{"image=rocky9,image=debian12", "", "two images"},
		{"image=", "", "an image name"},
		{"image=a b", "", "an image name"},
		{"image=x;rm", "", "an image name"},
	} {
		got, err := ImageFromFeatures(c.in)
		if c.err != "" {
			assert.ErrorContains(t, err, c.err, c.in)
			continue
		}
		require.NoError(t, err, c.in)
		assert.Equal(t, c.image, got, c.in)
	}
}

func TestRebootSwitchesTheImageBeforeThePower(t *testing.T) {
	p, bmcs, logBuf := programs(t, "n1", "n2")
	bmcs["n1"].on = true
	var order []string
	p.SetImage = func(_ context.Context, nodes []string, image string) error {
		order = append(order, "set "+strings.Join(nodes, ",")+" "+image)
		// No BMC was called yet.
		for _, n := range nodes {
			assert.Empty(t, bmcs[n].calls, n)
		}
		return nil
	}
	rep, err := p.Reboot(context.Background(), "n[1-2],ghost", "gpu,image=rocky9")
	require.NoError(t, err)
	assert.Equal(t, []string{"set n1,n2 rocky9"}, order, "the nodes Slurm and the inventory both know")
	assert.Equal(t, []string{"status", "cycle"}, bmcs["n1"].calls)
	assert.Equal(t, []string{"status", "on"}, bmcs["n2"].calls)
	assert.Equal(t, "ghost", rep.Failed)
	assert.Contains(t, logBuf.String(), `msg="slurm: nodes switched image" nodes=n1,n2 image=rocky9`)
}

func TestRebootDoesNotPowerNodesItCouldNotSwitch(t *testing.T) {
	p, bmcs, _ := programs(t, "n1", "n2")
	bmcs["n1"].on = true
	p.SetImage = func(context.Context, []string, string) error {
		return errors.New(`image rocky9: not found`)
	}
	rep, err := p.Reboot(context.Background(), "n1,n2", "image=rocky9")
	require.NoError(t, err)
	assert.Equal(t, "n[1-2]", rep.Failed)
	assert.ErrorContains(t, rep.Results[0].Err, "node n1: switch to image rocky9: image rocky9: not found")
	for _, n := range []string{"n1", "n2"} {
		assert.Empty(t, bmcs[n].calls, "%s: no power operation into the old image", n)
	}
	assert.True(t, bmcs["n1"].on)

	// Without SetImage an image feature cannot be honoured either.
	p.SetImage = nil
	rep, err = p.Reboot(context.Background(), "n2", "image=rocky9")
	require.NoError(t, err)
	assert.Equal(t, "n2", rep.Failed)
	assert.ErrorContains(t, rep.Results[0].Err, "cannot switch images")
	assert.Empty(t, bmcs["n2"].calls)
}

func TestHelpersConf(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, HelpersConf(&b, []string{"rocky9", "debian12", "rocky9"}, HelpersOptions{
		Helper: "/usr/local/sbin/wwboot-image-feature", BootTime: 600, AllowUserBoot: []string{"alice", "bob"}}))
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	var conf []string
	for _, l := range lines {
		if !strings.HasPrefix(l, "#") {
			conf = append(conf, l)
		}
	}
	assert.Equal(t, []string{
		"Feature=image=debian12 Helper=/usr/local/sbin/wwboot-image-feature",
		"Feature=image=rocky9 Helper=/usr/local/sbin/wwboot-image-feature",
		"MutuallyExclusive=image=debian12,image=rocky9",
		"BootTime=600",
		"AllowUserBoot=alice,bob",
	}, conf)

	b.Reset()
	require.NoError(t, HelpersConf(&b, []string{"only"}, HelpersOptions{Helper: "/h"}))
	assert.NotContains(t, b.String(), "MutuallyExclusive", "one image excludes nothing")
	assert.ErrorContains(t, HelpersConf(&b, nil, HelpersOptions{Helper: "/h"}), "no images")
	assert.ErrorContains(t, HelpersConf(&b, []string{"rocky-9"}, HelpersOptions{Helper: "/h"}), `image "rocky-9" cannot be a Slurm feature`)
	assert.ErrorContains(t, HelpersConf(&b, []string{"a"}, HelpersOptions{Helper: "/a b"}), "without spaces")
}

// TestHelperScript runs the helper as the plugin does: without arguments it
// prints the active feature from node.conf, with one it changes nothing.
func TestHelperScript(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "node.conf")
	require.NoError(t, os.WriteFile(conf, []byte("WWBOOT_NODE='n1'\nWWBOOT_IMAGE='debian12'\n"), 0o644))
	helper := filepath.Join(dir, "helper")
	require.NoError(t, os.WriteFile(helper, []byte(HelperScript(conf)), 0o755))

	out, err := exec.Command(helper).Output()
	require.NoError(t, err)
	assert.Equal(t, "image=debian12\n", string(out))

	out, err = exec.Command(helper, "image=rocky9").Output()
	require.NoError(t, err)
	assert.Empty(t, string(out))

	require.NoError(t, os.Remove(conf))
	out, err = exec.Command(helper).Output()
	require.NoError(t, err, "a node without node.conf reports no feature, not an error")
	assert.Empty(t, string(out))
}

// TestFindScontrolWithoutPath finds scontrol the way a program slurmctld
// starts must: its PATH may not hold it.
func TestFindScontrolWithoutPath(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "scontrol")
	require.NoError(t, os.WriteFile(fake, []byte("#!/bin/sh\n"), 0o755))
	t.Setenv("PATH", "")
	assert.Equal(t, fake, FindScontrol("scontrol", []string{"/nonexistent", dir}))
	assert.Equal(t, "scontrol", FindScontrol("scontrol", []string{"/nonexistent"}), "not found: unchanged")
	assert.Equal(t, "/x/scontrol", FindScontrol("/x/scontrol", []string{dir}), "a path is taken as is")
	t.Setenv("PATH", dir)
	assert.Equal(t, fake, FindScontrol("scontrol", nil))
}
