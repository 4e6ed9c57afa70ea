package nodedb

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestCrashWriter is the child of TestKillDuringWriteLeavesAWholeFile: it
// rewrites the inventory as fast as it can until it is killed.
func TestCrashWriter(t *testing.T) {
	path := os.Getenv("NODEDB_CRASH_WRITER")
	if path == "" {
		t.Skip("runs only as the child of TestKillDuringWriteLeavesAWholeFile")
	}
	ctx := context.Background()
	s, err := Open(ctx, path)
	require.NoError(t, err)
	for i := 0; ; i++ {
		require.NoError(t, s.Update(ctx, func(c *Config) error {
			c.Nodes[fmt.Sprintf("n%06d", i%5000)] = &Record{Comment: fmt.Sprint(i)}
			return nil
		}))
	}
}

func TestKillDuringWriteLeavesAWholeFile(t *testing.T) {
	ctx := context.Background()
	path := copyFixture(t, "full.conf")
	// A large file makes each write take long enough to be interrupted.
	s, err := Open(ctx, path)
	require.NoError(t, err)
	require.NoError(t, s.Update(ctx, func(c *Config) error {
		for i := range 3000 {
			c.Nodes[fmt.Sprintf("n%06d", i)] = &Record{Comment: "filler"}
		}
		return nil
	}))
	for round := range 8 {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestCrashWriter$")
		cmd.Env = append(os.Environ(), "NODEDB_CRASH_WRITER="+path)
		require.NoError(t, cmd.Start())
		time.Sleep(time.Duration(150+round*37) * time.Millisecond)
		require.NoError(t, cmd.Process.Kill()) // SIGKILL
		_ = cmd.Wait()
		_, err := Open(ctx, path)
		require.NoError(t, err, "after kill -9 in round %d the file must be the old or the new one", round)
	}
}
