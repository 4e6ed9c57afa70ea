package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/wwboot/wwboot/provision"
)

func newStatusCmd(a *app) *cobra.Command {
	var server, output string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show what each node last fetched from the running server",
		Long: `Asks the running 'wwboot serve' for its /status and prints, per node, the last stage
fetched (ipxe, kernel, image, system, runtime), its HTTP status, bytes, client address and time,
then the MACs that asked but are not in the inventory.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			u := strings.TrimSuffix(server, "/") + "/status"
			req, err := http.NewRequestWithContext(cmd.Context(), http.MethodGet, u, nil)
			if err != nil {
				return fmt.Errorf("status: --server %q: %w", server, err)
			}
			resp, err := (&http.Client{Timeout: timeout}).Do(req)
			if err != nil {
				return fmt.Errorf("status: %w (is wwboot serve running? point --server at it)", err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("status: %s answered %s", u, resp.Status)
			}
			var st provision.Status
			if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
				return fmt.Errorf("status: %s: %w", u, err)
			}
			if ok, err := printStructured(a.stdout, output, st); ok {
				return err
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NODE\tHWADDR\tSTAGE\tCODE\tBYTES\tCLIENT\tLAST SEEN\tREQUESTS")
			row := func(s provision.NodeStatus) {
				name := s.Node
				if name == "" {
					name = "(unknown)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\t%d\n", name, s.Hwaddr, s.Stage, s.Code, s.Bytes, s.Client,
					s.Time.Local().Format(time.DateTime), s.Requests)
			}
			for _, s := range st.Nodes {
				row(s)
			}
			for _, s := range st.Unknown {
				row(s)
			}
			if len(st.Nodes)+len(st.Unknown) == 0 {
				fmt.Fprintf(tw, "(no node has asked since %s)\n", st.Started.Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&server, "server", "http://127.0.0.1:9873", "URL of the running wwboot serve")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "how long to wait for the server")
	outputFlag(cmd, &output)
	return cmd
}
