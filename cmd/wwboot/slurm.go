package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/wwboot/wwboot/image"
	"github.com/wwboot/wwboot/nodedb"
	"github.com/wwboot/wwboot/power"
	"github.com/wwboot/wwboot/slurm"
)

// defaultSlurmLog is where the Slurm programs log: slurmctld discards their
// output, and Debian's Slurm logs under /var/log/slurm.
const defaultSlurmLog = "/var/log/slurm/wwboot.log"

// newSlurmCmd builds `wwboot slurm resume|suspend|resume-fail|reboot|conf`.
func newSlurmCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "slurm",
		Short: "Slurm integration: the power saving programs slurm.conf names, and NodeName/PartitionName lines",
		Long: `Slurm integration. In slurm.conf:

  ResumeProgram=/usr/local/sbin/wwboot-slurm-resume (a script: exec wwboot --root ROOT slurm resume "$@")
  SuspendProgram=...  slurm suspend
  ResumeFailProgram=... slurm resume-fail
  RebootProgram=...   slurm reboot   with SlurmctldParameters=reboot_from_controller

Each program takes the nodes as Slurm passes them (a hostlist such as
n[001-004,010]), acts through the nodes' BMCs, logs to --log, and exits
non-zero when any node failed.`,
	}
	// Each program has its own flags, so that --help shows only the ones it
	// uses; the ones it does not use stay accepted (hidden), since wrapper
	// scripts may pass one set to all.
	for _, p := range []struct {
		use, short string
		maxArgs    int
		markDown   bool // resume: --mark-down
		scontrol   bool // resume, reboot: --scontrol (job features, DOWN)
		run        func(p *slurm.Programs, ctx context.Context, args []string) (slurm.Report, error)
	}{
		{"resume NODES [FEATURES]", "ResumeProgram: power the nodes on (into the image an image=NAME feature asks for); nodes that fail are set DOWN through scontrol", 2, true, true,
			func(p *slurm.Programs, ctx context.Context, args []string) (slurm.Report, error) {
				return p.Resume(ctx, args[0], args[1:]...)
			}},
		{"suspend NODES", "SuspendProgram: power the nodes off", 1, false, false,
			func(p *slurm.Programs, ctx context.Context, args []string) (slurm.Report, error) {
				return p.Suspend(ctx, args[0])
			}},
		{"resume-fail NODES", "ResumeFailProgram: power off nodes that did not come up in ResumeTimeout", 1, false, false,
			func(p *slurm.Programs, ctx context.Context, args []string) (slurm.Report, error) {
				return p.ResumeFail(ctx, args[0])
			}},
		{"reboot NODES [FEATURES]", "RebootProgram (reboot_from_controller): power-cycle nodes that are on, power on those that are off", 2, false, true,
			func(p *slurm.Programs, ctx context.Context, args []string) (slurm.Report, error) {
				features := ""
				if len(args) > 1 {
					features = args[1]
				}
				return p.Reboot(ctx, args[0], features)
			}},
	} {
		f := &slurmFlags{}
		sub := &cobra.Command{
			Use:   p.use,
			Short: p.short,
			Args:  cobra.RangeArgs(1, p.maxArgs),
			RunE: func(cmd *cobra.Command, args []string) error {
				return a.runSlurmProgram(cmd, *f, args, p.run)
			},
		}
		f.bind(sub, p.markDown, p.scontrol)
		cmd.AddCommand(sub)
	}
	cmd.AddCommand(newSlurmConfCmd(a))
	cmd.AddCommand(newSlurmHelpersCmd(a)...)
	return cmd
}

type slurmFlags struct {
	log         string
	timeout     time.Duration
	deadline    time.Duration
	concurrency int
	markDown    bool
	scontrol    string
}

// bind adds the programs' flags to cmd; --mark-down and --scontrol are
// shown only where they act (markDown: resume; scontrol: resume and
// reboot), and accepted hidden elsewhere.
func (f *slurmFlags) bind(cmd *cobra.Command, markDown, scontrol bool) {
	fs := cmd.Flags()
	fs.StringVar(&f.log, "log", defaultSlurmLog, "log file of the programs (appended; stderr when it cannot be opened)")
	fs.DurationVar(&f.timeout, "timeout", power.DefaultTimeout, "time allowed per node")
	fs.DurationVar(&f.deadline, "deadline", 2*time.Minute, "time allowed for the whole run (slurmctld kills programs that run for minutes)")
	fs.IntVarP(&f.concurrency, "concurrency", "j", power.DefaultConcurrency, "nodes handled at once")
	fs.BoolVar(&f.markDown, "mark-down", true, "set nodes that could not be powered on DOWN with scontrol")
	usage := "scontrol program (it reads the features a job asks for)"
	if markDown {
		usage = "scontrol program (it reads the features a job asks for, and sets nodes DOWN for --mark-down)"
	}
	fs.StringVar(&f.scontrol, "scontrol", "scontrol", usage)
	if !markDown {
		_ = fs.MarkHidden("mark-down")
		f.markDown = false
	}
	if !scontrol {
		_ = fs.MarkHidden("scontrol")
	}
}

func (a *app) runSlurmProgram(cmd *cobra.Command, f slurmFlags, args []string,
	run func(p *slurm.Programs, ctx context.Context, args []string) (slurm.Report, error)) error {
	ctx, cancel := context.WithTimeout(cmd.Context(), f.deadline)
	defer cancel()
	log, closeLog := a.slurmLogger(f.log, cmd.Name())
	defer closeLog()
	db, err := a.snapshot(ctx)
	if err != nil {
		log.Error("slurm "+cmd.Name()+": inventory", "error", err)
		return err
	}
	p := &slurm.Programs{
		Inventory:  db,
		Power:      power.Options{Concurrency: f.concurrency, Timeout: f.timeout, Log: log},
		ResumeFile: os.Getenv("SLURM_RESUME_FILE"),
		Log:        log,
	}
	scontrol := slurm.FindScontrol(f.scontrol, slurm.ScontrolDirs())
	if f.markDown {
		p.MarkDown = slurm.ScontrolMarkDown(scontrol)
	}
	p.SetImage = a.setImages
	p.JobFeatures = slurm.ScontrolJobFeatures(scontrol)
	start := time.Now()
	rep, err := run(p, ctx, args)
	if err != nil {
		log.Error("slurm "+cmd.Name(), "args", args, "error", err)
		return err
	}
	log.Info("slurm "+cmd.Name()+" done", "args", args, "took", time.Since(start).Round(time.Millisecond))
	for _, r := range rep.Results {
		fmt.Fprintf(a.stdout, "%s\t%s\t%s\n", r.Node, r.State, or(r.Error))
	}
	return rep.Err()
}

// slurmLogger logs to file (appending), or to stderr when the file cannot
// be opened; the returned func closes the file.
func (a *app) slurmLogger(file, program string) (*slog.Logger, func()) {
	var w io.Writer = a.stderr
	closeFn := func() {}
	if file != "" && file != "-" {
		fh, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			fmt.Fprintf(a.stderr, "wwboot: log %s: %v (logging to stderr)\n", file, err)
		} else {
			w = fh
			closeFn = func() { _ = fh.Close() }
		}
	}
	level := slog.LevelInfo
	if a.verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})).With("program", program, "pid", os.Getpid()), closeFn
}

func newSlurmConfCmd(a *app) *cobra.Command {
	var opt slurm.ConfOptions
	var imageFeatures bool
	cmd := &cobra.Command{
		Use:   "conf",
		Short: "Print slurm.conf NodeName and PartitionName lines for the inventory (tags slurm_cpus, slurm_memory, slurm_features, slurm_partitions...)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, err := a.snapshot(cmd.Context())
			if err != nil {
				return err
			}
			if imageFeatures {
				if opt.Images, err = a.imageNames(cmd.Context()); err != nil {
					return err
				}
			}
			return slurm.Conf(a.stdout, db, opt)
		},
	}
	cmd.Flags().StringVar(&opt.DefaultPartition, "default-partition", "compute", "partition of nodes without slurm_partitions or cluster name; marked Default=YES")
	cmd.Flags().BoolVar(&imageFeatures, "image-features", true, "give every node Features=image=NAME for each image of ROOT/images (the features of helpers-conf), "+
		"so that a job's --constraint=image=NAME can pick a powered-down node")
	cmd.Flags().BoolVar(&opt.PowerSave, "power-save", true, "State=CLOUD for the nodes wwboot can power (an ipmi ipaddr): Slurm's power saving treats them as "+
		"powered down until ResumeProgram powers them on (tag slurm_state overrides it per node)")
	return cmd
}

// imageNames lists the images of ROOT/images: the image=NAME features of
// helpers.conf and of slurm.conf's node lines.
//
// A ROOT without images/ has none (it is not created here).
func (a *app) imageNames(ctx context.Context) ([]string, error) {
	if _, err := os.Stat(a.path("images")); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	s, err := image.OpenStore(a.path("images"))
	if err != nil {
		return nil, err
	}
	metas, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, m := range metas {
		names = append(names, m.Name)
	}
	return names, nil
}

// setImages switches nodes to an image of ROOT/images in nodes.conf (the
// node's own image, which wins over its profiles'), for an image=NAME
// feature Slurm asks for.
func (a *app) setImages(ctx context.Context, nodes []string, name string) error {
	s, err := image.OpenStore(a.path("images"))
	if err != nil {
		return err
	}
	if _, err := s.Lookup(ctx, name); err != nil {
		return fmt.Errorf("image %s: %w (wwboot image list shows the images)", name, err)
	}
	return a.update(ctx, func(c *nodedb.Config) error {
		for _, n := range nodes {
			r, ok := c.Nodes[n]
			if !ok || r == nil {
				return fmt.Errorf("node %s: not in nodes.conf", n)
			}
			r.ImageName = name
		}
		return nil
	}, "switched to image "+name, "node", nodes)
}

// newSlurmHelpersCmd builds `wwboot slurm helpers-conf` and
// `wwboot slurm helper-script`: the files that let a job ask for an image.
func newSlurmHelpersCmd(a *app) []*cobra.Command {
	var opt slurm.HelpersOptions
	conf := &cobra.Command{
		Use:   "helpers-conf",
		Short: "Print helpers.conf for Slurm's node_features/helpers plugin: a feature image=NAME per image",
		Long: `Print helpers.conf (next to slurm.conf, on the controller and the nodes) with one
Feature=image=NAME per image of ROOT/images. With, in slurm.conf,

  NodeFeaturesPlugins=node_features/helpers
  RebootProgram=/usr/local/sbin/wwboot-slurm-reboot   (exec wwboot --root ROOT slurm reboot "$@")
  SlurmctldParameters=reboot_from_controller

a job run with --constraint=image=NAME on nodes that booted another image makes
slurmctld call RebootProgram with the feature: wwboot switches the nodes' image in
nodes.conf and power-cycles them. The nodes report the image they booted through
the helper (wwboot slurm helper-script, installed at --helper by an overlay).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			names, err := a.imageNames(cmd.Context())
			if err != nil {
				return err
			}
			return slurm.HelpersConf(a.stdout, names, opt)
		},
	}
	conf.Flags().StringVar(&opt.Helper, "helper", "/usr/local/sbin/wwboot-image-feature", "the helper program on the nodes")
	conf.Flags().IntVar(&opt.BootTime, "boot-time", 600, "seconds a node may take to boot into another image (BootTime)")
	conf.Flags().StringSliceVar(&opt.AllowUserBoot, "allow-user-boot", nil, "users who may switch images (default: all)")
	script := &cobra.Command{
		Use:   "helper-script",
		Short: "Print the node-side helper helpers.conf names (it reports image=NAME from /etc/wwboot/node.conf)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := io.WriteString(a.stdout, slurm.HelperScript("/etc/wwboot/node.conf"))
			return err
		},
	}
	return []*cobra.Command{conf, script}
}
