// Package slurm connects wwboot to Slurm's power saving and node
// configuration: the programs slurm.conf names (ResumeProgram,
// SuspendProgram, ResumeFailProgram, and RebootProgram with
// SlurmctldParameters=reboot_from_controller), and NodeName/PartitionName
// lines built from the inventory.
//
// The contract with slurmctld (slurm.conf(5), Slurm 22.05): each program
// runs as SlurmUser with the node names as its first argument in hostlist
// form (RebootProgram: a comma-separated list, and the features required for
// the reboot as an optional second argument); ResumeProgram also finds a job
// to node mapping in the JSON file named by SLURM_RESUME_FILE. slurmctld
// discards the programs' output and only logs a non-zero exit, so the
// programs log to a file, return once every BMC accepted (or refused) the
// request, and exit non-zero when any node failed. A node ResumeProgram could
// not power on is reported to Slurm as DOWN (MarkDown), as the manual asks.
//
// An image per job: with Slurm's node_features/helpers plugin, the feature
// image=NAME (ImageFeature) is an image a node can become. HelpersConf
// writes helpers.conf, HelperScript the node-side helper that reports the
// image a node booted, and Reboot and Resume switch the nodes to the image a
// job asks for (SetImage) before they power them.
package slurm

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"

	"github.com/wwboot/wwboot/hostlist"
	"github.com/wwboot/wwboot/nodedb"
	"github.com/wwboot/wwboot/power"
)

// Inventory is what the programs need from nodes.conf: nodedb's DB
// satisfies it.
type Inventory interface {
	// Names lists every node, sorted.
	Names() []string
	// Node returns the effective (profile-merged) node, or an error wrapping
	// nodedb.ErrNotFound.
	Node(name string) (*nodedb.Node, error)
}

// Programs runs Slurm's power saving programs against an inventory.
type Programs struct {
	// Inventory resolves node names.
	Inventory Inventory
	// BMC returns a node's BMC; nil means DefaultBMC (nodes.conf's ipmi:).
	BMC func(n *nodedb.Node) (power.BMC, error)
	// Power tunes the BMC operations (concurrency, timeout per node).
	Power power.Options
	// MarkDown, when set, tells Slurm that nodes are DOWN with a reason
	// (ScontrolMarkDown runs scontrol update).
	MarkDown func(ctx context.Context, nodes, reason string) error
	// SetImage, when set, switches nodes to another image (nodes.conf's
	// image of each node); Reboot and Resume call it for an image=NAME
	// feature (ImageFeature) before they power the nodes. Without it such
	// a request fails for its nodes.
	SetImage func(ctx context.Context, nodes []string, image string) error
	// JobFeatures, when set, returns a job's feature request (Slurm 22.05's
	// SLURM_RESUME_FILE does not carry it; ScontrolJobFeatures asks
	// scontrol).
	JobFeatures func(ctx context.Context, jobID int64) (string, error)
	// ResumeFile is the path slurmctld passes in SLURM_RESUME_FILE (main
	// reads the environment); its jobs are logged by Resume.
	ResumeFile string
	// Log receives a record per program run and per failed node; nil
	// discards.
	Log *slog.Logger
}

// DefaultBMC builds a node's BMC from its effective ipmi: block.
func DefaultBMC(n *nodedb.Node) (power.BMC, error) {
	c, err := power.ConfigFromIPMI(n.Ipmi)
	if err != nil {
		return nil, err
	}
	return power.New(c)
}

// Report is the outcome of one program run.
type Report struct {
	// Results has one entry per node, in hostlist order.
	Results []power.Result
	// Failed is the hostlist of the nodes that failed ("" if none).
	Failed string
}

// Err summarises the failures, or nil.
func (r Report) Err() error {
	if r.Failed == "" {
		return nil
	}
	n := 0
	for _, res := range r.Results {
		if res.Err != nil {
			n++
		}
	}
	return fmt.Errorf("%d of %d nodes failed: %s", n, len(r.Results), r.Failed)
}

// Resume powers the nodes on (ResumeProgram). features is the optional
// second argument slurmctld passes when it boots nodes to change their
// features; SLURM_RESUME_FILE's jobs name features too (Slurm 23.02 and
// later write them; for 22.05's file, which has none, JobFeatures asks for
// each job's). An image=NAME among a job's features switches that job's
// nodes to image NAME before the power goes on (SetImage); nodes that cannot
// be switched are not powered. Nodes that fail are marked DOWN in Slurm when
// MarkDown is set.
func (p *Programs) Resume(ctx context.Context, nodes string, features ...string) (Report, error) {
	_, targets, err := p.targets(nodes)
	if err != nil {
		return Report{}, err
	}
	kn := known(targets)
	failSwitched(targets, p.switchImages(ctx, kn, strings.Join(features, ",")))
	for _, j := range p.resumeJobs(ctx, p.ResumeFile) {
		if j.Features == "" {
			continue
		}
		jobNodes := kn
		if j.Nodes != "" {
			in, err := hostlist.Expand(j.Nodes)
			if err != nil {
				p.log().Warn("slurm resume: SLURM_RESUME_FILE job nodes", "job", j.JobID, "nodes", j.Nodes, "error", err)
				continue
			}
			jobNodes = nil
			for _, n := range in {
				if slices.Contains(kn, n) {
					jobNodes = append(jobNodes, n)
				}
			}
		}
		if len(jobNodes) > 0 {
			failSwitched(targets, p.switchImages(ctx, jobNodes, j.Features))
		}
	}
	rep := p.report("resume", power.Run(ctx, targets, power.ActionOn, p.Power))
	if rep.Failed != "" && p.MarkDown != nil {
		if err := p.MarkDown(ctx, rep.Failed, "wwboot: power on failed"); err != nil {
			p.log().Error("slurm resume: marking failed nodes down", "nodes", rep.Failed, "error", err)
		}
	}
	return rep, nil
}

// Suspend powers the nodes off (SuspendProgram).
func (p *Programs) Suspend(ctx context.Context, nodes string) (Report, error) {
	return p.run(ctx, "suspend", nodes, power.ActionOff)
}

// ResumeFail powers off the nodes that did not come up within ResumeTimeout
// (ResumeFailProgram), so that a later resume starts them from a clean
// power state.
func (p *Programs) ResumeFail(ctx context.Context, nodes string) (Report, error) {
	return p.run(ctx, "resume-fail", nodes, power.ActionOff)
}

// Reboot restarts the nodes (RebootProgram with reboot_from_controller):
// nodes that are on are power-cycled, nodes that are off (or whose state
// cannot be read) are powered on. features is Slurm's second argument, the
// features the reboot must provide: an image=NAME among them switches the
// nodes to image NAME first (SetImage); nodes that cannot be switched are
// not powered and fail.
func (p *Programs) Reboot(ctx context.Context, nodes, features string) (Report, error) {
	if features != "" {
		p.log().Info("slurm reboot: requested features", "nodes", nodes, "features", features)
	}
	names, targets, err := p.targets(nodes)
	if err != nil {
		return Report{}, err
	}
	failSwitched(targets, p.switchImages(ctx, known(targets), features))
	status := power.Run(ctx, targets, power.ActionStatus, p.Power)
	var cycle, on []power.Target
	for i, r := range status {
		if targets[i].BMC == nil {
			on = append(on, targets[i]) // carries its configuration error
			continue
		}
		if r.State == power.StateOn {
			cycle = append(cycle, targets[i])
		} else {
			on = append(on, targets[i])
		}
	}
	byNode := map[string]power.Result{}
	for _, r := range power.Run(ctx, cycle, power.ActionCycle, p.Power) {
		byNode[r.Node] = r
	}
	for _, r := range power.Run(ctx, on, power.ActionOn, p.Power) {
		byNode[r.Node] = r
	}
	results := make([]power.Result, len(names))
	for i, n := range names {
		results[i] = byNode[n]
	}
	return p.report("reboot", results), nil
}

// known lists the targets that resolved to a node and a BMC.
func known(targets []power.Target) []string {
	var out []string
	for _, t := range targets {
		if t.Err == nil {
			out = append(out, t.Node)
		}
	}
	return out
}

// failSwitched turns the targets whose image switch failed into failed
// targets (no BMC call).
func failSwitched(targets []power.Target, errs map[string]error) {
	for i, t := range targets {
		if err, ok := errs[t.Node]; ok && t.Err == nil {
			targets[i].Err = fmt.Errorf("node %s: %w", t.Node, err)
			targets[i].BMC = nil
		}
	}
}

func (p *Programs) run(ctx context.Context, prog, nodes string, a power.Action) (Report, error) {
	_, targets, err := p.targets(nodes)
	if err != nil {
		return Report{}, err
	}
	return p.report(prog, power.Run(ctx, targets, a, p.Power)), nil
}

// targets resolves a hostlist (or comma list) against the inventory. A name
// that is not a node becomes a failed target, not an error: Slurm may know
// nodes wwboot does not, and the others must still be served.
func (p *Programs) targets(nodes string) ([]string, []power.Target, error) {
	names, err := hostlist.Expand(nodes)
	if err != nil {
		return nil, nil, fmt.Errorf("node list from slurmctld: %w", err)
	}
	if len(names) == 0 {
		return nil, nil, errors.New("node list from slurmctld is empty")
	}
	mk := p.BMC
	if mk == nil {
		mk = DefaultBMC
	}
	seen := map[string]bool{}
	var out []power.Target
	var kept []string
	for _, name := range names {
		if seen[name] {
			continue
		}
		seen[name] = true
		kept = append(kept, name)
		t := power.Target{Node: name}
		n, err := p.Inventory.Node(name)
		if err == nil {
			t.BMC, err = mk(n)
		}
		if err != nil {
			t.Err = fmt.Errorf("node %s: %w", name, err)
		}
		out = append(out, t)
	}
	return kept, out, nil
}

func (p *Programs) report(prog string, results []power.Result) Report {
	var failed []string
	for _, r := range results {
		if r.Err != nil {
			failed = append(failed, r.Node)
			p.log().Error("slurm "+prog+": node failed", "node", r.Node, "error", r.Error, "took", r.Took)
		}
	}
	rep := Report{Results: results, Failed: hostlist.Compress(failed)}
	ok := make([]string, 0, len(results))
	for _, r := range results {
		if r.Err == nil {
			ok = append(ok, r.Node)
		}
	}
	p.log().Info("slurm "+prog, "nodes", len(results), "ok", hostlist.Compress(ok), "failed", rep.Failed)
	return rep
}

// ResumeJob is one job of SLURM_RESUME_FILE.
type ResumeJob struct {
	JobID int64
	// Nodes are the job's nodes being resumed (hostlist; "" if the file
	// does not say).
	Nodes string
	// Features is the job's feature request ("" if none or unknown).
	Features string
}

// resumeJobs reads SLURM_RESUME_FILE's jobs and logs them. Slurm 22.05
// writes {"all_nodes":..., "jobs":[{"job_id":N,"nodes":...}]}; 23.02 and
// later write all_nodes_resume and per job nodes_resume, nodes_alloc and
// features. Jobs without features get them from JobFeatures when it is
// set. A missing or unreadable file is logged, never fatal.
func (p *Programs) resumeJobs(ctx context.Context, path string) []ResumeJob {
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		p.log().Warn("slurm resume: SLURM_RESUME_FILE", "file", path, "error", err)
		return nil
	}
	var f struct {
		Jobs []struct {
			JobID       int64   `json:"job_id"`
			Nodes       string  `json:"nodes"`
			NodesResume string  `json:"nodes_resume"`
			NodesAlloc  string  `json:"nodes_alloc"`
			Features    *string `json:"features"`
		} `json:"jobs"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		p.log().Warn("slurm resume: SLURM_RESUME_FILE is not the JSON Slurm writes", "file", path, "error", err)
		return nil
	}
	var out []ResumeJob
	for _, j := range f.Jobs {
		r := ResumeJob{JobID: j.JobID, Nodes: cmp.Or(j.NodesResume, j.Nodes, j.NodesAlloc)}
		if j.Features != nil {
			r.Features = *j.Features
		} else if p.JobFeatures != nil {
			feats, err := p.JobFeatures(ctx, j.JobID)
			if err != nil {
				p.log().Warn("slurm resume: job features", "job", j.JobID, "error", err)
			}
			r.Features = feats
		}
		p.log().Info("slurm resume: job", "job", r.JobID, "nodes", r.Nodes, "features", r.Features)
		out = append(out, r)
	}
	return out
}

func (p *Programs) log() *slog.Logger {
	if p.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return p.Log
}

// quoteReason makes reason safe as one scontrol argument value.
func quoteReason(reason string) string {
	return strings.NewReplacer("\"", "'", "\n", " ").Replace(reason)
}
