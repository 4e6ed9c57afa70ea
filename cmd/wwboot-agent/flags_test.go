package main

import (
	"bytes"
	"context"
	"flag"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFlagNamesAndDeprecatedAliases: the agent's flags have the names
// `wwboot agent` uses (-server, -node-conf, -target); the earlier -url,
// -conf and -root still work, are left out of the help and warned about.
func TestFlagNamesAndDeprecatedAliases(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var help bytes.Buffer
	err := run(ctx, []string{"-h"}, &help)
	require.ErrorIs(t, err, flag.ErrHelp)
	for _, fl := range []string{"-server string", "-node-conf string", "-target string", "-hwaddr string", "-asset-key string"} {
		assert.Contains(t, help.String(), fl)
	}
	for _, old := range []string{"\n  -url ", "\n  -conf ", "\n  -root "} {
		assert.NotContains(t, help.String(), old)
	}
	assert.Contains(t, help.String(), `(default "/")`, "defaults are printed as before")

	// Old and new names set the same thing: a server that is not there
	// is the error, not the flags; each old name is warned about.
	missing := filepath.Join(t.TempDir(), "node.conf")
	for _, args := range [][]string{
		{"-server", "http://127.0.0.1:1", "-hwaddr", "52:54:00:00:00:01", "-node-conf", missing, "-target", t.TempDir(), "-any-port", "once"},
		{"-url", "http://127.0.0.1:1", "-hwaddr", "52:54:00:00:00:01", "-conf", missing, "-root", t.TempDir(), "-any-port", "once"},
	} {
		var stderr bytes.Buffer
		err := run(ctx, args, &stderr)
		require.Error(t, err, "%v", args)
		assert.Contains(t, err.Error(), "127.0.0.1:1", "%v", args)
		if args[0] == "-url" {
			assert.Contains(t, stderr.String(), "-url is deprecated: use -server")
			assert.Contains(t, stderr.String(), "-conf is deprecated: use -node-conf")
			assert.Contains(t, stderr.String(), "-root is deprecated: use -target")
		} else {
			assert.NotContains(t, stderr.String(), "deprecated")
		}
	}
	// -node-conf is read when -server is missing.
	var stderr bytes.Buffer
	err = run(ctx, []string{"-node-conf", missing, "once"}, &stderr)
	assert.ErrorContains(t, err, missing)
}
