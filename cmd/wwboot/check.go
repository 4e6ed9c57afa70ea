package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/wwboot/wwboot/hostlist"
	"github.com/wwboot/wwboot/image"
	"github.com/wwboot/wwboot/nodedb"
	"github.com/wwboot/wwboot/overlay"
)

// systemSecretFindings names, grouped by their system overlay list, the
// nodes whose system overlay the server refuses (HTTP 500, see
// provision.ErrSystemSecret) because it carries private files, with the
// overlays and files that make it so and what to do. It renders nothing
// (rendering ssh.host_keys would make host keys): overlay.CheckPrivate
// reads the overlays' files and templates. Nothing is reported when
// wwboot.conf says "system overlay secrets: true". An overlay that does not
// exist is left to the server's own error.
func systemSecretFindings(a *app, db *nodedb.DB) ([]string, error) {
	if a.systemSecretsAllowed() {
		return nil, nil
	}
	r, err := (&overlayFlags{}).renderer(a)
	if err != nil {
		return nil, err
	}
	perOverlay := map[string][]overlay.PrivateFile{}
	check := func(name string) ([]overlay.PrivateFile, error) {
		if found, ok := perOverlay[name]; ok {
			return found, nil
		}
		found, err := r.CheckPrivate([]string{name})
		if errors.Is(err, overlay.ErrNotFound) {
			found, err = nil, nil
		}
		if err != nil {
			return nil, err
		}
		perOverlay[name] = found
		return found, nil
	}
	type group struct {
		nodes []string
		files []overlay.PrivateFile
	}
	perList := map[string][]overlay.PrivateFile{} // system overlay list -> its private files
	groups := map[string]*group{}                 // the overlays carrying them -> nodes
	var order []string
	for _, name := range db.Names() {
		n, err := db.Node(name)
		if err != nil {
			continue
		}
		names := r.OverlayNames(n, overlay.System)
		list := strings.Join(names, ",")
		files, seen := perList[list]
		if !seen {
			for _, o := range names {
				found, err := check(o)
				if err != nil {
					return nil, fmt.Errorf("node %s: system overlay %s: %w", name, o, err)
				}
				files = append(files, found...)
			}
			perList[list] = files
		}
		if len(files) == 0 {
			continue
		}
		var carriers []string
		for _, f := range files {
			if !slices.Contains(carriers, f.Overlay) {
				carriers = append(carriers, f.Overlay)
			}
		}
		key := strings.Join(carriers, ", ")
		g := groups[key]
		if g == nil {
			g = &group{files: files}
			groups[key] = g
			order = append(order, key)
		}
		g.nodes = append(g.nodes, name)
	}
	var out []string
	for _, key := range order {
		g := groups[key]
		var why []string
		seen := map[string]bool{}
		for _, f := range g.files {
			if k := f.Overlay + "/" + f.Path; !seen[k] {
				seen[k] = true
				why = append(why, fmt.Sprintf("%s: /%s (%s)", f.Overlay, f.Path, f.Why))
			}
		}
		one := !strings.Contains(key, ",")
		out = append(out, fmt.Sprintf("node(s) %s: system overlay%s %s carr%s private files, which wwboot serve refuses "+
			"(anyone on the provisioning network may fetch a system overlay): %s; move %s to the runtime overlays "+
			"(wwboot profile set PROFILE --system-overlays ... --runtime-overlays ..., or wwboot node set), or accept the "+
			"exposure with 'system overlay secrets: true' in %s",
			hostlist.Compress(g.nodes), map[bool]string{true: "", false: "s"}[one], key, map[bool]string{true: "ies", false: "y"}[one],
			strings.Join(why, "; "), map[bool]string{true: "it", false: "them"}[one], a.path("wwboot.conf")))
	}
	return out, nil
}

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
a kernel version that selects no kernel of the node's image in ROOT/images (Warewulf's
rule: a prefix of the kernel's version, or its path in the image), and system overlays
that carry private files, which the server refuses (ssh.host_keys, a template naming
.Ipmi.Password, including a file others may not read, a static file others may not read),
unless wwboot.conf says "system overlay secrets: true". Nothing is rendered.
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
			secrets, err := systemSecretFindings(a, db)
			if err != nil {
				return err
			}
			for _, msg := range secrets {
				fmt.Fprintln(a.stdout, msg)
			}
			if n := len(found) + len(kernels) + len(secrets); n > 0 {
				return fmt.Errorf("%s: %d finding(s): fix them, or run the server, which loads the file anyway", file, n)
			}
			fmt.Fprintf(a.stdout, "%s: %d nodes, %d profiles, nothing to fix\n", file, db.Len(), len(db.ProfileNames()))
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "check this nodes.conf instead of ROOT/nodes.conf")
	return cmd
}
