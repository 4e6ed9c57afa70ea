package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/wwboot/wwboot/hostlist"
	"github.com/wwboot/wwboot/nodedb"
	"github.com/wwboot/wwboot/power"
	"golang.org/x/term"
)

// newPowerCmd builds `wwboot power on|off|cycle|reset|status NODES...`.
func newPowerCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "power",
		Short: "Switch nodes on and off through their BMCs (IPMI over LAN or Redfish, from nodes.conf's ipmi: fields)",
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			_, err := power.ParseAction(args[0])
			return err
		},
	}
	for _, act := range []struct {
		a     power.Action
		short string
	}{
		{power.ActionOn, "Power nodes on"},
		{power.ActionOff, "Power nodes off (hard)"},
		{power.ActionCycle, "Power-cycle nodes"},
		{power.ActionReset, "Hard-reset nodes"},
		{power.ActionStatus, "Show nodes' power state"},
	} {
		var f powerFlags
		sub := &cobra.Command{
			Use:   string(act.a) + " NODES...",
			Short: act.short,
			Long: act.short + `.

NODES are node names, Slurm hostlists (n[001-004,010]) or shell patterns
('n*'). Credentials come from each node's effective ipmi: block (ipaddr,
port, username, password, interface lan|lanplus, template). The command exits
non-zero when any node failed; every node gets its own line.`,
			Args: cobra.MinimumNArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return a.runPower(cmd, act.a, args, f)
			},
		}
		f.bind(sub)
		cmd.AddCommand(sub)
	}
	return cmd
}

type powerFlags struct {
	concurrency int
	timeout     time.Duration
	output      string
	server      string // through a running server's API (apipower.go)
	tokenFile   string
}

func (f *powerFlags) bind(cmd *cobra.Command) {
	cmd.Flags().IntVarP(&f.concurrency, "concurrency", "j", power.DefaultConcurrency, "nodes handled at once")
	cmd.Flags().DurationVar(&f.timeout, "timeout", power.DefaultTimeout, "time allowed per node, session setup included")
	cmd.Flags().StringVarP(&f.output, "output", "o", "table", "output format: table or json")
	cmd.Flags().StringVar(&f.server, "server", "", "act through this running wwboot serve's API (URL), so its event stream and hooks see the action")
	tokenFileFlag(cmd, &f.tokenFile)
}

func (a *app) runPower(cmd *cobra.Command, act power.Action, args []string, f powerFlags) error {
	if f.output != "table" && f.output != "json" {
		return fmt.Errorf("-o %q: use table or json", f.output)
	}
	var res []power.Result
	if f.server != "" {
		var err error
		if res, err = a.remotePower(cmd.Context(), act, args, f); err != nil {
			return err
		}
	} else {
		db, err := a.snapshot(cmd.Context())
		if err != nil {
			return err
		}
		names, err := selectNodes(db, args)
		if err != nil {
			return err
		}
		targets := powerTargets(db, names)
		res = power.Run(cmd.Context(), targets, act, power.Options{Concurrency: f.concurrency, Timeout: f.timeout, Log: a.log})
	}
	failed := 0
	for _, r := range res {
		if r.Err != nil {
			failed++
		}
	}
	if f.output == "json" {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NODE\tSTATE\tTOOK\tERROR")
		for _, r := range res {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Node, r.State, r.Took.Round(time.Millisecond), or(r.Error))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if failed > 0 {
		return fmt.Errorf("power %s: %d of %d nodes failed", act, failed, len(res))
	}
	return nil
}

// powerTargets builds the BMC of each node from its effective ipmi: block; a
// node whose block is unusable gets its error as its result.
func powerTargets(db *nodedb.DB, names []string) []power.Target {
	out := make([]power.Target, 0, len(names))
	for _, name := range names {
		t := power.Target{Node: name}
		n, err := db.Node(name)
		if err == nil {
			var c power.Config
			if c, err = power.ConfigFromIPMI(n.Ipmi); err == nil {
				t.BMC, err = power.New(c)
			}
		}
		switch {
		case errors.Is(err, power.ErrNoBMC):
			t.Err = fmt.Errorf("node %s: %w (wwboot node set %s --ipmiaddr ADDR --ipmiuser USER --ipmipass PASS, or the same on its profile)", name, err, name)
		case err != nil:
			t.Err = fmt.Errorf("node %s: %w (see 'wwboot node show %s')", name, err, name)
		}
		out = append(out, t)
	}
	return out
}

// selectNodes resolves NODES arguments against the inventory: shell patterns
// (with * or ?) match node names; anything else is a Slurm hostlist whose
// every host must be a node. Order follows the arguments, duplicates dropped.
func selectNodes(db *nodedb.DB, args []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	add := func(n string) {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	var missing []string
	for _, arg := range args {
		if strings.ContainsAny(arg, "*?") {
			found := false
			for _, n := range db.Names() {
				ok, err := path.Match(arg, n)
				if err != nil {
					return nil, fmt.Errorf("pattern %q: %w", arg, err)
				}
				if ok {
					found = true
					add(n)
				}
			}
			if !found {
				missing = append(missing, arg)
			}
			continue
		}
		hosts, err := hostlist.Expand(arg)
		if err != nil {
			return nil, err
		}
		for _, h := range hosts {
			if _, err := db.Node(h); err != nil {
				missing = append(missing, h)
				continue
			}
			add(h)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("node %s: %w (see 'wwboot node list')", hostlist.Compress(missing), nodedb.ErrNotFound)
	}
	if len(out) == 0 {
		return nil, errors.New("no nodes named")
	}
	return out, nil
}

// newNodeCmdWithConsole is the node command with `node console NODE` added.
func newNodeCmdWithConsole(a *app) *cobra.Command {
	cmd := newNodeCmd(a)
	cmd.AddCommand(newNodeConsoleCmd(a))
	return cmd
}

// newNodeConsoleCmd builds `wwboot node console NODE`: serial over LAN.
func newNodeConsoleCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "console NODE",
		Short: "Attach to a node's serial console through its BMC (IPMI serial over LAN); type ~. (the node's escapechar, then .) to leave",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			db, err := a.snapshot(cmd.Context())
			if err != nil {
				return err
			}
			n, err := db.Node(args[0])
			if err != nil {
				return fmt.Errorf("%w (see 'wwboot node list')", err)
			}
			c, err := power.ConfigFromIPMI(n.Ipmi)
			if err != nil {
				return fmt.Errorf("node %s: %w", n.ID, err)
			}
			b, err := power.New(c)
			if err != nil {
				return fmt.Errorf("node %s: %w", n.ID, err)
			}
			con, ok := b.(power.Consoler)
			if !ok {
				return fmt.Errorf("node %s: its BMC (%s) has no serial console in wwboot; use IPMI (ipmi template ipmitool.tmpl, interface lanplus)", n.ID, c.Template)
			}
			esc := c.EscapeChar
			if esc == "" {
				esc = string(power.DefaultEscapeChar)
			}
			in := cmd.InOrStdin()
			if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
				old, err := term.MakeRaw(int(f.Fd()))
				if err != nil {
					return fmt.Errorf("console: raw terminal: %w", err)
				}
				defer func() { _ = term.Restore(int(f.Fd()), old) }()
			}
			fmt.Fprintf(a.stderr, "[console of %s; type %s. at the start of a line to leave]\r\n", n.ID, esc)
			err = con.Console(cmd.Context(), in, a.stdout)
			fmt.Fprintf(a.stderr, "\r\n[console of %s closed]\r\n", n.ID)
			return err
		},
	}
}
