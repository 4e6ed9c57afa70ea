package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// serve's flags override wwboot.conf only when given; their help names the
// wwboot.conf key instead of a default that would mislead (a site with
// dhcp: proxy read '--dhcp (default "full")').
func TestServeHelpNamesTheConfigDefaults(t *testing.T) {
	out := mustRun(t, t.TempDir(), "serve", "--help")
	for _, want := range []string{
		"(default: wwboot.conf's dhcp:, else full)", "(default: wwboot.conf's tftp:, else true)",
		"(default: wwboot.conf's http port:, else 9873)", "default: wwboot.conf's secure:, else true)",
		"(default: wwboot.conf's interface:)",
	} {
		assert.Contains(t, out, want)
	}
	for _, bad := range []string{`(default "full")`, "(default 9873)"} {
		assert.NotContains(t, out, bad)
	}
}

// status and node status print the server's records: their -o help does
// not claim nodes.conf's keys.
func TestStatusOutputHelp(t *testing.T) {
	for _, args := range [][]string{{"status", "--help"}, {"node", "status", "--help"}} {
		out := mustRun(t, t.TempDir(), args...)
		assert.Contains(t, out, "every field of the server's status", args)
		assert.NotContains(t, out, "nodes.conf's keys", args)
	}
	assert.Contains(t, mustRun(t, t.TempDir(), "node", "list", "--help"), "nodes.conf's keys")
}

// The overlay commands that render for a node show the server and key
// flags; the others (list, create, chmod...) do not, and still accept them.
func TestOverlayHelpShowsRenderFlagsWhereTheyAct(t *testing.T) {
	for _, sub := range []string{"show", "files", "render", "build"} {
		assert.Contains(t, mustRun(t, t.TempDir(), "overlay", sub, "--help"), "--server-ipaddr", sub)
	}
	for _, sub := range []string{"list", "create", "delete", "mkdir", "import", "chmod", "chown", "edit", "info"} {
		out := mustRun(t, t.TempDir(), "overlay", sub, "--help")
		for _, fl := range []string{"--server-ipaddr", "--server-netmask", "--ssh-key-types", "--shared-host-keys"} {
			assert.NotContains(t, out, fl, sub)
		}
	}
	_, out, _ := strings.Cut(mustRun(t, t.TempDir(), "overlay", "--help"), "Flags:")
	assert.NotContains(t, out, "--server-ipaddr")
	root := t.TempDir()
	mustRun(t, root, "init")
	mustRun(t, root, "overlay", "list", "--server-ipaddr", "10.0.0.1")
}
