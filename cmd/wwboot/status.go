package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/wwboot/wwboot/provision"
)

func newStatusCmd(a *app) *cobra.Command {
	var server, output, tokenFile string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show each node's state (up, booting, down, failed) and why, from the running server",
		Long: `Asks the running 'wwboot serve' for its status (GET /api/v1/status, with the token of
ROOT/admin.token when readable) and prints, per node: its state, worked out
from its node agent's heartbeats and reports and from its boot requests,
  up       the agent sent a heartbeat lately
  booting  the node is fetching its boot files (or /init reported it is booting)
  down     no heartbeat for a while (the agent's interval is 30 s), or a boot that went quiet
  failed   the node reported a failure since it last began to boot (the reason says which)
then the reason, the last stage, when the agent last reported and when the node last asked
something; then the inventory's nodes not seen since the server started (down), and finally the
MACs that asked but are not in the inventory. -o json gives every field.

The server answers only its administrators: the server itself (loopback), its admin networks
(wwboot.conf: admin networks), or the bearer token of ROOT/admin.token, which this command sends.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := a.fetchStatus(cmd.Context(), server, tokenFile, timeout)
			if err != nil {
				return fmt.Errorf("status: %w", err)
			}
			if ok, err := printStructured(a.stdout, output, st); ok {
				return err
			}
			return printStatus(a.stdout, st)
		},
	}
	cmd.Flags().StringVar(&server, "server", "http://127.0.0.1:9873", "URL of the running wwboot serve")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "how long to wait for the server")
	tokenFileFlag(cmd, &tokenFile)
	outputFlag(cmd, &output)
	// Status records are the server's, not nodes.conf's.
	cmd.Flags().Lookup("output").Usage = "output format: table, json or yaml (every field of the server's status)"
	return cmd
}

// fetchStatus asks the server's API for the status (GET /api/v1/status),
// and a server older than the API for /status.
func (a *app) fetchStatus(ctx context.Context, server, tokenFile string, timeout time.Duration) (provision.Status, error) {
	var st provision.Status
	c := a.newAPIClient(server, tokenFile, timeout)
	code, err := c.do(ctx, http.MethodGet, "/api/v1/status", nil, &st, http.StatusOK)
	if code == http.StatusNotFound {
		_, err = c.do(ctx, http.MethodGet, "/status", nil, &st, http.StatusOK)
	}
	return st, err
}

// printStatus writes st as a table, times relative to the server's clock.
func printStatus(w io.Writer, st provision.Status) error {
	now := st.Now
	if now.IsZero() {
		now = time.Now()
	}
	ago := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		d := now.Sub(t)
		switch {
		case d < time.Second:
			return "now"
		case d < time.Minute:
			return fmt.Sprintf("%ds ago", int(d/time.Second))
		case d < time.Hour:
			return fmt.Sprintf("%dm%02ds ago", int(d/time.Minute), int(d%time.Minute/time.Second))
		case d < 48*time.Hour:
			return fmt.Sprintf("%dh%02dm ago", int(d/time.Hour), int(d%time.Hour/time.Minute))
		}
		return t.Local().Format(time.DateTime)
	}
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSTATE\tHWADDR\tLAST STAGE\tHEARTBEAT\tLAST REQUEST\tREASON")
	for _, s := range st.Nodes {
		stage := s.Stage
		if s.ReportedStage != "" && !s.Heartbeat.Before(s.Time.Add(-time.Second)) {
			stage = s.ReportedStage
		}
		if s.Code >= 400 {
			stage = fmt.Sprintf("%s (%d)", stage, s.Code)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Node, dash(s.State), s.Hwaddr, dash(stage),
			ago(s.Heartbeat), ago(s.Time), dash(s.Reason))
	}
	for _, name := range st.Unseen {
		fmt.Fprintf(tw, "%s\tdown\t-\t-\t-\t-\tnot seen since the server started %s\n", name, ago(st.Started))
	}
	if len(st.Nodes)+len(st.Unseen) == 0 {
		fmt.Fprintf(tw, "(no node has asked since %s)\n", st.Started.Local().Format(time.DateTime))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(st.Unknown) > 0 {
		fmt.Fprintf(w, "\nMACs not in the inventory (add one with: wwboot node add NAME --hwaddr MAC):\n")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "HWADDR\tSTAGE\tCODE\tCLIENT\tLAST REQUEST")
		for _, s := range st.Unknown {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", s.Hwaddr, s.Stage, s.Code, s.Client, ago(s.Time))
		}
		return tw.Flush()
	}
	return nil
}
