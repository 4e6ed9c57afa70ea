package provision

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/wwboot/wwboot/dhcp"
	"github.com/wwboot/wwboot/image"
	"github.com/wwboot/wwboot/ipxe"
	"github.com/wwboot/wwboot/nodedb"
	"github.com/wwboot/wwboot/overlay"
)

// Inventory is what the boot path needs from an inventory: the node a
// hardware address belongs to. nodedb's stores and snapshots satisfy it,
// and so can a scheduler's own database. NodeByHW returns an error wrapping
// nodedb.ErrNotFound for an address no node has; any other error is a
// failure of the inventory (the client gets 503).
//
// An Inventory that also implements Snapshotter gives overlay templates the
// whole inventory (.AllNodes, used by the built-in hosts overlay) and lets the
// handler drop its cached iPXE scripts exactly when the inventory changes.
type Inventory interface {
	NodeByHW(ctx context.Context, hw net.HardwareAddr) (*nodedb.Node, error)
}

// Snapshotter is an optional capability of an Inventory: an immutable
// snapshot of the whole inventory. *nodedb.FileStore, *nodedb.MemoryStore and
// *nodedb.DB (through DBInventory) have it. The handler looks nodes up in the
// snapshot, so one request sees one consistent inventory.
type Snapshotter interface {
	Snapshot(ctx context.Context) (*nodedb.DB, error)
}

// InventoryFunc adapts a function to Inventory, the way http.HandlerFunc
// adapts one to http.Handler. It suits a program that derives nodes from
// the MAC alone (one image for every machine).
type InventoryFunc func(ctx context.Context, hw net.HardwareAddr) (*nodedb.Node, error)

// NodeByHW calls f(ctx, hw).
func (f InventoryFunc) NodeByHW(ctx context.Context, hw net.HardwareAddr) (*nodedb.Node, error) {
	return f(ctx, hw)
}

// DBInventory serves a fixed inventory snapshot; it implements Inventory and
// Snapshotter.
type DBInventory struct{ DB *nodedb.DB }

// NodeByHW looks hw up in the snapshot.
func (d DBInventory) NodeByHW(ctx context.Context, hw net.HardwareAddr) (*nodedb.Node, error) {
	return d.DB.NodeByHW(ctx, hw)
}

// Snapshot returns the snapshot.
func (d DBInventory) Snapshot(context.Context) (*nodedb.DB, error) { return d.DB, nil }

// Images finds a node's image by name: its compressed archive, its kernel
// and their hashes. *image.Store satisfies it. Lookup returns an error
// wrapping image.ErrNotFound for an unknown name. It runs once per image or
// kernel request and must not read metadata from disk every time.
//
// Meta.Path and Meta.KernelPath must name files that do not change once
// published (a new image gets new files), since Meta.SHA256 and
// Meta.KernelSHA256 are sent as their ETags.
type Images interface {
	Lookup(ctx context.Context, name string) (image.Meta, error)
}

// Overlays renders a node's system or runtime overlay archive.
// *overlay.Renderer satisfies it (and caches the archives). db is the
// inventory snapshot node comes from, nil when the Inventory is not a
// Snapshotter.
type Overlays interface {
	Render(ctx context.Context, db *nodedb.DB, node *nodedb.Node, kind overlay.Kind) (*overlay.Archive, error)
}

// Scripts renders iPXE scripts from named templates. *ipxe.Set satisfies it.
// Script may cache its result in d (the handler hands each Data to Script
// only once it is complete and never changes it afterwards).
type Scripts interface {
	Script(name string, d *ipxe.Data) ([]byte, error)
	Render(w io.Writer, name string, d *ipxe.Data) error
}

// Reloader is an optional capability of Scripts (and of anything else the
// handler holds): re-read templates from disk. Handler.Reload calls it.
type Reloader interface {
	Reload() error
}

// DHCPHosts adapts an Inventory to dhcp.Hosts: the node that has a network
// device with the requested MAC gets that device's address, netmask, gateway
// and MTU, and the node's name as host name. A node without an IPv4 address
// on that device is unknown to DHCP (dhcp.ErrUnknownHost), so a pool or
// another server can answer it. When inv is a Snapshotter or a nodedb.Lookup
// (all of nodedb's stores are both), the result also implements
// dhcp.Reserver, so a dynamic pool never hands out a node's address.
func DHCPHosts(inv Inventory) dhcp.Hosts {
	h := &dhcpHosts{inv: inv}
	if s, ok := inv.(Snapshotter); ok {
		return &dhcpReserver{dhcpHosts: h, lookup: snapshotLookup{s}}
	}
	if l, ok := inv.(nodedb.Lookup); ok {
		return &dhcpReserver{dhcpHosts: h, lookup: l}
	}
	return h
}

// snapshotLookup finds nodes by address in the current snapshot.
type snapshotLookup struct{ s Snapshotter }

func (l snapshotLookup) NodeByIP(ctx context.Context, ip netip.Addr) (*nodedb.Node, error) {
	db, err := l.s.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	return db.NodeByIP(ctx, ip)
}

type dhcpHosts struct{ inv Inventory }

type dhcpReserver struct {
	*dhcpHosts
	lookup interface {
		NodeByIP(ctx context.Context, ip netip.Addr) (*nodedb.Node, error)
	}
}

// Reserved reports whether a node in the inventory has addr (also when
// several nodes claim it: nodedb.ErrAmbiguous).
func (r *dhcpReserver) Reserved(addr netip.Addr) bool {
	n, err := r.lookup.NodeByIP(context.Background(), addr)
	return err == nil && n != nil || errors.Is(err, nodedb.ErrAmbiguous)
}

// HostByHW implements dhcp.Hosts.
func (h *dhcpHosts) HostByHW(ctx context.Context, mac net.HardwareAddr) (dhcp.Host, error) {
	n, err := h.inv.NodeByHW(ctx, mac)
	if errors.Is(err, nodedb.ErrNotFound) {
		return dhcp.Host{}, fmt.Errorf("%s: %w", mac, dhcp.ErrUnknownHost)
	}
	if err != nil {
		return dhcp.Host{}, err
	}
	nd := netDevByHW(n, mac)
	if nd == nil {
		return dhcp.Host{}, fmt.Errorf("node %s has no network device with hwaddr %s: %w", n.ID, mac, dhcp.ErrUnknownHost)
	}
	p, err := nodedb.ParseIPv4(nd.Ipaddr)
	if err != nil || !p.Addr().IsValid() {
		return dhcp.Host{}, fmt.Errorf("node %s device %s has no IPv4 address (set one with wwboot node set %s --ipaddr IP): %w",
			n.ID, mac, n.ID, dhcp.ErrUnknownHost)
	}
	host := dhcp.Host{Hostname: n.ID, Addr: p.Addr()}
	switch {
	case nd.Netmask != "":
		if bits, err := nodedb.ParseNetmask(nd.Netmask); err == nil {
			host.Netmask = net.CIDRMask(bits, 32)
		}
	case p.Bits() < 32:
		host.Netmask = net.CIDRMask(p.Bits(), 32)
	}
	if nd.Gateway != "" {
		if gw, err := nodedb.ParseIPv4(nd.Gateway); err == nil {
			host.Gateway = gw.Addr()
		}
	}
	if nd.MTU != "" {
		if mtu, err := strconv.ParseUint(nd.MTU, 10, 16); err == nil {
			host.MTU = uint16(mtu)
		}
	}
	// Name servers and domain come from tags, as Warewulf's network
	// templates read them: DNS, DNS1, DNS2... on the device or the node,
	// and "domain".
	for _, tags := range []map[string]string{nd.Tags, n.Tags} {
		for _, k := range []string{"DNS", "DNS1", "DNS2", "DNS3"} {
			if a, err := netip.ParseAddr(strings.TrimSpace(tags[k])); err == nil && a.Is4() && !slices.Contains(host.DNS, a) {
				host.DNS = append(host.DNS, a)
			}
		}
		if host.Domain == "" {
			host.Domain = strings.TrimSpace(tags["domain"])
		}
	}
	return host, nil
}

// netDevByHW returns n's network device whose hwaddr is mac, or nil.
func netDevByHW(n *nodedb.Node, mac net.HardwareAddr) *nodedb.NetDev {
	for _, nd := range n.NetDevs {
		if nd == nil || nd.Hwaddr == "" {
			continue
		}
		hw, err := nodedb.ParseHW(nd.Hwaddr)
		if err == nil && (string(hw) == string(mac) || sameIBPort(hw, mac)) {
			return nd
		}
	}
	return nil
}

// sameIBPort reports whether two InfiniBand addresses (20-byte IPoIB
// addresses or 8-byte GUIDs, at least one of them 20 bytes) name the same
// port: the same GUID in their last 8 bytes (nodedb finds nodes the same way).
func sameIBPort(a, b net.HardwareAddr) bool {
	if (len(a) != 20 && len(a) != 8) || (len(b) != 20 && len(b) != 8) || len(a)+len(b) < 28 {
		return false
	}
	return string(a[len(a)-8:]) == string(b[len(b)-8:])
}

// nodeAddrs returns the IPv4 and IPv6 addresses of every network device of n.
func nodeAddrs(n *nodedb.Node) []netip.Addr {
	var out []netip.Addr
	for _, nd := range n.NetDevs {
		if nd == nil {
			continue
		}
		if p, err := nodedb.ParseIPv4(nd.Ipaddr); err == nil && p.Addr().IsValid() {
			out = append(out, p.Addr())
		}
		if p, err := nodedb.ParseIPv6(nd.Ipaddr6); err == nil && p.Addr().IsValid() {
			out = append(out, p.Addr())
		}
	}
	return out
}

// ParseMAC reads the MAC of a provisioning URL: aa:bb:cc:dd:ee:ff,
// aa-bb-cc-dd-ee-ff (iPXE's ${mac:hexhyp}) in any case, or another form
// nodedb.ParseHW accepts. It refuses anything longer than an InfiniBand
// address written out.
func ParseMAC(s string) (net.HardwareAddr, error) {
	if len(s) == 0 || len(s) > 64 {
		return nil, fmt.Errorf("hardware address %q: write it as aa:bb:cc:dd:ee:ff or aa-bb-cc-dd-ee-ff", truncate(s, 64))
	}
	hw, err := nodedb.ParseHW(s)
	if err != nil {
		return nil, fmt.Errorf("hardware address %q: %w", truncate(s, 64), err)
	}
	return hw, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// remoteAddr parses r.RemoteAddr.
func remoteAddr(r *http.Request) netip.AddrPort {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// hostPort splits a net.Addr into a URL host (IPv6 bracketed) and port.
func hostPort(a net.Addr) (host, port string, ok bool) {
	if a == nil {
		return "", "", false
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return "", "", false
	}
	ip := ap.Addr().Unmap()
	host = ip.WithZone("").String()
	return host, strconv.Itoa(int(ap.Port())), true
}

// joinHostPort is net.JoinHostPort without the allocation for IPv4.
func joinHostPort(host, port string) string {
	if strings.IndexByte(host, ':') >= 0 {
		return "[" + host + "]:" + port
	}
	return host + ":" + port
}
