// Command wwboot is the reference binary of the wwboot library: flags, a
// configuration file and logging around the packages, with no logic of its own.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"
)

// app carries what every subcommand shares: the state directory, the output
// streams and the logger. Subcommands get it from newRootCmd; nothing is global.
type app struct {
	root    string
	verbose bool
	stdout  io.Writer
	stderr  io.Writer
	log     *slog.Logger
	getenv  func(string) string // os.Getenv in main, a map lookup in tests
}

// path joins elements onto the state directory.
func (a *app) path(elem ...string) string {
	return filepath.Join(append([]string{a.root}, elem...)...)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd(os.Stdout, os.Stderr, os.Getenv).ExecuteContext(ctx)
	stop()
	var ec *exitCodeError
	if errors.As(err, &ec) {
		if ec.msg != "" {
			fmt.Fprintln(os.Stderr, "wwboot:", ec.msg)
		}
		os.Exit(ec.code)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "wwboot:", err)
		os.Exit(1)
	}
}

// newRootCmd builds the command tree. getenv is os.Getenv in main and a map
// lookup in tests.
func newRootCmd(stdout, stderr io.Writer, getenv func(string) string) *cobra.Command {
	a := &app{stdout: stdout, stderr: stderr, getenv: getenv}
	defRoot := getenv("WWBOOT_ROOT")
	if defRoot == "" {
		defRoot = "/var/lib/wwboot"
	}
	cmd := &cobra.Command{
		Use:           "wwboot",
		Short:         "Stateless cluster provisioning: nodes boot over the network into an image in RAM",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, _ []string) {
			level := slog.LevelInfo
			if a.verbose {
				level = slog.LevelDebug
			}
			a.log = slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level}))
		},
	}
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	cmd.PersistentFlags().StringVar(&a.root, "root", defRoot, "state directory (wwboot.conf, nodes.conf, overlays/, images/, tftp/); env WWBOOT_ROOT")
	cmd.PersistentFlags().BoolVarP(&a.verbose, "verbose", "v", false, "log debug messages")
	for _, sub := range []func(*app) *cobra.Command{
		newInitCmd, newNodeCmdWithConsole, newProfileCmd, newImageCmd, newOverlayCmd, newServeCmd, newStatusCmd, newAgentCmd,
		newKeysCmd, newPowerCmd, newSlurmCmd, newImportCmd,
	} {
		cmd.AddCommand(sub(a))
	}
	addCompletions(a, cmd)
	return cmd
}
