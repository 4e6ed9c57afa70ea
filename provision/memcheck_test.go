package provision_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/ipxe"
)

// TestScriptChecksMemory: the node's script carries the memory check with
// the need computed from the image store's record.
func TestScriptChecksMemory(t *testing.T) {
	l := newLab(t)
	_, ts := l.serve(t)
	resp, body := get(t, ts.URL+"/ipxe/"+mac1)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Positive(t, l.meta.UnpackedSize)
	need, _ := ipxe.MemNeed(ipxe.Memory{Kernel: l.meta.KernelSize(), Image: l.meta.Size, Unpacked: l.meta.MemUnpacked(), KernelArgs: "quiet crashkernel=no"})
	require.Positive(t, need)
	assert.Contains(t, string(body), fmt.Sprintf("inc wwboot-mem %d\n", uint64(1<<32)-uint64(need)))
	assert.Contains(t, string(body), fmt.Sprintf("and needs %d MiB\n", need))
}
