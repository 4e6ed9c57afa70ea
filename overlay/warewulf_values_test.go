package overlay

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/nodedb"
)

// renderWW renders the built-in overlay name for node n1 of the nodes.conf
// text conf and returns its files by path.
func renderWW(t *testing.T, conf, name string, mod func(*Options)) map[string]entry {
	t.Helper()
	cfg, err := nodedb.Parse("nodes.conf", []byte(conf))
	require.NoError(t, err)
	db := testDB(t, cfg)
	n, err := db.Node("n1")
	require.NoError(t, err)
	r := newTestRenderer(t, func(o *Options) {
		o.Server = ServerInfo{Ipaddr: "192.168.1.254", Netmask: "255.255.255.0", BuildHost: "head"}
		o.DefaultSystem = []string{name}
		if mod != nil {
			mod(o)
		}
	})
	a, err := r.Render(context.Background(), db, n, System)
	require.NoError(t, err)
	m, _ := unpack(t, a)
	return m
}

const wwStorageConf = `nodes:
  n1:
    disks:
      /dev/sda:
        wipe_table: true
        partitions:
          swap:
            number: "3"
            start_mib: "5122"
            size_mib: "2048"
            should_exist: true
            type_guid: swap
          rootfs:
            number: "1"
            start_mib: "2"
            size_mib: "4096"
            should_exist: true
            type_guid: linux
          scratch:
            number: "2"
            start_mib: "4098"
            size_mib: "10240"
            should_exist: true
            type_guid: linux
      /dev/sdb:
        wipe_table: false
    filesystems:
      /dev/disk/by-partlabel/rootfs:
        format: ext4
        path: /
      /dev/disk/by-partlabel/scratch:
        format: ext4
        path: /scratch
        wipe_filesystem: true
      /dev/disk/by-partlabel/swap:
        format: swap
        path: swap
`

// TestWarewulfOverlayValues checks the built-in overlays that replace
// Warewulf 4.7's against the values Warewulf's own overlay tests
// (overlays/*/internal) give for the same nodes.conf.
func TestWarewulfOverlayValues(t *testing.T) {
	t.Run("sfdisk", func(t *testing.T) {
		m := renderWW(t, wwStorageConf, "sfdisk", nil)
		// Partitions in number order, sizes in MiB, one script per disk.
		assert.Equal(t, "start=2MiB size=4096MiB name=rootfs type=linux\nstart=4098MiB size=10240MiB name=scratch type=linux\nstart=5122MiB size=2048MiB name=swap type=swap\n",
			m["warewulf/sfdisk/device-0"].data)
		assert.Contains(t, m, "warewulf/sfdisk/device-1")
		sh := m["warewulf/wwinit.d/10-sfdisk.sh"]
		assert.Equal(t, uint64(0o755), sh.mode&0o7777)
		assert.Contains(t, sh.data, `sfdisk --label gpt --wipe always '/dev/sda' <"${PREFIX}/warewulf/sfdisk/device-0"`, "wipe_table: true")
		assert.Contains(t, sh.data, `sfdisk --label gpt --wipe auto '/dev/sdb' <"${PREFIX}/warewulf/sfdisk/device-1"`, "wipe_table: false")
	})
	t.Run("sfdisk resource", func(t *testing.T) {
		m := renderWW(t, `nodes:
  n1:
    resources:
      sfdisk:
        - device: /dev/sda
          label: gpt
          first-lba: 34
          last-lba: 20971486
          sector-size: 512
          partitions:
            - device: /dev/sda1
              name: sfdisk-rootfs
              size: 4194304
              start: 2048
              type: linux
`, "sfdisk", nil)
		assert.Equal(t, "label: gpt\nfirst-lba: 34\nlast-lba: 20971486\nsector-size: 512\n/dev/sda1 : start=2048 size=4194304 name=sfdisk-rootfs type=linux\n",
			m["warewulf/sfdisk/device-0"].data)
		assert.Contains(t, m["warewulf/wwinit.d/10-sfdisk.sh"].data, "--label gpt --wipe auto '/dev/sda'")
	})
	t.Run("mkfs", func(t *testing.T) {
		sh := renderWW(t, wwStorageConf, "mkfs", nil)["warewulf/wwinit.d/20-mkfs.sh"].data
		assert.Contains(t, sh, "if ! formatted '/dev/disk/by-partlabel/rootfs'; then\n")
		assert.Contains(t, sh, "mkfs --type='ext4' '/dev/disk/by-partlabel/rootfs'")
		assert.Contains(t, sh, "if true; then\n    info \"wwboot: mkfs: creating ext4 on /dev/disk/by-partlabel/scratch\"", "wipe_filesystem: true formats unconditionally")
		assert.NotContains(t, sh, "by-partlabel/swap", "swap is mkswap's")
		// Without file systems the script does nothing and succeeds.
		empty := renderWW(t, "nodes:\n  n1: {}\n", "mkfs", nil)["warewulf/wwinit.d/20-mkfs.sh"].data
		assert.NotContains(t, empty, "mkfs --type")
	})
	t.Run("mkswap", func(t *testing.T) {
		sh := renderWW(t, wwStorageConf, "mkswap", nil)["warewulf/wwinit.d/20-mkswap.sh"].data
		assert.Contains(t, sh, "if ! formatted '/dev/disk/by-partlabel/swap'; then\n")
		assert.Contains(t, sh, "mkswap '/dev/disk/by-partlabel/swap'")
		assert.NotContains(t, sh, "rootfs")
		over := renderWW(t, "nodes:\n  n1:\n    resources:\n      mkswap:\n        - device: /dev/sdc2\n          overwrite: true\n", "mkswap", nil)["warewulf/wwinit.d/20-mkswap.sh"].data
		assert.Contains(t, over, "if true; then")
	})
	t.Run("systemd.mount", func(t *testing.T) {
		m := renderWW(t, wwStorageConf, "systemd.mount", nil)
		// Warewulf's unit names: "-.mount" for /, "scratch.mount".
		assert.Contains(t, m["etc/systemd/system/-.mount"].data, "[Mount]\nWhere=/\nWhat=/dev/disk/by-partlabel/rootfs\nType=ext4\n")
		assert.Contains(t, m["etc/systemd/system/scratch.mount"].data, "Where=/scratch\n")
		assert.Contains(t, m["etc/systemd/system/scratch.mount"].data, "[Install]\nRequiredBy=local-fs.target\n")
		assert.Equal(t, "/etc/systemd/system/-.mount", m["etc/systemd/system/local-fs.target.wants/-.mount"].data)
		assert.Equal(t, uint64(sIFLNK), m["etc/systemd/system/local-fs.target.wants/scratch.mount"].mode&0o170000)
		assert.NotContains(t, m, "etc/systemd/system/swap.mount")
	})
	t.Run("systemd.swap", func(t *testing.T) {
		m := renderWW(t, wwStorageConf, "systemd.swap", nil)
		u := `dev-disk-by\x2dpartlabel-swap.swap`
		assert.Contains(t, m["etc/systemd/system/"+u].data, "[Swap]\nWhat=/dev/disk/by-partlabel/swap\n")
		assert.Equal(t, "/etc/systemd/system/"+u, m["etc/systemd/system/swap.target.wants/"+u].data)
	})
	t.Run("chrony", func(t *testing.T) {
		m := renderWW(t, "nodes:\n  n1:\n    ipaddr: 192.168.1.10\n", "chrony", nil)
		assert.Contains(t, m["etc/chrony.conf"].data, "\nserver 192.168.1.254 iburst\n")
		assert.Contains(t, m["etc/chrony.conf"].data, "\nallow 192.168.1.0/24\n")
		assert.Equal(t, "/etc/chrony.conf", m["etc/chrony/chrony.conf"].data)
		m = renderWW(t, "nodes:\n  n1:\n    tags:\n      ntp_server: 10.0.0.1\n      ntp_servers: 10.0.0.2,10.0.0.3\n", "chrony", nil)
		assert.Contains(t, m["etc/chrony.conf"].data, "\nserver 10.0.0.1 iburst\nserver 10.0.0.2 iburst\nserver 10.0.0.3 iburst\n")
		assert.NotContains(t, m["etc/chrony.conf"].data, "192.168.1.254 iburst")
	})
	t.Run("localtime", func(t *testing.T) {
		assert.Equal(t, "/usr/share/zoneinfo/GMT", renderWW(t, "nodes:\n  n1: {}\n", "localtime", nil)["etc/localtime"].data)
	})
	ifcfgConf := `nodes:
  n1:
    network devices:
      default:
        device: wwnet0
        hwaddr: e6:92:39:49:7b:03
        ipaddr: 192.168.3.21
        netmask: 255.255.255.0
        gateway: 192.168.3.1
      tagged:
        type: vlan
        device: eth0.902
        tags:
          route1: "192.168.1.0/24,192.168.2.254"
          DNS1: 8.8.8.8
`
	t.Run("ifcfg", func(t *testing.T) {
		m := renderWW(t, ifcfgConf, "ifcfg", nil)
		d := m["etc/sysconfig/network-scripts/ifcfg-default.conf"].data
		for _, l := range []string{"TYPE=ethernet", "DEVICE=wwnet0", "NAME=default", "BOOTPROTO=static", "IPADDR=192.168.3.21", "NETMASK=255.255.255.0", "GATEWAY=192.168.3.1", "HWADDR=e6:92:39:49:7b:03", "IPV6INIT=yes"} {
			assert.Contains(t, d, "\n"+l+"\n")
		}
		v := m["etc/sysconfig/network-scripts/ifcfg-tagged.conf"].data
		assert.Contains(t, v, "\nVLAN=yes\nDEVICE=eth0.902\n")
		assert.Contains(t, v, "\nDNS1=8.8.8.8\n")
		assert.NotContains(t, v, "route1")
		assert.Contains(t, m["etc/sysconfig/network-scripts/route-tagged.conf"].data, "\n192.168.1.0/24 via 192.168.2.254 dev eth0.902\n")
		assert.Equal(t, "NETWORKING=yes\nHOSTNAME=n1\n", m["etc/sysconfig/network"].data)
	})
	t.Run("wicked", func(t *testing.T) {
		m := renderWW(t, ifcfgConf, "wicked", nil)
		d := m["etc/wicked/ifconfig/ifcfg-default.xml"].data
		assert.Contains(t, d, "<name>wwnet0</name>\n  <link-type>ethernet</link-type>\n")
		assert.Contains(t, d, "<local>192.168.3.21/24</local>")
		assert.Contains(t, d, "<gateway>192.168.3.1</gateway>")
		v := m["etc/wicked/ifconfig/ifcfg-tagged.xml"].data
		assert.Contains(t, v, "<vlan>\n    <device>eth0</device>\n    <tag>902</tag>\n")
		assert.Contains(t, v, "<destination>192.168.1.0/24</destination>")
		assert.NotContains(t, v, "<nil>", "a device without address writes no address (Warewulf writes <nil>)")
	})
	t.Run("netplan", func(t *testing.T) {
		f := renderWW(t, ifcfgConf, "netplan", nil)["etc/netplan/warewulf.yaml"]
		assert.Equal(t, uint64(0o600), f.mode&0o7777)
		assert.Contains(t, f.data, "  ethernets:\n    \"wwnet0\":\n      match:\n        macaddress: \"e6:92:39:49:7b:03\"\n")
		assert.Contains(t, f.data, "        - \"192.168.3.21/24\"\n")
		assert.Contains(t, f.data, "  vlans:\n    \"eth0.902\":\n      id: 902\n      link: \"eth0\"\n")
	})
	t.Run("issue", func(t *testing.T) {
		d := renderWW(t, ifcfgConf, "issue", nil)["etc/issue"].data
		assert.Contains(t, d, "n1")
		assert.Contains(t, d, "    default: wwnet0\n    default: 192.168.3.21/24\n    default: e6:92:39:49:7b:03\n")
	})
	t.Run("hosts", func(t *testing.T) {
		// Warewulf's hosts overlay names the server "warewulf" (the default
		// profile's fstab mounts warewulf:/home) and each address
		// NODE-NETDEV and NODE-DEVICE.
		d := renderWW(t, ifcfgConf, "hosts", nil)["etc/hosts"].data
		assert.Contains(t, d, "\n192.168.1.254  head warewulf\n")
		assert.Contains(t, d, "\n192.168.3.21  n1 n1-default n1-wwnet0")
	})
	t.Run("debian.interfaces is ifupdown", func(t *testing.T) {
		m := renderWW(t, ifcfgConf, "debian.interfaces", nil)
		assert.Contains(t, m["etc/network/interfaces.d/wwboot-default"].data, "iface wwnet0 inet static")
		target, ok := BuiltinAlias("debian.interfaces")
		assert.True(t, ok)
		assert.Equal(t, "ifupdown", target)
	})
	t.Run("systemd.networkd is systemd-networkd", func(t *testing.T) {
		m := renderWW(t, ifcfgConf, "systemd.networkd", nil)
		assert.NotEmpty(t, m)
		target, ok := BuiltinAlias("systemd.networkd")
		assert.True(t, ok)
		assert.Equal(t, "systemd-networkd", target)
	})
}
