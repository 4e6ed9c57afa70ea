package nodedb

import (
	"context"
	"encoding/json"
	"flag"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite golden files")

// copyFixture copies a testdata file into a fresh directory as nodes.conf.
func copyFixture(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "nodes.conf")
	require.NoError(t, os.WriteFile(path, data, 0o640))
	return path
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.WriteFile(path, got, 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test -update to create it")
	assert.Equal(t, string(want), string(got))
}

func TestFullFixtureMergesAsWarewulfDocuments(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, copyFixture(t, "full.conf"))
	require.NoError(t, err)
	db, err := s.Snapshot(ctx)
	require.NoError(t, err)
	got, err := json.MarshalIndent(db.Nodes(), "", "  ")
	require.NoError(t, err)
	golden(t, "full.effective.json", append(got, '\n'))

	n1, err := db.Node("n1")
	require.NoError(t, err)
	// Profiles expand recursively, in merge order; the node keeps its own list.
	assert.Equal(t, []string{"default", "infiniband", "gpu"}, n1.Chain)
	assert.Equal(t, []string{"gpu"}, n1.Profiles)
	// "container name" is read as the image name.
	assert.Equal(t, "rocky-9", n1.ImageName)
	// Lists append; ~x removes an inherited entry.
	assert.Equal(t, []string{"wwinit", "hostname", "nvidia"}, n1.SystemOverlay)
	assert.Equal(t, []string{"crashkernel=no", "rdma=on", "console=ttyS0"}, n1.Kernel.Args)
	// Scalars: last set wins; maps merge by key.
	assert.Equal(t, map[string]string{"site": "lab", "rack": "r42", "accel": "a100", "owner": "alice"}, n1.Tags)
	assert.Equal(t, "10.1.0.1", n1.Ipmi.Ipaddr)
	assert.Equal(t, "admin", n1.Ipmi.UserName)
	// Network devices merge field by field with the profile's.
	ib := n1.NetDevs["ib"]
	assert.Equal(t, "infiniband", ib.Type)
	assert.Equal(t, "10.2.0.1", ib.Ipaddr)
	assert.Equal(t, "255.255.0.0", ib.Netmask)
	assert.Equal(t, "default", n1.Primary)
	assert.Contains(t, n1.Resources, "fstab")
	assert.Contains(t, n1.Resources, "scratch")

	n2, err := db.Node("n2")
	require.NoError(t, err)
	// ~default drops default from the whole chain, also where infiniband
	// brings it in; ~wwinit drops wwinit wherever it stands (Warewulf's
	// getNodeProfiles and cleanList).
	assert.Equal(t, []string{"infiniband"}, n2.Chain)
	assert.Equal(t, []string{"infiniband"}, n2.Profiles)
	assert.Empty(t, n2.SystemOverlay)
	assert.Equal(t, []string{"rdma=on"}, n2.Kernel.Args)
	// Without a primary network, the alphabetically first device is primary.
	assert.Equal(t, "eth", n2.Primary)

	// The profile records themselves stay raw.
	gpu, err := db.Profile("gpu")
	require.NoError(t, err)
	assert.Equal(t, []string{"nvidia", "~ssh.host_keys"}, gpu.SystemOverlay)
}

func TestSaveKeepsEveryFieldAndTheUsersComments(t *testing.T) {
	ctx := context.Background()
	path := copyFixture(t, "full.conf")
	s, err := Open(ctx, path)
	require.NoError(t, err)
	before, _ := s.Snapshot(ctx)

	require.NoError(t, s.Update(ctx, func(c *Config) error {
		c.Nodes["n2"].Comment = "changed"
		return nil
	}))
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	text := string(data)
	for _, kept := range []string{"# A cluster in Warewulf 4.7 format", "# the base every node gets", "# first compute node", "# the pre-4.6 key", "container name: rocky-9"} {
		assert.Contains(t, text, kept, "untouched parts of the file stay as written")
	}
	assert.Contains(t, text, "comment: changed")
	assert.Less(t, strings.Index(text, "nodeprofiles:"), strings.Index(text, "nodes:"), "key order kept")
	assert.Less(t, strings.Index(text, "  default:"), strings.Index(text, "  infiniband:"), "profile order kept")

	// Everything else survives a save and a reload, field for field.
	again, err := Parse(path, data)
	require.NoError(t, err)
	want := cloneConfig(before.Config())
	want.Nodes["n2"].Comment = "changed"
	assert.Equal(t, want, normalize(again))

	// Rewriting a node that used the legacy key writes the current one.
	require.NoError(t, s.Update(ctx, func(c *Config) error {
		c.Nodes["n1"].Comment = "renamed key"
		return nil
	}))
	data, _ = os.ReadFile(path)
	assert.NotContains(t, string(data), "container name")
	assert.Contains(t, string(data), "image name: rocky-9")
	assert.Contains(t, string(data), "# first compute node", "comments inside a changed node survive")
}

func TestMergeRules(t *testing.T) {
	cases := []struct {
		name     string
		profiles map[string]*Record
		node     *Record
		check    func(t *testing.T, n *Node)
	}{
		{"scalar: node wins over profile, later profile over earlier",
			map[string]*Record{"a": {Init: "/a", Root: "tmpfs"}, "b": {Init: "/b"}},
			&Record{Profiles: []string{"a", "b"}, Root: "initramfs"},
			func(t *testing.T, n *Node) {
				assert.Equal(t, "/b", n.Init)
				assert.Equal(t, "initramfs", n.Root)
			}},
		{"lists append left to right",
			map[string]*Record{"a": {RuntimeOverlay: []string{"x"}}, "b": {RuntimeOverlay: []string{"y"}}},
			&Record{Profiles: []string{"a", "b"}, RuntimeOverlay: []string{"z"}},
			func(t *testing.T, n *Node) { assert.Equal(t, []string{"x", "y", "z"}, n.RuntimeOverlay) }},
		{"~x removes x",
			map[string]*Record{"a": {Kernel: &Kernel{Args: []string{"quiet", "splash"}}}},
			&Record{Profiles: []string{"a"}, Kernel: &Kernel{Args: []string{"~quiet", "debug"}}},
			func(t *testing.T, n *Node) { assert.Equal(t, []string{"splash", "debug"}, n.Kernel.Args) }},
		{"nested profiles expand depth first, once each",
			map[string]*Record{"base": {Tags: map[string]string{"k": "base"}}, "a": {Profiles: []string{"base"}}, "b": {Profiles: []string{"base"}, Tags: map[string]string{"k": "b"}}},
			&Record{Profiles: []string{"a", "b"}},
			func(t *testing.T, n *Node) {
				assert.Equal(t, []string{"base", "a", "b"}, n.Chain)
				assert.Equal(t, []string{"a", "b"}, n.Profiles)
				assert.Equal(t, "b", n.Tags["k"])
			}},
		{"maps merge by key",
			map[string]*Record{"a": {Tags: map[string]string{"x": "1", "y": "1"}, Resources: map[string]any{"r": 1}}},
			&Record{Profiles: []string{"a"}, Tags: map[string]string{"y": "2"}, Resources: map[string]any{"s": 2}},
			func(t *testing.T, n *Node) {
				assert.Equal(t, map[string]string{"x": "1", "y": "2"}, n.Tags)
				assert.Equal(t, map[string]any{"r": 1, "s": 2}, n.Resources)
			}},
		{"netdevs merge field by field",
			map[string]*Record{"a": {NetDevs: map[string]*NetDev{"d": {Netmask: "255.255.0.0", MTU: "9000"}}}},
			&Record{Profiles: []string{"a"}, NetDevs: map[string]*NetDev{"d": {Ipaddr: "10.0.0.1", MTU: "1500"}}},
			func(t *testing.T, n *Node) {
				assert.Equal(t, &NetDev{Ipaddr: "10.0.0.1", Netmask: "255.255.0.0", MTU: "1500"}, n.NetDevs["d"])
			}},
		{"primary network: explicit field",
			nil,
			&Record{PrimaryNetDev: "z", NetDevs: map[string]*NetDev{"a": {}, "z": {}}},
			func(t *testing.T, n *Node) { assert.Equal(t, "z", n.Primary) }},
		{"primary network: alphabetically first",
			nil,
			&Record{NetDevs: map[string]*NetDev{"b": {}, "a": {}}},
			func(t *testing.T, n *Node) { assert.Equal(t, "a", n.Primary) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			profiles := c.profiles
			if profiles == nil {
				profiles = map[string]*Record{}
			}
			cfg := &Config{NodeProfiles: profiles, Nodes: map[string]*Record{"n": c.node}}
			db, err := New(cfg)
			require.NoError(t, err)
			n, err := db.Node("n")
			require.NoError(t, err)
			c.check(t, n)
			// Merging never changes the records it reads.
			if len(c.profiles) > 0 {
				assert.Equal(t, c.node.Profiles, cfg.Nodes["n"].Profiles)
			}
		})
	}
}

func TestValidationNamesFileLineNodeAndField(t *testing.T) {
	base := "nodeprofiles:\n  default: {}\nnodes:\n"
	cases := []struct {
		name, nodes string
		want        []string
	}{
		{"bad MAC", "  n1:\n    network devices:\n      eth0:\n        hwaddr: zz:zz\n",
			[]string{"nodes.conf:7:", `node "n1"`, "network devices.eth0.hwaddr", `"zz:zz" is not a MAC address`}},
		{"bad IP", "  n1:\n    network devices:\n      eth0:\n        ipaddr: 10.0.0.300\n",
			[]string{"nodes.conf:7:", "network devices.eth0.ipaddr", "not an IPv4 address"}},
		{"netmask conflicts with prefix", "  n1:\n    network devices:\n      a:\n        ipaddr: 10.0.0.1/16\n        netmask: 255.255.255.0\n",
			[]string{"nodes.conf:8:", "network devices.a.netmask", "conflicts with ipaddr"}},
		{"non-contiguous netmask", "  n1:\n    network devices:\n      a:\n        netmask: 255.0.255.0\n",
			[]string{"nodes.conf:7:", "not a contiguous netmask"}},
		{"bad mtu", "  n1:\n    network devices:\n      a:\n        mtu: big\n",
			[]string{"nodes.conf:7:", "mtu", "whole number"}},
		// Names templates put into file names (issue 11 item 8: the fuzzer's
		// cluster ".." and netdevs "x/.." and "a/b" were accepted).
		{"cluster name ..", "  n1:\n    cluster name: ..\n",
			[]string{"nodes.conf:5:", `node "n1"`, "cluster name", `".." is not a valid cluster name`}},
		{"cluster name with a slash", "  n1:\n    cluster name: a/b\n",
			[]string{"nodes.conf:5:", "cluster name", `"a/b" is not a valid cluster name`}},
		{"netdev x/..", "  n1:\n    network devices:\n      x/..:\n        device: eth0\n",
			[]string{"nodes.conf:6:", `node "n1"`, "network devices.x/..", `"x/.." is not a valid network device name`}},
		{"netdev a/b", "  n1:\n    network devices:\n      a/b:\n        device: eth0\n",
			[]string{"nodes.conf:6:", `"a/b" is not a valid network device name`}},
		{"netdev ..", "  n1:\n    network devices:\n      \"..\":\n        device: eth0\n",
			[]string{"nodes.conf:6:", `".." is not a valid network device name`}},
		{"interface name with a slash", "  n1:\n    network devices:\n      a:\n        device: ../eth0\n",
			[]string{"nodes.conf:7:", "network devices.a.device", `"../eth0" is not a valid interface name`}},
		{"node name with a control character", "  \"n\\r1\":\n    cluster name: c1\n",
			[]string{"nodes.conf:4:", `is not a valid node name`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "nodes.conf")
			require.NoError(t, os.WriteFile(path, []byte(base+c.nodes), 0o644))
			_, err := Open(context.Background(), path)
			require.Error(t, err)
			for _, w := range c.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}

	t.Run("profile with a bad cluster name", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "nodes.conf")
		require.NoError(t, os.WriteFile(path, []byte("nodeprofiles:\n  default:\n    cluster name: \"..\"\nnodes: {}\n"), 0o644))
		_, err := Open(context.Background(), path)
		require.Error(t, err)
		assert.Contains(t, err.Error(), `profile "default"`)
		assert.Contains(t, err.Error(), `".." is not a valid cluster name`)
	})
	t.Run("the same through the API", func(t *testing.T) {
		n := &Record{ClusterName: ".."}
		n.NetDevs = map[string]*NetDev{"x/..": {Device: "eth0"}}
		_, err := New(&Config{NodeProfiles: map[string]*Record{}, Nodes: map[string]*Record{"n1": n}})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "cluster name")
		assert.Contains(t, err.Error(), `"x/.." is not a valid network device name`)
	})

}

func TestLookupByHWIPAndName(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, copyFixture(t, "full.conf"))
	require.NoError(t, err)
	for _, mac := range []string{"aa:bb:cc:00:00:01", "AA-BB-CC-00-00-01", "aabb.cc00.0001"} {
		hw, err := ParseHW(mac)
		require.NoError(t, err)
		n, err := s.NodeByHW(ctx, hw)
		require.NoError(t, err, mac)
		assert.Equal(t, "n1", n.ID)
	}
	ib, _ := ParseHW("80:00:00:48:fe:80:00:00:00:00:00:00:00:02:c9:03:00:0a:bc:01")
	n, err := s.NodeByHW(ctx, ib)
	require.NoError(t, err)
	assert.Equal(t, "n1", n.ID, "an InfiniBand address finds its node too")

	n, err = s.NodeByIP(ctx, netip.MustParseAddr("10.0.0.2"))
	require.NoError(t, err)
	assert.Equal(t, "n2", n.ID)
	n, err = s.NodeByName(ctx, "n2")
	require.NoError(t, err)
	assert.Equal(t, "n2", n.ID)

	_, err = s.NodeByHW(ctx, net.HardwareAddr{1, 2, 3, 4, 5, 6})
	assert.ErrorIs(t, err, ErrNotFound)
	_, err = s.NodeByName(ctx, "nosuch")
	assert.ErrorIs(t, err, ErrNotFound)

	hw, _ := ParseHW("aa:bb:cc:00:00:01")
	allocs := testing.AllocsPerRun(1000, func() { _, _ = s.NodeByHW(ctx, hw) })
	assert.Zero(t, allocs, "MAC lookup must not allocate")
}

func TestReadersSeeAnotherWritersChange(t *testing.T) {
	ctx := context.Background()
	path := copyFixture(t, "full.conf")
	reader, err := Open(ctx, path, CheckInterval(0))
	require.NoError(t, err)
	writer, err := Open(ctx, path)
	require.NoError(t, err)
	require.NoError(t, writer.Update(ctx, func(c *Config) error {
		c.Nodes["n3"] = &Record{Profiles: []string{"default"}, NetDevs: map[string]*NetDev{"eth0": {Hwaddr: "aa:bb:cc:00:00:03"}}}
		return nil
	}))
	hw, _ := ParseHW("aa:bb:cc:00:00:03")
	n, err := reader.NodeByHW(ctx, hw)
	require.NoError(t, err)
	assert.Equal(t, "n3", n.ID)

	// A hand edit that breaks the file keeps the last good inventory.
	require.NoError(t, os.WriteFile(path, []byte("nodes: [broken"), 0o644))
	n, err = reader.NodeByHW(ctx, hw)
	require.NoError(t, err)
	assert.Equal(t, "n3", n.ID)
}

func TestFailedUpdateWritesNothing(t *testing.T) {
	ctx := context.Background()
	path := copyFixture(t, "full.conf")
	before, _ := os.ReadFile(path)
	s, err := Open(ctx, path)
	require.NoError(t, err)
	err = s.Update(ctx, func(c *Config) error {
		c.Nodes["n2"].NetDevs["eth"].Hwaddr = "aa:bb:cc:00:00:01" // n1's
		return nil
	})
	require.Error(t, err, "an edit may not add an inconsistency")
	assert.Contains(t, err.Error(), `also the address of node`)
	after, _ := os.ReadFile(path)
	assert.Equal(t, string(before), string(after))
	db, _ := s.Snapshot(ctx)
	n, _ := db.Node("n2")
	assert.Equal(t, "aa:bb:cc:00:00:02", n.NetDevs["eth"].Hwaddr)
}

func TestConcurrentWritersLoseNothing(t *testing.T) {
	ctx := context.Background()
	path := copyFixture(t, "full.conf")
	const writers = 50
	errs := make(chan error, writers)
	for i := range writers {
		go func() {
			s, err := Open(ctx, path) // a store each, as separate processes have
			if err == nil {
				err = s.Update(ctx, func(c *Config) error {
					if c.Nodes["n2"].Tags == nil {
						c.Nodes["n2"].Tags = map[string]string{}
					}
					c.Nodes["n2"].Tags["w"+strings.Repeat("x", i)] = "1"
					return nil
				})
			}
			errs <- err
		}()
	}
	for range writers {
		require.NoError(t, <-errs)
	}
	s, err := Open(ctx, path)
	require.NoError(t, err)
	db, _ := s.Snapshot(ctx)
	n, _ := db.Node("n2")
	count := 0
	for k := range n.Tags {
		if strings.HasPrefix(k, "w") {
			count++
		}
	}
	assert.Equal(t, writers, count)
}

func TestMemoryStore(t *testing.T) {
	ctx := context.Background()
	m, err := NewMemoryStore(nil)
	require.NoError(t, err)
	require.NoError(t, m.Update(ctx, func(c *Config) error {
		c.NodeProfiles["default"] = &Record{Init: "/sbin/init"}
		c.Nodes["a"] = &Record{Profiles: []string{"default"}, NetDevs: map[string]*NetDev{"e": {Hwaddr: "02:00:00:00:00:0a", Ipaddr: "10.9.0.10"}}}
		return nil
	}))
	n, err := m.NodeByIP(ctx, netip.MustParseAddr("10.9.0.10"))
	require.NoError(t, err)
	assert.Equal(t, "/sbin/init", n.Init)
	err = m.Update(ctx, func(c *Config) error {
		c.Nodes["b"] = &Record{Profiles: []string{"missing"}}
		return nil
	})
	require.Error(t, err)
	_, err = m.NodeByName(ctx, "b")
	assert.ErrorIs(t, err, ErrNotFound)
}

// TestMergeCoversEveryField guards the hand-written merge: a field added to
// Record must be merged too.
func TestMergeCoversEveryField(t *testing.T) {
	rt := reflect.TypeOf(Record{})
	for i := 0; i < rt.NumField(); i++ {
		f := rt.Field(i)
		if f.Name == "Extra" { // unknown keys are kept, never merged
			continue
		}
		src := &Record{}
		v := reflect.ValueOf(src).Elem().Field(i)
		switch v.Kind() {
		case reflect.String:
			v.SetString("x")
		case reflect.Slice:
			v.Set(reflect.ValueOf([]string{"x"}))
		case reflect.Map:
			m := reflect.MakeMap(v.Type())
			e := reflect.New(v.Type().Elem()).Elem()
			if e.Kind() == reflect.Pointer {
				e.Set(reflect.New(e.Type().Elem()))
			} else if e.Kind() == reflect.String {
				e.SetString("x")
			} else {
				e.Set(reflect.ValueOf("x"))
			}
			m.SetMapIndex(reflect.ValueOf("k"), e)
			v.Set(m)
		case reflect.Pointer:
			v.Set(reflect.New(v.Type().Elem()))
			v.Elem().Field(0).Set(reflect.ValueOf("x").Convert(v.Elem().Field(0).Type()))
		default:
			t.Fatalf("field %s: kind %s not covered by this test", f.Name, v.Kind())
		}
		dst := &Record{}
		mergeRecord(dst, src, true)
		assert.Equal(t, src, dst, "field %s must merge", f.Name)
	}
}
