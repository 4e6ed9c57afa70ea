package main

import (
	"time"

	"github.com/spf13/cobra"
	"github.com/wwboot/wwboot/nodedb"
	"github.com/wwboot/wwboot/provision"
)

func newAgentCmd(a *app) *cobra.Command {
	var (
		server, hwaddr, conf, target, assetKey string
		port                                   int
		interval                               time.Duration
	)
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "On a node: keep its runtime overlay current (fetched from a privileged port, as secure mode requires)",
		Long: `Runs on a booted node as root. Fetches the node's runtime overlay from the provisioning
server and applies it under --target, then again every --interval (0: once). The server and the
node's MAC come from --server and --hwaddr, or from the node.conf the wwinit overlay rendered.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var ag *provision.Agent
			if server != "" && hwaddr != "" {
				hw, err := nodedb.ParseHW(hwaddr)
				if err != nil {
					return err
				}
				ag = &provision.Agent{Server: server, HWAddr: hw}
			} else {
				var err error
				if ag, err = provision.AgentFromNodeConf(conf, port); err != nil {
					return err
				}
			}
			ag.Root, ag.Interval, ag.AssetKey, ag.Log = target, interval, assetKey, a.log
			return ag.Run(cmd.Context())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&server, "server", "", "provisioning server URL (http://10.0.0.1:9873)")
	fl.StringVar(&hwaddr, "hwaddr", "", "this node's MAC address")
	fl.StringVar(&conf, "node-conf", "/etc/wwboot/node.conf", "node.conf rendered by the wwinit overlay, read when --server or --hwaddr is missing")
	fl.IntVar(&port, "port", 9873, "provisioning service port, with --node-conf")
	fl.StringVar(&target, "target", "/", "where to apply the overlay")
	fl.StringVar(&assetKey, "asset-key", "", "the node's asset key, if it has one")
	fl.DurationVar(&interval, "interval", time.Minute, "time between fetches (0: fetch once and exit)")
	return cmd
}
