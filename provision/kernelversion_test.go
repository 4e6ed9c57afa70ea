package provision_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/nodedb"
	"github.com/wwboot/wwboot/provision"
)

// lockedBuffer is a log sink the handler's goroutines may share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *lockedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// TestNodeKernelVersionIsAPrefix: a node's kernel version selects the
// image's kernel (6.1.0-1-amd64 in the lab) as Warewulf's does, by a prefix
// of its version ("6.1", "6.1.0-1") or by its path; only a version that
// does not select it is warned about. Before, anything but the full string
// "6.1.0-1-amd64" was warned about as missing.
func TestNodeKernelVersionIsAPrefix(t *testing.T) {
	l := newLab(t)
	var logs lockedBuffer
	opts := l.options(t)
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	h, err := provision.NewHandler(opts)
	require.NoError(t, err)
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)

	for _, c := range []struct {
		version string
		warn    bool
	}{
		{"6.1", false}, {"6.1.0-1", false}, {"6.1.0-1-amd64", false}, {"/boot/vmlinuz-6.1.0-1-amd64", false},
		{"6.2", true}, {"6.1.0-2", true}, {"5", true},
	} {
		require.NoError(t, l.store.Update(context.Background(), func(c2 *nodedb.Config) error {
			c2.Nodes["n1"].Kernel = &nodedb.Kernel{Version: c.version}
			return nil
		}))
		before := len(logs.String())
		resp, body := get(t, ts.URL+"/kernel/"+mac1)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
		got := logs.String()[before:]
		if c.warn {
			assert.Contains(t, got, "node asks for a kernel version its image does not have", c.version)
			assert.Contains(t, got, "wanted="+c.version, c.version)
		} else {
			assert.NotContains(t, got, "kernel version", c.version)
		}
	}
}
