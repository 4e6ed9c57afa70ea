package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/wwboot/wwboot/nodedb"
	"github.com/wwboot/wwboot/overlay"
)

// overlayFlags are the settings every overlay subcommand shares.
type overlayFlags struct {
	serverIP, netmask, serverIP6 string
	keyTypes                     []string
	sharedKeys                   bool
	// noServerAddr is set by renderer when neither wwboot.conf nor
	// --server-ipaddr gives the server's address (see warnNoServerAddr).
	noServerAddr bool
	// systemSecrets is wwboot.conf's "system overlay secrets:", set by
	// renderer, which has read the file.
	systemSecrets bool
}

// warnNoServerAddr says, for the commands that render for a node, that the
// templates saw no server address, so what they show differs from what
// `wwboot serve` (which knows its address) sends.
func (f *overlayFlags) warnNoServerAddr(a *app) {
	if f.noServerAddr {
		fmt.Fprintln(a.stderr, "wwboot: warning: the server's address is unknown (wwboot.conf sets neither listen: nor "+
			"interface:): templates render without it (WWBOOT_URL in /etc/wwboot/node.conf, the server in /etc/hosts); "+
			"set one, or pass --server-ipaddr, to see what wwboot serve sends")
	}
}

// newOverlayCmd is `wwboot overlay`: list, show, files, render and build.
func newOverlayCmd(a *app) *cobra.Command {
	f := &overlayFlags{}
	cmd := &cobra.Command{
		Use:   "overlay",
		Short: "Per-node overlays: list, show, render and build them",
		Long: `Overlays are directories of files and .ww templates (Warewulf layout NAME/rootfs/...)
rendered per node into gzip-compressed cpio archives. Site overlays live in ROOT/overlays and
win over the built-in ones of the same name. Host keys are kept in ROOT/keys; built archives
are stored in ROOT/overlays-built/NODE/{system,runtime}.cpio.gz.`,
	}
	cmd.AddCommand(
		newOverlayListCmd(a, f),
		newOverlayShowCmd(a, f),
		newOverlayFilesCmd(a, f),
		newOverlayRenderCmd(a, f),
		newOverlayBuildCmd(a, f),
	)
	cmd.AddCommand(newOverlayEditCmds(a, f)...)
	// The server and key flags change only what is rendered for a node:
	// the commands that render show them; the others accept them hidden
	// (they were inherited by every overlay command before).
	for _, sub := range cmd.Commands() {
		switch sub.Name() {
		case "show", "files", "render", "build":
			f.bindRender(sub, false)
		default:
			f.bindRender(sub, true)
		}
	}
	return cmd
}

// bindRender adds the flags that change what renders for a node to cmd,
// hidden unless cmd renders.
func (f *overlayFlags) bindRender(cmd *cobra.Command, hidden bool) {
	fs := cmd.Flags()
	fs.StringVar(&f.serverIP, "server-ipaddr", "", "the server's IPv4 address as templates see it (.Ipaddr; default: from wwboot.conf's listen/interface)")
	fs.StringVar(&f.netmask, "server-netmask", "", "the provisioning network's netmask (.Netmask; default: from wwboot.conf's interface)")
	fs.StringVar(&f.serverIP6, "server-ipaddr6", "", "the server's IPv6 address (.Ipaddr6)")
	fs.StringSliceVar(&f.keyTypes, "ssh-key-types", nil, "SSH host key types to generate per node (ed25519, ecdsa, rsa; default: wwboot.conf's ssh key types, else all three)")
	fs.BoolVar(&f.sharedKeys, "shared-host-keys", false, "give every node the same SSH host keys (default: wwboot.conf's shared host keys)")
	if hidden {
		for _, name := range []string{"server-ipaddr", "server-netmask", "server-ipaddr6", "ssh-key-types", "shared-host-keys"} {
			_ = fs.MarkHidden(name)
		}
	}
}

// renderer builds the overlay renderer from the state directory, wwboot.conf
// (the server's address and settings, as `wwboot serve` sees them, so both
// render the same archives) and the flags, which win.
func (f *overlayFlags) renderer(a *app) (*overlay.Renderer, error) {
	cfg, err := loadServeConfig(a.path("wwboot.conf"))
	if err != nil {
		return nil, err
	}
	var ip, mask string
	// serverAddr returns the listen address also with an error (no
	// interface: set): templates see it even so.
	if addr, netmask, _ := serverAddr(cfg); addr.IsValid() {
		ip, mask = addr.String(), netmask
	}
	agent, _ := agentPath(cfg.Agent)
	srv := templateServer(cfg, a.root, ip, mask, agent)
	srv.Ipaddr6 = f.serverIP6
	if len(f.keyTypes) > 0 {
		srv.Ssh.KeyTypes = f.keyTypes
	}
	if f.serverIP != "" {
		srv.Ipaddr = f.serverIP
	}
	if f.netmask != "" {
		srv.Netmask = f.netmask
	}
	f.noServerAddr = srv.Ipaddr == ""
	f.systemSecrets = cfg.SystemSecrets
	return overlay.New(overlay.Options{
		SiteDir:        a.path("overlays"),
		KeyDir:         a.path("keys"),
		BuildDir:       a.path("overlays-built"),
		SharedHostKeys: f.sharedKeys || cfg.SharedHostKeys,
		Server:         srv,
		ImageRoot:      imageRoots(a),
		Log:            a.log,
	})
}

// inventory opens ROOT/nodes.conf and takes a snapshot.
// forNode returns the renderer, the inventory and the effective node name.
func (f *overlayFlags) forNode(ctx context.Context, a *app, name string) (*overlay.Renderer, *nodedb.DB, *nodedb.Node, error) {
	r, err := f.renderer(a)
	if err != nil {
		return nil, nil, nil, err
	}
	db, err := inventory(ctx, a)
	if err != nil {
		return nil, nil, nil, err
	}
	n, err := db.Node(name)
	if err != nil {
		return nil, nil, nil, err
	}
	return r, db, n, nil
}

func inventory(ctx context.Context, a *app) (*nodedb.DB, error) {
	st, err := a.openInventory(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w (run wwboot init first)", err)
	}
	return st.Snapshot(ctx)
}

func newOverlayListCmd(a *app, f *overlayFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the overlays (site and built-in)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := f.renderer(a)
			if err != nil {
				return err
			}
			names, err := r.Names()
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "OVERLAY\tSOURCE\tFILES\tTEMPLATES")
			for _, n := range names {
				o, err := r.Overlay(n)
				if err != nil {
					fmt.Fprintf(tw, "%s\terror\t-\t-\n", n)
					fmt.Fprintln(a.stderr, "wwboot:", err)
					continue
				}
				files, tmpls := 0, 0
				for _, file := range o.Files {
					if !file.Mode.IsDir() {
						files++
					}
					if file.IsTemplate() {
						tmpls++
					}
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\n", n, o.Source, files, tmpls)
			}
			return tw.Flush()
		},
	}
}

func newOverlayShowCmd(a *app, f *overlayFlags) *cobra.Command {
	var node string
	cmd := &cobra.Command{
		Use:   "show NAME [FILE]",
		Short: "List an overlay's files, or print one (rendered for a node with --render)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := f.renderer(a)
			if err != nil {
				return err
			}
			o, err := r.Overlay(args[0])
			if err != nil {
				return err
			}
			if len(args) == 1 {
				tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintf(a.stdout, "# %s (%s)\n", o.Name, o.Dir)
				for _, file := range o.Files {
					printEntry(tw, file.Mode, file.UID, file.GID, len(file.Data), "/"+file.Path, file.Target)
				}
				return tw.Flush()
			}
			if node == "" {
				for _, file := range o.Files {
					if file.Path == filepath.Clean(args[1]) || "/"+file.Path == filepath.Clean(args[1]) {
						_, err := a.stdout.Write(file.Data)
						return err
					}
				}
				return fmt.Errorf("overlay %s: no file %s: see wwboot overlay show %s", o.Name, args[1], o.Name)
			}
			db, err := inventory(cmd.Context(), a)
			if err != nil {
				return err
			}
			n, err := db.Node(node)
			if errors.Is(err, nodedb.ErrNotFound) {
				// Warewulf (wwctl overlay show --render) renders for a
				// node named after the server, its cluster the same, so
				// that host templates can be previewed.
				host, herr := os.Hostname()
				if herr != nil {
					return fmt.Errorf("%w; and no host name to render for instead: %w", err, herr)
				}
				n = &nodedb.Node{ID: host, Record: nodedb.Record{ClusterName: host}}
			} else if err != nil {
				return err
			}
			files, err := r.RenderFile(cmd.Context(), db, n, args[0], args[1])
			if err != nil {
				return err
			}
			for _, out := range files {
				if len(files) > 1 || out.Target != "" {
					fmt.Fprintf(a.stdout, "# /%s (%v)\n", out.Path, out.Mode)
				}
				if out.Target != "" {
					fmt.Fprintf(a.stdout, "-> %s\n", out.Target)
					continue
				}
				a.stdout.Write(out.Data)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&node, "render", "", "render the template for this node (a name not in the inventory renders for the server itself, as Warewulf does)")
	return cmd
}

func printEntry(w io.Writer, mode fs.FileMode, uid, gid, size int, p, target string) {
	if target != "" {
		p += " -> " + target
	}
	fmt.Fprintf(w, "%v\t%d:%d\t%d\t%s\n", mode, uid, gid, size, p)
}

func parseKinds(s string) ([]overlay.Kind, error) {
	if s == "" || s == "all" {
		return []overlay.Kind{overlay.System, overlay.Runtime}, nil
	}
	k, err := overlay.ParseKind(s)
	return []overlay.Kind{k}, err
}

func newOverlayFilesCmd(a *app, f *overlayFlags) *cobra.Command {
	var kind string
	cmd := &cobra.Command{
		Use:   "files NODE",
		Short: "List the files of a node's rendered overlay archives",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			kinds, err := parseKinds(kind)
			if err != nil {
				return err
			}
			r, db, n, err := f.forNode(cmd.Context(), a, args[0])
			if err != nil {
				return err
			}
			f.warnNoServerAddr(a)
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			for _, k := range kinds {
				ar, err := r.Render(cmd.Context(), db, n, k)
				if err != nil {
					return err
				}
				warnSystemSecrets(a.stderr, f.systemSecrets, n.ID, k, ar)
				fmt.Fprintf(tw, "# %s %s overlays %v: %d bytes\n", n.ID, k, r.OverlayNames(n, k), ar.Size())
				for _, e := range ar.Entries() {
					printEntry(tw, e.Mode, e.UID, e.GID, e.Size, "/"+e.Path, e.Target)
				}
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&kind, "kind", "all", "system, runtime or all")
	return cmd
}

func newOverlayRenderCmd(a *app, f *overlayFlags) *cobra.Command {
	var kind, out string
	cmd := &cobra.Command{
		Use:   "render NODE --kind system|runtime -o FILE",
		Short: "Write a node's overlay archive (gzip-compressed newc cpio)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := overlay.ParseKind(kind)
			if err != nil {
				return err
			}
			if out == "" {
				return fmt.Errorf("no output: give -o FILE (or -o - for standard output)")
			}
			r, db, n, err := f.forNode(cmd.Context(), a, args[0])
			if err != nil {
				return err
			}
			f.warnNoServerAddr(a)
			ar, err := r.Render(cmd.Context(), db, n, k)
			if err != nil {
				return err
			}
			warnSystemSecrets(a.stderr, f.systemSecrets, n.ID, k, ar)
			if out == "-" {
				_, err = ar.WriteTo(a.stdout)
				return err
			}
			return writeFileAtomic(out, ar, ar.FileMode())
		},
	}
	cmd.Flags().StringVar(&kind, "kind", "system", "system or runtime")
	cmd.Flags().StringVarP(&out, "output", "o", "", "file to write (- for standard output)")
	return cmd
}

// writeFileAtomic writes src to path with mode through a temporary file,
// fsync, rename and a sync of the directory.
func writeFileAtomic(path string, src io.WriterTo, mode fs.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".wwboot-tmp-*")
	if err != nil {
		return err
	}
	_, err = src.WriteTo(tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), mode)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

func newOverlayBuildCmd(a *app, f *overlayFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "build [NODE...]",
		Short: "Render and store both overlay archives of the named nodes (default: all) on every core",
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := f.renderer(a)
			if err != nil {
				return err
			}
			db, err := inventory(cmd.Context(), a)
			if err != nil {
				return err
			}
			f.warnNoServerAddr(a)
			start := time.Now()
			res, err := r.Build(cmd.Context(), db, args...)
			var ok, refused int
			var bytes int64
			allowed := f.systemSecrets
			for _, rr := range res {
				if rr.Err == nil {
					ok++
					bytes += rr.System.Size() + rr.Runtime.Size()
					// One line is enough to explain it; count the rest.
					if len(rr.System.Private()) > 0 && !allowed {
						if refused == 0 {
							warnSystemSecrets(a.stderr, allowed, rr.Node, overlay.System, rr.System)
						}
						refused++
					}
				}
			}
			if refused > 1 {
				fmt.Fprintf(a.stderr, "wwboot: warning: %d nodes' system overlays carry private files and would be refused\n", refused)
			}
			fmt.Fprintf(a.stdout, "built %d of %d nodes (%d bytes) in %s into %s\n", ok, len(res), bytes,
				time.Since(start).Round(time.Millisecond), a.path("overlays-built"))
			return err
		},
	}
}
