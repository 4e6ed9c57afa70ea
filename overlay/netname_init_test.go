package overlay

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestNetnameHook runs the netname overlays' /init hook with busybox in a
// network namespace of its own, on veth NICs named as the kernel would name
// them: the primary (up, with the address and default route /init gives it)
// and a second NIC get their names, a NIC squatting on a wanted name is
// moved aside, and the primary keeps its address and default route.
func TestNetnameHook(t *testing.T) {
	bb, err := exec.LookPath("busybox")
	if err == nil {
		_, err = exec.LookPath("unshare")
	}
	if err != nil || os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatalf("needs root, busybox and unshare: %v", err)
		}
		t.Skip("needs root, busybox and unshare")
	}
	db := testDB(t, twoNetDevs())
	n, err := db.Node("n1")
	require.NoError(t, err)
	for _, ov := range []string{"udev.netname", "systemd.netname"} {
		t.Run(ov, func(t *testing.T) {
			r := newTestRenderer(t, func(o *Options) { o.DefaultSystem = []string{"wwinit", ov} })
			a, err := r.Render(context.Background(), db, n, System)
			require.NoError(t, err)
			m, _ := unpack(t, a)
			hook := m["etc/wwboot/init.d/10-netname"]
			require.Equal(t, uint64(0o755), hook.mode&0o777)
			dir := t.TempDir()
			for _, f := range []string{"netnames", "node.conf", "init.d/10-netname"} {
				require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755))
				require.NoError(t, os.WriteFile(filepath.Join(dir, f), []byte(m["etc/wwboot/"+f].data), 0o755))
			}
			bin := t.TempDir()
			out, err := exec.Command(bb, "--install", "-s", bin).CombinedOutput()
			require.NoError(t, err, "%s", out)

			script := `set -e
mount -t sysfs sysfs /sys
ip link add eth0 address 52:54:00:aa:bb:01 type veth peer name p0
ip link add eth1 address 52:54:00:aa:bb:02 type veth peer name p1
ip link add ens5 address 52:54:00:aa:bb:03 type veth peer name p2
ip link set p0 up
ip link set eth0 up
ip addr add 10.0.0.5/16 dev eth0
ip route add default via 10.0.0.1 dev eth0
PATH="$2:$PATH" busybox sh "$1/init.d/10-netname" "$1"
echo "rc=$?"
for d in wwdefault ens5 wwtmp1; do echo "$d $(cat /sys/class/net/$d/address)"; done
ip -4 -o addr show dev wwdefault | grep -o 'inet [0-9./]*'
ip route show default
PATH="$2:$PATH" busybox sh "$1/init.d/10-netname" "$1"
echo "again rc=$?"
`
			cmd := exec.Command("unshare", "--mount", "--net", "--fork", "sh", "-c", script, "sh", dir, bin)
			out, err = cmd.CombinedOutput()
			require.NoError(t, err, "%s", out)
			assert.Equal(t, `wwboot: NIC 52:54:00:aa:bb:02 is ens5 (was eth1)
wwboot: NIC 52:54:00:aa:bb:01 is wwdefault (was eth0)
rc=0
wwdefault 52:54:00:aa:bb:01
ens5 52:54:00:aa:bb:02
wwtmp1 52:54:00:aa:bb:03
inet 10.0.0.5/16
default via 10.0.0.1 dev wwdefault 
again rc=0
`, string(out))
		})
	}
}
