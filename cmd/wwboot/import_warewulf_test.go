package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/wwboot/wwboot/nodedb"
)

// wwNodesConf is a nodes.conf as a Warewulf 4.7 site has it: Warewulf's
// default profile, a site profile with a site overlay, two nodes.
const wwNodesConf = `nodeprofiles:
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
    init: /sbin/init
    root: initramfs
    resources:
      fstab:
        - spec: warewulf:/home
          file: /home
          vfstype: nfs
          mntops: defaults,nofail
  compute:
    system overlay:
      - site1
nodes:
  n1:
    profiles:
      - default
      - compute
    network devices:
      default:
        device: eth0
        hwaddr: e6:92:39:49:7b:03
        ipaddr: 10.0.2.1
        netmask: 255.255.0.0
        gateway: 10.0.0.1
  n2:
    profiles:
      - default
    network devices:
      default:
        hwaddr: e6:92:39:49:7b:04
        ipaddr: 10.0.2.2
        netmask: 255.255.0.0
`

const wwConfText = `ipaddr: 10.0.0.1
netmask: 255.255.0.0
network: 10.0.0.0
warewulf:
  port: 9873
  secure: false
  update interval: 60
  autobuild overlays: true
  host overlay: true
  syslog: false
dhcp:
  enabled: true
  template: default
  range start: 10.0.1.1
  range end: 10.0.1.255
  systemd name: dhcpd
tftp:
  enabled: true
  tftproot: /var/lib/tftpboot
  systemd name: tftp
nfs:
  enabled: true
  export paths:
  - path: /home
    export options: rw,sync
    mount options: defaults
    mount: true
  systemd name: nfs-server
ssh:
  key types:
    - rsa
    - dsa
    - ed25519
image mounts:
  - source: /etc/resolv.conf
    dest: /etc/resolv.conf
    readonly: true
`

// warewulfTree builds a Warewulf 4.7 server's root: configuration, host
// keys, site overlays (one of them with a built-in's name, as servers
// before 4.6 keep Warewulf's own overlays there) and an image chroot with a
// kernel.
func warewulfTree(t *testing.T, nodesConf string) (dir string, hostKey []byte) {
	t.Helper()
	dir = t.TempDir()
	w := func(p, data string, mode os.FileMode) {
		p = filepath.Join(dir, p)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(data), mode))
		require.NoError(t, os.Chmod(p, mode))
	}
	w("etc/warewulf/warewulf.conf", wwConfText, 0o644)
	w("etc/warewulf/nodes.conf", nodesConf, 0o644)

	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	block, err := ssh.MarshalPrivateKey(priv, "")
	require.NoError(t, err)
	hostKey = pem.EncodeToMemory(block)
	signer, err := ssh.NewSignerFromKey(priv)
	require.NoError(t, err)
	w("etc/warewulf/keys/ssh_host_ed25519_key", string(hostKey), 0o600)
	w("etc/warewulf/keys/ssh_host_ed25519_key.pub", string(ssh.MarshalAuthorizedKey(signer.PublicKey())), 0o644)

	w("var/lib/warewulf/overlays/site1/rootfs/etc/motd.ww", "Welcome to {{ .Id }}\n", 0o640)
	w("var/lib/warewulf/overlays/site1/rootfs/etc/site.conf", "x=1\n", 0o644)
	require.NoError(t, os.Symlink("site.conf", filepath.Join(dir, "var/lib/warewulf/overlays/site1/rootfs/etc/site-link")))
	w("var/lib/warewulf/overlays/wwinit/rootfs/init", "#!/bin/sh\n# Warewulf's own wwinit\n", 0o755)

	w("var/lib/warewulf/chroots/rockylinux-9/rootfs/boot/vmlinuz-5.14.0-427.el9.x86_64", "a fake kernel", 0o644)
	w("var/lib/warewulf/chroots/rockylinux-9/rootfs/etc/os-release", "NAME=\"Rocky Linux\"\n", 0o644)
	w("var/lib/warewulf/chroots/rockylinux-9/rootfs/etc/passwd", "root:x:0:0:root:/root:/bin/bash\n", 0o644)
	w("var/lib/warewulf/chroots/rockylinux-9/rootfs/etc/group", "root:x:0:\n", 0o644)
	return dir, hostKey
}

// TestNodeImportAfterInit: a Warewulf nodes.conf (with its own default
// profile) imports right after `wwboot init`; a second import needs
// --overwrite.
func TestNodeImportAfterInit(t *testing.T) {
	root := t.TempDir()
	mustRun(t, root, "init")
	f := filepath.Join(t.TempDir(), "nodes.conf")
	require.NoError(t, os.WriteFile(f, []byte(wwNodesConf), 0o644))
	out := mustRun(t, root, "node", "import", f)
	assert.Contains(t, out, "3 added, 1 replaced")
	assert.Contains(t, out, "replaced the one 'wwboot init' wrote")

	db, err := nodedb.Parse("nodes.conf", mustRead(t, filepath.Join(root, "nodes.conf")))
	require.NoError(t, err)
	assert.Contains(t, db.NodeProfiles["default"].SystemOverlay, "debian.interfaces", "Warewulf's default profile is the inventory's now")
	assert.Contains(t, db.Nodes, "n1")

	_, err = run(t, root, "node", "import", f)
	assert.ErrorContains(t, err, "already in the inventory: pass --overwrite")
	mustRun(t, root, "node", "import", "--overwrite", f)

	// A default profile changed since init is not replaced silently.
	root2 := t.TempDir()
	mustRun(t, root2, "init")
	mustRun(t, root2, "profile", "set", "default", "--comment", "ours")
	_, err = run(t, root2, "node", "import", f)
	assert.ErrorContains(t, err, `profile "default" is already in the inventory`)
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return b
}

// TestImportWarewulf imports a Warewulf-shaped tree into an empty ROOT and
// checks that the site is served: configuration mapped, nodes loaded, host
// keys kept, site overlays copied, the image built, and both overlays of
// a node of Warewulf's default profile render with every overlay present.
func TestImportWarewulf(t *testing.T) {
	src, hostKey := warewulfTree(t, wwNodesConf)
	root := filepath.Join(t.TempDir(), "wwboot")

	out := mustRun(t, root, "import", "warewulf", src)
	for _, want := range []string{
		"Taken over:", "Changed, and why:", "Not taken over:",
		"listen: 10.0.0.1", "range start/end", "http port: 9873",
		"shared host keys: true", "overlay site1: 2 files copied",
		"overlay wwinit: not copied", "overlay debian.interfaces (named in nodes.conf): rendered by the built-in ifupdown",
		"ssh key types dsa dropped", "image rockylinux-9: built from", "kernel 5.14.0-427.el9.x86_64",
		"nfs exports /home", "warewulf.conf image mounts: no wwboot counterpart",
	} {
		assert.Contains(t, out, want)
	}
	assert.NotContains(t, out, "FAILED")

	cfg, err := loadServeConfig(filepath.Join(root, "wwboot.conf"))
	require.NoError(t, err)
	assert.Equal(t, "10.0.0.1", cfg.Listen)
	assert.Equal(t, 9873, cfg.HTTPPort)
	assert.False(t, cfg.Secure)
	assert.Equal(t, "full", cfg.DHCP)
	assert.Equal(t, "10.0.1.1", cfg.RangeStart)
	assert.Equal(t, "10.0.1.255", cfg.RangeEnd)
	assert.True(t, cfg.TFTP)
	assert.True(t, cfg.SharedHostKeys)
	assert.Equal(t, []string{"rsa", "ed25519"}, cfg.SSHKeyTypes)
	assert.Contains(t, string(mustRead(t, filepath.Join(root, "wwboot.conf"))), "# dhcp: full (addresses", "comments are kept")

	assert.Equal(t, hostKey, mustRead(t, filepath.Join(root, "keys", "shared", "ssh_host_ed25519_key")))

	site := filepath.Join(root, "overlays", "site1", "rootfs", "etc")
	fi, err := os.Stat(filepath.Join(site, "motd.ww"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o640), fi.Mode().Perm())
	link, err := os.Readlink(filepath.Join(site, "site-link"))
	require.NoError(t, err)
	assert.Equal(t, "site.conf", link)
	assert.NoDirExists(t, filepath.Join(root, "overlays", "wwinit"))

	assert.Contains(t, mustRun(t, root, "image", "list"), "rockylinux-9")
	assert.Contains(t, mustRun(t, root, "node", "list"), "n2")

	// Serve-side rendering: the agent the wwclient overlay delivers is a
	// stand-in here.
	agent := filepath.Join(t.TempDir(), "wwboot-agent")
	require.NoError(t, os.WriteFile(agent, []byte("#!/bin/sh\n"), 0o755))
	require.NoError(t, setConfigKeys(filepath.Join(root, "wwboot.conf"), map[string]string{"agent": `"` + agent + `"`}))
	files := mustRun(t, root, "overlay", "files", "n1", "--server-ipaddr", "10.0.0.1", "--server-netmask", "255.255.0.0")
	for _, want := range []string{
		"etc/motd", "etc/site-link", // site1, from the compute profile
		"etc/sysconfig/network-scripts/ifcfg-default.conf", // ifcfg
		"etc/network/interfaces.d/wwboot-default",          // debian.interfaces
		"etc/wicked/ifconfig/ifcfg-default.xml",            // wicked
		"etc/issue", "etc/fstab", "etc/ssh/ssh_host_ed25519_key", "init",
		"warewulf/wwinit.d/10-ignition.sh", // ignition
		"etc/hosts", "root/.ssh",           // runtime: hosts, ssh.authorized_keys
	} {
		assert.Contains(t, files, want)
	}

	// Repeating needs --overwrite, and then changes nothing else.
	_, err = run(t, root, "import", "warewulf", src)
	assert.Error(t, err)
	mustRun(t, root, "import", "warewulf", "--overwrite", src)
}

// TestImportWarewulfMissingOverlay: an overlay nodes.conf names that is
// neither a site overlay nor built in fails the import, and the report
// says which and where to put it.
func TestImportWarewulfMissingOverlay(t *testing.T) {
	src, _ := warewulfTree(t, "nodes:\n  n9:\n    image name: rocky8\n    system overlay: [wwinit, gpu-drivers]\n")
	root := t.TempDir()
	out, err := run(t, root, "import", "warewulf", src)
	require.Error(t, err)
	assert.Contains(t, out, "FAILED:")
	assert.Contains(t, out, "overlay gpu-drivers is named in nodes.conf but is neither in")
	assert.Contains(t, out, "image rocky8 is named in nodes.conf but was not imported")
	assert.Contains(t, mustRun(t, root, "node", "list"), "n9", "what could be taken over was")

	_, err = run(t, root, "import", "warewulf", t.TempDir())
	assert.ErrorContains(t, err, "has no etc/warewulf")
}

// TestImportWarewulfReportsSystemSecrets: Warewulf's default profile puts
// ssh.host_keys in the system overlay, which wwboot serve refuses; the
// import report says so before the administrator starts the server, and
// offline renders warn the same way, unless wwboot.conf accepts it.
func TestImportWarewulfReportsSystemSecrets(t *testing.T) {
	src, _ := warewulfTree(t, wwNodesConf)
	root := t.TempDir()
	mustRun(t, root, "init")
	agent := filepath.Join(t.TempDir(), "wwboot-agent")
	require.NoError(t, os.WriteFile(agent, []byte("#!/bin/sh\n"), 0o755))
	conf := filepath.Join(root, "wwboot.conf")
	require.NoError(t, setConfigKeys(conf, map[string]string{"agent": `"` + agent + `"`}))

	out := mustRun(t, root, "import", "warewulf", src)
	assert.Contains(t, out, "To do before 'wwboot serve':")
	assert.Contains(t, out, "2 node(s) (n[1-2]) have system overlays with private files (/etc/ssh/ssh_host_ed25519_key, /etc/ssh/ssh_host_rsa_key): wwboot serve refuses them")
	assert.Contains(t, out, "system overlay secrets: true")
	assert.Contains(t, out, "3 added, 1 replaced (profile compute, profile default, node n1, node n2)")

	out = mustRun(t, root, "overlay", "render", "n2", "-o", filepath.Join(t.TempDir(), "sys.cpio.gz"))
	assert.Contains(t, out, "warning: node n2: its system overlay carries private files (/etc/ssh/ssh_host_ed25519_key, /etc/ssh/ssh_host_rsa_key): wwboot serve refuses it")
	out = mustRun(t, root, "overlay", "render", "n2", "--kind", "runtime", "-o", filepath.Join(t.TempDir(), "rt.cpio.gz"))
	assert.NotContains(t, out, "warning", "the runtime overlay is the place for secrets")
	out = mustRun(t, root, "overlay", "build")
	assert.Contains(t, out, "warning: node n1: its system overlay carries private files")
	assert.Contains(t, out, "2 nodes' system overlays carry private files")

	// Moving ssh.host_keys to the runtime overlays clears it.
	mustRun(t, root, "profile", "set", "default", "--system-overlays", "wwinit,wwclient,fstab,hostname",
		"--runtime-overlays", "hosts,ssh.authorized_keys,ssh.host_keys")
	out = mustRun(t, root, "overlay", "files", "n2")
	assert.NotContains(t, out, "warning")

	// So does accepting Warewulf's exposure.
	mustRun(t, root, "profile", "set", "default", "--system-overlays", "wwinit,wwclient,ssh.host_keys")
	assert.Contains(t, mustRun(t, root, "overlay", "files", "n2"), "warning: node n2")
	require.NoError(t, setConfigKeys(conf, map[string]string{"system overlay secrets": "true"}))
	assert.NotContains(t, mustRun(t, root, "overlay", "files", "n2"), "warning")
	out = mustRun(t, root, "import", "warewulf", "--overwrite", src)
	assert.NotContains(t, out, "To do before")
}

// TestImportWarewulfFindsTheInterface: DHCP needs the interface; the import
// takes the one of this machine that has warewulf.conf's ipaddr, and when
// none has it, the report's last line says serve needs --interface. Offline
// renders see the listen address either way.
func TestImportWarewulfFindsTheInterface(t *testing.T) {
	for _, tc := range []struct{ ip, iface, next string }{
		{"127.0.0.1", "lo", "serve'."},
		{"192.0.2.77", "", "serve --interface IF' (IF: the cluster interface, the one with 192.0.2.77"},
	} {
		t.Run(tc.ip, func(t *testing.T) {
			src, _ := warewulfTree(t, wwNodesConf)
			conf := strings.Replace(wwConfText, "ipaddr: 10.0.0.1", "ipaddr: "+tc.ip, 1)
			require.NoError(t, os.WriteFile(filepath.Join(src, "etc/warewulf/warewulf.conf"), []byte(conf), 0o644))
			root := t.TempDir()
			out := mustRun(t, root, "import", "warewulf", src)
			assert.Contains(t, out, tc.next)
			cfg, err := loadServeConfig(filepath.Join(root, "wwboot.conf"))
			require.NoError(t, err)
			assert.Equal(t, tc.ip, cfg.Listen)
			assert.Equal(t, tc.iface, cfg.Interface)

			out = mustRun(t, root, "overlay", "show", "wwinit", "/etc/wwboot/node.conf.ww", "--render", "n1")
			assert.Contains(t, out, "WWBOOT_SERVER='"+tc.ip+"'")
		})
	}
}
