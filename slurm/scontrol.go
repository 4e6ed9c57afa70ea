package slurm

import (
	"context"
	"fmt"
	"os/exec"
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
