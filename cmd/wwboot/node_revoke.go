package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/wwboot/wwboot/hostlist"
	"github.com/wwboot/wwboot/provision"
)

// newNodeRevokeCmd is `wwboot node revoke NODES`: it drops the nodes'
// enrollment records, so that every certificate they hold gets 401.
func newNodeRevokeCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke NODES...",
		Short: "Revoke the agent certificates of nodes (their TLS enrollment); their agents enroll again",
		Long: `Revokes every agent certificate of NODES: their enrollment records (ROOT/tls/nodes/NODE.json) go,
and a running server refuses those certificates (401) from their next request on, as it checks the
record on every request over TLS. Enrollment for those nodes is open again.

The node's agent then re-enrolls on its next request (its long-poll or heartbeat: within seconds
while it runs) and carries on with a new certificate. Until it has, the enrollment goes to whoever asks
first and passes its checks (the node's address, a privileged source port, its asset key): an attacker
who can send from the node's address and wins that race gets the node's certificate, and the real
agent is then refused loudly (409, a warning in the server's log, an enroll_refused event). If you see
that, revoke again and reboot the node. Use it when a node's certificate may have leaked, or after
its hardware was replaced. 'wwboot node delete' revokes by itself, and the server drops the records
of nodes it no longer finds in the inventory (a hand edit of nodes.conf, a rename).

NODES are node names, Slurm hostlists (n[001-004,010]) or shell patterns (quote them).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			db, err := a.snapshot(cmd.Context())
			if err != nil {
				return err
			}
			names, err := selectNodes(db, args)
			if err != nil {
				return err
			}
			revoked, err := a.revokeNodes(names, false)
			if err != nil {
				return err
			}
			if rest := without(names, revoked); len(rest) > 0 {
				fmt.Fprintf(a.stdout, "%s had no certificate (not enrolled since it was added or last revoked)\n", hostlist.Compress(rest))
			}
			return nil
		},
	}
}

// revokeNodes drops the enrollment records of names in ROOT/tls, says
// which nodes had one and returns them; deleted says the nodes are gone
// from the inventory (node delete), whose agents then cannot enroll.
func (a *app) revokeNodes(names []string, deleted bool) ([]string, error) {
	revoked, err := provision.RevokeEnrollments(a.path("tls"), names...)
	switch {
	case len(revoked) > 0 && deleted:
		fmt.Fprintf(a.stdout, "deleted %s; revoked the agent certificates of %s with the deleted nodes\n", hostlist.Compress(names), hostlist.Compress(revoked))
	case deleted:
		fmt.Fprintf(a.stdout, "deleted %s\n", hostlist.Compress(names))
	case len(revoked) > 0:
		fmt.Fprintf(a.stdout, "revoked the agent certificates of %s; their agents enroll again on their next request\n", hostlist.Compress(revoked))
	}
	if err != nil {
		return revoked, fmt.Errorf("%w (ROOT/tls/nodes; the server refuses a certificate whose record is gone)", err)
	}
	return revoked, nil
}

// without returns the names of all that are not in drop.
func without(all, drop []string) []string {
	skip := map[string]bool{}
	for _, d := range drop {
		skip[d] = true
	}
	var out []string
	for _, n := range all {
		if !skip[n] {
			out = append(out, n)
		}
	}
	return out
}
