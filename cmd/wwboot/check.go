package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"
	"github.com/wwboot/wwboot/nodedb"
)

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
missing profiles, profile cycles, a primary network naming no device, odd IPv6 values.
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
			if len(found) > 0 {
				return fmt.Errorf("%s: %d finding(s): fix them, or run the server, which loads the file anyway", file, len(found))
			}
			fmt.Fprintf(a.stdout, "%s: %d nodes, %d profiles, nothing to fix\n", file, db.Len(), len(db.ProfileNames()))
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "check this nodes.conf instead of ROOT/nodes.conf")
	return cmd
}
