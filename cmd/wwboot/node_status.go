package main

import (
	"context"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/wwboot/wwboot/provision"
)

// nodeStates returns the state of every node of st ("down" for the unseen)
// whose name matches one of patterns (all when none).
func nodeStates(st provision.Status, patterns []string) map[string]provision.NodeStatus {
	match := func(name string) bool {
		if len(patterns) == 0 {
			return true
		}
		for _, p := range patterns {
			if ok, _ := path.Match(p, name); ok {
				return true
			}
		}
		return false
	}
	out := map[string]provision.NodeStatus{}
	for _, s := range st.Nodes {
		if match(s.Node) {
			out[s.Node] = s
		}
	}
	for _, n := range st.Unseen {
		if match(n) {
			out[n] = provision.NodeStatus{Node: n, State: "down", Reason: "not seen since the server started"}
		}
	}
	return out
}

// filterStatus keeps the nodes of st that match patterns.
func filterStatus(st provision.Status, patterns []string) provision.Status {
	if len(patterns) == 0 {
		return st
	}
	keep := nodeStates(st, patterns)
	var nodes []provision.NodeStatus
	for _, s := range st.Nodes {
		if _, ok := keep[s.Node]; ok {
			nodes = append(nodes, s)
		}
	}
	var unseen []string
	for _, n := range st.Unseen {
		if _, ok := keep[n]; ok {
			unseen = append(unseen, n)
		}
	}
	st.Nodes, st.Unseen, st.Unknown = nodes, unseen, nil
	return st
}

func newNodeStatusCmd(a *app) *cobra.Command {
	var server, output, wait, tokenFile string
	var timeout, waitTimeout, interval time.Duration
	cmd := &cobra.Command{
		Use:   "status [NODE...]",
		Short: "Show the state of nodes (glob patterns) from the running server; --wait until they reach one",
		Long: `Prints each node's state as 'wwboot status' does (up, booting, down, failed), for the nodes
named (glob patterns; all without). With --wait[=STATE] (STATE up when not given) it polls the
server until every one of them is in STATE, printing each change, and fails when --wait-timeout
passes first or, unless STATE is failed, when a node fails (the reason is printed): a script
can power nodes on and wait for them.

The server answers only its administrators: the server itself (loopback), its admin networks
(wwboot.conf: admin networks), or the bearer token this command sends (--token-file, env
WWBOOT_TOKEN_FILE, default ROOT/admin.token).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if wait == "" {
				st, err := a.fetchStatus(cmd.Context(), server, tokenFile, timeout)
				if err != nil {
					return err
				}
				st = filterStatus(st, args)
				if ok, err := printStructured(a.stdout, output, st); ok {
					return err
				}
				return printStatus(a.stdout, st)
			}
			switch wait {
			case "up", "booting", "down", "failed":
			default:
				return fmt.Errorf("--wait %q: use up, booting, down or failed", wait)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), waitTimeout)
			defer cancel()
			last := map[string]string{}
			var pending []string // as of the last answer
			for {
				st, err := a.fetchStatus(ctx, server, tokenFile, timeout)
				if err == nil {
					states := nodeStates(st, args)
					if len(states) == 0 {
						return fmt.Errorf("no node matches %s in the server's inventory", strings.Join(args, " "))
					}
					names := make([]string, 0, len(states))
					for n := range states {
						names = append(names, n)
					}
					sort.Strings(names)
					var failed []string
					pending = pending[:0]
					for _, n := range names {
						s := states[n]
						if last[n] != s.State {
							fmt.Fprintf(a.stdout, "%s %s %s%s\n", time.Now().Format(time.TimeOnly), n, s.State, reasonSuffix(s.Reason))
							last[n] = s.State
						}
						if s.State != wait {
							pending = append(pending, n)
							if s.State == "failed" {
								failed = append(failed, n+reasonSuffix(s.Reason))
							}
						}
					}
					if len(failed) > 0 {
						return fmt.Errorf("waiting for %s: failed: %s", wait, strings.Join(failed, "; "))
					}
					if len(pending) == 0 {
						fmt.Fprintf(a.stdout, "all %d nodes %s\n", len(names), wait)
						return nil
					}
					if ctx.Err() != nil {
						return fmt.Errorf("waiting for %s: --wait-timeout %s passed; not %s: %s", wait, waitTimeout, wait, strings.Join(pending, ", "))
					}
				} else if ctx.Err() != nil {
					if len(pending) > 0 {
						return fmt.Errorf("waiting for %s: --wait-timeout %s passed; not %s: %s", wait, waitTimeout, wait, strings.Join(pending, ", "))
					}
					return fmt.Errorf("waiting for %s: --wait-timeout %s passed: %w", wait, waitTimeout, err)
				}
				select {
				case <-ctx.Done():
				case <-time.After(interval):
				}
			}
		},
	}
	cmd.Flags().StringVar(&server, "server", "http://127.0.0.1:9873", "URL of the running wwboot serve")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "how long to wait for each answer of the server")
	tokenFileFlag(cmd, &tokenFile)
	cmd.Flags().StringVar(&wait, "wait", "", "wait until every node is in this state (up, booting, down, failed)")
	cmd.Flags().Lookup("wait").NoOptDefVal = "up"
	cmd.Flags().DurationVar(&waitTimeout, "wait-timeout", 15*time.Minute, "give up waiting after this long")
	cmd.Flags().DurationVar(&interval, "interval", 2*time.Second, "how often to ask while waiting")
	outputFlag(cmd, &output)
	// Status records are the server's, not nodes.conf's.
	cmd.Flags().Lookup("output").Usage = "output format: table, json or yaml (every field of the server's status)"
	return cmd
}

func reasonSuffix(r string) string {
	if r == "" {
		return ""
	}
	return " (" + r + ")"
}
