package overlay

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/wwboot/wwboot/nodedb"
)

// warewulfDefaultNodesConf is a nodes.conf as Warewulf 4.7 writes it for a
// new site (its default profile: the overlay lists, kernel arguments and
// fstab resources of "wwctl upgrade nodes --add-defaults"), with one node
// that has two network devices, a disk with partitions, file systems and a
// swap area: every built-in overlay of the lists has something to write.
const warewulfDefaultNodesConf = `nodeprofiles:
  default:
    comment: This profile is automatically included for each node
    image name: rockylinux-9
    ipxe template: default
    runtime overlay:
      - hosts
      - ssh.authorized_keys
      - syncuser
    system overlay:
      - wwinit
      - wwclient
      - fstab
      - hostname
      - ssh.host_keys
      - issue
      - resolv
      - udev.netname
      - systemd.netname
      - ifcfg
      - NetworkManager
      - debian.interfaces
      - wicked
      - ignition
    kernel:
      args:
      - quiet
      - crashkernel=no
    ipmi:
      template: ipmitool.tmpl
    init: /sbin/init
    root: initramfs
    resources:
      fstab:
        - spec: warewulf:/home
          file: /home
          vfstype: nfs
          mntops: defaults,nofail
        - spec: warewulf:/opt
          file: /opt
          vfstype: nfs
          mntops: defaults,noauto,nofail,ro
nodes:
  n1:
    profiles:
      - default
    network devices:
      default:
        device: wwnet0
        hwaddr: e6:92:39:49:7b:03
        ipaddr: 192.168.3.21
        netmask: 255.255.255.0
        gateway: 192.168.3.1
      secondary:
        device: wwnet1
        hwaddr: 9a:77:29:73:14:f1
        ipaddr: 192.168.3.22
        netmask: 255.255.255.0
        tags:
          DNS1: 8.8.8.8
          DNS2: 8.8.4.4
          route1: "10.20.0.0/16,192.168.3.254"
    disks:
      /dev/vda:
        wipe_table: true
        partitions:
          scratch:
            number: "2"
            size_mib: "10240"
            start_mib: "4098"
            should_exist: true
          rootfs:
            number: "1"
            size_mib: "4096"
            start_mib: "2"
            should_exist: true
            type_guid: 0FC63DAF-8483-4772-8E79-3D69D8477DE4
          swap:
            number: "3"
            size_mib: "2048"
            should_exist: true
            type_guid: 0657FD6D-A4AB-43C4-84E5-0933C84B4F4F
    filesystems:
      /dev/disk/by-partlabel/rootfs:
        format: ext4
        path: /
      /dev/disk/by-partlabel/scratch:
        format: xfs
        path: /scratch
        wipe_filesystem: true
        mount_options: defaults,noatime
      /dev/disk/by-partlabel/swap:
        format: swap
        path: swap
`

// TestWarewulfDefaultProfile renders a node of Warewulf 4.7's default
// profile with the built-in overlays: every overlay of its lists exists
// and writes something (nothing is missing for a migrated node), and every
// file of both archives is checked against testdata/golden.
func TestWarewulfDefaultProfile(t *testing.T) {
	ctx := context.Background()
	cfg, err := nodedb.Parse("nodes.conf", []byte(warewulfDefaultNodesConf))
	require.NoError(t, err, "Warewulf's default nodes.conf loads")
	db := testDB(t, cfg)
	n, err := db.Node("n1")
	require.NoError(t, err)

	img := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(img, "etc"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(img, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/bash\nimgonly:x:990:990::/:/sbin/nologin\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(img, "etc/group"), []byte("root:x:0:\nimgonly:x:990:\n"), 0o644))

	newR := func(t *testing.T) *Renderer {
		return newTestRenderer(t, func(o *Options) {
			o.Server = goldenServer(t)
			o.Server.Ipaddr, o.Server.Netmask = "192.168.3.254", "255.255.255.0"
			o.Server.Paths.Agent = fakeAgent(t)
			o.Server.Ssh.KeyTypes = []string{"ed25519"}
			o.ImageRoot = func(name string) string {
				if name == "rockylinux-9" {
					return img
				}
				return ""
			}
		})
	}
	eff := NodeData(n)
	require.Len(t, eff.SystemOverlay, 14)
	require.Len(t, eff.RuntimeOverlay, 3)

	// Each overlay alone writes at least one file of its own (the system
	// archive's end marker aside).
	for _, kind := range []Kind{System, Runtime} {
		list := eff.SystemOverlay
		if kind == Runtime {
			list = eff.RuntimeOverlay
		}
		for _, name := range list {
			t.Run(string(kind)+"/"+name, func(t *testing.T) {
				r := newR(t)
				o, err := r.Overlay(name)
				require.NoError(t, err, "overlay %s of Warewulf's default profile exists", name)
				require.NotEmpty(t, o.Files)
				rec := *n
				rec.Record.SystemOverlay, rec.Record.RuntimeOverlay = []string{name}, []string{name}
				a, err := r.Render(ctx, db, &rec, kind)
				require.NoError(t, err)
				m, _ := unpack(t, a)
				files := 0
				for p, e := range m {
					if e.mode&0o170000 != sIFDIR && p != "etc/wwboot/system-overlay.done" {
						files++
					}
				}
				assert.Positive(t, files, "overlay %s renders no file for a node of the default profile", name)
			})
		}
	}

	// The whole node, file by file.
	r := newR(t)
	var all strings.Builder
	for _, kind := range []Kind{System, Runtime} {
		a, err := r.Render(ctx, db, n, kind)
		require.NoError(t, err)
		fmt.Fprintf(&all, "##### %s\n", kind)
		all.WriteString(dump(t, a, true, func(p, data string) string {
			switch {
			case p == "etc/machine-id" || p == "var/lib/dbus/machine-id":
				require.True(t, validMachineID([]byte(data)), "%q", data)
				return "<machine-id>\n"
			case strings.HasPrefix(p, "etc/ssh/ssh_host_") && strings.HasSuffix(p, ".pub"):
				pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(data))
				require.NoError(t, err, p)
				return fmt.Sprintf("<%s public key>\n", pk.Type())
			case strings.HasPrefix(p, "etc/ssh/ssh_host_"):
				_, err := ssh.ParseRawPrivateKey([]byte(data))
				require.NoError(t, err, p)
				return "<private key>\n"
			case p == "etc/passwd" || p == "etc/group":
				// The image's lines, then this machine's that the image
				// lacks: only the image's part is fixed.
				lines := strings.Split(data, "\n")
				require.GreaterOrEqual(t, len(lines), 2)
				assert.True(t, strings.HasPrefix(lines[0], "root:x:0:"), p)
				assert.True(t, strings.HasPrefix(lines[1], "imgonly:x:990:"), p)
				for _, l := range lines[2:] {
					assert.False(t, strings.HasPrefix(l, "root:") || strings.HasPrefix(l, "imgonly:"), "%s: %q is the image's", p, l)
				}
				return lines[0] + "\n" + lines[1] + "\n<this machine's other lines>\n"
			}
			return data
		}))
	}
	checkGolden(t, "warewulf-default.txt", all.String())
}
