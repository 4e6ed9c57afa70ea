package nodedb

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"

	"github.com/wwboot/wwboot/names"
)

// DB is an immutable, indexed snapshot of an inventory: every node merged
// with its profiles and validated, with O(1) lookups by name, hardware
// address and IP address. It is safe for concurrent use. Stores hand out a
// new DB when the inventory changes; a DB itself never changes.
type DB struct {
	cfg      *Config
	nodes    map[string]*Node
	names    []string
	byHW     map[string]*Node // key: string(net.HardwareAddr) bytes
	byIP     map[netip.Addr]*Node
	dupHW    map[string]bool // addresses two nodes claim: lookups fail with ErrAmbiguous
	dupIP    map[netip.Addr]bool
	findings []*Error
}

// New validates cfg, merges every node with its profiles and indexes the
// result. cfg must not be modified afterwards. What Warewulf 4.7 tolerates
// (see DB.Findings) does not fail New; it is recorded in the DB.
func New(cfg *Config) (*DB, error) {
	return build(normalize(cfg), "", nil, nil)
}

// build is New with a source file and its document, to locate errors, and
// the findings parsing made.
func build(cfg *Config, file string, doc *yaml.Node, parsed []*Error) (*DB, error) {
	db := &DB{
		cfg:      cfg,
		nodes:    make(map[string]*Node, len(cfg.Nodes)),
		byHW:     make(map[string]*Node, len(cfg.Nodes)),
		byIP:     make(map[netip.Addr]*Node, len(cfg.Nodes)),
		findings: slices.Clone(parsed),
	}
	var errs []error
	locErr := func(kind, name string, field []string, err error) *Error {
		return &Error{File: file, Line: locate(doc, kind, name, field...), Kind: kind, Name: name, Field: strings.Join(field, "."), Err: err}
	}
	fail := func(kind, name string, field []string, err error) {
		if len(errs) < maxErrors {
			errs = append(errs, locErr(kind, name, field, err))
		}
	}
	warn := func(kind, name string, field []string, err error) {
		db.findings = append(db.findings, locErr(kind, name, field, err))
	}
	for _, name := range sortedKeys(cfg.NodeProfiles) {
		checkName("profile", name, fail, warn)
		checkRecord("profile", name, cfg.NodeProfiles[name], fail, warn)
	}
	names := sortedKeys(cfg.Nodes)
	found := make([][]*Error, len(names)) // per node, so that nodes are checked on every core
	warned := make([][]*Error, len(names))
	forEach(len(names), func(i int) {
		name := names[i]
		f := func(kind, name string, field []string, err error) {
			found[i] = append(found[i], locErr(kind, name, field, err))
		}
		w := func(kind, name string, field []string, err error) {
			warned[i] = append(warned[i], locErr(kind, name, field, err))
		}
		checkName("node", name, f, w)
		checkRecord("node", name, cfg.Nodes[name], f, w)
	})
	for i := range found {
		for _, err := range found[i] {
			if len(errs) < maxErrors {
				errs = append(errs, err)
			}
		}
		db.findings = append(db.findings, warned[i]...)
	}
	checkChains(cfg, names, warn)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	chains := map[string]*Record{} // merged profile chains, shared by nodes with the same profiles
	for _, name := range names {
		rec := cfg.Nodes[name]
		key := strings.Join(rec.Profiles, "\x00")
		if _, ok := chains[key]; ok {
			continue
		}
		chain := chainOf(cfg.NodeProfiles, rec.Profiles)
		base := &Record{}
		for _, p := range chain {
			if prof := cfg.NodeProfiles[p]; prof != nil {
				mergeRecord(base, prof, false)
			}
		}
		base.Profiles = chain
		chains[key] = base
	}
	// Merge every node on every core; nodes share what they do not change.
	nodes := make([]*Node, len(names))
	forEach(len(names), func(i int) {
		rec := cfg.Nodes[names[i]]
		base := chains[strings.Join(rec.Profiles, "\x00")]
		n := &Node{ID: names[i], Record: *base, Chain: base.Profiles}
		n.Profiles = nil
		mergeRecord(&n.Record, rec, true)
		cleanLists(&n.Record) // the node's own profiles, as Warewulf's MergeNode keeps them
		n.Primary = primaryOf(&n.Record)
		for dev, nd := range n.NetDevs {
			if hw, err := ParseHW(nd.Hwaddr); err == nil && hw.String() != nd.Hwaddr {
				c := *nd // the device may be a profile's, shared: copy before changing
				c.Hwaddr = hw.String()
				n.NetDevs = maps.Clone(n.NetDevs)
				n.NetDevs[dev] = &c
			}
		}
		nodes[i] = n
	})
	for i, n := range nodes {
		if n.PrimaryNetDev != "" && n.NetDevs[n.PrimaryNetDev] == nil {
			warn("node", n.ID, []string{"primary network"}, fmt.Errorf("%q is not one of the node's network devices; %q is primary instead, as in Warewulf: name one of its devices or unset it", n.PrimaryNetDev, n.Primary))
		}
		db.index(n, warn)
		db.nodes[names[i]] = n
	}
	db.names = names
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return db, nil
}

// index adds n's hardware and IP addresses. An address two nodes share is
// reported through warn and marked ambiguous: lookups of it fail with
// ErrAmbiguous, so that neither node boots with the other's identity.
func (db *DB) index(n *Node, warn func(kind, name string, field []string, err error)) {
	for _, dev := range sortedKeys(n.NetDevs) {
		nd := n.NetDevs[dev]
		if nd.Hwaddr != "" {
			if hw, err := ParseHW(nd.Hwaddr); err == nil {
				keys := []net.HardwareAddr{hw}
				if g := ibGUID(hw); g != nil {
					keys = append(keys, g)
				}
				for _, k := range keys {
					if other, dup := db.byHW[string(k)]; dup && other != n {
						warn("node", n.ID, []string{"network devices", dev, "hwaddr"}, fmt.Errorf("%s is also the address of node %q: neither boots by this MAC until each MAC belongs to one node", k, other.ID))
						db.dupHW = setKey2(db.dupHW, string(k))
					} else {
						db.byHW[string(k)] = n
					}
				}
			}
		}
		if nd.Ipaddr != "" {
			if p, err := ParseIPv4(nd.Ipaddr); err == nil {
				if other, dup := db.byIP[p.Addr()]; dup && other != n {
					warn("node", n.ID, []string{"network devices", dev, "ipaddr"}, fmt.Errorf("%s is also the address of node %q: neither is found by this address until each node has its own", p.Addr(), other.ID))
					db.dupIP = setKey2(db.dupIP, p.Addr())
				} else {
					db.byIP[p.Addr()] = n
				}
			}
		}
	}
}

// primaryOf names the primary network device: the primary network field if
// it names a device, else the alphabetically first device (Warewulf's
// Node.updatePrimaryNetDev does the same when the field names no device).
func primaryOf(r *Record) string {
	if r.PrimaryNetDev != "" {
		if _, ok := r.NetDevs[r.PrimaryNetDev]; ok {
			return r.PrimaryNetDev
		}
	}
	if len(r.NetDevs) == 0 {
		return ""
	}
	return sortedKeys(r.NetDevs)[0]
}

// checkName rejects names that cannot be a host name or file name, and
// warns about the others that break the one naming rule (package names,
// Warewulf's image name rule): Warewulf loads them, so a file holding one
// loads, but an edit cannot add one (see refuseNew).
func checkName(kind, name string, fail, warn func(kind, name string, field []string, err error)) {
	if !pathSafe(name) || strings.HasPrefix(name, "-") || strings.HasPrefix(name, Negation) {
		fail(kind, name, nil, fmt.Errorf("%q is not a valid %s name: use letters, digits, '-', '_', '.' and ':'", name, kind))
		return
	}
	if err := names.Check(kind, name); err != nil {
		warn(kind, name, nil, err)
	}
}

// pathSafe reports whether s can be one element of a file name: templates
// name files after network device names, interface names and cluster names
// (file (print "wwboot-" $name)), so "a/b", "x/.." or ".." would put a file
// somewhere else in the overlay than its template says, or make it the
// template's own directory.
func pathSafe(s string) bool {
	if s == "" || s == "." || s == ".." {
		return false
	}
	for _, r := range s {
		if r == '/' || r == '\\' || r < 0x20 || r == 0x7f || r == ' ' {
			return false
		}
	}
	return true
}

// checkRecord validates the syntax of one raw record's values. What
// Warewulf 4.7 loads anyway (odd IPv6 values, node-only keys in a profile)
// goes to warn, the rest to fail.
func checkRecord(kind, name string, r *Record, fail, warn func(kind, name string, field []string, err error)) {
	if r.ClusterName != "" && !pathSafe(r.ClusterName) {
		fail(kind, name, []string{"cluster name"}, fmt.Errorf("%q is not a valid cluster name: templates use it in file names; use letters, digits, '-', '_' and '.' (not \".\" or \"..\")", r.ClusterName))
	}
	for _, dev := range sortedKeys(r.NetDevs) {
		if !pathSafe(dev) {
			fail(kind, name, []string{"network devices", dev}, fmt.Errorf("%q is not a valid network device name: templates use it in file names; use letters, digits, '-', '_' and '.' (not \".\" or \"..\"), like default or eth0", dev))
		}
		nd := r.NetDevs[dev]
		if nd == nil {
			continue
		}
		at := func(f string) []string { return []string{"network devices", dev, f} }
		if nd.Device != "" && !pathSafe(nd.Device) {
			fail(kind, name, at("device"), fmt.Errorf("%q is not a valid interface name: no '/', blanks or control characters, not \".\" or \"..\" (the kernel refuses those too)", nd.Device))
		}
		if nd.Hwaddr != "" {
			if _, err := ParseHW(nd.Hwaddr); err != nil {
				fail(kind, name, at("hwaddr"), err)
			}
		}
		var ip4 netip.Prefix
		if nd.Ipaddr != "" {
			var err error
			if ip4, err = ParseIPv4(nd.Ipaddr); err != nil {
				fail(kind, name, at("ipaddr"), err)
			}
		}
		if nd.Netmask != "" {
			bits, err := ParseNetmask(nd.Netmask)
			switch {
			case err != nil:
				fail(kind, name, at("netmask"), err)
			case ip4.IsValid() && ip4.Bits() >= 0 && ip4.Bits() != bits:
				fail(kind, name, at("netmask"), fmt.Errorf("%s (/%d) conflicts with ipaddr %s: make them agree or drop the /prefix from ipaddr", nd.Netmask, bits, nd.Ipaddr))
			}
		}
		if nd.Gateway != "" {
			if _, err := ParseIPv4(nd.Gateway); err != nil {
				fail(kind, name, at("gateway"), err)
			}
		}
		var ip6 netip.Prefix
		if nd.Ipaddr6 != "" {
			var err error
			if ip6, err = ParseIPv6(nd.Ipaddr6); err != nil {
				warn(kind, name, at("ipaddr6"), fmt.Errorf("%w; Warewulf loads it, templates see no IPv6 address", err))
			}
		}
		if nd.Prefixlen6 != "" {
			bits, err := atoiRange(nd.Prefixlen6, 0, 128)
			switch {
			case err != nil:
				warn(kind, name, at("prefixlen6"), err)
			case ip6.IsValid() && ip6.Bits() >= 0 && ip6.Bits() != bits:
				warn(kind, name, at("prefixlen6"), fmt.Errorf("/%d conflicts with ipaddr6 %s: make them agree", bits, nd.Ipaddr6))
			}
		}
		if nd.Gateway6 != "" {
			if _, err := ParseIPv6(nd.Gateway6); err != nil {
				warn(kind, name, at("gateway6"), fmt.Errorf("%w; Warewulf loads it, templates see no IPv6 gateway", err))
			}
		}
		if nd.MTU != "" {
			if _, err := atoiRange(nd.MTU, 68, 65535); err != nil {
				fail(kind, name, at("mtu"), err)
			}
		}
		checkBool(kind, name, at("onboot"), nd.OnBoot, fail)
	}
	checkBool(kind, name, []string{"discoverable"}, r.Discoverable, fail)
	if kind == "profile" {
		for field, v := range map[string]string{"discoverable": r.Discoverable, "asset key": r.AssetKey} {
			if v != "" {
				warn(kind, name, []string{field}, fmt.Errorf("only a node has this key: Warewulf ignores it in a profile, and so does wwboot; set it on the nodes"))
			}
		}
	}
	if r.Ipmi != nil {
		for f, v := range map[string]string{"ipaddr": r.Ipmi.Ipaddr, "gateway": r.Ipmi.Gateway} {
			if v != "" {
				if _, err := ParseIPv4(v); err != nil {
					fail(kind, name, []string{"ipmi", f}, err)
				}
			}
		}
		if r.Ipmi.Netmask != "" {
			if _, err := ParseNetmask(r.Ipmi.Netmask); err != nil {
				fail(kind, name, []string{"ipmi", "netmask"}, err)
			}
		}
		checkBool(kind, name, []string{"ipmi", "write"}, r.Ipmi.Write, fail)
	}
}

func checkBool(kind, name string, field []string, v string, fail func(kind, name string, field []string, err error)) {
	if v == "" {
		return
	}
	if _, ok := ParseBool(v); !ok {
		fail(kind, name, field, fmt.Errorf("%q is not a boolean: use true or false", v))
	}
}

// ParseBool reads the booleans nodes.conf uses (true/false, yes/no, 1/0,
// on/off, any case). ok is false for anything else.
func ParseBool(s string) (v, ok bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "yes", "y", "1", "on":
		return true, true
	case "false", "no", "n", "0", "off":
		return false, true
	}
	return false, false
}

// Config returns the raw inventory the snapshot was built from. Callers
// must not modify it; stores' Update hands out a private copy to change.
func (db *DB) Config() *Config { return db.cfg }

// Len returns the number of nodes.
func (db *DB) Len() int { return len(db.names) }

// Names returns the node names in sorted order. The slice is shared: do not modify it.
func (db *DB) Names() []string { return db.names }

// Nodes returns every effective node in name order.
func (db *DB) Nodes() []*Node {
	out := make([]*Node, len(db.names))
	for i, name := range db.names {
		out[i] = db.nodes[name]
	}
	return out
}

// Node returns the effective node called name.
func (db *DB) Node(name string) (*Node, error) {
	if n, ok := db.nodes[name]; ok {
		return n, nil
	}
	return nil, fmt.Errorf("node %q: %w", name, ErrNotFound)
}

// NodeByHW returns the node with a network device of that hardware address.
// It does not allocate when the node exists. An address that several nodes
// claim fails with ErrAmbiguous (and not ErrNotFound, so that discovery does
// not hand it to a third node): neither node boots until the inventory says
// which one owns it, since booting either could give a machine another
// node's name, addresses and host keys.
func (db *DB) NodeByHW(_ context.Context, hw net.HardwareAddr) (*Node, error) {
	keys := []net.HardwareAddr{hw}
	if g := ibGUID(hw); g != nil {
		keys = append(keys, g) // the queue pair number changes each boot
	}
	for _, k := range keys {
		if db.dupHW[string(k)] {
			return nil, fmt.Errorf("hwaddr %s: %w", hw, ErrAmbiguous)
		}
		if n, ok := db.byHW[string(k)]; ok {
			return n, nil
		}
	}
	return nil, fmt.Errorf("hwaddr %s: %w", hw, ErrNotFound)
}

// ibGUID returns the port GUID (last 8 bytes) of a 20-byte InfiniBand
// hardware address, or nil for any other length. IPoIB nodes are indexed
// and found by it as well: the first 4 bytes hold a queue pair number that
// changes from boot to boot, and DHCP (RFC 4390) knows a client only by its
// GUID. A 20-byte hwaddr recorded as the client identifier sites send
// (ff:00:00:00:00:00:02:00:00:02:c9:00 and the GUID) ends in the GUID too.
func ibGUID(hw net.HardwareAddr) net.HardwareAddr {
	if len(hw) != 20 {
		return nil
	}
	return hw[12:]
}

// NodeByIP returns the node with a network device of that IPv4 address. An
// address several nodes claim fails with ErrAmbiguous.
func (db *DB) NodeByIP(_ context.Context, ip netip.Addr) (*Node, error) {
	if db.dupIP[ip.Unmap()] {
		return nil, fmt.Errorf("ipaddr %s: %w", ip, ErrAmbiguous)
	}
	if n, ok := db.byIP[ip.Unmap()]; ok {
		return n, nil
	}
	return nil, fmt.Errorf("ipaddr %s: %w", ip, ErrNotFound)
}

// NodeByName returns the effective node called name.
func (db *DB) NodeByName(_ context.Context, name string) (*Node, error) { return db.Node(name) }

// Profile returns the raw profile record called name, or ErrNotFound.
func (db *DB) Profile(name string) (*Record, error) {
	if p, ok := db.cfg.NodeProfiles[name]; ok {
		return p, nil
	}
	return nil, fmt.Errorf("profile %q: %w", name, ErrNotFound)
}

// ProfileNames returns the profile names in sorted order.
func (db *DB) ProfileNames() []string { return sortedKeys(db.cfg.NodeProfiles) }

// forEach calls fn(0) ... fn(n-1) on every core; calls must be independent.
func forEach(n int, fn func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), max(1, n/512))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				fn(i)
			}
		}()
	}
	wg.Wait()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
