package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"
	"github.com/wwboot/wwboot/image"
	"github.com/wwboot/wwboot/nodedb"
)

// kernelVersionFindings names the nodes whose kernel version (kernel:
// version:) does not select the kernel of their image in ROOT/images
// (image.Meta.KernelSelectedBy): the server boots them with the image's
// kernel and logs a warning. Images that are not imported are left to the
// image warnings.
func kernelVersionFindings(ctx context.Context, a *app, db *nodedb.DB) []string {
	if _, err := os.Stat(a.path("images")); err != nil {
		return nil // no ROOT here (a CI checking --file): nothing to compare with, and nothing created
	}
	s, err := image.OpenStore(a.path("images"))
	if err != nil {
		return nil
	}
	var out []string
	for _, name := range db.Names() {
		n, err := db.Node(name)
		if err != nil || n.Kernel == nil || n.Kernel.Version == "" || n.ImageName == "" {
			continue
		}
		m, err := s.Lookup(ctx, n.ImageName)
		if err != nil || m.KernelVersion == "" || m.KernelSelectedBy(n.Kernel.Version) {
			continue
		}
		out = append(out, fmt.Sprintf("node %s: kernel version %q selects no kernel of image %s, which has %s (%s): the node boots that one; "+
			"give a prefix of its version (as Warewulf matches) or build the image with the kernel wanted (wwboot image build %s --kernel VERSION)",
			name, n.Kernel.Version, n.ImageName, m.KernelVersion, m.KernelSource, n.ImageName))
	}
	return out
}

// newNodeCheckCmd is `wwboot node check`: the strict reading of an
// inventory, for the CI of a site's configuration repository. Loading is
// lenient (what Warewulf 4.7 loads, wwboot loads, with warnings); check
// lists every finding with file:line, node or profile and field, and fails
// when there is one.
func newNodeCheckCmd(a *app) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "check",
		Short: "List everything in nodes.conf that Warewulf tolerates but should be fixed; fail if anything is found",
		Long: `Check reads the inventory (ROOT/nodes.conf, or --file) the way the server does and
lists what loading tolerates: unknown keys, the same MAC or IP address on two nodes,
missing profiles, profile cycles, a primary network naming no device, odd IPv6 values,
and a kernel version that selects no kernel of the node's image in ROOT/images (Warewulf's
rule: a prefix of the kernel's version, or its path in the image).
It exits non-zero if it finds anything, or if the file does not load at all.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				file = a.path("nodes.conf")
			} else if _, err := os.Stat(file); err != nil {
				// nodedb's own message points at --root and init, which
				// do not apply to a file named with --file.
				return fmt.Errorf("node check --file: %w", err)
			}
			// The findings are this command's output: do not log them too.
			s, err := nodedb.Open(cmd.Context(), file, nodedb.WithLogger(slog.New(slog.DiscardHandler)))
			if err != nil {
				return err
			}
			db, err := s.Snapshot(cmd.Context())
			if err != nil {
				return err
			}
			found := db.Findings()
			for _, f := range found {
				fmt.Fprintln(a.stdout, f.Error())
			}
			kernels := kernelVersionFindings(cmd.Context(), a, db)
			for _, msg := range kernels {
				fmt.Fprintln(a.stdout, msg)
			}
			if n := len(found) + len(kernels); n > 0 {
				return fmt.Errorf("%s: %d finding(s): fix them, or run the server, which loads the file anyway", file, n)
			}
			fmt.Fprintf(a.stdout, "%s: %d nodes, %d profiles, nothing to fix\n", file, db.Len(), len(db.ProfileNames()))
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "check this nodes.conf instead of ROOT/nodes.conf")
	return cmd
}
