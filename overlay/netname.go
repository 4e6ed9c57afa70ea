package overlay

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/wwboot/wwboot/nodedb"
)

// NetName is how one of a node's network devices is found and named on the
// node: the NIC whose hardware address is Hwaddr gets the interface name
// Name, whatever the kernel called it. The netname overlays (udev.netname,
// systemd.netname) rename it; the network overlays (ifupdown,
// systemd-networkd, NetworkManager) configure it by that name or by Hwaddr.
type NetName struct {
	NetDev string // the device's logical name in the inventory ("default")
	Name   string // interface name: the device's "device" field, else derived (see Node.NetNames)
	Hwaddr string // canonical lower-case hardware address; "" when unset or unparsable
	Ether  bool   // Hwaddr is a 6-byte Ethernet MAC (else an InfiniBand GUID or 20-byte address)
	Type   string // device type, lower case, "ethernet" when unset
}

// ValidIfName reports whether s can be a Linux interface name that is also
// safe to write into udev rules, .link files and ifupdown stanzas: 1 to 15
// bytes (IFNAMSIZ-1) of ASCII letters, digits, '-', '_' and '.', not
// starting with '-' or '.', and none of the names the kernel or tools
// reserve ("lo" aside, which is the loopback device: "all" and "default"
// collide with /proc/sys/net/ipv*/conf/{all,default}, "bonding_masters"
// with the bonding driver's sysfs file).
func ValidIfName(s string) bool {
	if s == "" || len(s) > 15 || s[0] == '-' || s[0] == '.' {
		return false
	}
	switch s {
	case "all", "default", "bonding_masters", "lo":
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// derivedIfName is the interface name of a device without a "device" field:
// its logical name when that is a valid interface name, else "ww" and the
// name's safe characters (the "default" device becomes "wwdefault"), with a
// short hash of the name appended when characters were dropped or the
// result would be too long. It depends on the logical name only, so a
// device has the same interface name on every node of a cluster.
func derivedIfName(netdev string) string {
	if ValidIfName(netdev) {
		return netdev
	}
	var b strings.Builder
	for i := 0; i < len(netdev); i++ {
		c := netdev[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
			b.WriteByte(c)
		}
	}
	safe := b.String()
	if name := "ww" + safe; safe == netdev && ValidIfName(name) {
		return name
	}
	sum := sha256.Sum256([]byte(netdev))
	if len(safe) > 8 {
		safe = safe[:8]
	}
	return "ww" + safe + hex.EncodeToString(sum[:])[:5]
}

// NetNames returns how each of the node's network devices is found and
// named, in logical-name order. A device with a "device" field keeps it;
// one without gets its logical name when that is a valid interface name
// (ValidIfName) no other device has, else derivedIfName of it, or, when
// another device of the node already has that name, a hashed variant. The
// error names the node and device whose "device" field is not a valid
// interface name (ValidIfName).
func (n *Node) NetNames() ([]NetName, error) {
	names := make([]string, 0, len(n.NetDevs))
	for name, nd := range n.NetDevs {
		if nd != nil {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	taken := map[string]string{}
	for _, name := range names {
		if dev := n.NetDevs[name].Device; dev != "" {
			if !ValidIfName(dev) {
				return nil, fmt.Errorf("node %s, network device %s: device %q is not a valid interface name: use 1 to 15 letters, digits, '-', '_' or '.' (not all, default or lo)", n.Id, name, dev)
			}
			if other, dup := taken[dev]; dup {
				return nil, fmt.Errorf("node %s, network devices %s and %s: both have device %q: give each its own", n.Id, other, name, dev)
			}
			taken[dev] = name
		}
	}
	// Logical names that are interface names themselves come next, then
	// the derived ones, so that a device named "wwdefault" keeps its name
	// beside one named "default".
	for _, name := range names {
		if n.NetDevs[name].Device == "" && ValidIfName(name) && taken[name] == "" {
			taken[name] = name
		}
	}
	out := make([]NetName, 0, len(names))
	for _, name := range names {
		nd := n.NetDevs[name]
		nn := NetName{NetDev: name, Name: nd.Device, Type: strings.ToLower(nd.Type)}
		if nn.Type == "" {
			nn.Type = "ethernet"
		}
		if hw, err := nodedb.ParseHW(nd.Hwaddr); err == nil {
			nn.Hwaddr, nn.Ether = hw.String(), len(hw) == 6
		}
		if nn.Name == "" && taken[name] == name {
			nn.Name = name
		}
		if nn.Name == "" {
			nn.Name = derivedIfName(name)
			for i := 0; taken[nn.Name] != ""; i++ {
				nn.Name = derivedIfName(name + "\x00" + strconv.Itoa(i))
			}
			taken[nn.Name] = name
		}
		out = append(out, nn)
	}
	return out, nil
}

// IfName returns the interface name of the node's network device netdev
// (see NetNames). Templates: {{ $.IfName $name }}.
func (n *Node) IfName(netdev string) (string, error) {
	all, err := n.NetNames()
	if err != nil {
		return "", err
	}
	for _, nn := range all {
		if nn.NetDev == netdev {
			return nn.Name, nil
		}
	}
	return "", fmt.Errorf("node %s: no network device %q", n.Id, netdev)
}

// dnsTagKeys returns the DNS tag keys of tags in order DNS tag keys: DNS first, then DNS1, DNS2... by number
// (so DNS10 comes after DNS9).
func dnsTagKeys(tags map[string]string) []string {
	var keys []string
	for k := range tags {
		if k == "DNS" {
			keys = append(keys, k)
			continue
		}
		if rest, ok := strings.CutPrefix(k, "DNS"); ok {
			if i, err := strconv.Atoi(rest); err == nil && i >= 0 && rest[0] != '+' && rest[0] != '-' {
				keys = append(keys, k)
			}
		}
	}
	num := func(k string) int { i, _ := strconv.Atoi(strings.TrimPrefix(k, "DNS")); return i }
	sort.Slice(keys, func(i, j int) bool {
		if keys[i] == "DNS" || keys[j] == "DNS" {
			return keys[i] == "DNS" && keys[j] != "DNS"
		}
		return num(keys[i]) < num(keys[j])
	})
	return keys
}

// NameServers returns the node's name servers from the inventory, as the
// DHCP server hands them out and Warewulf's network templates read them:
// the tags DNS, DNS1, DNS2... (in that order) of the primary network
// device, else of the node; a tag may list several, separated by spaces,
// commas or semicolons. A tag holding anything but IP addresses is ignored
// as a whole, so a tag cannot inject lines into resolv.conf. Empty when none is set;
// the resolv overlay then falls back to wwboot.conf (.Resolv.Nameservers).
func (n *Node) NameServers() []string {
	var out []string
	for _, tags := range n.dnsTagSets() {
		for _, k := range dnsTagKeys(tags) {
			var addrs []string
			for _, f := range listFields(tags[k]) {
				a, err := netip.ParseAddr(f)
				if err != nil {
					addrs = nil
					break
				}
				addrs = append(addrs, a.String())
			}
			for _, a := range addrs {
				if !slices.Contains(out, a) {
					out = append(out, a)
				}
			}
		}
		if len(out) > 0 {
			return out
		}
	}
	return out
}

// SearchDomains returns the node's DNS search list from the inventory: the
// "domain" tag (the DHCP domain name, option 15) first, then the names of
// the DNSSEARCH tag (separated by spaces, commas or semicolons), each read
// from the primary network device, else from the node. A tag holding
// anything but DNS names is ignored as a whole. Empty when none is set.
func (n *Node) SearchDomains() []string {
	var out []string
	for _, key := range []string{"domain", "DNSSEARCH"} {
		for _, tags := range n.dnsTagSets() {
			v := strings.TrimSpace(tags[key])
			if v == "" {
				continue
			}
			var names []string
			for _, f := range listFields(v) {
				if f = strings.TrimSuffix(f, "."); !validDomain(f) {
					names = nil
					break
				}
				names = append(names, f)
			}
			for _, f := range names {
				if !slices.Contains(out, f) {
					out = append(out, f)
				}
			}
			break
		}
	}
	return out
}

// listFields splits a tag's list on spaces, tabs, commas and semicolons
// (a newline is not a separator: it makes the value invalid).
func listFields(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == ';' || r == '\t' })
}

// dnsTagSets is where DNS settings are looked up: the primary device's
// tags, then the node's.
func (n *Node) dnsTagSets() []map[string]string {
	var sets []map[string]string
	if nd := n.NetDevs[n.PrimaryNetDev]; nd != nil {
		sets = append(sets, nd.Tags)
	}
	return append(sets, n.Tags)
}

// validDomain reports whether s is a DNS name: dot-separated labels of 1
// to 63 letters, digits, '-' and '_', at most 253 bytes.
func validDomain(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
