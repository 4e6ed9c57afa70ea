package overlay

import (
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/wwboot/wwboot/nodedb"
)

// Kind selects which of a node's overlay lists an archive holds.
type Kind string

// The two kinds of overlay archive.
const (
	// System overlays are loaded once, at boot, beside the image.
	System Kind = "system"
	// Runtime overlays are loaded at boot and refreshed while the node runs.
	Runtime Kind = "runtime"
)

// ParseKind accepts "system" and "runtime".
func ParseKind(s string) (Kind, error) {
	switch Kind(s) {
	case System, Runtime:
		return Kind(s), nil
	}
	return "", errorf("kind %q: use system or runtime", s)
}

// Bool is a boolean field as nodes.conf stores it (a string such as "true",
// "no" or ""). It prints as written; its methods give Warewulf's readings.
type Bool string

// Bool reports whether the value is true; empty or unparsable is false.
func (b Bool) Bool() bool { v, _ := nodedb.ParseBool(string(b)); return v }

// BoolDefaultTrue reports whether the value is true, treating empty (or
// unparsable) as true.
func (b Bool) BoolDefaultTrue() bool {
	if v, ok := nodedb.ParseBool(string(b)); ok {
		return v
	}
	return true
}

// Node is a node as templates see it (the effective record, merged with its
// profiles). Field names follow Warewulf 4.7's node, so .AllNodes entries and
// .ThisNode read like Warewulf's.
type Node struct {
	Id             string                 // node name
	Comment        string                 // free text
	ClusterName    string                 // cluster (group) name
	ImageName      string                 // image the node boots
	ContainerName  string                 // ImageName, for templates written before Warewulf 4.6
	Ipxe           string                 // iPXE template name
	RuntimeOverlay []string               // runtime overlay list
	SystemOverlay  []string               // system overlay list
	Kernel         *Kernel                // never nil
	Ipmi           *IPMI                  // never nil
	Init           string                 // init program (default /sbin/init)
	Root           string                 // root file system type (initramfs, tmpfs)
	AssetKey       string                 // asset tag
	Discoverable   Bool                   // may take the next unknown MAC
	Profiles       []string               // the node's own profile list, as in Warewulf (nodedb.Node.Chain has the expansion)
	NetDevs        map[string]*NetDev     // network devices by logical name
	PrimaryNetDev  string                 // name of the primary network device ("" if none)
	Tags           map[string]string      // free key/value pairs (never nil)
	Resources      map[string]any         // structured data (fstab...)
	Disks          map[string]*Disk       // disks to partition
	FileSystems    map[string]*FileSystem // file systems to create
}

// Kernel is the node's kernel selection.
type Kernel struct {
	Version string   // kernel version
	Args    []string // command-line arguments (templates often use join " ")
}

// IPMI is the node's BMC.
type IPMI struct {
	UserName, Password, Ipaddr, Netmask, Gateway, Port, Interface, EscapeChar, Template string
	Write                                                                               Bool
	Tags                                                                                map[string]string
}

// NetDev is a network device as templates see it. Addresses are net.IP, as
// in Warewulf 4.6 and later: an unset address is nil (false in an if, and
// printed as "<nil>").
type NetDev struct {
	Type       string            // ethernet, infiniband, bond, vlan...
	OnBoot     Bool              // .OnBoot.BoolDefaultTrue
	Device     string            // kernel interface name
	Hwaddr     string            // MAC address as written
	Ipaddr     net.IP            // IPv4 address
	Netmask    net.IP            // IPv4 netmask (from netmask or ipaddr's /prefix)
	Gateway    net.IP            // IPv4 gateway
	IpCIDR     string            // address/prefix, e.g. 10.0.0.5/24 ("" without address or netmask, as Warewulf's NetDev.IpCIDR)
	Prefix     int               // IPv4 prefix length (0 if unknown)
	Ipaddr6    net.IP            // IPv6 address
	IpCIDR6    string            // IPv6 address/prefix, e.g. fd00::5/64 (prefix 64 when unset; "" without an IPv6 address)
	PrefixLen6 string            // IPv6 prefix length (Warewulf's spelling)
	Prefixlen6 string            // PrefixLen6, for templates written for earlier wwboot releases
	Gateway6   net.IP            // IPv6 gateway
	MTU        string            // link MTU
	Primary    bool              // true for the node's primary device
	Tags       map[string]string // free key/value pairs (never nil)
}

// Disk is a disk to partition. Its switches are booleans, as in Warewulf
// 4.7, so that {{ if $disk.WipeTable }} is false for wipe_table: false
// (and for anything that is not a boolean).
type Disk struct {
	Id         string // the disk's device, its key in nodes.conf's disks (Warewulf's Disk.Id)
	WipeTable  bool
	Partitions map[string]*Partition
}

// Partition is one partition of a Disk.
type Partition struct {
	Id                                        string // the partition's label, its key in the disk's partitions
	Number, SizeMiB, StartMiB, TypeGuid, Guid string
	WipePartitionEntry, ShouldExist, Resize   bool
}

// FileSystem is a file system to create.
type FileSystem struct {
	Id                        string // the file system's device, its key in nodes.conf's filesystems
	Format, Path, Label, Uuid string
	WipeFileSystem            bool
	Options                   []string
	MountOptions              string // comma-separated ("defaults,noatime"), also when nodes.conf lists them
}

// DiskList returns the node's disks sorted by device name, as Warewulf's
// Node.DiskList (internal/pkg/node, sort.Strings of the keys).
func (n *Node) DiskList() []*Disk {
	out := make([]*Disk, 0, len(n.Disks))
	for _, k := range sortedKeys(n.Disks) {
		if d := n.Disks[k]; d != nil {
			out = append(out, d)
		}
	}
	return out
}

// FileSystemList returns the node's file systems sorted by device name, as
// Warewulf's Node.FileSystemList.
func (n *Node) FileSystemList() []*FileSystem {
	out := make([]*FileSystem, 0, len(n.FileSystems))
	for _, k := range sortedKeys(n.FileSystems) {
		if f := n.FileSystems[k]; f != nil {
			out = append(out, f)
		}
	}
	return out
}

// PartitionList returns the disk's partitions in Warewulf's order
// (Disk.PartitionList): partitions with a numeric Number first, by number;
// then by Id (label); then by key.
func (d *Disk) PartitionList() []*Partition {
	keys := sortedKeys(d.Partitions)
	sort.SliceStable(keys, func(i, j int) bool {
		pi, pj := d.Partitions[keys[i]], d.Partitions[keys[j]]
		if pi == nil || pj == nil {
			return pi != nil
		}
		ni, erri := strconv.Atoi(pi.Number)
		nj, errj := strconv.Atoi(pj.Number)
		switch {
		case erri == nil && errj == nil && ni != nj:
			return ni < nj
		case erri == nil && errj != nil:
			return true
		case erri != nil && errj == nil:
			return false
		}
		if pi.Id != pj.Id {
			return pi.Id < pj.Id
		}
		return keys[i] < keys[j]
	})
	out := make([]*Partition, 0, len(keys))
	for _, k := range keys {
		if p := d.Partitions[k]; p != nil {
			out = append(out, p)
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ServerInfo is what templates know about the provisioning server. The
// caller fills it (from its configuration); package overlay reads no
// configuration file. Start from DefaultServerInfo to get Warewulf's
// defaults for what the configuration leaves unset: the booleans of a zero
// ServerInfo are false, Warewulf's defaults are not.
type ServerInfo struct {
	Ipaddr      string // server IPv4 address (.Ipaddr)
	Netmask     string // dotted netmask of the provisioning network (.Netmask)
	Network     string // network address (.Network); derived from Ipaddr/Netmask when empty
	NetworkCIDR string // network/prefix (.NetworkCIDR); derived when empty
	// Ipaddr6 is the server's IPv6 address, as warewulf.conf's ipaddr6
	// gives it: address/prefix (fd00::1/64), or an address alone (prefix
	// 64). Templates see the address in .Ipaddr6 and the prefix in .IpCIDR6.
	Ipaddr6   string
	BuildHost string // host name of the server (.BuildHost)

	Warewulf WarewulfConf // .Warewulf
	Dhcp     DHCPConf     // .Dhcp
	Nfs      NFSConf      // .Nfs
	Ssh      SSHConf      // .Ssh (KeyTypes also selects the generated host keys)
	Tftp     TFTPConf     // .Tftp
	Paths    PathsConf    // .Paths
	Resolv   ResolvConf   // .Resolv: cluster-wide DNS defaults (wwboot extension)
}

// WarewulfConf mirrors the warewulf: section of warewulf.conf. Defaults
// (DefaultServerInfo) are Warewulf's (internal/pkg/config, WarewulfConf).
type WarewulfConf struct {
	Port              int    // provisioning HTTP port (9873)
	Secure            bool   // runtime overlays only to privileged source ports (true)
	UpdateInterval    int    // seconds between runtime overlay refreshes (60)
	AutobuildOverlays bool   // rebuild overlays when the inventory changes (true)
	EnableHostOverlay bool   // render the host overlay on the server (true)
	Syslog            bool   // log to syslog (false)
	DataStore         string // Warewulf's data directory (/usr/share)
	GrubBoot          bool   // boot through shim and GRUB instead of iPXE (false)
	TLSEnabled        bool   // the provisioning service also serves HTTPS (false)
	TLSPort           int    // its HTTPS port (9874; 0 when TLS is off and unset)
	SecureFiles       bool   // node files only to the node they belong to (false)
}

// DHCPConf mirrors the dhcp: section of warewulf.conf.
type DHCPConf struct {
	Enabled     bool   // (true)
	Template    string // dhcpd template name ("default")
	RangeStart  string // dynamic range; Warewulf's default when unset: see normalize
	RangeEnd    string
	SystemdName string // ("dhcpd")
}

// NFSConf mirrors the nfs: section of warewulf.conf.
type NFSConf struct {
	Enabled     bool // (true)
	ExportPaths []NFSExport
	SystemdName string // ("nfs-server")
}

// NFSExport is one NFS export.
type NFSExport struct {
	Path          string
	ExportOptions string
	MountOptions  string
	Mount         bool
}

// SSHConf mirrors the ssh: section of warewulf.conf.
type SSHConf struct {
	KeyTypes       []string // host key types: ed25519, ecdsa, rsa (default: all three)
	AuthorizedKeys string   // file root's authorized_keys come from (wwboot; default /root/.ssh/authorized_keys)
}

// TFTPConf mirrors the tftp: section of warewulf.conf.
type TFTPConf struct {
	Enabled      bool   // (true)
	TftpRoot     string // ("/var/lib/tftpboot")
	SystemdName  string // ("tftp")
	IpxeBinaries map[string]string
}

// PathsConf mirrors the paths: section of warewulf.conf (Warewulf's
// BuildConfig); empty fields get Warewulf's defaults for a /usr install.
type PathsConf struct {
	Bindir         string // /usr/bin
	Sysconfdir     string // /etc; relative Include paths start at Sysconfdir/warewulf, as in Warewulf
	Localstatedir  string // /var/lib
	Cachedir       string // /var/cache
	Ipxesource     string // /usr/share/ipxe
	Srvdir         string // /var/lib
	Firewallddir   string // /usr/lib/firewalld/services
	Systemddir     string // /usr/lib/systemd/system
	Datadir        string // /usr/share
	WWOverlaydir   string // /var/lib/warewulf/overlays
	WWChrootdir    string // /var/lib/warewulf/chroots
	WWProvisiondir string // /var/lib/warewulf/provision
	WWClientdir    string // /warewulf: where wwclient lives on the node
	// Agent is the node agent binary (wwboot-agent, built from
	// ./cmd/wwboot-agent) on the server, which the wwclient overlay's
	// AgentBinary delivers to nodes (wwboot extension).
	Agent string
	// CACert is the cluster CA's certificate on the server (ROOT/tls/ca.crt),
	// which the wwclient overlay puts on nodes as /etc/wwboot/ca.crt (the
	// ClusterCA function) when Warewulf.TLSEnabled (wwboot extension: the
	// agent's TLS channel).
	CACert string
}

// ResolvConf holds DNS defaults for the resolv overlay.
type ResolvConf struct {
	Nameservers []string
	Search      []string
}

// DefaultServerInfo returns Warewulf's defaults for what warewulf.conf
// leaves unset (internal/pkg/config: WarewulfConf, DHCPConf, NFSConf,
// TFTPConf, BuildConfig): port 9873, secure, update interval 60,
// autobuild overlays, host overlay, DHCP, NFS and TFTP enabled, DHCP
// template "default". The caller sets what its own configuration says.
func DefaultServerInfo() ServerInfo {
	return ServerInfo{
		Warewulf: WarewulfConf{Port: 9873, Secure: true, UpdateInterval: 60, AutobuildOverlays: true,
			EnableHostOverlay: true, DataStore: "/usr/share"},
		Dhcp: DHCPConf{Enabled: true, Template: "default", SystemdName: "dhcpd"},
		Nfs:  NFSConf{Enabled: true, SystemdName: "nfs-server"},
		Tftp: TFTPConf{Enabled: true, TftpRoot: "/var/lib/tftpboot", SystemdName: "tftp"},
	}
}

// TemplateData is the data a .ww template is executed with, shaped like
// Warewulf 4.7's template data: the node's fields (embedded *Node: .Id,
// .NetDevs, .Tags...), the server's (.Ipaddr, .Netmask, .Network...), the
// build's and .AllNodes.
type TemplateData struct {
	Id            string // node name
	Hostname      string // node name
	BuildHost     string // server host name
	BuildTime     string // render time, "01-02-2006 15:04:05 MST"
	BuildTimeUnix string // render time, seconds since the epoch
	// BuildSource is the template's source file, as Warewulf sets it (the
	// path it walked): SiteDir/NAME/rootfs/PATH.ww for a site overlay, and
	// for a built-in one the path Warewulf's distribution copy has,
	// Paths.Datadir/warewulf/overlays/NAME/rootfs/PATH.ww.
	BuildSource  string
	Overlay      string // overlay name
	Ipaddr       string // server IPv4 address
	IpCIDR       string // server address/prefix (10.0.0.1/24; "" without netmask)
	Ipaddr6      string // server IPv6 address, without prefix
	PrefixLen6   string // its prefix length ("64"; "" without IPv6)
	IpCIDR6      string // address/prefix (fd00::1/64)
	Network6     string // IPv6 network address (fd00::)
	NetworkCIDR6 string // IPv6 network/prefix (fd00::/64)
	Netmask      string // server netmask
	Network      string // server network address
	NetworkCIDR  string // server network in CIDR form
	// Ipv6 is true when the server has a usable IPv6 address: Warewulf
	// sets it when ipaddr6 is set and refuses a prefix longer than 64 or an
	// unparsable value (config.SetDynamicDefaults); wwboot takes such a
	// value as "no IPv6" instead of failing.
	Ipv6      bool
	Warewulf  WarewulfConf
	Dhcp      DHCPConf
	Nfs       NFSConf
	Ssh       SSHConf
	Tftp      TFTPConf
	Paths     PathsConf
	Resolv    ResolvConf
	AllNodes  []*Node // every node of the inventory, by name
	*Node             // the node being rendered
	ThisNode  *Node   // the node being rendered
	Container string  // ImageName, for old templates

}

// isServerField reports whether a TemplateData field does not depend on the
// node.
func isServerField(name string) bool {
	switch name {
	case "BuildHost", "BuildTime", "BuildTimeUnix", "BuildSource", "Overlay",
		"Ipaddr", "Ipaddr6", "Netmask", "Network", "NetworkCIDR", "Ipv6",
		"IpCIDR", "PrefixLen6", "IpCIDR6", "Network6", "NetworkCIDR6",
		"Warewulf", "Dhcp", "Nfs", "Ssh", "Tftp", "Paths", "Resolv":
		return true
	}
	return false
}

// newData returns template data for node n (nil for a node-independent
// render) at time now.
func (s *ServerInfo) newData(n *Node, all []*Node, now time.Time) *TemplateData {
	d := &TemplateData{
		BuildHost:     s.BuildHost,
		BuildTime:     now.Format("01-02-2006 15:04:05 MST"),
		BuildTimeUnix: strconv.FormatInt(now.Unix(), 10),
		Ipaddr:        s.Ipaddr,
		Netmask:       s.Netmask,
		Network:       s.Network,
		NetworkCIDR:   s.NetworkCIDR,
		Warewulf:      s.Warewulf,
		Dhcp:          s.Dhcp,
		Nfs:           s.Nfs,
		Ssh:           s.Ssh,
		Tftp:          s.Tftp,
		Paths:         s.Paths,
		Resolv:        s.Resolv,
		AllNodes:      all,
	}
	if a, err := netip.ParseAddr(s.Ipaddr); err == nil && a.Is4() {
		if bits, err := nodedb.ParseNetmask(s.Netmask); err == nil {
			d.IpCIDR = netip.PrefixFrom(a, bits).String()
		}
	}
	if p, ok := serverIPv6(s.Ipaddr6); ok {
		d.Ipv6 = true
		d.Ipaddr6 = p.Addr().String()
		d.PrefixLen6 = strconv.Itoa(p.Bits())
		d.IpCIDR6 = p.String()
		d.Network6 = p.Masked().Addr().String()
		d.NetworkCIDR6 = p.Masked().String()
	} else {
		d.Ipaddr6 = s.Ipaddr6
	}
	if n == nil {
		n = &Node{Kernel: &Kernel{}, Ipmi: &IPMI{}, Tags: map[string]string{}, NetDevs: map[string]*NetDev{}}
	}
	d.Node, d.ThisNode = n, n
	d.Id, d.Hostname, d.Container = n.Id, n.Id, n.ImageName
	return d
}

// serverIPv6 parses warewulf.conf's ipaddr6: address/prefix, or an
// address alone (prefix 64). Like Warewulf, a prefix longer than 64 is not
// a usable provisioning network.
func serverIPv6(s string) (netip.Prefix, bool) {
	if s == "" {
		return netip.Prefix{}, false
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, false
		}
		p = netip.PrefixFrom(a, 64)
	}
	if !p.Addr().Is6() || p.Addr().Is4In6() || p.Bits() > 64 {
		return netip.Prefix{}, false
	}
	return p, true
}

// normalize fills derived server fields and Warewulf's defaults for empty
// strings and numbers (booleans are the caller's: see DefaultServerInfo).
func (s ServerInfo) normalize() ServerInfo {
	if s.Network == "" || s.NetworkCIDR == "" {
		if a, err := netip.ParseAddr(s.Ipaddr); err == nil && a.Is4() {
			if bits, err := nodedb.ParseNetmask(s.Netmask); err == nil {
				p := netip.PrefixFrom(a, bits).Masked()
				if s.Network == "" {
					s.Network = p.Addr().String()
				}
				if s.NetworkCIDR == "" {
					s.NetworkCIDR = p.String()
				}
			}
		}
	}
	if s.Dhcp.RangeStart == "" && s.Dhcp.RangeEnd == "" {
		s.Dhcp.RangeStart, s.Dhcp.RangeEnd = defaultDHCPRange(s.Ipaddr, s.Netmask)
	}
	if len(s.Ssh.KeyTypes) == 0 {
		// Every type Debian's and EL's sshd load by default: none of the
		// image's own keys may be left in use.
		s.Ssh.KeyTypes = []string{"ed25519", "ecdsa", "rsa"}
	}
	if s.Ssh.AuthorizedKeys == "" {
		s.Ssh.AuthorizedKeys = "/root/.ssh/authorized_keys"
	}
	setDefault := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	if s.Warewulf.Port == 0 {
		s.Warewulf.Port = 9873
	}
	if s.Warewulf.UpdateInterval == 0 {
		s.Warewulf.UpdateInterval = 60
	}
	if s.Warewulf.TLSEnabled && s.Warewulf.TLSPort == 0 {
		s.Warewulf.TLSPort = 9874
	}
	setDefault(&s.Warewulf.DataStore, "/usr/share")
	setDefault(&s.Dhcp.Template, "default")
	setDefault(&s.Dhcp.SystemdName, "dhcpd")
	setDefault(&s.Nfs.SystemdName, "nfs-server")
	setDefault(&s.Tftp.TftpRoot, "/var/lib/tftpboot")
	setDefault(&s.Tftp.SystemdName, "tftp")
	if s.Tftp.IpxeBinaries == nil {
		s.Tftp.IpxeBinaries = map[string]string{"00:00": "undionly.kpxe", "00:07": "ipxe-snponly-x86_64.efi",
			"00:09": "ipxe-snponly-x86_64.efi", "00:0B": "arm64-efi/snponly.efi"}
	}
	pa := &s.Paths
	for _, d := range []struct {
		p *string
		v string
	}{
		{&pa.Bindir, "/usr/bin"}, {&pa.Sysconfdir, "/etc"}, {&pa.Localstatedir, "/var/lib"},
		{&pa.Cachedir, "/var/cache"}, {&pa.Ipxesource, "/usr/share/ipxe"}, {&pa.Srvdir, "/var/lib"},
		{&pa.Firewallddir, "/usr/lib/firewalld/services"}, {&pa.Systemddir, "/usr/lib/systemd/system"},
		{&pa.Datadir, "/usr/share"}, {&pa.WWOverlaydir, "/var/lib/warewulf/overlays"},
		{&pa.WWChrootdir, "/var/lib/warewulf/chroots"}, {&pa.WWProvisiondir, "/var/lib/warewulf/provision"},
		{&pa.WWClientdir, "/warewulf"},
	} {
		setDefault(d.p, d.v)
	}
	return s
}

// defaultDHCPRange is Warewulf's dynamic range when warewulf.conf sets
// none (config.SetDynamicDefaults): from the network address + 1 (+ 2 when
// that is the server) to the network address + an eighth of the network's
// size, at most + 127, both in the last octet.
func defaultDHCPRange(ipaddr, netmask string) (start, end string) {
	a, err := netip.ParseAddr(ipaddr)
	if err != nil || !a.Is4() {
		return "", ""
	}
	bits, err := nodedb.ParseNetmask(netmask)
	if err != nil {
		return "", ""
	}
	net4 := netip.PrefixFrom(a, bits).Masked().Addr().As4()
	st := net4
	st[3]++
	if netip.AddrFrom4(st) == a {
		st[3]++
	}
	n := (1 << (32 - bits)) / 8
	if n > 127 {
		n = 127
	}
	en := net4
	en[3] += byte(n)
	return netip.AddrFrom4(st).String(), netip.AddrFrom4(en).String()
}

// NodeData converts an effective inventory node into the template view.
func NodeData(n *nodedb.Node) *Node {
	r := &n.Record
	out := &Node{
		Id:             n.ID,
		Comment:        r.Comment,
		ClusterName:    r.ClusterName,
		ImageName:      r.ImageName,
		ContainerName:  r.ImageName,
		Ipxe:           r.Ipxe,
		RuntimeOverlay: r.RuntimeOverlay,
		SystemOverlay:  r.SystemOverlay,
		Kernel:         &Kernel{},
		Ipmi:           &IPMI{Tags: map[string]string{}},
		Init:           r.Init,
		Root:           r.Root,
		AssetKey:       r.AssetKey,
		Discoverable:   Bool(r.Discoverable),
		Profiles:       r.Profiles,
		NetDevs:        make(map[string]*NetDev, len(r.NetDevs)),
		PrimaryNetDev:  n.Primary,
		Tags:           copyTags(r.Tags),
		Resources:      deepCopy(r.Resources).(map[string]any),
	}
	if r.Kernel != nil {
		out.Kernel.Version, out.Kernel.Args = r.Kernel.Version, r.Kernel.Args
	}
	if m := r.Ipmi; m != nil {
		out.Ipmi = &IPMI{UserName: m.UserName, Password: m.Password, Ipaddr: m.Ipaddr, Netmask: m.Netmask,
			Gateway: m.Gateway, Port: m.Port, Interface: m.Interface, EscapeChar: m.EscapeChar,
			Template: m.Template, Write: Bool(m.Write), Tags: copyTags(m.Tags)}
	}
	for name, nd := range r.NetDevs {
		if nd == nil {
			continue
		}
		out.NetDevs[name] = netDevData(nd, name == n.Primary)
	}
	if len(r.Disks) > 0 {
		out.Disks = make(map[string]*Disk, len(r.Disks))
		for dev, d := range r.Disks {
			if d == nil {
				continue
			}
			od := &Disk{Id: dev, WipeTable: Bool(d.WipeTable).Bool(), Partitions: map[string]*Partition{}}
			for label, p := range d.Partitions {
				if p == nil {
					continue
				}
				od.Partitions[label] = &Partition{Id: label, Number: p.Number, SizeMiB: p.SizeMiB, StartMiB: p.StartMiB,
					TypeGuid: p.TypeGUID, Guid: p.GUID, WipePartitionEntry: Bool(p.WipePartitionEntry).Bool(),
					ShouldExist: Bool(p.ShouldExist).Bool(), Resize: Bool(p.Resize).Bool()}
			}
			out.Disks[dev] = od
		}
	}
	if len(r.FileSystems) > 0 {
		out.FileSystems = make(map[string]*FileSystem, len(r.FileSystems))
		for dev, f := range r.FileSystems {
			if f == nil {
				continue
			}
			out.FileSystems[dev] = &FileSystem{Id: dev, Format: f.Format, Path: f.Path, Label: f.Label, Uuid: f.UUID,
				WipeFileSystem: Bool(f.WipeFileSystem).Bool(), Options: f.Options, MountOptions: string(f.MountOptions)}
		}
	}
	return out
}

func netDevData(nd *nodedb.NetDev, primary bool) *NetDev {
	out := &NetDev{Type: nd.Type, OnBoot: Bool(nd.OnBoot), Device: nd.Device, Hwaddr: nd.Hwaddr,
		MTU: nd.MTU, Primary: primary, Tags: copyTags(nd.Tags), Prefixlen6: nd.Prefixlen6}
	bits := -1
	if p, err := nodedb.ParseIPv4(nd.Ipaddr); err == nil {
		out.Ipaddr = net.IP(p.Addr().AsSlice())
		bits = p.Bits()
	}
	if nd.Netmask != "" {
		if b, err := nodedb.ParseNetmask(nd.Netmask); err == nil {
			bits = b
		}
	}
	if bits >= 0 {
		out.Prefix = bits
		out.Netmask = net.IP(net.CIDRMask(bits, 32))
		if out.Ipaddr != nil {
			out.IpCIDR = out.Ipaddr.String() + "/" + strconv.Itoa(bits)
		}
	}
	if p, err := nodedb.ParseIPv4(nd.Gateway); err == nil {
		out.Gateway = net.IP(p.Addr().AsSlice())
	}
	if p, err := nodedb.ParseIPv6(nd.Ipaddr6); err == nil && p.Addr().IsValid() {
		out.Ipaddr6 = net.IP(p.Addr().AsSlice())
		if out.Prefixlen6 == "" && p.Bits() >= 0 {
			out.Prefixlen6 = strconv.Itoa(p.Bits())
		}
		bits := 64
		if b, err := strconv.Atoi(out.Prefixlen6); err == nil && b >= 0 && b <= 128 {
			bits = b
		}
		out.IpCIDR6 = out.Ipaddr6.String() + "/" + strconv.Itoa(bits)
	}
	out.PrefixLen6 = out.Prefixlen6
	if p, err := nodedb.ParseIPv6(nd.Gateway6); err == nil {
		out.Gateway6 = net.IP(p.Addr().AsSlice())
	}
	return out
}

// deepCopy copies YAML-decoded data (maps, slices, scalars), so that a
// template calling sprig's set cannot change the inventory's records.
func deepCopy(v any) any {
	switch v := v.(type) {
	case map[string]any:
		if v == nil {
			return v
		}
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = deepCopy(e)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = deepCopy(e)
		}
		return out
	}
	return v
}

func copyTags(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// allNodesData converts every node of db, in name order.
func allNodesData(db *nodedb.DB) []*Node {
	nodes := db.Nodes()
	out := make([]*Node, len(nodes))
	for i, n := range nodes {
		out[i] = NodeData(n)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Id < out[j].Id })
	return out
}

// PrimaryIP returns the IPv4 address of the node's primary network device,
// or "" — a helper for callers (the CLI, status pages).
func (n *Node) PrimaryIP() string {
	if nd := n.NetDevs[n.PrimaryNetDev]; nd != nil && nd.Ipaddr != nil {
		return nd.Ipaddr.String()
	}
	return ""
}

func trimNL(s string) string { return strings.TrimSuffix(s, "\n") }
