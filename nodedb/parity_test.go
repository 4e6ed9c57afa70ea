package nodedb

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// openText writes text as a nodes.conf and opens it.
func openText(t *testing.T, text string) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "nodes.conf")
	require.NoError(t, os.WriteFile(path, []byte(text), 0o640))
	s, err := Open(context.Background(), path)
	require.NoError(t, err, "a file Warewulf 4.7 loads must load")
	db, err := s.Snapshot(context.Background())
	require.NoError(t, err)
	return db, path
}

func node(t *testing.T, db *DB, name string) *Node {
	t.Helper()
	n, err := db.Node(name)
	require.NoError(t, err)
	return n
}

// TestMergeAsWarewulf holds issue 10 item 6's examples, each with the value
// Warewulf 4.7 gives (internal/pkg/node/mergo.go MergeNode and
// getNodeProfiles, methods.go cleanList).
func TestMergeAsWarewulf(t *testing.T) {
	t.Run("~p anywhere removes p from the whole expanded chain", func(t *testing.T) {
		db, _ := openText(t, `nodeprofiles:
  base:
    init: /base-init
    tags: {from: base}
    system overlay: [basefiles]
  gpu:
    profiles: [~base]
    tags: {accel: a100}
nodes:
  n1:
    profiles: [base, gpu]
`)
		n := node(t, db, "n1")
		assert.Equal(t, []string{"gpu"}, n.Chain)
		assert.Empty(t, n.Init, "nothing of base")
		assert.Empty(t, n.SystemOverlay)
		assert.Equal(t, map[string]string{"accel": "a100"}, n.Tags, "only gpu's values")
		assert.Equal(t, []string{"base", "gpu"}, n.Profiles, "the node's own list")
	})
	t.Run("~x in a list removes x also when x comes later", func(t *testing.T) {
		db, _ := openText(t, `nodeprofiles:
  p:
    kernel:
      args: [~quiet]
nodes:
  n1:
    profiles: [p]
    kernel:
      args: [quiet, console=ttyS0]
`)
		assert.Equal(t, []string{"console=ttyS0"}, node(t, db, "n1").Kernel.Args)
	})
	t.Run("the effective node's profiles are its own list", func(t *testing.T) {
		db, _ := openText(t, `nodeprofiles:
  p1:
    profiles: [p2]
  p2: {}
nodes:
  n1:
    profiles: [p1]
`)
		n := node(t, db, "n1")
		assert.Equal(t, []string{"p1"}, n.Profiles)
		assert.Equal(t, []string{"p2", "p1"}, n.Chain)
	})
	t.Run("resources merge deeply, lists appended", func(t *testing.T) {
		db, _ := openText(t, `nodeprofiles:
  p:
    resources:
      fstab:
        - {spec: "warewulf:/home", file: /home, vfstype: nfs}
        - {spec: "warewulf:/opt", file: /opt, vfstype: nfs}
      limits:
        nofile: 1024
        nproc: 512
        hosts: [a]
nodes:
  n1:
    profiles: [p]
    resources:
      fstab:
        - {spec: "tmpfs", file: /scratch, vfstype: tmpfs}
      limits:
        nofile: 4096
        hosts: [b]
`)
		n := node(t, db, "n1")
		var files []any
		for _, e := range n.Resources["fstab"].([]any) {
			files = append(files, e.(map[string]any)["file"])
		}
		assert.Equal(t, []any{"/home", "/opt", "/scratch"}, files)
		assert.Equal(t, map[string]any{"nofile": 4096, "nproc": 512, "hosts": []any{"a", "b"}}, n.Resources["limits"])
		p, _ := db.Profile("p")
		assert.Len(t, p.Resources["fstab"], 2, "the profile's own record is not changed")
	})
	t.Run("comment: Warewulf inherits it like any other field", func(t *testing.T) {
		// Warewulf's own Test_MergeNode ("profile comment", "node comment
		// supersedes profile comment"): the issue's "never inherited" is not
		// what Warewulf 4.7 does.
		db, _ := openText(t, `nodeprofiles:
  p1: {comment: p1 comment}
nodes:
  n1: {profiles: [p1]}
  n2: {profiles: [p1], comment: n2 comment}
`)
		assert.Equal(t, "p1 comment", node(t, db, "n1").Comment)
		assert.Equal(t, "n2 comment", node(t, db, "n2").Comment)
	})
	t.Run("discoverable and asset key belong to nodes", func(t *testing.T) {
		db, _ := openText(t, `nodeprofiles:
  p: {discoverable: "true", asset key: A1}
nodes:
  n1: {profiles: [p]}
`)
		n := node(t, db, "n1")
		assert.Empty(t, n.Discoverable, "a profile cannot make every node discoverable")
		assert.Empty(t, n.AssetKey)
		require.Len(t, db.Findings(), 2)
		assert.Contains(t, db.Findings()[0].Error(), "only a node has this key")
	})
}

// TestProfileChainsAsWarewulf: the inputs of Warewulf's Test_getNodeProfiles
// (internal/pkg/node/mergo_test.go), with the chains the rule of
// getProfilesProfiles and cleanList in mergo.go gives: a profile after the
// profiles it names, a visited profile skipped, ~x applied to the whole
// chain. (The stored mergo_test.go belongs to a release that put a profile
// before the ones it names; mergo.go is the rule followed.)
func TestProfileChainsAsWarewulf(t *testing.T) {
	cases := []struct {
		name, profiles string
		node           []string
		want           []string
	}{
		{"negated profiles", "p1: {}\n  p2: {profiles: [~p1]}", []string{"p1", "p2"}, []string{"p2"}},
		{"negated missing profile", "p1: {}\n  p2: {profiles: [~p3]}", []string{"p1", "p2"}, []string{"p1", "p2"}},
		{"double nested profile", "p1: {profiles: [p2]}\n  p2: {profiles: [p3]}\n  p3: {}", []string{"p1"}, []string{"p3", "p2", "p1"}},
		{"negated nested profile", "p1: {profiles: [p2]}\n  p2: {profiles: [~p2, p3]}\n  p3: {}", []string{"p1"}, []string{"p3", "p1"}},
		{"circular nested profile", "p1: {profiles: [p2]}\n  p2: {profiles: [p3]}\n  p3: {profiles: [p1]}", []string{"p1"}, []string{"p3", "p2", "p1"}},
		{"repeated nested profile", "pa1: {profiles: [pa2]}\n  pa2: {}\n  pb1: {profiles: [~pa2, pb2]}\n  pb2: {profiles: [pa2]}", []string{"pa1", "pb1"}, []string{"pa1", "pb2", "pb1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := Parse("nodes.conf", []byte("nodeprofiles:\n  "+c.profiles+"\nnodes: {}\n"))
			require.NoError(t, err)
			assert.Equal(t, c.want, chainOf(cfg.NodeProfiles, c.node))
		})
	}
}

// TestCleanList: Warewulf's cleanList, entry by entry.
func TestCleanList(t *testing.T) {
	assert.Equal(t, []string{"b"}, cleanList([]string{"a", "b", "~a"}))
	assert.Equal(t, []string{"b"}, cleanList([]string{"~a", "a", "b", "a"}))
	assert.Equal(t, []string{"a", "a"}, cleanList([]string{"a", "a"}), "no negation: unchanged, repeats kept")
	assert.Nil(t, cleanList([]string{"~a", "a"}))
}
