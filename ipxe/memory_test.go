package ipxe_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/ipxe"
)

// TestMemNeed checks the model: the peak of a ramfs rootfs, twice the tree
// for a tmpfs rootfs capped at half the RAM (issue 9: a Debian image of
// 658 MiB of gzip at 1.5 GiB ends in "Initramfs unpacking failed: write
// error"; its tree is assumed 1800 MiB here).
func TestMemNeed(t *testing.T) {
	const mib = 1 << 20
	m := ipxe.Memory{Kernel: 8 * mib, Image: 658 * mib, Unpacked: 1800 * mib}
	need, detail := ipxe.MemNeed(m)
	assert.Equal(t, 2*(1800+8), need, "no root=: rootfs is tmpfs, capped at half")
	assert.Contains(t, detail, "twice the unpacked image and overlays (1808 MiB)")
	assert.Greater(t, need, 1536, "the failing 1.5 GiB machine is refused")

	m.KernelArgs = "quiet rootfstype=ramfs"
	need, detail = ipxe.MemNeed(m)
	assert.Equal(t, 24+96+658+8+1800, need)
	assert.Greater(t, need, 1536)
	assert.Equal(t, "kernel 24 MiB + kernel reserve 96 MiB + compressed image 658 MiB + overlays 8 MiB + unpacked image 1800 MiB", detail)
	m.KernelArgs = "root=/dev/ram0"
	need2, _ := ipxe.MemNeed(m)
	assert.Equal(t, need, need2, "root= makes rootfs a ramfs (init/do_mounts.c)")
	m.KernelArgs = "root=/dev/ram0 rootfstype=tmpfs"
	need3, _ := ipxe.MemNeed(m)
	assert.Equal(t, 2*(1800+8), need3)

	need, _ = ipxe.MemNeed(ipxe.Memory{})
	assert.Zero(t, need, "unknown image: no check")
}

// ipxeMemCheck is what iPXE does with the script's lines `set x:int32
// ${memsize}`, `inc x N` (hci/commands/nvo_cmd.c inc_exec: fetch as
// unsigned, add, store the setting's 4 bytes) and `iseq ${x:int32}
// ${x:int32}` (true unless the signed decimal reading starts with "-",
// which iseq's option parser rejects). TestDefaultScriptMemoryCheckInIPXE
// checks it against iPXE itself.
func ipxeMemCheck(memsize int, n uint64) (value string, boots bool) {
	raw := uint32(uint64(memsize) + n)
	value = strconv.FormatInt(int64(int32(raw)), 10)
	return value, !strings.HasPrefix(value, "-")
}

// TestDefaultScriptMemoryCheck renders the default script with a memory
// need and checks its exact lines, and that iPXE's arithmetic on them
// boots at memsize >= need and refuses below.
func TestDefaultScriptMemoryCheck(t *testing.T) {
	s, err := ipxe.New(ipxe.Options{})
	require.NoError(t, err)
	d := node()
	d.MemNeed, d.MemDetail = 1400, "kernel 24 MiB + ..."
	d.Complete()
	got := string(render(t, s, "", d))

	neg := uint64(1<<32 - 1400)
	want := fmt.Sprintf(`isset ${memsize} || goto wwboot-load
set wwboot-mem:int32 ${memsize}
inc wwboot-mem %d
iseq ${wwboot-mem:int32} ${wwboot-mem:int32} && goto wwboot-load || goto wwboot-lowmem
:wwboot-lowmem
echo wwboot: NOT BOOTING %[2]s (%[3]s): it has ${memsize} MiB of RAM and needs 1400 MiB
echo wwboot: the need is kernel 24 MiB + ...
echo wwboot: give the node more memory or a smaller image (wwboot node set %[4]s --image NAME); asking again in 60 s
sleep 60
chain --autofree %[5]s || goto wwboot-lowmem
:wwboot-load
kernel --name kernel `, neg, d.Hostname, d.Hwaddr, d.Id, d.ScriptURL)
	assert.Contains(t, got, want)
	assert.Less(t, strings.Index(got, "echo wwboot: image"), strings.Index(got, "isset ${memsize}"))
	assert.Equal(t, neg, d.MemNegate())

	for _, tc := range []struct {
		memsize int
		boots   bool
	}{{1399, false}, {1400, true}, {1401, true}, {512, false}, {1 << 20, true}, {0, false}} {
		v, boots := ipxeMemCheck(tc.memsize, neg)
		assert.Equal(t, tc.boots, boots, "memsize %d: ${wwboot-mem:int32}=%s", tc.memsize, v)
	}

	// No need known: no check in the script.
	d2 := node()
	d2.Complete()
	assert.NotContains(t, string(render(t, s, "", d2)), "memsize")
}
