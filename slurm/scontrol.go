package slurm

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// ScontrolMarkDown returns a MarkDown that runs
// `scontrol update NodeName=NODES State=DOWN Reason=REASON` with the scontrol
// program at path ("scontrol" searches PATH).
func ScontrolMarkDown(path string) func(ctx context.Context, nodes, reason string) error {
	return func(ctx context.Context, nodes, reason string) error {
		out, err := exec.CommandContext(ctx, path, "update", "NodeName="+nodes, "State=DOWN", "Reason="+quoteReason(reason)).CombinedOutput()
		if err != nil {
			return fmt.Errorf("scontrol update NodeName=%s State=DOWN: %w: %s", nodes, err, strings.TrimSpace(string(out)))
		}
		return nil
	}
}

// ScontrolJobFeatures returns a JobFeatures that reads a job's Features=
// from `scontrol show job -o ID` with the scontrol program at path ("" when
// the job asks for none: scontrol prints "(null)").
func ScontrolJobFeatures(path string) func(ctx context.Context, jobID int64) (string, error) {
	return func(ctx context.Context, jobID int64) (string, error) {
		id := strconv.FormatInt(jobID, 10)
		out, err := exec.CommandContext(ctx, path, "show", "job", "-o", id).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("scontrol show job %s: %w: %s", id, err, strings.TrimSpace(string(out)))
		}
		return jobFeatures(string(out)), nil
	}
}

// jobFeatures picks Features= out of one-line `scontrol show job` output.
func jobFeatures(out string) string {
	for _, f := range strings.Fields(out) {
		if v, ok := strings.CutPrefix(f, "Features="); ok {
			if v == "(null)" {
				return ""
			}
			return v
		}
	}
	return ""
}

// ScontrolDirs returns where FindScontrol looks when scontrol is not on
// PATH: slurmctld runs its programs with a bare environment (Debian's 22.05
// gives them no PATH with /usr/bin, as the e2e test found).
func ScontrolDirs() []string { return []string{"/usr/bin", "/usr/local/bin", "/opt/slurm/bin"} }

// FindScontrol resolves the scontrol program: name itself when it is a
// path, else name on PATH, else name in one of dirs; name unchanged when
// none has it (running it then reports the error).
func FindScontrol(name string, dirs []string) string {
	if strings.ContainsRune(name, '/') {
		return name
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return name
}
