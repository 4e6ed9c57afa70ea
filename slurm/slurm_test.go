package slurm

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/wwboot/wwboot/nodedb"
	"github.com/wwboot/wwboot/power"
)

// chassis is an embedder's BMC: a power state and the calls it received.
type chassis struct {
	mu    sync.Mutex
	on    bool
	calls []string
	fail  error
}

func (c *chassis) rec(op string, on *bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, op)
	if c.fail != nil {
		return c.fail
	}
	if on != nil {
		c.on = *on
	}
	return nil
}

func ptr(b bool) *bool                         { return &b }
func (c *chassis) On(context.Context) error    { return c.rec("on", ptr(true)) }
func (c *chassis) Off(context.Context) error   { return c.rec("off", ptr(false)) }
func (c *chassis) Cycle(context.Context) error { return c.rec("cycle", ptr(true)) }
func (c *chassis) Reset(context.Context) error { return c.rec("reset", nil) }
func (c *chassis) Status(context.Context) (power.State, error) {
	err := c.rec("status", nil)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.on {
		return power.StateOn, err
	}
	return power.StateOff, err
}

func inventory(t *testing.T, names ...string) *nodedb.DB {
	t.Helper()
	cfg := &nodedb.Config{NodeProfiles: map[string]*nodedb.Record{}, Nodes: map[string]*nodedb.Record{}}
	for _, n := range names {
		cfg.Nodes[n] = &nodedb.Record{}
	}
	db, err := nodedb.New(cfg)
	require.NoError(t, err)
	return db
}

func programs(t *testing.T, names ...string) (*Programs, map[string]*chassis, *bytes.Buffer) {
	bmcs := map[string]*chassis{}
	for _, n := range names {
		bmcs[n] = &chassis{}
	}
	var logBuf bytes.Buffer
	p := &Programs{
		Inventory: inventory(t, names...),
		BMC: func(n *nodedb.Node) (power.BMC, error) {
			return bmcs[n.ID], nil
		},
		Log: slog.New(slog.NewTextHandler(&logBuf, nil)),
	}
	return p, bmcs, &logBuf
}

func TestResumePowersOnAndMarksFailuresDown(t *testing.T) {
	p, bmcs, logBuf := programs(t, "n1", "n2", "n3", "n4")
	bmcs["n4"].fail = errors.New("BMC refused")
	var down []string
	p.MarkDown = func(_ context.Context, nodes, reason string) error {
		down = append(down, nodes+" "+reason)
		return nil
	}
	rep, err := p.Resume(context.Background(), "n[1-4],ghost")
	require.NoError(t, err)
	require.Len(t, rep.Results, 5)
	for _, n := range []string{"n1", "n2", "n3"} {
		assert.True(t, bmcs[n].on, n)
	}
	assert.Equal(t, "n4,ghost", rep.Failed)
	assert.EqualError(t, rep.Err(), "2 of 5 nodes failed: n4,ghost")
	assert.Equal(t, []string{"n4,ghost wwboot: power on failed"}, down)
	assert.Contains(t, logBuf.String(), `node=ghost error="node ghost: node \"ghost\": not found"`)
	assert.Contains(t, logBuf.String(), `ok=n[1-3]`)
}

func TestSuspendAndResumeFailPowerOff(t *testing.T) {
	p, bmcs, _ := programs(t, "c1", "c2")
	for _, b := range bmcs {
		b.on = true
	}
	rep, err := p.Suspend(context.Background(), "c1")
	require.NoError(t, err)
	assert.NoError(t, rep.Err())
	assert.False(t, bmcs["c1"].on)
	assert.True(t, bmcs["c2"].on)
	_, err = p.ResumeFail(context.Background(), "c2")
	require.NoError(t, err)
	assert.False(t, bmcs["c2"].on)
	assert.Equal(t, []string{"off"}, bmcs["c2"].calls)
}

func TestRebootCyclesWhatIsOnAndStartsWhatIsOff(t *testing.T) {
	p, bmcs, logBuf := programs(t, "n1", "n2")
	bmcs["n1"].on = true
	rep, err := p.Reboot(context.Background(), "n1,n2", "gpu_a100")
	require.NoError(t, err)
	assert.NoError(t, rep.Err())
	assert.Equal(t, []string{"status", "cycle"}, bmcs["n1"].calls)
	assert.Equal(t, []string{"status", "on"}, bmcs["n2"].calls)
	assert.Equal(t, "n1", rep.Results[0].Node)
	assert.Equal(t, "n2", rep.Results[1].Node)
	assert.Contains(t, logBuf.String(), `features=gpu_a100`)
}

func TestBadNodeListIsAnError(t *testing.T) {
	p, _, _ := programs(t, "n1")
	_, err := p.Resume(context.Background(), "n[3-1]")
	assert.ErrorContains(t, err, "node list from slurmctld")
	_, err = p.Suspend(context.Background(), " , ")
	assert.ErrorContains(t, err, "empty")
}

func TestResumeFileJobsAreLogged(t *testing.T) {
	p, bmcs, logBuf := programs(t, "n1", "n2", "n3")
	var switched []string
	p.SetImage = func(_ context.Context, nodes []string, image string) error {
		switched = append(switched, strings.Join(nodes, ",")+" "+image)
		return nil
	}
	// Slurm 23.02 and later: features per job.
	f := filepath.Join(t.TempDir(), "resume.json")
	require.NoError(t, os.WriteFile(f, []byte(`{"all_nodes_resume":"n[1-3]","jobs":[{"extra":null,"features":"image=rocky9","job_id":42,"nodes_alloc":"n[1-2]","nodes_resume":"n[1-2]","oversubscribe":"OK","partition":"compute","reservation":null},{"features":"","job_id":43,"nodes_resume":"n3"}]}`), 0o600))
	p.ResumeFile = f
	rep, err := p.Resume(context.Background(), "n[1-3]")
	require.NoError(t, err)
	assert.NoError(t, rep.Err())
	assert.Contains(t, logBuf.String(), `job=42 nodes=n[1-2] features="image=rocky9"`)
	assert.Equal(t, []string{"n1,n2 rocky9"}, switched, "job 42's nodes only")
	for _, n := range []string{"n1", "n2", "n3"} {
		assert.True(t, bmcs[n].on, n)
	}
}

// TestResumeFileOfSlurm2205 reads the file as Debian's Slurm 22.05 writes
// it (captured by the e2e test): no features, so JobFeatures asks.
func TestResumeFileOfSlurm2205(t *testing.T) {
	p, bmcs, logBuf := programs(t, "n1", "n2")
	var switched []string
	p.SetImage = func(_ context.Context, nodes []string, image string) error {
		switched = append(switched, strings.Join(nodes, ",")+" "+image)
		if image == "broken" {
			return errors.New("no such image")
		}
		return nil
	}
	feats := map[int64]string{1: "image=debian12"}
	p.JobFeatures = func(_ context.Context, id int64) (string, error) { return feats[id], nil }
	f := filepath.Join(t.TempDir(), "resume.json")
	require.NoError(t, os.WriteFile(f, []byte(`{"jobs":[{"job_id":1,"nodes":"n1"}],"all_nodes":"n1"}`), 0o600))
	p.ResumeFile = f
	rep, err := p.Resume(context.Background(), "n1")
	require.NoError(t, err)
	assert.NoError(t, rep.Err())
	assert.Equal(t, []string{"n1 debian12"}, switched)
	assert.Contains(t, logBuf.String(), `job=1 nodes=n1 features="image=debian12"`)

	// A job without features boots the nodes as they are.
	switched = nil
	feats[1] = ""
	_, err = p.Resume(context.Background(), "n1")
	require.NoError(t, err)
	assert.Empty(t, switched)

	// slurmctld's second argument (power_job_reboot) asks too; a switch
	// that fails leaves the node off and DOWN.
	var down []string
	p.MarkDown = func(_ context.Context, nodes, reason string) error {
		down = append(down, nodes)
		return nil
	}
	p.ResumeFile = ""
	rep, err = p.Resume(context.Background(), "n2", "image=broken")
	require.NoError(t, err)
	assert.Equal(t, "n2", rep.Failed)
	assert.False(t, bmcs["n2"].on)
	assert.Empty(t, bmcs["n2"].calls)
	assert.Equal(t, []string{"n2"}, down)
}

func TestJobFeaturesFromScontrol(t *testing.T) {
	line := "JobId=7 JobName=hostname UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901754 Nice=0 Account=(null) QOS=(null) JobState=CONFIGURING Reason=None Dependency=(null) ReqNodeList=n1 ExcNodeList=(null) NodeList=n1 Features=image=rocky9&gpu DelayBoot=00:00:00 OverSubscribe=OK Contiguous=0 Licenses=(null) Network=(null) Command=hostname WorkDir=/tmp Power=\n"
	assert.Equal(t, "image=rocky9&gpu", jobFeatures(line))
	assert.Equal(t, "", jobFeatures("JobId=8 Features=(null) DelayBoot=00:00:00"))

	dir := t.TempDir()
	fake := filepath.Join(dir, "scontrol")
	require.NoError(t, os.WriteFile(fake, []byte("#!/bin/sh\n[ \"$*\" = \"show job -o 7\" ] || exit 3\necho '"+strings.TrimSpace(line)+"'\n"), 0o755))
	got, err := ScontrolJobFeatures(fake)(context.Background(), 7)
	require.NoError(t, err)
	assert.Equal(t, "image=rocky9&gpu", got)
	_, err = ScontrolJobFeatures(fake)(context.Background(), 8)
	assert.ErrorContains(t, err, "scontrol show job 8")
}

func TestScontrolMarkDownArguments(t *testing.T) {
	dir := t.TempDir()
	rec := filepath.Join(dir, "args")
	fake := filepath.Join(dir, "scontrol")
	require.NoError(t, os.WriteFile(fake, []byte("#!/bin/sh\nfor a in \"$@\"; do echo \"$a\"; done > "+rec+"\n"), 0o755))
	require.NoError(t, ScontrolMarkDown(fake)(context.Background(), "n[1-2]", `power "on" failed`))
	got, err := os.ReadFile(rec)
	require.NoError(t, err)
	assert.Equal(t, "update\nNodeName=n[1-2]\nState=DOWN\nReason=power 'on' failed\n", string(got))

	require.NoError(t, os.WriteFile(fake, []byte("#!/bin/sh\necho 'slurm_update error: Invalid node name' >&2\nexit 1\n"), 0o755))
	err = ScontrolMarkDown(fake)(context.Background(), "x1", "r")
	assert.ErrorContains(t, err, "Invalid node name")
}

func TestConf(t *testing.T) {
	cfg := &nodedb.Config{
		NodeProfiles: map[string]*nodedb.Record{
			"cpu": {Tags: map[string]string{TagCPUs: "64", TagMemory: "257000", TagFeatures: "image=rocky9,image=debian12"}},
			"gpu": {Tags: map[string]string{TagCPUs: "32", TagMemory: "515000", TagGres: "gpu:4", TagPartitions: "gpu,compute"}},
		},
		Nodes: map[string]*nodedb.Record{},
	}
	for _, n := range []string{"n001", "n002", "n003", "n004", "n010"} {
		cfg.Nodes[n] = &nodedb.Record{Profiles: []string{"cpu"}}
	}
	cfg.Nodes["g1"] = &nodedb.Record{Profiles: []string{"gpu"}}
	cfg.Nodes["g2"] = &nodedb.Record{Profiles: []string{"gpu"}}
	cfg.Nodes["login1"] = &nodedb.Record{ClusterName: "interactive"}
	db, err := nodedb.New(cfg)
	require.NoError(t, err)
	var out bytes.Buffer
	require.NoError(t, Conf(&out, db, ConfOptions{}))
	assert.Equal(t, `# NodeName and PartitionName lines generated by wwboot slurm conf from nodes.conf
NodeName=g[1-2] CPUs=32 RealMemory=515000 Gres=gpu:4
NodeName=login1
NodeName=n[001-004,010] CPUs=64 RealMemory=257000 Features=image=rocky9,image=debian12
PartitionName=compute Nodes=g[1-2],n[001-004,010] Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=g[1-2] Default=NO MaxTime=INFINITE State=UP
PartitionName=interactive Nodes=login1 Default=NO MaxTime=INFINITE State=UP
`, out.String())

	cfg.Nodes["bad"] = &nodedb.Record{Tags: map[string]string{TagMemory: "lots"}}
	db, err = nodedb.New(cfg)
	require.NoError(t, err)
	err = Conf(&out, db, ConfOptions{})
	assert.EqualError(t, err, `node bad: tag slurm_memory="lots": not a whole number`)
	cfg.Nodes["bad"] = &nodedb.Record{Tags: map[string]string{TagFeatures: "a b"}}
	db, _ = nodedb.New(cfg)
	assert.ErrorContains(t, Conf(&out, db, ConfOptions{}), "tag slurm_features")
}
