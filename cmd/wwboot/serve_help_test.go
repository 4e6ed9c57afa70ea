package main

import (
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
