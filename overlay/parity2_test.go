package overlay

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
)

// renderOne renders site overlay o1 (files) for node n of db and returns
// path → data.
func renderOne(t *testing.T, files map[string]string, nodesConf string, node string, mod func(*Options)) map[string]entry {
	t.Helper()
	db := dbFromText(t, nodesConf)
	site := siteWith(t, files)
	r := newTestRenderer(t, func(o *Options) {
		o.SiteDir = site
		o.DefaultSystem = []string{"o1"}
		if mod != nil {
			mod(o)
		}
	})
	n, err := db.Node(node)
	require.NoError(t, err)
	a, err := r.Render(context.Background(), db, n, System)
	require.NoError(t, err)
	m, _ := unpack(t, a)
	return m
}

// TestIncludeReadsUnderSysconfWarewulf: a relative Include path is read
// under Paths.Sysconfdir/warewulf (Warewulf's templateFileInclude joins
// Sysconfdir, "warewulf" and the path), never outside it (.. and symlinks
// leaving it give ""); an absolute one is read as it is; IncludeBlock of a
// missing file gives its stop string (Warewulf's templateFileBlock).
func TestIncludeReadsUnderSysconfWarewulf(t *testing.T) {
	sys := t.TempDir()
	ww := filepath.Join(sys, "warewulf")
	require.NoError(t, os.MkdirAll(filepath.Join(ww, "sub"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(ww, "sub", "a.txt"), []byte("alpha\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(sys, "outside"), []byte("secret\n"), 0o644))
	require.NoError(t, os.Symlink(filepath.Join(sys, "outside"), filepath.Join(ww, "escape")))
	require.NoError(t, os.Symlink("sub/a.txt", filepath.Join(ww, "inside")))
	abs := filepath.Join(sys, "outside")
	m := renderOne(t, map[string]string{"etc/inc.ww": `rel=[{{ Include "sub/a.txt" }}]
link=[{{ Include "inside" }}]
dotdot=[{{ Include "../outside" }}]
escape=[{{ Include "escape" }}]
abs=[{{ Include "` + abs + `" }}]
block=[{{ IncludeBlock "missing" "# STOP" }}]
block2=[{{ IncludeBlock "sub/a.txt" "zzz" }}]
`}, "nodes:\n  n1: {}\n", "n1", func(o *Options) { o.Server.Paths.Sysconfdir = sys })
	assert.Equal(t, "rel=[alpha]\nlink=[alpha]\ndotdot=[]\nescape=[]\nabs=[secret]\nblock=[# STOP]\nblock2=[alpha\nzzz]\n", m["etc/inc"].data)
}

// TestWarewulfHostKeysOverlayGivesRealKeys: Warewulf's ssh.host_keys
// overlay reads {{ Include "keys/ssh_host_TYPE_key" }}. Without
// SYSCONFDIR/warewulf/keys, the keys come from wwboot's cluster-wide set
// (KeyDir/shared), the same for every node, private and public matching;
// a key in SYSCONFDIR/warewulf/keys wins (a Warewulf server's own keys).
func TestWarewulfHostKeysOverlayGivesRealKeys(t *testing.T) {
	sys := t.TempDir()
	keyDir := t.TempDir()
	files := map[string]string{
		"etc/ssh/ssh_host_rsa_key.ww":         `{{ Include "keys/ssh_host_rsa_key" }}` + "\n",
		"etc/ssh/ssh_host_rsa_key.pub.ww":     `{{ Include "keys/ssh_host_rsa_key.pub" }}` + "\n",
		"etc/ssh/ssh_host_ed25519_key.ww":     `{{ Include "keys/ssh_host_ed25519_key" }}` + "\n",
		"etc/ssh/ssh_host_ed25519_key.pub.ww": `{{ Include "keys/ssh_host_ed25519_key.pub" }}` + "\n",
	}
	conf := "nodes:\n  n1: {}\n  n2: {}\n"
	mod := func(o *Options) { o.Server.Paths.Sysconfdir = sys; o.KeyDir = keyDir }
	m1 := renderOne(t, files, conf, "n1", mod)
	m2 := renderOne(t, files, conf, "n2", mod)
	for _, typ := range []string{"rsa", "ed25519"} {
		priv := m1["etc/ssh/ssh_host_"+typ+"_key"].data
		signer, err := ssh.ParsePrivateKey([]byte(priv))
		require.NoError(t, err, typ)
		pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(m1["etc/ssh/ssh_host_"+typ+"_key.pub"].data))
		require.NoError(t, err, typ)
		assert.Equal(t, signer.PublicKey().Marshal(), pub.Marshal(), "%s: the pair matches", typ)
		assert.Equal(t, priv, m2["etc/ssh/ssh_host_"+typ+"_key"].data, "%s: one cluster-wide key, as on a Warewulf server", typ)
		assert.FileExists(t, filepath.Join(keyDir, "shared", "ssh_host_"+typ+"_key"))
	}

	// A Warewulf server's own key file wins.
	require.NoError(t, os.MkdirAll(filepath.Join(sys, "warewulf", "keys"), 0o700))
	own, err := os.ReadFile(filepath.Join(keyDir, "shared", "ssh_host_ed25519_key"))
	require.NoError(t, err)
	other := strings.Replace(string(own), "-----BEGIN", "-----BEGIN", 1) + "# site copy\n"
	require.NoError(t, os.WriteFile(filepath.Join(sys, "warewulf", "keys", "ssh_host_ed25519_key"), []byte(other), 0o600))
	m3 := renderOne(t, files, conf, "n1", mod)
	assert.Equal(t, other, m3["etc/ssh/ssh_host_ed25519_key"].data)
}

const storageConf = `nodes:
  n1:
    disks:
      /dev/vdb:
        wipe_table: true
        partitions:
          swap: {number: "2", size_mib: "1024"}
          scratch: {number: "1", size_mib: "2048", start_mib: "8", should_exist: true, type_guid: "0FC63DAF-8483-4772-8E79-3D69D8477DE4"}
          extra: {}
      /dev/vda:
        partitions:
          root: {number: "1"}
    filesystems:
      /dev/disk/by-partlabel/swap: {format: swap, path: swap}
      /dev/disk/by-partlabel/scratch:
        format: ext4
        path: /scratch
        wipe_filesystem: true
        mount_options: defaults,noatime
        label: scratch
`

// TestStorageListsAndIgnition: .ThisNode.DiskList and .FileSystemList
// come sorted by device (Warewulf's Node.DiskList, FileSystemList),
// $disk.PartitionList by number, then id, then key (Disk.PartitionList),
// each with its .Id; IgnitionJson gives the Ignition 3.1.0 storage config.
func TestStorageListsAndIgnition(t *testing.T) {
	m := renderOne(t, map[string]string{
		"etc/storage.ww": `{{ range $d := .ThisNode.DiskList }}disk {{ $d.Id }} wipe={{ $d.WipeTable }}:{{ range $p := $d.PartitionList }} {{ $p.Id }}({{ $p.Number }}){{ end }}
{{ end }}{{ range $f := .FileSystemList }}fs {{ $f.Id }} {{ $f.Format }} {{ $f.Path }}
{{ end }}`,
		"etc/ignition.json.ww": `{{ IgnitionJson }}`,
	}, storageConf, "n1", nil)
	assert.Equal(t, "disk /dev/vda wipe=false: root(1)\ndisk /dev/vdb wipe=true: scratch(1) swap(2) extra()\n"+
		"fs /dev/disk/by-partlabel/scratch ext4 /scratch\nfs /dev/disk/by-partlabel/swap swap swap\n", m["etc/storage"].data)
	assert.Equal(t, `{"ignition":{"version":"3.1.0"},"storage":{`+
		`"disks":[{"device":"/dev/vda","partitions":[{"label":"root","number":1,"shouldExist":false,"wipePartitionEntry":false}],"wipeTable":false},`+
		`{"device":"/dev/vdb","partitions":[`+
		`{"label":"extra","shouldExist":false,"wipePartitionEntry":false},`+
		`{"label":"scratch","number":1,"shouldExist":true,"sizeMiB":2048,"startMiB":8,"typeGuid":"0FC63DAF-8483-4772-8E79-3D69D8477DE4","wipePartitionEntry":false},`+
		`{"label":"swap","number":2,"shouldExist":false,"sizeMiB":1024,"wipePartitionEntry":false}],"wipeTable":true}],`+
		`"filesystems":[{"device":"/dev/disk/by-partlabel/scratch","format":"ext4","label":"scratch","mountOptions":["defaults","noatime"],"path":"/scratch","wipeFilesystem":true},`+
		`{"device":"/dev/disk/by-partlabel/swap","format":"swap","path":"swap","wipeFilesystem":false}]}}`,
		m["etc/ignition.json"].data)

	// No storage: "" (Warewulf writes an empty file).
	m = renderOne(t, map[string]string{"etc/ignition.json.ww": `[{{ IgnitionJson }}]`}, "nodes:\n  n1: {}\n", "n1", nil)
	assert.Equal(t, "[]", m["etc/ignition.json"].data)
	// A number that is none: the error's text, naming disk and partition.
	m = renderOne(t, map[string]string{"etc/ignition.json.ww": `{{ IgnitionJson }}`},
		"nodes:\n  n1:\n    disks:\n      /dev/sda:\n        partitions:\n          p: {number: one}\n", "n1", nil)
	assert.Equal(t, `disk /dev/sda partition p: number "one" is not a number`, m["etc/ignition.json"].data)
}

// TestServerSections: Warewulf's defaults where warewulf.conf sets
// nothing (DefaultServerInfo, config.WarewulfConf & co.), the dynamic DHCP
// range Warewulf derives (SetDynamicDefaults), the server's IPv6 fields,
// and .BuildSource as Warewulf sets it.
func TestServerSections(t *testing.T) {
	tmpl := `ww={{ .Warewulf.Port }} {{ .Warewulf.Secure }} {{ .Warewulf.UpdateInterval }} {{ .Warewulf.AutobuildOverlays }} {{ .Warewulf.EnableHostOverlay }} {{ .Warewulf.Syslog }} {{ .Warewulf.GrubBoot }} {{ .Warewulf.TLSEnabled }} {{ .Warewulf.SecureFiles }} {{ .Warewulf.DataStore }}
dhcp={{ .Dhcp.Enabled }} {{ .Dhcp.Template }} {{ .Dhcp.RangeStart }}-{{ .Dhcp.RangeEnd }} {{ .Dhcp.SystemdName }}
nfs={{ .Nfs.Enabled }} {{ .Nfs.SystemdName }}
tftp={{ .Tftp.Enabled }} {{ .Tftp.TftpRoot }} {{ .Tftp.SystemdName }} {{ index .Tftp.IpxeBinaries "00:00" }}
paths={{ .Paths.WWClientdir }} {{ .Paths.Sysconfdir }} {{ .Paths.Datadir }} {{ .Paths.WWOverlaydir }} {{ .Paths.WWProvisiondir }} {{ .Paths.Bindir }}
ip={{ .Ipaddr }} {{ .IpCIDR }} {{ .Network }} {{ .NetworkCIDR }}
ip6={{ .Ipv6 }} [{{ .Ipaddr6 }}] [{{ .PrefixLen6 }}] [{{ .IpCIDR6 }}] [{{ .Network6 }}] [{{ .NetworkCIDR6 }}]
src={{ .BuildSource }}
`
	site := ""
	m := renderOne(t, map[string]string{"etc/srv.ww": tmpl}, "nodes:\n  n1: {}\n", "n1", func(o *Options) {
		s := DefaultServerInfo()
		s.Ipaddr, s.Netmask, s.Ipaddr6, s.BuildHost = "10.0.0.1", "255.255.0.0", "fd00:10::1/48", "head"
		o.Server = s
		site = o.SiteDir
	})
	assert.Equal(t, "ww=9873 true 60 true true false false false false /usr/share\n"+
		"dhcp=true default 10.0.0.2-10.0.0.127 dhcpd\n"+
		"nfs=true nfs-server\n"+
		"tftp=true /var/lib/tftpboot tftp undionly.kpxe\n"+
		"paths=/warewulf /etc /usr/share /var/lib/warewulf/overlays /var/lib/warewulf/provision /usr/bin\n"+
		"ip=10.0.0.1 10.0.0.1/16 10.0.0.0 10.0.0.0/16\n"+
		"ip6=true [fd00:10::1] [48] [fd00:10::1/48] [fd00:10::] [fd00:10::/48]\n"+
		"src="+filepath.Join(site, "o1", "rootfs", "etc", "srv.ww")+"\n", m["etc/srv"].data)

	// A /24 with the server elsewhere: from .1, an eighth of the network;
	// the configured range wins; a prefix longer than 64 is no IPv6
	// network for Warewulf; an address alone is a /64.
	for _, c := range []struct {
		ip, mask, start, end, ip6, want string
	}{
		{"192.168.1.10", "255.255.255.0", "", "", "fd00::1/80", "dhcp=192.168.1.1-192.168.1.32 ip6=false"},
		{"192.168.1.10", "255.255.255.0", "192.168.1.100", "192.168.1.199", "fd00::1", "dhcp=192.168.1.100-192.168.1.199 ip6=true fd00::/64"},
	} {
		m := renderOne(t, map[string]string{"etc/x.ww": `dhcp={{ .Dhcp.RangeStart }}-{{ .Dhcp.RangeEnd }} ip6={{ .Ipv6 }}{{ if .Ipv6 }} {{ .NetworkCIDR6 }}{{ end }}`},
			"nodes:\n  n1: {}\n", "n1", func(o *Options) {
				o.Server.Ipaddr, o.Server.Netmask, o.Server.Ipaddr6 = c.ip, c.mask, c.ip6
				o.Server.Dhcp.RangeStart, o.Server.Dhcp.RangeEnd = c.start, c.end
			})
		assert.Equal(t, c.want, m["etc/x"].data)
	}
}

// TestBuiltinBuildSource: for a built-in overlay, .BuildSource is where
// Warewulf keeps its distribution copy of the template.
func TestBuiltinBuildSource(t *testing.T) {
	r := newTestRenderer(t, nil)
	db := testDB(t, testConfig(1))
	n, _ := db.Node("n00001")
	d := r.opts.Server.newData(NodeData(n), nil, fixedNow())
	o, err := r.Overlay("hostname")
	require.NoError(t, err)
	for _, f := range o.Files {
		if f.IsTemplate() {
			d.BuildSource = r.buildSource(o, f)
			assert.Equal(t, "/usr/share/warewulf/overlays/hostname/rootfs/"+f.Path, d.BuildSource)
		}
	}
}

// TestIncludeFromStaysInTheImage: IncludeFrom follows symlinks as the
// node would see them (absolute targets from the image root) and never
// reads outside the image tree.
func TestIncludeFromStaysInTheImage(t *testing.T) {
	img := t.TempDir()
	outside := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(img, "etc"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(img, "etc", "os-release"), []byte("ID=rocky\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(outside, "secret"), []byte("host secret\n"), 0o644))
	require.NoError(t, os.Symlink("/etc/os-release", filepath.Join(img, "etc", "abs-link")))
	require.NoError(t, os.Symlink("../../../../../../.."+outside+"/secret", filepath.Join(img, "etc", "dotdot-link")))
	require.NoError(t, os.Symlink(outside+"/secret", filepath.Join(img, "etc", "host-link")))
	m := renderOne(t, map[string]string{"etc/from.ww": `a=[{{ IncludeFrom "img" "/etc/os-release" }}]
abs=[{{ IncludeFrom "img" "etc/abs-link" }}]
dotdot=[{{ IncludeFrom "img" "/etc/dotdot-link" }}]
host=[{{ IncludeFrom "img" "/etc/host-link" }}]
up=[{{ IncludeFrom "img" "../../../../` + outside + `/secret" }}]
none=[{{ IncludeFrom "nosuch" "/etc/os-release" }}]
`}, "nodes:\n  n1: {}\n", "n1", func(o *Options) {
		o.ImageRoot = func(name string) string {
			if name == "img" {
				return img
			}
			return ""
		}
	})
	assert.Equal(t, "a=[ID=rocky]\nabs=[ID=rocky]\ndotdot=[]\nhost=[]\nup=[]\nnone=[]\n", m["etc/from"].data)
}
