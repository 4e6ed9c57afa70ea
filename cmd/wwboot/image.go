package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/wwboot/wwboot/hostlist"
	"github.com/wwboot/wwboot/image"
	"github.com/wwboot/wwboot/nodedb"
)

// newImageCmd builds `wwboot image`: import, build, list, show, delete,
// kernels and prune over the image store in ROOT/images.
func newImageCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Import root trees and build them into compressed boot images",
		Long: `Images are root file system trees built into compressed newc cpio archives that
nodes unpack into RAM. They live in ROOT/images: content-addressed files under blobs/,
trees unpacked from archives under roots/, and index.json with one record per image.`,
	}
	cmd.AddCommand(
		newImageImportCmd(a), newImageBuildCmd(a), newImageListCmd(a), newImageShowCmd(a),
		newImageDeleteCmd(a), newImageKernelsCmd(a), newImagePruneCmd(a),
	)
	cmd.AddCommand(newImageCopyCmds(a)...)
	cmd.AddCommand(newImageExecCmds(a)...)
	return cmd
}

// buildFlags are the options shared by import and build.
type buildFlags struct {
	compress  string
	level     int
	excludes  []string
	noDefault bool
	keepHost  bool
	kernel    string
	force     bool
}

func (f *buildFlags) register(cmd *cobra.Command, withForce bool) {
	fl := cmd.Flags()
	fl.StringVar(&f.compress, "compress", "", "compression: gzip or zstd (default: zstd when the image's kernel unpacks zstd initramfs archives, CONFIG_RD_ZSTD=y, else gzip; for build: as last built)")
	fl.IntVar(&f.level, "level", 0, "compression level (gzip 1-9, default 6; zstd 1-22, default 3)")
	fl.StringArrayVar(&f.excludes, "exclude", nil, "exclude glob (repeatable), on top of the defaults and the image's /etc/warewulf/excludes")
	fl.BoolVar(&f.noDefault, "no-default-excludes", false, "do not exclude the contents of /proc, /sys, /dev, /tmp, /run and package caches")
	fl.BoolVar(&f.keepHost, "keep-host-files", false, "keep per-host files (machine-id, hostname, resolv.conf, ssh host keys, apt lists, random seeds...; see the README) as they are in the tree; build: as last built unless =false")
	fl.StringVar(&f.kernel, "kernel", "", "kernel: a path inside the image, a file on this host, or a kernel version of the image (default: the newest kernel where Warewulf looks: /boot/Image-*, /boot/vmlinuz-*, /lib/modules/*/vmlinuz{,.gz})")
	if withForce {
		fl.BoolVar(&f.force, "force", false, "rebuild even if the tree is unchanged")
	}
}

func (f *buildFlags) options(a *app, cmd *cobra.Command) (image.BuildOptions, error) {
	o := image.BuildOptions{Kernel: f.kernel, Force: f.force}
	if f.compress != "" {
		c, err := image.ParseCompression(f.compress)
		if err != nil {
			return o, fmt.Errorf("--compress: %w", err)
		}
		o.Compression = c
	}
	o.Level = f.level
	if cmd.Flags().Changed("exclude") || f.noDefault {
		o.Excludes = append([]string{}, f.excludes...)
	}
	o.NoDefaultExcludes = f.noDefault
	o.KeepHostFiles = f.keepHost
	o.DropHostFiles = cmd.Flags().Changed("keep-host-files") && !f.keepHost
	o.Log = a.log
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return o, fmt.Errorf("SOURCE_DATE_EPOCH=%q: want seconds since 1970", s)
		}
		o.MTimeClamp = time.Unix(n, 0)
	}
	if isTerminal(a.stderr) {
		bar := &progressBar{w: a.stderr}
		o.Progress = bar.update
		o.ProgressInterval = 200 * time.Millisecond
	}
	return o, nil
}

func newImageImportCmd(a *app) *cobra.Command {
	var f buildFlags
	var overwrite bool
	cmd := &cobra.Command{
		Use:   "import SRC NAME",
		Short: "Make image NAME from a directory or a tar/.tar.gz/.tar.zst/docker-save archive, and build it",
		Long: `SRC is a directory (a chroot; built in place, not copied), a root file system tar
archive (plain, .gz or .zst), or a docker save / podman save archive, whose layers are
applied in order with whiteouts. Archives are unpacked into ROOT/images/roots/NAME.
An image NAME that exists is replaced only with --overwrite (wwctl's -f/--force works too),
which says what it replaced.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[1]
			return f.run(a, cmd, func(s *image.Store, o image.BuildOptions) (image.BuildResult, error) {
				prev, lerr := s.Lookup(cmd.Context(), name)
				o.NoReplace = !overwrite
				res, err := s.Import(cmd.Context(), args[0], name, o)
				if errors.Is(err, image.ErrExists) {
					return res, fmt.Errorf("%w: pass --overwrite to replace it, or import under another name (wwboot image list shows the names)", err)
				}
				if err == nil && lerr == nil {
					fmt.Fprintf(a.stdout, "replaced image %s: it was %s, built %s, kernel %s\n", name, prev.Source,
						prev.BuiltAt.Format(time.DateTime), or(prev.KernelVersion))
				}
				return res, err
			})
		},
	}
	f.register(cmd, false)
	cmd.Flags().BoolVar(&overwrite, "overwrite", false, "replace the image NAME if it exists (its tree and archive; nodes get the new one at their next boot)")
	// wwctl image import's name for it.
	cmd.Flags().BoolVarP(&overwrite, "force", "f", false, "the same as --overwrite (wwctl's name)")
	_ = cmd.Flags().MarkHidden("force")
	return cmd
}

// run opens the store, calls do with the flags' options and prints the result.
func (f *buildFlags) run(a *app, cmd *cobra.Command, do func(*image.Store, image.BuildOptions) (image.BuildResult, error)) error {
	o, err := f.options(a, cmd)
	if err != nil {
		return err
	}
	s, err := image.OpenStore(a.path("images"))
	if err != nil {
		return err
	}
	start := time.Now()
	res, err := do(s, o)
	if err != nil {
		return err
	}
	printResult(a.stdout, res, time.Since(start))
	return nil
}

func newImageBuildCmd(a *app) *cobra.Command {
	var f buildFlags
	cmd := &cobra.Command{
		Use:   "build NAME",
		Short: "Rebuild image NAME from its tree (skipped when nothing changed)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.run(a, cmd, func(s *image.Store, o image.BuildOptions) (image.BuildResult, error) {
				return s.Build(cmd.Context(), args[0], o)
			})
		},
	}
	f.register(cmd, true)
	return cmd
}

func printResult(w io.Writer, res image.BuildResult, took time.Duration) {
	if !res.Rebuilt {
		fmt.Fprintf(w, "%s: unchanged, sha256 %s (checked in %s)\n", res.Name, res.SHA256, took.Round(time.Millisecond))
		return
	}
	kernel := "no kernel"
	if res.KernelVersion != "" || res.KernelPath != "" {
		kernel = "kernel " + res.KernelVersion
	}
	fmt.Fprintf(w, "%s: %d files, %s -> %s %s, sha256 %s, %s, in %s\n", res.Name, res.Files,
		human(res.UncompressedSize), human(res.Size), res.Compression, res.SHA256, kernel, took.Round(time.Millisecond))
	if l := hostFilesLine(res); l != "" {
		fmt.Fprintln(w, l)
	}
	if l := xattrsLine(res); l != "" {
		fmt.Fprintln(w, l)
	}
}

// xattrsLine is the one-line note on the file capabilities (security
// extended attributes) a build recorded ("" when none): newc cpio cannot
// carry them, the wwinit overlay's /init restores them.
func xattrsLine(res image.BuildResult) string {
	if len(res.Xattrs) == 0 {
		return ""
	}
	list := strings.Join(res.Xattrs, " ")
	if len(res.Xattrs) > 8 {
		list = fmt.Sprintf("%s and %d more", strings.Join(res.Xattrs[:8], " "), len(res.Xattrs)-8)
	}
	return fmt.Sprintf("%s: file capabilities of %d files (%s) recorded in /%s; the wwinit overlay restores them at boot (needs setfattr, python3 or setcap in the image)",
		res.Name, len(res.Xattrs), list, image.XattrManifest)
}

// hostFilesLine is the one-line summary of the per-host files a build left
// out or emptied ("" when none).
func hostFilesLine(res image.BuildResult) string {
	if len(res.HostFilesOut) == 0 && len(res.HostFilesEmptied) == 0 {
		return ""
	}
	const show = 8
	list := func(ps []string) string {
		if len(ps) > show {
			return fmt.Sprintf("%s and %d more", strings.Join(ps[:show], " "), len(ps)-show)
		}
		return strings.Join(ps, " ")
	}
	var parts []string
	if len(res.HostFilesOut) > 0 {
		parts = append(parts, fmt.Sprintf("left out %d (%s)", len(res.HostFilesOut), list(res.HostFilesOut)))
	}
	if len(res.HostFilesEmptied) > 0 {
		parts = append(parts, fmt.Sprintf("emptied %d (%s)", len(res.HostFilesEmptied), list(res.HostFilesEmptied)))
	}
	return fmt.Sprintf("%s: per-host files: %s; keep them with --keep-host-files, or one with !PATTERN in the image's %s",
		res.Name, strings.Join(parts, ", "), image.ExcludesFile)
}

func newImageListCmd(a *app) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List images",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := image.OpenStore(a.path("images"))
			if err != nil {
				return err
			}
			ms, err := s.List(cmd.Context())
			if err != nil {
				return err
			}
			switch output {
			case "json":
				return writeJSON(a.stdout, ms)
			case "", "table":
				tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tSIZE\tCOMPRESSION\tFILES\tKERNEL\tBUILT")
				for _, m := range ms {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", m.Name, human(m.Size), m.Compression, m.Files,
						dash(m.KernelVersion), m.BuiltAt.Format(time.RFC3339))
				}
				return tw.Flush()
			}
			return fmt.Errorf("-o %q: use table or json", output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

func newImageShowCmd(a *app) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "show NAME",
		Short: "Show an image's record",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := image.OpenStore(a.path("images"))
			if err != nil {
				return err
			}
			m, err := s.Lookup(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			switch output {
			case "json":
				return writeJSON(a.stdout, m)
			case "", "text":
				tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
				for _, kv := range [][2]string{
					{"name", m.Name}, {"path", m.Path}, {"sha256", m.SHA256},
					{"size", fmt.Sprintf("%d (%s)", m.Size, human(m.Size))},
					{"uncompressed", fmt.Sprintf("%d (%s)", m.UncompressedSize, human(m.UncompressedSize))},
					{"compression", fmt.Sprintf("%s level %d", m.Compression, m.Level)},
					{"files", strconv.FormatInt(m.Files, 10)},
					{"kernel", dash(strings.TrimSpace(m.KernelVersion + " " + m.KernelPath))},
					{"source", m.Source}, {"root", m.Root},
					{"excludes", dash(strings.Join(m.Excludes, " "))},
					{"built", m.BuiltAt.Format(time.RFC3339)},
				} {
					fmt.Fprintf(tw, "%s:\t%s\n", kv[0], kv[1])
				}
				return tw.Flush()
			}
			return fmt.Errorf("-o %q: use text or json", output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func newImageDeleteCmd(a *app) *cobra.Command {
	var grace time.Duration
	cmd := &cobra.Command{
		Use:   "delete NAME...",
		Short: "Delete images (their files are removed once unused for --grace)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := image.OpenStore(a.path("images"))
			if err != nil {
				return err
			}
			db, _ := a.snapshot(cmd.Context()) // for the warning only
			for _, n := range args {
				if err := s.Delete(cmd.Context(), n); err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "deleted %s\n", n)
				if users := nodesBooting(db, n); len(users) > 0 {
					fmt.Fprintf(a.stderr, "wwboot: warning: %d node(s) (%s) boot image %s: they get no image until it is imported again or they boot another (wwboot node set NODE --image NAME)\n",
						len(users), hostlist.Compress(users), n)
				}
			}
			return prune(cmd.Context(), a, s, grace)
		},
	}
	cmd.Flags().DurationVar(&grace, "grace", time.Hour, "keep files of replaced or deleted images this long for transfers under way")
	return cmd
}

func newImagePruneCmd(a *app) *cobra.Command {
	var grace time.Duration
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Remove image and kernel files no image has used for --grace",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := image.OpenStore(a.path("images"))
			if err != nil {
				return err
			}
			return prune(cmd.Context(), a, s, grace)
		},
	}
	cmd.Flags().DurationVar(&grace, "grace", time.Hour, "only remove files unused for at least this long")
	return cmd
}

func prune(ctx context.Context, a *app, s *image.Store, grace time.Duration) error {
	removed, err := s.Prune(ctx, grace)
	for _, p := range removed {
		fmt.Fprintf(a.stdout, "removed %s\n", p)
	}
	return err
}

func newImageKernelsCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "kernels NAME|DIR",
		Short: "List the kernels found in an image's tree or a directory, the default first",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// An image name first, then a directory.
			root := args[0]
			s, err := image.OpenStore(a.path("images"))
			if err != nil {
				return err
			}
			m, lerr := s.Lookup(cmd.Context(), args[0])
			if lerr == nil {
				root = m.Root
			} else if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
				return fmt.Errorf("%s is neither an image nor a directory: %w", args[0], lerr)
			}
			ks, err := image.FindKernels(os.DirFS(root))
			if err != nil {
				return err
			}
			if len(ks) == 0 {
				return fmt.Errorf("no kernel in %s (looked where Warewulf does: /boot/Image-*, /boot/vmlinuz-*, /lib/modules/*/vmlinuz{,.gz})", root)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "VERSION\tPATH\tSIZE\tNOTE")
			def := false
			for _, k := range ks {
				note := k.Skipped
				if note == "" && !def {
					note, def = "default", true
				}
				fmt.Fprintf(tw, "%s\t/%s\t%s\t%s\n", k.Version, k.Path, human(k.Size), dash(note))
			}
			return tw.Flush()
		},
	}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// progressBar draws build progress on one terminal line: bytes, files,
// rate and ETA.
type progressBar struct {
	w io.Writer
}

func (b *progressBar) update(p image.Progress) {
	rate := 0.0
	if s := p.Elapsed.Seconds(); s > 0 {
		rate = float64(p.Bytes) / s
	}
	frac := 0.0
	if p.TotalBytes > 0 {
		frac = min(float64(p.Bytes)/float64(p.TotalBytes), 1)
	}
	const width = 30
	filled := int(frac * width)
	eta := "--:--"
	if rate > 0 && p.TotalBytes > 0 {
		left := time.Duration(float64(p.TotalBytes-p.Bytes) / rate * float64(time.Second))
		eta = fmt.Sprintf("%d:%02d", int(left.Minutes()), int(left.Seconds())%60)
	}
	line := fmt.Sprintf("\r[%s%s] %3.0f%% %s/%s %d/%d files %s/s ETA %s",
		strings.Repeat("#", filled), strings.Repeat("-", width-filled), frac*100,
		human(p.Bytes), human(p.TotalBytes), p.Files, p.TotalFiles, human(int64(rate)), eta)
	fmt.Fprintf(b.w, "%-100s", line)
	if p.Done {
		fmt.Fprint(b.w, "\r"+strings.Repeat(" ", 100)+"\r")
	}
}

// nodesBooting lists the nodes of db (nil: none) whose effective image is
// name.
func nodesBooting(db *nodedb.DB, name string) []string {
	if db == nil {
		return nil
	}
	var out []string
	for _, id := range db.Names() {
		if n, err := db.Node(id); err == nil && n.ImageName == name {
			out = append(out, id)
		}
	}
	return out
}
