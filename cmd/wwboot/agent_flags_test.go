package main

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAgentFlagsMatchTheAgentBinary: `wwboot agent` and the wwboot-agent
// binary name the same settings alike (-server, -node-conf, -target...);
// only --once is a flag here where the binary has the `once` command.
func TestAgentFlagsMatchTheAgentBinary(t *testing.T) {
	bin, err := buildBinary()
	require.NoError(t, err)
	help, _ := exec.Command(filepath.Join(filepath.Dir(bin), agentName), "-h").CombinedOutput()
	binFlags := map[string]bool{}
	for _, m := range regexp.MustCompile(`\n  -([a-z-]+)`).FindAllStringSubmatch(string(help), -1) {
		binFlags[m[1]] = true
	}
	require.NotEmpty(t, binFlags, "%s", help)

	root := newRootCmd(&bytes.Buffer{}, &bytes.Buffer{}, func(string) string { return "" })
	agentCmd, _, err := root.Find([]string{"agent"})
	require.NoError(t, err)
	var names []string
	agentCmd.LocalFlags().VisitAll(func(f *pflag.Flag) {
		if f.Name != "once" && f.Name != "help" {
			names = append(names, f.Name)
		}
	})
	require.Contains(t, names, "server")
	for _, n := range names {
		assert.True(t, binFlags[n], "wwboot agent --%s has no -%s in wwboot-agent:\n%s", n, n, help)
	}
}
