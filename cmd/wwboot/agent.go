package main

import (
	"net"
	"time"

	"github.com/spf13/cobra"

	"github.com/wwboot/wwboot/agent"
)

// newAgentCmd is `wwboot agent`: the node agent of package agent, for a
// node that has the wwboot binary; nodes get the small wwboot-agent binary
// (./cmd/wwboot-agent) from the wwclient overlay instead.
func newAgentCmd(a *app) *cobra.Command {
	var (
		server, hwaddr, conf, target, assetKey string
		tlsURL, caFile, runDir                 string
		wait, heartbeat                        time.Duration
		once, anyPort                          bool
	)
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "On a node: keep its runtime overlay current and send heartbeats (what wwboot-agent does)",
		Long: `Runs on a booted node as root, like the wwboot-agent binary the wwclient overlay delivers.
Fetches the node's runtime overlay from a privileged source port and applies it under --target,
then waits for changes (long-poll, --wait per request) and sends a heartbeat every --heartbeat.
The server and the node's MAC come from --server and --hwaddr, or from the node.conf the wwinit
overlay rendered (WWBOOT_URL, WWBOOT_HWADDR).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ag := &agent.Agent{URL: server, Root: target, AssetKey: assetKey, Wait: wait, Heartbeat: heartbeat, Log: a.log,
				TLSURL: tlsURL, CAFile: caFile, RunDir: runDir}
			if server == "" || hwaddr == "" {
				c, err := agent.ReadNodeConf(conf)
				if err != nil {
					return err
				}
				ag.HWAddr = c.HWAddr
				if server == "" {
					ag.URL = c.URL
				}
				if tlsURL == "" {
					ag.TLSURL = c.TLSURL
				}
			}
			if hwaddr != "" {
				hw, err := net.ParseMAC(hwaddr)
				if err != nil {
					return err
				}
				ag.HWAddr = hw
			}
			if anyPort {
				ag.Dial = agent.DialAny
			}
			if once {
				_, err := ag.Sync(cmd.Context(), 0)
				return err
			}
			return ag.Run(cmd.Context())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&server, "server", "", "provisioning server URL (http://10.0.0.1:9873); default: WWBOOT_URL of --node-conf")
	fl.StringVar(&hwaddr, "hwaddr", "", "this node's MAC address; default: WWBOOT_HWADDR of --node-conf")
	fl.StringVar(&conf, "node-conf", agent.DefaultNodeConf, "node.conf rendered by the wwinit overlay, read when --server or --hwaddr is missing")
	fl.StringVar(&target, "target", "/", "where to apply the overlay")
	fl.StringVar(&assetKey, "asset-key", "", "the node's asset key, if it has one")
	fl.DurationVar(&wait, "wait", agent.DefaultWait, "longest time the server holds one request while nothing changes (max 5m)")
	fl.DurationVar(&heartbeat, "heartbeat", agent.DefaultHeartbeat, "interval between heartbeats (negative: none)")
	fl.BoolVar(&once, "once", false, "fetch and apply once, then exit")
	fl.StringVar(&tlsURL, "tls-url", "", "the server's TLS channel for the agent (https://10.0.0.1:9874); default: WWBOOT_TLS_URL of --node-conf (none: plain HTTP)")
	fl.StringVar(&caFile, "ca", agent.DefaultCAFile, "with a TLS channel: the cluster CA certificate the server's must chain to")
	fl.StringVar(&runDir, "run-dir", agent.DefaultRunDir, "with a TLS channel: where this boot's key and certificate are kept")
	fl.BoolVar(&anyPort, "any-port", false, "connect from any source port (a server with secure: false)")
	return cmd
}
