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
	WipeTable  bool
	Partitions map[string]*Partition
}

// Partition is one partition of a Disk.
type Partition struct {
	Number, SizeMiB, StartMiB, TypeGuid, Guid string
	WipePartitionEntry, ShouldExist, Resize   bool
}

// FileSystem is a file system to create.
type FileSystem struct {
	Format, Path, Label, Uuid string
	WipeFileSystem            bool
	Options                   []string
	MountOptions              string // comma-separated ("defaults,noatime"), also when nodes.conf lists them
}

// ServerInfo is what templates know about the provisioning server. The
// caller fills it (from its configuration); package overlay reads no
// configuration file.
type ServerInfo struct {
	Ipaddr      string // server IPv4 address (.Ipaddr)
	Netmask     string // dotted netmask of the provisioning network (.Netmask)
	Network     string // network address (.Network); derived from Ipaddr/Netmask when empty
	NetworkCIDR string // network/prefix (.NetworkCIDR); derived when empty
	Ipaddr6     string // server IPv6 address (.Ipaddr6)
	BuildHost   string // host name of the server (.BuildHost)

	Warewulf WarewulfConf // .Warewulf
	Dhcp     DHCPConf     // .Dhcp
	Nfs      NFSConf      // .Nfs
	Ssh      SSHConf      // .Ssh (KeyTypes also selects the generated host keys)
	Tftp     TFTPConf     // .Tftp
	Paths    PathsConf    // .Paths
	Resolv   ResolvConf   // .Resolv: cluster-wide DNS defaults (wwboot extension)
}

// WarewulfConf mirrors the warewulf: section of warewulf.conf.
type WarewulfConf struct {
	Port              int
	Secure            bool
	UpdateInterval    int
	AutobuildOverlays bool
	Syslog            bool
}

// DHCPConf mirrors the dhcp: section of warewulf.conf.
type DHCPConf struct {
	Enabled     bool
	Template    string
	RangeStart  string
	RangeEnd    string
	SystemdName string
}

// NFSConf mirrors the nfs: section of warewulf.conf.
type NFSConf struct {
	Enabled     bool
	ExportPaths []NFSExport
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
	Enabled      bool
	TftpRoot     string
	IpxeBinaries map[string]string
}

// PathsConf mirrors the paths: section of warewulf.conf.
type PathsConf struct {
	Sysconfdir string // where relative Include paths start (default /etc)
	// Agent is the node agent binary (wwboot-agent, built from
	// ./cmd/wwboot-agent) on the server, which the wwclient overlay's
	// AgentBinary delivers to nodes (wwboot extension).
	Agent string
}

// ResolvConf holds DNS defaults for the resolv overlay.
type ResolvConf struct {
	Nameservers []string
	Search      []string
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
	BuildSource   string // overlay/path of the template
	Overlay       string // overlay name
	Ipaddr        string // server IPv4 address
	Ipaddr6       string // server IPv6 address
	Netmask       string // server netmask
	Network       string // server network address
	NetworkCIDR   string // server network in CIDR form
	Ipv6          bool   // Ipaddr6 is set
	Warewulf      WarewulfConf
	Dhcp          DHCPConf
	Nfs           NFSConf
	Ssh           SSHConf
	Tftp          TFTPConf
	Paths         PathsConf
	Resolv        ResolvConf
	AllNodes      []*Node // every node of the inventory, by name
	*Node                 // the node being rendered
	ThisNode      *Node   // the node being rendered
	Container     string  // ImageName, for old templates
}

// isServerField reports whether a TemplateData field does not depend on the
// node.
func isServerField(name string) bool {
	switch name {
	case "BuildHost", "BuildTime", "BuildTimeUnix", "BuildSource", "Overlay",
		"Ipaddr", "Ipaddr6", "Netmask", "Network", "NetworkCIDR", "Ipv6",
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
		Ipaddr6:       s.Ipaddr6,
		Netmask:       s.Netmask,
		Network:       s.Network,
		NetworkCIDR:   s.NetworkCIDR,
		Ipv6:          s.Ipaddr6 != "",
		Warewulf:      s.Warewulf,
		Dhcp:          s.Dhcp,
		Nfs:           s.Nfs,
		Ssh:           s.Ssh,
		Tftp:          s.Tftp,
		Paths:         s.Paths,
		Resolv:        s.Resolv,
		AllNodes:      all,
	}
	if n == nil {
		n = &Node{Kernel: &Kernel{}, Ipmi: &IPMI{}, Tags: map[string]string{}, NetDevs: map[string]*NetDev{}}
	}
	d.Node, d.ThisNode = n, n
	d.Id, d.Hostname, d.Container = n.Id, n.Id, n.ImageName
	return d
}

// normalize fills derived server fields.
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
	if len(s.Ssh.KeyTypes) == 0 {
		// Every type Debian's and EL's sshd load by default: none of the
		// image's own keys may be left in use.
		s.Ssh.KeyTypes = []string{"ed25519", "ecdsa", "rsa"}
	}
	if s.Ssh.AuthorizedKeys == "" {
		s.Ssh.AuthorizedKeys = "/root/.ssh/authorized_keys"
	}
	if s.Paths.Sysconfdir == "" {
		s.Paths.Sysconfdir = "/etc"
	}
	return s
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
			od := &Disk{WipeTable: Bool(d.WipeTable).Bool(), Partitions: map[string]*Partition{}}
			for label, p := range d.Partitions {
				if p == nil {
					continue
				}
				od.Partitions[label] = &Partition{Number: p.Number, SizeMiB: p.SizeMiB, StartMiB: p.StartMiB,
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
			out.FileSystems[dev] = &FileSystem{Format: f.Format, Path: f.Path, Label: f.Label, Uuid: f.UUID,
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
