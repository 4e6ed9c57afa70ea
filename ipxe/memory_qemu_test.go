package ipxe_test

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/ipxe"
)

// TestDefaultScriptMemoryCheckInIPXE runs the rendered default script in
// iPXE itself (Debian's ipxe.lkrn in QEMU, TCG, a few seconds a case): with
// ${memsize} one MiB short of the need it prints the refusal and fetches
// no kernel; at the need, and in an iPXE without ${memsize} (Debian's
// build), it goes on to fetch the kernel from the server. Debian's build
// has no MEMMAP_SETTINGS, so the cases that have a ${memsize} set it first
// the way such a build reports it (an int32 in MiB).
func TestDefaultScriptMemoryCheckInIPXE(t *testing.T) {
	lkrn := "/usr/lib/ipxe/ipxe.lkrn"
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err == nil {
		_, err = os.Stat(lkrn)
	}
	if err != nil || testing.Short() {
		if os.Getenv("CI") != "" && err != nil {
			t.Fatalf("needs qemu-system-x86_64 and Debian's ipxe package: %v", err)
		}
		t.Skip("needs qemu-system-x86_64 and /usr/lib/ipxe/ipxe.lkrn (and not -short)")
	}
	set, err := ipxe.New(ipxe.Options{})
	require.NoError(t, err)

	for _, tc := range []struct {
		name    string
		memsize string // "" leaves ${memsize} unset
		boots   bool
	}{
		{"one MiB short", "1399", false},
		{"exactly enough", "1400", true},
		{"no memsize in this iPXE", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var kernelAsked atomic.Bool
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.HasPrefix(r.URL.Path, "/kernel/") {
					kernelAsked.Store(true)
				}
				http.NotFound(w, r)
			})}
			go srv.Serve(ln)
			defer srv.Close()

			d := &ipxe.Data{Id: "n1", Hwaddr: "52:54:00:12:34:01", Ipaddr: "10.0.2.2", // QEMU's user network: the host
				Port: itoa(ln.Addr().(*net.TCPAddr).Port), ImageName: "debian12", RetryMax: 3, RetryDelay: 1,
				MemNeed: 1400, MemDetail: "test need"}
			d.Complete()
			script := string(render(t, set, "", d))
			// QEMU's user network, configured by hand (dhcp takes seconds).
			pre := "#!ipxe\nset net0/ip 10.0.2.15\nset net0/netmask 255.255.255.0\nset net0/gateway 10.0.2.2\nifopen net0\n"
			if tc.memsize != "" {
				pre += "set memsize:int32 " + tc.memsize + "\n"
			}
			script = pre + strings.TrimPrefix(script, "#!ipxe\n")
			sp := filepath.Join(t.TempDir(), "script.ipxe")
			require.NoError(t, os.WriteFile(sp, []byte(script), 0o644))

			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, qemu, "-machine", "graphics=off", "-nographic", "-vga", "none", "-m", "128",
				"-kernel", lkrn, "-initrd", sp, "-netdev", "user,id=n0", "-device", "e1000,netdev=n0", "-no-reboot")
			var out lockedBuffer
			cmd.Stdout, cmd.Stderr = &out, &out
			require.NoError(t, cmd.Start())
			defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
			refusal := "wwboot: NOT BOOTING n1 (52:54:00:12:34:01): it has " + tc.memsize + " MiB of RAM and needs 1400 MiB"
			for ctx.Err() == nil && !kernelAsked.Load() && !strings.Contains(out.console(), refusal) {
				time.Sleep(100 * time.Millisecond)
			}
			require.NoError(t, ctx.Err(), "iPXE neither fetched the kernel nor refused; console:\n%s", out.String())
			if tc.boots {
				assert.True(t, kernelAsked.Load())
				assert.NotContains(t, out.console(), "NOT BOOTING")
			} else {
				assert.False(t, kernelAsked.Load(), "a node short of memory must not fetch the kernel")
				time.Sleep(300 * time.Millisecond)
				assert.Contains(t, out.console(), "wwboot: the need is test need")
			}
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// lockedBuffer is a bytes.Buffer for one writer and one reader goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// console is the output with the serial console's line wrapping (80
// columns) and carriage returns taken out.
func (l *lockedBuffer) console() string {
	return strings.NewReplacer("\r", "", "\n", "").Replace(l.String())
}
