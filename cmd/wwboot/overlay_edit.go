package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/wwboot/wwboot/overlay"
)

// The commands below change site overlays (ROOT/overlays/NAME/rootfs) in
// the shape of wwctl's: create, delete, mkdir, import, chmod, chown, edit,
// info. Every file operation goes through an os.Root opened on the
// overlay's rootfs, so a FILE argument (or a symlink inside the overlay)
// cannot reach outside it.

// newOverlayEditCmds returns the overlay-changing subcommands.
func newOverlayEditCmds(a *app, f *overlayFlags) []*cobra.Command {
	return []*cobra.Command{
		newOverlayCreateCmd(a), newOverlayDeleteCmd(a), newOverlayMkdirCmd(a), newOverlayImportCmd(a, f),
		newOverlayChmodCmd(a), newOverlayChownCmd(a), newOverlayEditCmd(a, f), newOverlayInfoCmd(a, f),
	}
}

// checkOverlayName applies the overlay naming rule of package overlay:
// letters, digits, '-', '.', '_' and ':', not starting with '.'.
func checkOverlayName(name string) error {
	ok := name != "" && name[0] != '.'
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-._:", c)) {
			ok = false
		}
	}
	if !ok {
		return fmt.Errorf("overlay name %q: use letters, digits, '-', '.', '_' and ':' (not starting with '.')", name)
	}
	return nil
}

// overlayFile cleans FILE, a path inside an overlay ("/etc/motd" and
// "etc/motd" are the same file), and refuses one that leaves it.
func overlayFile(p string) (string, error) {
	for _, el := range strings.Split(p, "/") {
		if el == ".." {
			return "", fmt.Errorf("file %q: give a path inside the overlay, without ..", p)
		}
	}
	c := strings.TrimPrefix(path.Clean("/"+p), "/")
	if c == "" || strings.ContainsRune(c, 0) {
		return "", fmt.Errorf("file %q: give a path inside the overlay", p)
	}
	return c, nil
}

// siteOverlay opens the rootfs of site overlay name. A built-in overlay
// without a site copy is an error that says how to get one.
func siteOverlay(a *app, name string) (*os.Root, error) {
	if err := checkOverlayName(name); err != nil {
		return nil, err
	}
	dir := a.path("overlays", name, "rootfs")
	r, err := os.OpenRoot(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if isBuiltin(name) {
			return nil, fmt.Errorf("overlay %s is built in: 'wwboot overlay edit %s FILE' makes a site copy to change, or 'wwboot overlay create %s' an empty one that replaces it", name, name, name)
		}
		return nil, fmt.Errorf("overlay %s: no %s: create it with 'wwboot overlay create %s'", name, dir, name)
	}
	return r, err
}

// inSiteOverlay runs fn on file of site overlay name: the overlay's rootfs
// opened as an os.Root (siteOverlay) and the file's path checked
// (overlayFile).
func inSiteOverlay(a *app, name, file string, fn func(r *os.Root, rel string) error) error {
	r, err := siteOverlay(a, name)
	if err != nil {
		return err
	}
	defer r.Close()
	rel, err := overlayFile(file)
	if err != nil {
		return err
	}
	return fn(r, rel)
}

func isBuiltin(name string) bool {
	if _, ok := overlay.BuiltinAlias(name); ok {
		return true
	}
	for _, n := range overlay.BuiltinNames() {
		if n == name {
			return true
		}
	}
	return false
}

func parseMode(s string) (fs.FileMode, error) {
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m > 0o7777 {
		return 0, fmt.Errorf("mode %q: give octal permission bits such as 0644", s)
	}
	return fs.FileMode(m&0o777) | modeBits(m), nil
}

// modeBits converts setuid, setgid and sticky from octal to fs.FileMode.
func modeBits(m uint64) fs.FileMode {
	var out fs.FileMode
	if m&0o4000 != 0 {
		out |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		out |= fs.ModeSetgid
	}
	if m&0o1000 != 0 {
		out |= fs.ModeSticky
	}
	return out
}

func newOverlayCreateCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "create NAME",
		Short: "Create an empty site overlay (ROOT/overlays/NAME/rootfs); one with a built-in's name replaces it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := checkOverlayName(name); err != nil {
				return err
			}
			dir := a.path("overlays", name)
			if _, err := os.Stat(dir); err == nil {
				return fmt.Errorf("overlay %s: %s exists", name, dir)
			}
			if err := os.MkdirAll(filepath.Join(dir, "rootfs"), 0o755); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "created overlay %s in %s\n", name, dir)
			if isBuiltin(name) {
				fmt.Fprintf(a.stdout, "it replaces the built-in %s for every node that lists it\n", name)
			}
			return nil
		},
	}
}

func newOverlayDeleteCmd(a *app) *cobra.Command {
	var force, parents bool
	cmd := &cobra.Command{
		Use:   "delete NAME [FILE...]",
		Short: "Delete a site overlay (empty, or with --force), or files of it",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			r, err := siteOverlay(a, name)
			if err != nil {
				return err
			}
			defer r.Close()
			if len(args) == 1 {
				ents, err := fs.ReadDir(r.FS(), ".")
				if err != nil {
					return err
				}
				if len(ents) > 0 && !force {
					return fmt.Errorf("overlay %s is not empty (%d entries at its top): pass --force to delete it with its files", name, len(ents))
				}
				if err := os.RemoveAll(a.path("overlays", name)); err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "deleted overlay %s\n", name)
				return nil
			}
			for _, p := range args[1:] {
				rel, err := overlayFile(p)
				if err != nil {
					return err
				}
				if force {
					err = r.RemoveAll(rel)
				} else {
					err = r.Remove(rel)
				}
				if err != nil {
					return fmt.Errorf("overlay %s: %w (a directory that is not empty needs --force)", name, err)
				}
				fmt.Fprintf(a.stdout, "deleted %s from overlay %s\n", rel, name)
				for dir := path.Dir(rel); parents && dir != "."; dir = path.Dir(dir) {
					if r.Remove(dir) != nil { // stops at the first directory that is not empty
						break
					}
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "delete an overlay or directory with what it holds")
	cmd.Flags().BoolVarP(&parents, "parents", "p", false, "also delete the directories the files leave empty")
	return cmd
}

func newOverlayMkdirCmd(a *app) *cobra.Command {
	var mode string
	cmd := &cobra.Command{
		Use:   "mkdir NAME DIR",
		Short: "Create a directory (and its parents) in a site overlay",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := parseMode(mode)
			if err != nil {
				return err
			}
			return inSiteOverlay(a, args[0], args[1], func(r *os.Root, rel string) error {
				if err := r.MkdirAll(rel, m); err != nil {
					return err
				}
				if err := r.Chmod(rel, m); err != nil { // MkdirAll's mode passes the umask
					return err
				}
				fmt.Fprintf(a.stdout, "created %s in overlay %s\n", rel, args[0])
				return nil
			})
		},
	}
	cmd.Flags().StringVarP(&mode, "mode", "m", "0755", "permissions of the directory")
	return cmd
}

func newOverlayImportCmd(a *app, f *overlayFlags) *cobra.Command {
	var mode string
	var parents, overwrite bool
	cmd := &cobra.Command{
		Use:   "import NAME SRC [DEST]",
		Short: "Copy the file SRC of this machine into a site overlay, at DEST (default: SRC's path)",
		Args:  cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := siteOverlay(a, args[0])
			if err != nil {
				return err
			}
			defer r.Close()
			dest := args[1]
			if len(args) == 3 {
				dest = args[2]
			}
			rel, err := overlayFile(dest)
			if err != nil {
				return err
			}
			in, err := os.Open(args[1])
			if err != nil {
				return err
			}
			defer in.Close()
			fi, err := in.Stat()
			if err != nil {
				return err
			}
			if !fi.Mode().IsRegular() {
				return fmt.Errorf("%s: not a regular file", args[1])
			}
			m := fi.Mode().Perm()
			if mode != "" {
				if m, err = parseMode(mode); err != nil {
					return err
				}
			}
			if parents {
				if err := r.MkdirAll(path.Dir(rel), 0o755); err != nil {
					return err
				}
			}
			flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
			if overwrite {
				flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
			}
			out, err := r.OpenFile(rel, flags, m)
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("overlay %s: %s exists: pass --overwrite to replace it", args[0], rel)
			}
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("overlay %s: %s: its directory does not exist: pass --parents (-p) or run 'wwboot overlay mkdir'", args[0], rel)
			}
			if err != nil {
				return err
			}
			if err := copySyncClose(out, in); err != nil {
				return err
			}
			if err := r.Chmod(rel, m); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "imported %s as %s in overlay %s\n", args[1], rel, args[0])
			return checkTemplate(a, f, args[0], rel)
		},
	}
	cmd.Flags().StringVarP(&mode, "mode", "m", "", "permissions of the file (default: SRC's)")
	cmd.Flags().BoolVarP(&parents, "parents", "p", false, "create DEST's directories")
	cmd.Flags().BoolVar(&overwrite, "overwrite", false, "replace DEST if it exists")
	return cmd
}

func newOverlayChmodCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "chmod NAME FILE MODE",
		Short: "Set the permissions of a file in a site overlay (octal, e.g. 0600)",
		Args:  cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := parseMode(args[2])
			if err != nil {
				return err
			}
			return inSiteOverlay(a, args[0], args[1], func(r *os.Root, rel string) error { return r.Chmod(rel, m) })
		},
	}
}

func newOverlayChownCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "chown NAME FILE UID [GID]",
		Short: "Set the owner of a file in a site overlay (numeric ids, as nodes see them; GID defaults to 0)",
		Args:  cobra.RangeArgs(3, 4),
		RunE: func(cmd *cobra.Command, args []string) error {
			uid, err := strconv.Atoi(args[2])
			if err != nil || uid < 0 {
				return fmt.Errorf("uid %q: give a number (the node's user id)", args[2])
			}
			gid := 0
			if len(args) == 4 {
				if gid, err = strconv.Atoi(args[3]); err != nil || gid < 0 {
					return fmt.Errorf("gid %q: give a number (the node's group id)", args[3])
				}
			}
			return inSiteOverlay(a, args[0], args[1], func(r *os.Root, rel string) error {
				if err := r.Lchown(rel, uid, gid); err != nil {
					return fmt.Errorf("overlay %s: %w (changing owners needs root)", args[0], err)
				}
				return nil
			})
		},
	}
}

func newOverlayEditCmd(a *app, f *overlayFlags) *cobra.Command {
	var mode string
	cmd := &cobra.Command{
		Use:   "edit NAME FILE",
		Short: "Edit a file of an overlay with $EDITOR (a built-in overlay is first copied to ROOT/overlays)",
		Long: `Opens FILE of the site overlay NAME in $EDITOR (vi when unset), creating it (and its
directories) when missing. A built-in overlay is first copied whole into ROOT/overlays/NAME,
which then replaces it. A .ww file is parsed afterwards and its errors reported.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			m, err := parseMode(mode)
			if err != nil {
				return err
			}
			rel, err := overlayFile(args[1])
			if err != nil {
				return err
			}
			if err := checkOverlayName(name); err != nil {
				return err
			}
			if _, err := os.Stat(a.path("overlays", name, "rootfs")); errors.Is(err, fs.ErrNotExist) {
				if !isBuiltin(name) {
					return fmt.Errorf("overlay %s: no such overlay: create it with 'wwboot overlay create %s'", name, name)
				}
				n, err := copyBuiltin(a, f, name)
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "copied the built-in %s (%d files) to %s; the copy replaces it\n", name, n, a.path("overlays", name))
			}
			r, err := siteOverlay(a, name)
			if err != nil {
				return err
			}
			if err := r.MkdirAll(path.Dir(rel), 0o755); err != nil {
				r.Close()
				return err
			}
			if fh, err := r.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_EXCL, m); err == nil {
				fh.Close()
			} else if !errors.Is(err, fs.ErrExist) {
				r.Close()
				return err
			}
			r.Close()
			editor := a.getenv("EDITOR")
			if editor == "" {
				editor = "vi"
			}
			// The editor gets the real path (it may replace the file by a
			// rename); it was checked to be inside the overlay above.
			full := filepath.Join(a.path("overlays", name, "rootfs"), filepath.FromSlash(rel))
			ed := exec.CommandContext(cmd.Context(), "sh", "-c", editor+` "$1"`, "sh", full)
			ed.Stdin, ed.Stdout, ed.Stderr = os.Stdin, a.stdout, a.stderr
			if err := ed.Run(); err != nil {
				return fmt.Errorf("editor %q: %w", editor, err)
			}
			return checkTemplate(a, f, name, rel)
		},
	}
	cmd.Flags().StringVarP(&mode, "mode", "m", "0644", "permissions of a new file")
	return cmd
}

// copyBuiltin writes the built-in overlay name into ROOT/overlays/name.
func copyBuiltin(a *app, f *overlayFlags, name string) (int, error) {
	rd, err := f.renderer(a)
	if err != nil {
		return 0, err
	}
	o, err := rd.Overlay(name)
	if err != nil {
		return 0, err
	}
	tmp := a.path("overlays", "."+name+".tmp")
	_ = os.RemoveAll(tmp)
	if err := os.MkdirAll(filepath.Join(tmp, "rootfs"), 0o755); err != nil {
		return 0, err
	}
	n := 0
	for _, file := range o.Files {
		p := filepath.Join(tmp, "rootfs", filepath.FromSlash(file.Path))
		switch {
		case file.Mode.IsDir():
			err = os.MkdirAll(p, file.Mode.Perm())
		case file.Mode&fs.ModeSymlink != 0:
			err = os.Symlink(file.Target, p)
		default:
			err = os.WriteFile(p, file.Data, file.Mode.Perm())
			if err == nil {
				err = os.Chmod(p, file.Mode.Perm())
			}
			n++
		}
		if err != nil {
			_ = os.RemoveAll(tmp)
			return 0, err
		}
	}
	return n, os.Rename(tmp, a.path("overlays", name))
}

// checkTemplate reports a .ww file of overlay name that does not parse.
func checkTemplate(a *app, f *overlayFlags, name, rel string) error {
	if !strings.HasSuffix(rel, ".ww") {
		return nil
	}
	rd, err := f.renderer(a)
	if err != nil {
		return err
	}
	o, err := rd.Overlay(name)
	if err != nil {
		return err
	}
	for _, file := range o.Files {
		if file.Path == rel && file.ParseError() != nil {
			return fmt.Errorf("saved, but the template does not parse; nodes get every other file of %s: %w", name, file.ParseError())
		}
	}
	return nil
}

func newOverlayInfoCmd(a *app, f *overlayFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "info NAME [FILE]",
		Short: "Where an overlay comes from and its files (modes, owners, sizes, templates), or one file's details",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			rd, err := f.renderer(a)
			if err != nil {
				return err
			}
			o, err := rd.Overlay(args[0])
			if err != nil {
				return err
			}
			want := ""
			if len(args) == 2 {
				if want, err = overlayFile(args[1]); err != nil {
					return err
				}
			}
			fmt.Fprintf(a.stdout, "overlay %s: %s, %s, %d entries\n", o.Name, o.Source, o.Dir, len(o.Files))
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			found := false
			for _, file := range o.Files {
				if want != "" && file.Path != want {
					continue
				}
				found = true
				kind := ""
				switch {
				case file.ParseError() != nil:
					kind = "template, does not parse: " + file.ParseError().Error()
				case file.IsTemplate():
					kind = "template -> /" + file.OutputPath()
				case file.Mode&fs.ModeSymlink != 0:
					kind = "-> " + file.Target
				}
				fmt.Fprintf(tw, "%s\t%d:%d\t%d\t/%s\t%s\n", file.Mode, file.UID, file.GID, len(file.Data), file.Path, kind)
			}
			if want != "" && !found {
				return fmt.Errorf("overlay %s has no file %s", args[0], want)
			}
			return tw.Flush()
		},
	}
}
