package e2e

import (
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// initScript is the test image's /sbin/init, which the system overlay's
// /init (built-in overlay wwinit) hands over to. It loads the NIC modules,
// reads the file the site system overlay rendered for this node, configures
// the node's address on the interface with the node's MAC, checks the server
// answers, prints one WWBOOT-NODE line, waits up to 60 s for the node agent
// to apply the runtime overlay (over its TLS channel), prints one
// WWBOOT-AGENT line and powers off.
const initScript = `#!/bin/sh
export PATH=/bin:/sbin
# wwinit's /init mounted these already; on its own this init mounts them.
[ -r /proc/uptime ] || mount -t proc proc /proc
echo "WWBOOT-INIT uptime=$(cut -d' ' -f1 /proc/uptime)"
[ -d /sys/class ] || mount -t sysfs sysfs /sys
[ -c /dev/null ] || mount -t devtmpfs devtmpfs /dev
for m in $(cat /etc/wwboot-test/modules); do
	insmod /lib/modules/$(uname -r)/$m.ko 2>/dev/null || grep -q "^$m " /proc/modules || echo "WWBOOT-ERROR insmod $m failed"
done
conf=/etc/wwboot-node.conf
if [ ! -r $conf ]; then
	echo "WWBOOT-ERROR $conf missing: the system overlay did not arrive"
	poweroff -f
fi
. $conf
dev=
for i in 1 2 3 4 5 6 7 8 9 10; do
	for d in /sys/class/net/*; do
		[ "$(cat $d/address)" = "$WWBOOT_HWADDR" ] && dev=${d##*/}
	done
	[ -n "$dev" ] && break
	sleep 0.2
done
[ -n "$dev" ] || echo "WWBOOT-ERROR no interface with MAC $WWBOOT_HWADDR: $(ls /sys/class/net)"
eval $(ipcalc -p "$WWBOOT_IPADDR" "$WWBOOT_NETMASK")
ip link set "$dev" up
ip addr add "$WWBOOT_IPADDR/$PREFIX" dev "$dev"
addr=$(ip -4 -o addr show dev "$dev" | sed -n 's/.* inet \([0-9.]*\)\/.*/\1/p')
server=unreachable
# The link may need a moment after "up" (e1000 negotiates).
for i in 1 2 3 4 5 6 7 8 9 10; do
	ping -c 1 -W 1 "$WWBOOT_SERVER" >/dev/null 2>&1 && server=reachable && break
done
# The runtime overlay (built-in overlay hosts) writes /etc/hosts.
runtime=absent
[ -r /etc/hosts ] && runtime=present
[ "$(hostname)" = "$WWBOOT_HOSTNAME" ] || echo "WWBOOT-ERROR hostname $(hostname), want $WWBOOT_HOSTNAME (wwinit sets it)"
echo "WWBOOT-NODE hostname=$(hostname) ip=$addr dev=$dev server=$server runtime=$runtime uptime=$(cut -d' ' -f1 /proc/uptime)"
# The node agent, which wwinit's /init started, enrolls and then fetches the
# runtime overlay over TLS; its state file says it applied one.
agent=missing
for i in $(seq 1 120); do
	[ -e /var/lib/wwboot/runtime-overlay.state ] && agent=applied && break
	sleep 0.5
done
hosts=absent
[ -r /etc/hosts ] && hosts=present
echo "WWBOOT-AGENT runtime=$agent hosts=$hosts uptime=$(cut -d' ' -f1 /proc/uptime)"
poweroff -f
`

// buildRootTree assembles the test image's root tree, as `wwboot image
// import` takes it: busybox-static as /bin/busybox with a link per applet,
// the Debian kernel as /boot/vmlinuz-VERSION (wwboot finds it there), the
// kernel's NIC modules under /lib/modules/VERSION/ and /sbin/init. No /init:
// the system overlay brings it.
func buildRootTree(t *testing.T, k *kernel) string {
	t.Helper()
	requireTools(t, "busybox")
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal(err)
	}
	if f, err := elf.Open(bb); err == nil {
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				failOrSkip(t, bb+" is dynamically linked: apt-get install busybox-static")
			}
		}
		f.Close()
	}
	root := filepath.Join(t.TempDir(), "root")
	mods := filepath.Join("lib/modules", k.Version)
	for _, d := range []string{"bin", "sbin", "boot", "dev", "proc", "sys", "tmp", "run", "etc/wwboot-test", mods} {
		must(t, os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	copyFile(t, bb, filepath.Join(root, "bin", "busybox"), 0o755)
	list, err := exec.Command(bb, "--list").Output()
	if err != nil {
		t.Fatalf("%s --list: %v", bb, err)
	}
	for _, applet := range strings.Fields(string(list)) {
		if applet == "busybox" || applet == "init" {
			continue
		}
		must(t, os.Symlink("busybox", filepath.Join(root, "bin", applet)))
	}
	copyFile(t, k.Vmlinuz, filepath.Join(root, "boot", filepath.Base(k.Vmlinuz)), 0o644)
	var names []string
	for _, ko := range k.Modules {
		name := strings.ReplaceAll(strings.TrimSuffix(filepath.Base(ko), ".ko"), "-", "_")
		copyFile(t, ko, filepath.Join(root, mods, name+".ko"), 0o644)
		names = append(names, name)
	}
	must(t, os.WriteFile(filepath.Join(root, "etc/wwboot-test/modules"), []byte(strings.Join(names, "\n")+"\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(root, "sbin/init"), []byte(initScript), 0o755))
	return root
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	must(t, err)
	must(t, os.WriteFile(to, b, mode))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(fmt.Errorf("e2e: %w", err))
	}
}
