package nodedb

import (
	"strings"

	"go.yaml.in/yaml/v3"
)

// Config is the whole inventory as Warewulf's nodes.conf stores it: profiles
// and nodes, each a map from name to record. Records are raw: what the file
// says, before profiles are merged.
type Config struct {
	// WWInternal is Warewulf's internal format marker, kept when present.
	WWInternal int `yaml:"WW_INTERNAL,omitempty" json:"WW_INTERNAL,omitempty"`
	// NodeProfiles are the named profiles nodes inherit from.
	NodeProfiles map[string]*Record `yaml:"nodeprofiles" json:"nodeprofiles"`
	// Nodes are the machines of the cluster, by name.
	Nodes map[string]*Record `yaml:"nodes" json:"nodes"`
}

// Record is one entry of nodeprofiles: or nodes: in nodes.conf. Profiles and
// nodes share the layout; Discoverable and AssetKey matter only on nodes.
// Scalars stay strings so that a value round-trips exactly as written.
type Record struct {
	// Profiles this record inherits from, in merge order.
	Profiles []string `yaml:"profiles,omitempty" json:"profiles,omitempty"`
	// Comment is free text.
	Comment string `yaml:"comment,omitempty" json:"comment,omitempty"`
	// ClusterName groups nodes into a (sub)cluster.
	ClusterName string `yaml:"cluster name,omitempty" json:"cluster name,omitempty"`
	// ImageName names the image the node boots. Warewulf before 4.6 called
	// it "container name"; that key is read as this field and written back
	// as "image name".
	ImageName string `yaml:"image name,omitempty" json:"image name,omitempty"`
	// ContainerName receives the legacy "container name" key while
	// decoding; the loader moves it into ImageName. Always empty afterwards.
	ContainerName string `yaml:"container name,omitempty" json:"-"`
	// Ipxe names the iPXE template (default "default").
	Ipxe string `yaml:"ipxe template,omitempty" json:"ipxe template,omitempty"`
	// RuntimeOverlay lists the overlays refreshed while the node runs.
	RuntimeOverlay []string `yaml:"runtime overlay,omitempty" json:"runtime overlay,omitempty"`
	// SystemOverlay lists the overlays applied once at boot.
	SystemOverlay []string `yaml:"system overlay,omitempty" json:"system overlay,omitempty"`
	// Kernel selects the kernel version and its command line.
	Kernel *Kernel `yaml:"kernel,omitempty" json:"kernel,omitempty"`
	// Init is the program the node runs as PID 1 once set up (/sbin/init).
	Init string `yaml:"init,omitempty" json:"init,omitempty"`
	// Root is the root file system type (initramfs, tmpfs).
	Root string `yaml:"root,omitempty" json:"root,omitempty"`
	// NetDevs are the network devices by logical name.
	NetDevs map[string]*NetDev `yaml:"network devices,omitempty" json:"network devices,omitempty"`
	// PrimaryNetDev names the primary network device; when empty the
	// alphabetically first one is primary.
	PrimaryNetDev string `yaml:"primary network,omitempty" json:"primary network,omitempty"`
	// Tags are free key/value pairs for templates.
	Tags map[string]string `yaml:"tags,omitempty" json:"tags,omitempty"`
	// Resources are free-form structured data for templates (fstab, say).
	Resources map[string]any `yaml:"resources,omitempty" json:"resources,omitempty"`
	// Ipmi is the node's BMC.
	Ipmi *IPMI `yaml:"ipmi,omitempty" json:"ipmi,omitempty"`
	// Disks to partition, by device path.
	Disks map[string]*Disk `yaml:"disks,omitempty" json:"disks,omitempty"`
	// FileSystems to create, by device path.
	FileSystems map[string]*FileSystem `yaml:"filesystems,omitempty" json:"filesystems,omitempty"`
	// Discoverable marks a node that may take the MAC of the next unknown
	// machine that asks to boot ("true"/"false").
	Discoverable string `yaml:"discoverable,omitempty" json:"discoverable,omitempty"`
	// AssetKey is the node's asset tag; when set, provisioning requests must
	// present it.
	AssetKey string `yaml:"asset key,omitempty" json:"asset key,omitempty"`
	// Extra holds keys wwboot does not know (written by another Warewulf
	// release or by hand). They are kept, and written back, as they were;
	// loading reports them (DB.Findings). Not merged, not given to templates.
	Extra map[string]any `yaml:",inline" json:"-"`
}

// Kernel selects a kernel and its command line.
type Kernel struct {
	// Version picks a kernel version from the image.
	Version string `yaml:"version,omitempty" json:"version,omitempty"`
	// Args are the kernel command-line arguments.
	Args []string `yaml:"args,omitempty" json:"args,omitempty"`
	// Extra holds keys wwboot does not know (written by another Warewulf
	// release or by hand). They are kept, and written back, as they were;
	// loading reports them (DB.Findings). Not merged, not given to templates.
	Extra map[string]any `yaml:",inline" json:"-"`
}

// UnmarshalYAML accepts args as a list (Warewulf 4.6+) or as one string of
// space-separated arguments (older files).
func (k *Kernel) UnmarshalYAML(n *yaml.Node) error {
	type plain Kernel
	var raw struct {
		Version string         `yaml:"version"`
		Args    yaml.Node      `yaml:"args"`
		Extra   map[string]any `yaml:",inline"`
	}
	if err := n.Decode(&raw); err != nil {
		return err
	}
	*k = Kernel{Version: raw.Version, Extra: raw.Extra}
	switch raw.Args.Kind {
	case 0:
	case yaml.ScalarNode:
		k.Args = splitArgs(raw.Args.Value)
	default:
		var p plain
		if err := n.Decode(&p); err != nil {
			return err
		}
		k.Args = p.Args
	}
	return nil
}

// Options is a comma-separated option string, such as a file system's
// mount options ("defaults,noatime"). nodes.conf may hold it as a string or
// as a list of options; a list reads as its entries joined with ",", so
// templates print "defaults,noatime" either way.
type Options string

// UnmarshalYAML accepts a string or a list of strings.
func (o *Options) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.SequenceNode {
		var list []string
		if err := n.Decode(&list); err != nil {
			return err
		}
		*o = Options(strings.Join(list, ","))
		return nil
	}
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	*o = Options(s)
	return nil
}

// NetDev is a network device of a node.
type NetDev struct {
	// Type is the device type (ethernet, infiniband, bond, vlan...).
	Type string `yaml:"type,omitempty" json:"type,omitempty"`
	// OnBoot says whether the device comes up at boot ("true"/"false").
	OnBoot string `yaml:"onboot,omitempty" json:"onboot,omitempty"`
	// Device is the kernel interface name (eth0, wwnet0).
	Device string `yaml:"device,omitempty" json:"device,omitempty"`
	// Hwaddr is the MAC address.
	Hwaddr string `yaml:"hwaddr,omitempty" json:"hwaddr,omitempty"`
	// Ipaddr is the IPv4 address.
	Ipaddr string `yaml:"ipaddr,omitempty" json:"ipaddr,omitempty"`
	// Netmask is the IPv4 netmask in dotted form.
	Netmask string `yaml:"netmask,omitempty" json:"netmask,omitempty"`
	// Gateway is the IPv4 default gateway.
	Gateway string `yaml:"gateway,omitempty" json:"gateway,omitempty"`
	// Ipaddr6 is the IPv6 address.
	Ipaddr6 string `yaml:"ipaddr6,omitempty" json:"ipaddr6,omitempty"`
	// Prefixlen6 is the IPv6 prefix length.
	Prefixlen6 string `yaml:"prefixlen6,omitempty" json:"prefixlen6,omitempty"`
	// Gateway6 is the IPv6 default gateway.
	Gateway6 string `yaml:"gateway6,omitempty" json:"gateway6,omitempty"`
	// MTU is the link MTU.
	MTU string `yaml:"mtu,omitempty" json:"mtu,omitempty"`
	// Tags are free key/value pairs for templates.
	Tags map[string]string `yaml:"tags,omitempty" json:"tags,omitempty"`
	// Extra holds keys wwboot does not know (written by another Warewulf
	// release or by hand). They are kept, and written back, as they were;
	// loading reports them (DB.Findings). Not merged, not given to templates.
	Extra map[string]any `yaml:",inline" json:"-"`
}

// IPMI describes a node's baseboard management controller.
type IPMI struct {
	// UserName to log in to the BMC.
	UserName string `yaml:"username,omitempty" json:"username,omitempty"`
	// Password to log in to the BMC.
	Password string `yaml:"password,omitempty" json:"password,omitempty"`
	// Ipaddr is the BMC's address.
	Ipaddr string `yaml:"ipaddr,omitempty" json:"ipaddr,omitempty"`
	// Gateway is the BMC's gateway.
	Gateway string `yaml:"gateway,omitempty" json:"gateway,omitempty"`
	// Netmask is the BMC's netmask.
	Netmask string `yaml:"netmask,omitempty" json:"netmask,omitempty"`
	// Port is the BMC's port.
	Port string `yaml:"port,omitempty" json:"port,omitempty"`
	// Interface is the ipmitool interface (lan, lanplus).
	Interface string `yaml:"interface,omitempty" json:"interface,omitempty"`
	// EscapeChar is the serial-over-LAN escape character.
	EscapeChar string `yaml:"escapechar,omitempty" json:"escapechar,omitempty"`
	// Write says whether the BMC is configured at boot ("true"/"false").
	Write string `yaml:"write,omitempty" json:"write,omitempty"`
	// Template names the BMC command template.
	Template string `yaml:"template,omitempty" json:"template,omitempty"`
	// Tags are free key/value pairs for templates.
	Tags map[string]string `yaml:"tags,omitempty" json:"tags,omitempty"`
	// Extra holds keys wwboot does not know (written by another Warewulf
	// release or by hand). They are kept, and written back, as they were;
	// loading reports them (DB.Findings). Not merged, not given to templates.
	Extra map[string]any `yaml:",inline" json:"-"`
}

// Disk describes a disk to partition.
type Disk struct {
	// WipeTable wipes the partition table first ("true"/"false").
	WipeTable string `yaml:"wipe_table,omitempty" json:"wipe_table,omitempty"`
	// Partitions by label.
	Partitions map[string]*Partition `yaml:"partitions,omitempty" json:"partitions,omitempty"`
	// Extra holds keys wwboot does not know (written by another Warewulf
	// release or by hand). They are kept, and written back, as they were;
	// loading reports them (DB.Findings). Not merged, not given to templates.
	Extra map[string]any `yaml:",inline" json:"-"`
}

// Partition describes one partition of a Disk.
type Partition struct {
	Number             string `yaml:"number,omitempty" json:"number,omitempty"`                             // partition number
	SizeMiB            string `yaml:"size_mib,omitempty" json:"size_mib,omitempty"`                         // size in MiB
	StartMiB           string `yaml:"start_mib,omitempty" json:"start_mib,omitempty"`                       // start in MiB
	TypeGUID           string `yaml:"type_guid,omitempty" json:"type_guid,omitempty"`                       // GPT type GUID
	GUID               string `yaml:"guid,omitempty" json:"guid,omitempty"`                                 // GPT partition GUID
	WipePartitionEntry string `yaml:"wipe_partition_entry,omitempty" json:"wipe_partition_entry,omitempty"` // "true"/"false"
	ShouldExist        string `yaml:"should_exist,omitempty" json:"should_exist,omitempty"`                 // "true"/"false"
	Resize             string `yaml:"resize,omitempty" json:"resize,omitempty"`                             // "true"/"false"
	// Extra holds keys wwboot does not know (written by another Warewulf
	// release or by hand). They are kept, and written back, as they were;
	// loading reports them (DB.Findings). Not merged, not given to templates.
	Extra map[string]any `yaml:",inline" json:"-"`
}

// FileSystem describes a file system to create on a device.
type FileSystem struct {
	Format         string   `yaml:"format,omitempty" json:"format,omitempty"`                   // ext4, xfs, swap...
	Path           string   `yaml:"path,omitempty" json:"path,omitempty"`                       // mount point
	WipeFileSystem string   `yaml:"wipe_filesystem,omitempty" json:"wipe_filesystem,omitempty"` // "true"/"false"
	Label          string   `yaml:"label,omitempty" json:"label,omitempty"`                     // file system label
	UUID           string   `yaml:"uuid,omitempty" json:"uuid,omitempty"`                       // file system UUID
	Options        []string `yaml:"options,omitempty" json:"options,omitempty"`                 // mkfs options
	MountOptions   Options  `yaml:"mount_options,omitempty" json:"mount_options,omitempty"`     // mount options, comma-separated
	// Extra holds keys wwboot does not know (written by another Warewulf
	// release or by hand). They are kept, and written back, as they were;
	// loading reports them (DB.Findings). Not merged, not given to templates.
	Extra map[string]any `yaml:",inline" json:"-"`
}

// Node is the effective node: its own record merged over its profiles, with
// derived values the boot path needs resolved once at load.
type Node struct {
	// ID is the node's name, its key under nodes:.
	ID string `yaml:"id" json:"id"`
	// Record holds the merged values. Profiles is the node's own list, as
	// Warewulf's MergeNode keeps it (negations applied); Chain has the
	// expansion.
	Record `yaml:",inline"`
	// Chain is the fully expanded profile chain, in merge order, negations
	// applied (profiles that do not exist included: merging skips them).
	Chain []string `yaml:"-" json:"-"`
	// Primary is the name of the primary network device ("" if none).
	Primary string `yaml:"-" json:"-"`
}

// PrimaryNetDevice returns the primary network device, or nil.
func (n *Node) PrimaryNetDevice() *NetDev {
	if n.Primary == "" {
		return nil
	}
	return n.NetDevs[n.Primary]
}
