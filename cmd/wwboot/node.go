package main

import (
	"context"
	"fmt"
	"os"
	"path"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/wwboot/wwboot/nodedb"
)

func newNodeCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "node", Short: "Manage the nodes of the inventory (ROOT/nodes.conf)"}
	cmd.AddCommand(newRecordCmds(a, nodeKind)...)
	cmd.AddCommand(newNodeImportCmd(a))
	cmd.AddCommand(newNodeCheckCmd(a))
	cmd.AddCommand(newNodeStatusCmd(a))
	cmd.AddCommand(newNodeRevokeCmd(a))
	return cmd
}

func newProfileCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "profile", Short: "Manage the profiles nodes inherit from"}
	cmd.AddCommand(newRecordCmds(a, profileKind)...)
	return cmd
}

// kind tells the shared record commands whether they work on nodes or profiles.
type kind struct {
	name    string // "node" or "profile"
	records func(*nodedb.Config) map[string]*nodedb.Record
}

// nodeKind and profileKind are the two kinds of records.
var (
	nodeKind    = kind{"node", func(c *nodedb.Config) map[string]*nodedb.Record { return c.Nodes }}
	profileKind = kind{"profile", func(c *nodedb.Config) map[string]*nodedb.Record { return c.NodeProfiles }}
)

// newRecordCmds builds list, show, add, set, unset and delete for nodes or
// profiles: one implementation serves both.
func newRecordCmds(a *app, k kind) []*cobra.Command {
	isNode := k.name == "node"
	var out string
	var listSecrets, showSecrets bool
	list := &cobra.Command{
		Use:   "list [PATTERN...]",
		Short: "List " + k.name + "s (shell patterns select by name)",
		RunE: func(cmd *cobra.Command, args []string) error {
			db, err := a.snapshot(cmd.Context())
			if err != nil {
				return err
			}
			names, err := matchNames(k, dbNames(k, db), args)
			if err != nil {
				return err
			}
			return printRecords(a, k, db, names, out, listSecrets)
		},
	}
	outputFlag(list, &out)
	secretsFlag(list, &listSecrets)

	var showOut string
	show := &cobra.Command{
		Use:   "show NAME...",
		Short: "Show " + k.name + "s in full" + map[bool]string{true: " (the effective node: merged with its profiles)", false: ""}[isNode],
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			db, err := a.snapshot(cmd.Context())
			if err != nil {
				return err
			}
			var shown []any
			for _, name := range args {
				v, err := lookupShown(k, db, name, showSecrets)
				if err != nil {
					return err
				}
				shown = append(shown, v)
			}
			format := showOut
			if format == "table" {
				format = "yaml"
			}
			var v any = shown
			if len(shown) == 1 {
				v = shown[0]
			}
			_, err = printStructured(a.stdout, format, v)
			return err
		},
	}
	outputFlag(show, &showOut)
	secretsFlag(show, &showSecrets)

	var addFlags recordFlags
	add := &cobra.Command{
		Use:   "add NAME...",
		Short: "Add " + k.name + "s",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			err := a.update(cmd.Context(), func(c *nodedb.Config) error {
				recs := k.records(c)
				for _, name := range args {
					if _, ok := recs[name]; ok {
						return fmt.Errorf("%s %q: %w (change it with '%s set')", k.name, name, nodedb.ErrExists, k.name)
					}
					r := &nodedb.Record{}
					if isNode && !cmd.Flags().Changed("profile") {
						if _, ok := c.NodeProfiles["default"]; ok {
							r.Profiles = []string{"default"}
						}
					}
					if err := addFlags.apply(cmd.Flags(), r); err != nil {
						return err
					}
					recs[name] = r
				}
				return nil
			}, "added", k.name, args)
			if err == nil {
				a.warnUnknownImage(cmd.Context(), cmd.Flags(), addFlags.image)
			}
			return err
		},
	}
	addFlags.bind(add.Flags(), isNode)

	var setFlags recordFlags
	set := &cobra.Command{
		Use:   "set NAME...",
		Short: "Change settings of " + k.name + "s",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			err := a.updateEach(cmd.Context(), k, args, "changed", func(recs map[string]*nodedb.Record, name string) error {
				return setFlags.apply(cmd.Flags(), recs[name])
			})
			if err == nil {
				a.warnUnknownImage(cmd.Context(), cmd.Flags(), setFlags.image)
			}
			return err
		},
	}
	setFlags.bind(set.Flags(), isNode)

	var unset unsetFlags
	unsetCmd := &cobra.Command{
		Use:   "unset NAME...",
		Short: "Clear settings of " + k.name + "s so that profiles (or defaults) apply again",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.updateEach(cmd.Context(), k, args, "changed", func(recs map[string]*nodedb.Record, name string) error {
				if err := unset.apply(recs[name]); err != nil {
					return fmt.Errorf("%s %q: %w", k.name, name, err)
				}
				return nil
			})
		},
	}
	unset.bind(unsetCmd.Flags())

	del := &cobra.Command{
		Use:     "delete NAME...",
		Aliases: []string{"rm"},
		Short:   "Delete " + k.name + "s",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var deleted []string
			err := a.updateEach(cmd.Context(), k, args, "deleted", func(recs map[string]*nodedb.Record, name string) error {
				delete(recs, name)
				deleted = append(deleted, name)
				return nil
			})
			if err != nil || !isNode {
				return err
			}
			_, err = a.revokeNodes(deleted, true)
			return err
		},
	}
	if isNode {
		del.Long = `Deletes nodes from the inventory. Their agent certificates are revoked with them (their enrollment
records in ROOT/tls/nodes go): a node added again under the same name enrolls anew, and the old
certificate gets nothing. The nodes' SSH host keys (ROOT/keys/nodes/NAME) stay, so that a node deleted
and added again keeps its host identity (no changed-host-key warnings from ssh); remove that directory
to retire the name for good.`
	}
	return []*cobra.Command{list, show, add, set, unsetCmd, del}
}

// snapshot opens the inventory and returns its current state.
func (a *app) snapshot(ctx context.Context) (*nodedb.DB, error) {
	s, err := a.openInventory(ctx)
	if err != nil {
		return nil, err
	}
	return s.Snapshot(ctx)
}

// update applies fn to the inventory under its lock and reports what it did.
func (a *app) update(ctx context.Context, fn func(*nodedb.Config) error, verb, kind string, names []string) error {
	s, err := a.openInventory(ctx)
	if err != nil {
		return err
	}
	if err := s.Update(ctx, fn); err != nil {
		return err
	}
	a.log.Debug(kind+"s "+verb, "names", names, "file", s.Path())
	return nil
}

// updateEach applies fn, under the inventory's lock, to every record whose
// name matches one of the patterns.
func (a *app) updateEach(ctx context.Context, k kind, patterns []string, verb string, fn func(recs map[string]*nodedb.Record, name string) error) error {
	return a.update(ctx, func(c *nodedb.Config) error {
		names, err := matchNames(k, configNames(k, c), patterns)
		if err != nil {
			return err
		}
		for _, name := range names {
			if err := fn(k.records(c), name); err != nil {
				return err
			}
		}
		return nil
	}, verb, k.name, patterns)
}

// dbNames returns the node or profile names of a snapshot.
func dbNames(k kind, db *nodedb.DB) []string {
	if k.name == "node" {
		return db.Names()
	}
	return db.ProfileNames()
}

// configNames returns the node or profile names of a Config, sorted.
func configNames(k kind, c *nodedb.Config) []string {
	out := make([]string, 0, len(k.records(c)))
	for n := range k.records(c) {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// matchNames expands shell patterns (n[01-10] style globs are path.Match
// patterns) to existing names; a plain name that does not exist is an error.
func matchNames(k kind, all []string, patterns []string) ([]string, error) {
	if len(patterns) == 0 {
		return all, nil
	}
	var out []string
	seen := map[string]bool{}
	for _, p := range patterns {
		found := false
		for _, n := range all {
			if ok, err := path.Match(p, n); err != nil {
				return nil, fmt.Errorf("pattern %q: %w", p, err)
			} else if ok {
				found = true
				if !seen[n] {
					seen[n] = true
					out = append(out, n)
				}
			}
		}
		if !found {
			return nil, fmt.Errorf("%s %q: %w (see '%s list')", k.name, p, nodedb.ErrNotFound, k.name)
		}
	}
	return out, nil
}

// secretsFlag adds --secrets, which shows BMC passwords and asset keys in
// clear instead of nodedb.Redacted.
func secretsFlag(cmd *cobra.Command, v *bool) {
	cmd.Flags().BoolVar(v, "secrets", false, "show BMC passwords (ipmi: password) and asset keys in clear; without it they read "+
		nodedb.Redacted+" (the inventory file, ROOT/nodes.conf, is the lossless backup)")
}

// shownRecord is r as displayed: secrets masked unless secrets is set.
func shownRecord(r nodedb.Record, secrets bool) nodedb.Record {
	if secrets {
		return r
	}
	return r.Redact()
}

// lookupShown returns the effective node, or the profile, name as
// displayed (a copy: secrets masked unless secrets is set).
func lookupShown(k kind, db *nodedb.DB, name string, secrets bool) (any, error) {
	if k.name == "node" {
		n, err := db.Node(name)
		if err != nil {
			return nil, err
		}
		c := *n
		c.Record = shownRecord(n.Record, secrets)
		return &c, nil
	}
	p, err := db.Profile(name)
	if err != nil {
		return nil, err
	}
	c := shownRecord(*p, secrets)
	return &c, nil
}

// printRecords writes the list table, or the records keyed by name as in
// nodes.conf (effective nodes for nodes), secrets masked unless secrets is
// set.
func printRecords(a *app, k kind, db *nodedb.DB, names []string, format string, secrets bool) error {
	byName := map[string]*nodedb.Record{}
	for _, name := range names {
		var r nodedb.Record
		if k.name == "node" {
			n, _ := db.Node(name)
			r = n.Record
		} else {
			p, _ := db.Profile(name)
			r = *p
		}
		r = shownRecord(r, secrets)
		byName[name] = &r
	}
	if done, err := printStructured(a.stdout, format, byName); done {
		return err
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	if k.name == "node" {
		fmt.Fprintln(tw, "NODE\tPROFILES\tIMAGE\tNETDEV\tHWADDR\tIPADDR")
		for _, name := range names {
			n, _ := db.Node(name)
			dev, hw, ip := "--", "--", "--"
			if nd := n.PrimaryNetDevice(); nd != nil {
				dev, hw, ip = n.Primary, or(nd.Hwaddr), or(nd.Ipaddr)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", name, or(strings.Join(n.Profiles, ",")), or(n.ImageName), dev, hw, ip)
		}
	} else {
		fmt.Fprintln(tw, "PROFILE\tPROFILES\tCOMMENT")
		for _, name := range names {
			p := byName[name]
			fmt.Fprintf(tw, "%s\t%s\t%s\n", name, or(strings.Join(p.Profiles, ",")), or(p.Comment))
		}
	}
	return tw.Flush()
}

func or(s string) string {
	if s == "" {
		return "--"
	}
	return s
}

func newNodeImportCmd(a *app) *cobra.Command {
	var overwrite bool
	cmd := &cobra.Command{
		Use:   "import FILE",
		Short: "Merge the nodes and profiles of a Warewulf nodes.conf into the inventory",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			in, err := nodedb.Parse(args[0], data)
			if err != nil {
				return err
			}
			var res mergeResult
			err = a.update(cmd.Context(), func(c *nodedb.Config) error {
				res, err = mergeNodesConf(c, in, args[0], overwrite)
				return err
			}, "imported", "node", nil)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "imported %s: %d added, %d replaced\n", args[0], res.added, res.replaced)
			if res.initDefault {
				fmt.Fprintf(a.stdout, "its default profile replaced the one 'wwboot init' wrote (unchanged since)\n")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&overwrite, "overwrite", false, "replace nodes and profiles that already exist")
	return cmd
}
