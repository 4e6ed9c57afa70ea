package nodedb

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// oldConf is a nodes.conf that Warewulf 4.7 loads although it holds
// everything issue 10 item 5 lists.
const oldConf = `WW_INTERNAL: 43
site note: kept at the top level
nodeprofiles:
  default:
    tftp server: 10.0.0.1
    profiles: [nosuch]
  a:
    profiles: [b]
  b:
    profiles: [a]
nodes:
  n1:
    profiles: [default]
    primary network: eth9
    network devices:
      eth0:
        hwaddr: aa:bb:cc:00:00:01
        ipaddr: 10.0.0.1
        primary: "true"
        ipaddr6: "fd00::1/64"
        prefixlen6: "48"
    filesystems:
      /dev/sda1:
        path: /scratch
        mount_options: defaults,noatime
  n2:
    profiles: [default]
    network devices:
      eth0:
        hwaddr: AA-BB-CC-00-00-01
        ipaddr: 10.0.0.2
        gateway6: not-an-address
    filesystems:
      /dev/sda1:
        path: /scratch
        mount_options:
          - defaults
          - noatime
    my future key:
      nested: [1, 2]
`

// TestLoadsWhatWarewulfLoads: the file loads, every finding names the file
// and line, the node or profile and the field, the boot path refuses the
// shared MAC, and rewriting keeps every key.
func TestLoadsWhatWarewulfLoads(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "nodes.conf")
	require.NoError(t, os.WriteFile(path, []byte(oldConf), 0o640))
	var logs bytes.Buffer
	s, err := Open(ctx, path, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))), CheckInterval(0))
	require.NoError(t, err)
	db, err := s.Snapshot(ctx)
	require.NoError(t, err)

	var got []string
	for _, f := range db.Findings() {
		assert.Equal(t, path, f.File)
		assert.NotZero(t, f.Line, f.Error())
		got = append(got, f.Error())
	}
	want := []string{
		path + ":2: site note: unknown key",
		path + ":5: profile \"default\": tftp server: unknown key",
		path + ":19: node \"n1\": network devices.eth0.primary: unknown key \"primary\"",
		"Warewulf before 4.5 marked the primary device here",
		path + ":39: node \"n2\": my future key: unknown key",
		path + ":21: node \"n1\": network devices.eth0.prefixlen6: /48 conflicts with ipaddr6",
		path + ":32: node \"n2\": network devices.eth0.gateway6:",
		path + ":6: profile \"default\": profiles: unknown profile \"nosuch\"",
		path + ":8: profile \"a\": profiles: profile cycle a -> b -> a",
		path + ":14: node \"n1\": primary network: \"eth9\" is not one of the node's network devices; \"eth0\" is primary instead",
		path + ":30: node \"n2\": network devices.eth0.hwaddr: aa:bb:cc:00:00:01 is also the address of node \"n1\"",
	}
	all := strings.Join(got, "\n")
	for _, w := range want {
		assert.Contains(t, all, w)
	}
	assert.Len(t, got, 10, "each finding once:\n%s", all)

	// Logged once per loaded version, not on every snapshot.
	for range 3 {
		_, err = s.Snapshot(ctx)
		require.NoError(t, err)
	}
	assert.Equal(t, 10, strings.Count(logs.String(), "level=WARN"), logs.String())

	// The values Warewulf gives.
	n1, n2 := node(t, db, "n1"), node(t, db, "n2")
	assert.Equal(t, "eth0", n1.Primary, "a primary network naming no device falls back to the first, as Warewulf's updatePrimaryNetDev")
	assert.Equal(t, Options("defaults,noatime"), n1.FileSystems["/dev/sda1"].MountOptions)
	assert.Equal(t, Options("defaults,noatime"), n2.FileSystems["/dev/sda1"].MountOptions, "the list form reads the same")

	// The boot path: the shared MAC belongs to neither node.
	hw, _ := net.ParseMAC("aa:bb:cc:00:00:01")
	_, err = s.NodeByHW(ctx, hw)
	assert.ErrorIs(t, err, ErrAmbiguous)
	assert.NotErrorIs(t, err, ErrNotFound, "discovery must not hand an ambiguous MAC to a third node")

	// An edit elsewhere is allowed and keeps every key, also in the record
	// it rewrites.
	require.NoError(t, s.Update(ctx, func(c *Config) error {
		c.Nodes["n2"].Comment = "edited"
		c.Nodes["n1"].NetDevs["eth0"].MTU = "9000"
		return nil
	}))
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	text := string(data)
	for _, kept := range []string{"site note: kept at the top level", "tftp server: 10.0.0.1", "primary: \"true\"", "my future key:", "nested:", "comment: edited", "mtu: \"9000\"", "gateway6: not-an-address"} {
		assert.Contains(t, text, kept)
	}
	again, err := Open(ctx, path)
	require.NoError(t, err)
	db2, _ := again.Snapshot(ctx)
	assert.Len(t, db2.Findings(), 10, "the rewrite neither adds nor loses a finding")

	// An edit that adds an inconsistency is refused; nothing is written.
	err = s.Update(ctx, func(c *Config) error {
		c.Nodes["n3"] = &Record{Profiles: []string{"missing"}}
		return nil
	})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `node "n3": profiles: unknown profile "missing"`)
	after, _ := os.ReadFile(path)
	assert.Equal(t, text, string(after))
}

// TestAmbiguousIP: an IPv4 address two nodes share finds neither.
func TestAmbiguousIP(t *testing.T) {
	db, _ := openText(t, "nodes:\n  a:\n    network devices:\n      e: {ipaddr: 10.0.0.9}\n  b:\n    network devices:\n      e: {ipaddr: 10.0.0.9}\n")
	_, err := db.NodeByIP(context.Background(), netip.MustParseAddr("10.0.0.9"))
	assert.ErrorIs(t, err, ErrAmbiguous)
	require.Len(t, db.Findings(), 1)
	assert.Contains(t, db.Findings()[0].Error(), `nodes.conf:7: node "b": network devices.e.ipaddr: 10.0.0.9 is also the address of node "a"`)
}
