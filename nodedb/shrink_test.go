package nodedb

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// syncBuffer is a log sink safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// nodesText is a nodes.conf with nodes n000..n(count-1).
func nodesText(count int) string {
	var b strings.Builder
	b.WriteString("nodeprofiles:\n  default: {}\nnodes:\n")
	for i := range count {
		fmt.Fprintf(&b, "  n%03d:\n    profiles: [default]\n    network devices:\n      default:\n        hwaddr: 52:54:00:00:00:%02x\n", i, i)
	}
	return b.String()
}

// handWrite replaces the file the way an editor or a copy does: a new file
// renamed over it (a fresh inode, so the change is seen at once).
func handWrite(t *testing.T, path, text string) {
	t.Helper()
	tmp := path + ".edit"
	require.NoError(t, os.WriteFile(tmp, []byte(text), 0o640))
	require.NoError(t, os.Rename(tmp, path))
}

// TestDrasticShrinkIsHeldBack is issue 11 item 6: an empty nodes.conf,
// written while serving, made every node unknown. Through the reload path
// (what serve sees), a file that loses more than half of the nodes keeps
// the last good inventory and is logged, unless the change is explicit:
// written by a FileStore (in this or another process), or allowed with
// PATH.allow-shrink.
func TestDrasticShrinkIsHeldBack(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "nodes.conf")
	require.NoError(t, os.WriteFile(path, []byte(nodesText(10)), 0o640))
	var logs syncBuffer
	s, err := Open(ctx, path, CheckInterval(0), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	require.NoError(t, err)
	count := func() int {
		db, err := s.Snapshot(ctx)
		require.NoError(t, err)
		return db.Len()
	}
	require.Equal(t, 10, count())

	for _, tc := range []struct {
		name string
		text string
	}{
		{"empty file", ""},
		{"only a newline", "\n"},
		{"no nodes", "nodeprofiles:\n  default: {}\nnodes: {}\n"},
		{"truncated to 1 of 10 nodes", nodesText(10)[:len(nodesText(1))]},
		{"4 of 10 nodes", nodesText(4)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := strings.Count(logs.String(), "still serving the previous version")
			handWrite(t, path, tc.text)
			assert.Equal(t, 10, count(), "the last good inventory stays in service")
			assert.Equal(t, 10, count(), "and again")
			out := logs.String()
			assert.Equal(t, before+1, strings.Count(out, "still serving the previous version"), "logged once per version:\n%s", out)
			assert.Contains(t, out, "level=ERROR")
			assert.Contains(t, out, "file="+path)
			assert.Contains(t, out, "nodes_before=10")
			_, err := s.NodeByName(ctx, "n009")
			assert.NoError(t, err, "nodes stay known")
		})
	}

	// Losing half or less is an ordinary reload.
	handWrite(t, path, nodesText(5))
	assert.Equal(t, 5, count())
	handWrite(t, path, nodesText(10))
	assert.Equal(t, 10, count())

	// The allow-shrink file makes a hand edit explicit, once.
	require.NoError(t, os.WriteFile(path+".allow-shrink", nil, 0o644))
	handWrite(t, path, nodesText(2))
	assert.Equal(t, 2, count())
	assert.NoFileExists(t, path+".allow-shrink", "used up")
	handWrite(t, path, nodesText(10))
	require.Equal(t, 10, count())
	handWrite(t, path, "")
	assert.Equal(t, 10, count(), "held back again without the allow file")
	// Created after the edit, it applies the held-back version.
	require.NoError(t, os.WriteFile(path+".allow-shrink", nil, 0o644))
	assert.Equal(t, 0, count())
	handWrite(t, path, nodesText(10))
	require.Equal(t, 10, count())

	// A write through wwboot's own store, in this process...
	require.NoError(t, s.Update(ctx, func(c *Config) error {
		for i := 1; i < 10; i++ {
			delete(c.Nodes, fmt.Sprintf("n%03d", i))
		}
		return nil
	}))
	assert.Equal(t, 1, count())
	handWrite(t, path, nodesText(10))
	require.Equal(t, 10, count())

	// ...or in another one (the CLI while serve runs), is explicit.
	cli, err := Open(ctx, path)
	require.NoError(t, err)
	require.NoError(t, cli.Update(ctx, func(c *Config) error {
		c.Nodes = map[string]*Record{}
		return nil
	}))
	assert.Equal(t, 0, count(), "serve follows the CLI's deletion")
	assert.Contains(t, logs.String(), "shrank drastically through wwboot; applied")

	// A hand edit that reproduces different bytes is not taken for the
	// store's write.
	require.NoError(t, cli.Update(ctx, func(c *Config) error {
		for i := range 10 {
			c.Nodes[fmt.Sprintf("n%03d", i)] = &Record{}
		}
		return nil
	}))
	require.Equal(t, 10, count())
	handWrite(t, path, "# emptied by hand\n")
	assert.Equal(t, 10, count())
}

// TestShrinkGuard pins the threshold: more than half of the nodes lost.
func TestShrinkGuard(t *testing.T) {
	for _, c := range []struct {
		prev, next int
		want       bool
	}{
		{0, 0, false}, {1, 0, true}, {1, 1, false}, {2, 1, false}, {2, 0, true},
		{3, 1, true}, {3, 2, false}, {10, 5, false}, {10, 4, true}, {10, 0, true}, {10, 20, false},
	} {
		assert.Equal(t, c.want, ShrinkGuard(c.prev, c.next), "%d -> %d", c.prev, c.next)
	}
}
