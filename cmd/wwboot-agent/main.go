// Command wwboot-agent runs on every booted node: it keeps the node's
// runtime overlay current and reports the node's state to the wwboot server.
//
//	wwboot-agent [flags] [run]            sync once, then long-poll for changes and send heartbeats
//	wwboot-agent [flags] once             sync once and exit (0: applied or current); -retry-for D keeps trying
//	wwboot-agent [flags] report STATE REASON...
//	                                      tell the server the node is up, booting or failed, and why
//
// The server's URL and the node's MAC come from /etc/wwboot/node.conf
// (WWBOOT_URL, WWBOOT_HWADDR), rendered by the built-in wwinit overlay;
// flags override them. When node.conf names a TLS channel (WWBOOT_TLS_URL),
// the agent enrolls once per boot (its key and certificate in /run/wwboot)
// and then fetches the runtime overlay and reports over TLS, checking the
// server against /etc/wwboot/ca.crt. It must run as root: the server sends the runtime
// overlay only to a privileged source port. Build it small and static:
//
//	CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o wwboot-agent ./cmd/wwboot-agent
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/wwboot/wwboot/agent"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "wwboot-agent:", err)
		os.Exit(1)
	}
}

const usage = `usage: wwboot-agent [flags] [run | once | report STATE REASON...]

  run       sync the runtime overlay, then keep it current (long-poll) and send heartbeats (default)
  once      sync the runtime overlay once and exit
  report    tell the server the node's STATE (up, booting, failed) and the REASON

flags:
`

// deprecatedFlag returns the name that replaced old, one of the agent's
// earlier flag names, now shared with `wwboot agent`.
func deprecatedFlag(old string) (now string, ok bool) {
	switch old {
	case "url":
		return "server", true
	case "conf":
		return "node-conf", true
	case "root":
		return "target", true
	}
	return "", false
}

// printDefaults prints the flags of fs as flag.PrintDefaults does, without
// the deprecated names.
func printDefaults(fs *flag.FlagSet, w io.Writer) {
	shown := flag.NewFlagSet(fs.Name(), flag.ContinueOnError)
	shown.SetOutput(w)
	fs.VisitAll(func(f *flag.Flag) {
		if _, old := deprecatedFlag(f.Name); !old {
			shown.Var(f.Value, f.Name, f.Usage)
			shown.Lookup(f.Name).DefValue = f.DefValue
		}
	})
	shown.PrintDefaults()
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("wwboot-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); printDefaults(fs, stderr) }
	var (
		conf      = fs.String("node-conf", agent.DefaultNodeConf, "node.conf to read WWBOOT_URL and WWBOOT_HWADDR from")
		url       = fs.String("server", "", "provisioning server URL, http://HOST:PORT (default: WWBOOT_URL of -node-conf)")
		hwaddr    = fs.String("hwaddr", "", "this node's MAC (default: WWBOOT_HWADDR of -node-conf)")
		root      = fs.String("target", "/", "where to apply the runtime overlay")
		assetKey  = fs.String("asset-key", "", "the node's asset key, if the inventory gives it one")
		wait      = fs.Duration("wait", agent.DefaultWait, "longest time one long-poll request is held by the server (max 5m)")
		heartbeat = fs.Duration("heartbeat", agent.DefaultHeartbeat, "interval between heartbeats (negative: none)")
		stage     = fs.String("stage", "", "with report: the boot stage (default: init for failed and booting, agent for up)")
		tries     = fs.Int("tries", 5, "with report: attempts, 2 s apart")
		retryFor  = fs.Duration("retry-for", 0, "with once: keep trying, 2 s apart, for up to this long (0: one attempt); "+
			"the wwboot-agent-sync unit waits so for the node's host keys before sshd starts")
		tlsURL  = fs.String("tls-url", "", "the server's TLS channel, https://HOST:PORT (default: WWBOOT_TLS_URL of -node-conf; none: plain HTTP only)")
		caFile  = fs.String("ca", agent.DefaultCAFile, "with a TLS channel: the cluster CA certificate the server's must chain to")
		runDir  = fs.String("run-dir", agent.DefaultRunDir, "with a TLS channel: where this boot's key and certificate are kept")
		anyPort = fs.Bool("any-port", false, "connect from any source port (a server with secure: false); default: a privileged one")
		verbose = fs.Bool("v", false, "log every request")
	)
	// The names before `wwboot agent` and this binary shared theirs;
	// accepted, not shown, and warned about.
	fs.StringVar(conf, "conf", agent.DefaultNodeConf, "")
	fs.StringVar(url, "url", "", "")
	fs.StringVar(root, "root", "/", "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cmd := "run"
	rest := fs.Args()
	if len(rest) > 0 {
		cmd, rest = rest[0], rest[1:]
		if err := fs.Parse(rest); err != nil { // flags may follow the command
			return err
		}
		rest = fs.Args()
	}
	fs.Visit(func(f *flag.Flag) {
		if now, ok := deprecatedFlag(f.Name); ok {
			fmt.Fprintf(stderr, "wwboot-agent: -%s is deprecated: use -%s (the name wwboot agent uses too)\n", f.Name, now)
		}
	})
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	a := &agent.Agent{Root: *root, AssetKey: *assetKey, Wait: *wait, Heartbeat: *heartbeat, CAFile: *caFile, RunDir: *runDir,
		Log: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))}
	if *anyPort {
		a.Dial = agent.DialAny
	}
	if *url == "" || *hwaddr == "" {
		c, err := agent.ReadNodeConf(*conf)
		if err != nil {
			return err
		}
		a.URL, a.HWAddr, a.TLSURL = c.URL, c.HWAddr, c.TLSURL
	}
	if *tlsURL != "" {
		a.TLSURL = *tlsURL
	}
	if *url != "" {
		a.URL = *url
	}
	if *hwaddr != "" {
		hw, err := net.ParseMAC(*hwaddr)
		if err != nil {
			return fmt.Errorf("-hwaddr %q: %w", *hwaddr, err)
		}
		a.HWAddr = hw
	}

	switch cmd {
	case "run":
		if len(rest) > 0 {
			return fmt.Errorf("run takes no arguments (got %q)", rest)
		}
		a.Log.Info("wwboot-agent", "server", a.URL, "tls", a.TLSURL, "hwaddr", a.HWAddr.String(), "root", a.Root)
		return a.Run(ctx)
	case "once":
		if len(rest) > 0 {
			return fmt.Errorf("once takes no arguments (got %q)", rest)
		}
		deadline := time.Now().Add(*retryFor)
		for {
			changed, err := a.Sync(ctx, 0)
			if err == nil {
				a.Log.Info("runtime overlay current", "applied", changed, "etag", a.ETag())
				return nil
			}
			if ctx.Err() != nil || !time.Now().Add(2*time.Second).Before(deadline) {
				return err
			}
			a.Log.Warn("runtime overlay not synced, trying again", "err", err, "until", deadline.Format(time.TimeOnly))
			select {
			case <-ctx.Done():
				return err
			case <-time.After(2 * time.Second):
			}
		}
	case "report":
		if len(rest) < 1 {
			return errors.New("report STATE REASON...: give a state (up, booting, failed)")
		}
		state, reason := rest[0], strings.Join(rest[1:], " ")
		switch state {
		case agent.StateUp, agent.StateBooting, agent.StateFailed:
		default:
			return fmt.Errorf("report: state %q: use up, booting or failed", state)
		}
		st := *stage
		if st == "" {
			st = "init"
			if state == agent.StateUp {
				st = "agent"
			}
		}
		var err error
		for i := range max(*tries, 1) {
			if err = a.Report(ctx, state, st, reason); err == nil || ctx.Err() != nil {
				return err
			}
			if i+1 < *tries {
				a.Log.Warn("report not delivered, trying again", "err", err)
				select {
				case <-ctx.Done():
					return err
				case <-time.After(2 * time.Second):
				}
			}
		}
		return err
	}
	fs.Usage()
	return fmt.Errorf("unknown command %q: use run, once or report", cmd)
}
