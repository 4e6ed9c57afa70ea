package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/wwboot/wwboot/nodedb"
	"go.yaml.in/yaml/v3"
)

// openInventory opens ROOT/nodes.conf.
func (a *app) openInventory(ctx context.Context) (*nodedb.FileStore, error) {
	return nodedb.Open(ctx, a.path("nodes.conf"), nodedb.WithLogger(a.log))
}

// recordFlags are the settings `node add|set` and `profile add|set` share,
// shaped like wwctl's.
type recordFlags struct {
	profiles, kernelArgs, systemOverlays, runtimeOverlays []string
	image, comment, cluster, ipxe, init, root, primary    string
	tagAdd                                                []string
	tagDel                                                []string
	discoverable                                          bool
	assetKey                                              string
	netdev                                                string
	nd                                                    nodedb.NetDev
	ipmi                                                  nodedb.IPMI
}

// ipmiFlags maps wwctl's --ipmi* flag names (Warewulf 4.7's IpmiConf lopt
// tags) to the ipmi: field each sets, for bind and apply.
func ipmiFlags(m *nodedb.IPMI) []struct {
	name, usage string
	dst         *string
} {
	return []struct {
		name, usage string
		dst         *string
	}{
		{"ipmiaddr", "BMC address (ipmi: ipaddr), for wwboot power and node console", &m.Ipaddr},
		{"ipminetmask", "BMC netmask (ipmi: netmask)", &m.Netmask},
		{"ipmigateway", "BMC gateway (ipmi: gateway)", &m.Gateway},
		{"ipmiport", "BMC port (ipmi: port; default 623 for IPMI)", &m.Port},
		{"ipmiuser", "BMC user name (ipmi: username)", &m.UserName},
		{"ipmipass", "BMC password (ipmi: password)", &m.Password},
		{"ipmiinterface", "IPMI interface: lan or lanplus (default); https or http for Redfish (ipmi: interface)", &m.Interface},
		{"ipmiescapechar", "serial-over-LAN escape character (ipmi: escapechar; default ~)", &m.EscapeChar},
		{"ipmiwrite", "configure the BMC at boot: true/false (ipmi: write)", &m.Write},
		{"ipmitemplate", "BMC driver: ipmitool.tmpl (IPMI, default) or redfish (ipmi: template)", &m.Template},
	}
}

func (f *recordFlags) bind(fs *pflag.FlagSet, node bool) {
	fs.StringSliceVarP(&f.profiles, "profile", "P", nil, "profiles, in merge order (comma separated; replaces the list)")
	fs.StringVarP(&f.image, "image", "C", "", "image name")
	fs.StringVar(&f.comment, "comment", "", "free-text comment")
	fs.StringVarP(&f.cluster, "cluster", "c", "", "cluster name")
	fs.StringVar(&f.ipxe, "ipxe", "", "iPXE template name")
	fs.StringVarP(&f.init, "init", "i", "", "init program the node runs (/sbin/init)")
	fs.StringVar(&f.root, "root-fs", "", "root file system type (initramfs, tmpfs)")
	fs.StringSliceVarP(&f.kernelArgs, "kernelargs", "A", nil, "kernel arguments (comma separated; replaces the list; ~x removes an inherited x)")
	fs.StringSliceVarP(&f.systemOverlays, "system-overlays", "O", nil, "system overlays (comma separated; replaces the list)")
	fs.StringSliceVarP(&f.runtimeOverlays, "runtime-overlays", "R", nil, "runtime overlays (comma separated; replaces the list)")
	fs.StringSliceVar(&f.tagAdd, "tagadd", nil, "add tags KEY=VALUE (repeatable)")
	fs.StringSliceVar(&f.tagDel, "tagdel", nil, "delete tags by KEY (repeatable)")
	fs.StringVarP(&f.primary, "primarynet", "p", "", "primary network device")
	fs.StringVar(&f.netdev, "netdev", "default", "network device the --hwaddr, --ipaddr... flags set")
	fs.StringVarP(&f.nd.Hwaddr, "hwaddr", "H", "", "MAC address of --netdev")
	fs.StringVarP(&f.nd.Ipaddr, "ipaddr", "I", "", "IPv4 address of --netdev")
	fs.StringVarP(&f.nd.Netmask, "netmask", "M", "", "IPv4 netmask of --netdev")
	fs.StringVarP(&f.nd.Gateway, "gateway", "G", "", "IPv4 gateway of --netdev")
	fs.StringVar(&f.nd.Ipaddr6, "ipaddr6", "", "IPv6 address of --netdev")
	fs.StringVar(&f.nd.Prefixlen6, "prefixlen6", "", "IPv6 prefix length of --netdev")
	fs.StringVar(&f.nd.Gateway6, "gateway6", "", "IPv6 gateway of --netdev")
	fs.StringVarP(&f.nd.Device, "device", "N", "", "kernel interface name of --netdev (eth0)")
	fs.StringVar(&f.nd.MTU, "mtu", "", "MTU of --netdev")
	fs.StringVarP(&f.nd.Type, "type", "T", "", "type of --netdev (ethernet, infiniband)")
	fs.StringVar(&f.nd.OnBoot, "onboot", "", "bring --netdev up at boot (true/false)")
	for _, fl := range ipmiFlags(&f.ipmi) {
		fs.StringVar(fl.dst, fl.name, "", fl.usage)
	}
	if node {
		fs.BoolVar(&f.discoverable, "discoverable", false, "let this node take the MAC of the next unknown machine that boots")
		fs.StringVar(&f.assetKey, "asset", "", "asset key the node must present")
	}
}

// apply sets on r every setting whose flag was given.
func (f *recordFlags) apply(fs *pflag.FlagSet, r *nodedb.Record) error {
	set := fs.Changed
	str := func(flag string, dst *string, v string) {
		if set(flag) {
			*dst = v
		}
	}
	list := func(flag string, dst *[]string, v []string) {
		if set(flag) {
			*dst = trimAll(v)
		}
	}
	list("profile", &r.Profiles, f.profiles)
	str("image", &r.ImageName, f.image)
	str("comment", &r.Comment, f.comment)
	str("cluster", &r.ClusterName, f.cluster)
	str("ipxe", &r.Ipxe, f.ipxe)
	str("init", &r.Init, f.init)
	str("root-fs", &r.Root, f.root)
	str("primarynet", &r.PrimaryNetDev, f.primary)
	str("asset", &r.AssetKey, f.assetKey)
	list("system-overlays", &r.SystemOverlay, f.systemOverlays)
	list("runtime-overlays", &r.RuntimeOverlay, f.runtimeOverlays)
	if set("kernelargs") {
		if r.Kernel == nil {
			r.Kernel = &nodedb.Kernel{}
		}
		r.Kernel.Args = trimAll(f.kernelArgs)
	}
	if set("discoverable") {
		r.Discoverable = fmt.Sprint(f.discoverable)
	}
	if err := applyTags(&r.Tags, f.tagAdd, f.tagDel); err != nil {
		return err
	}
	for i, fl := range ipmiFlags(&f.ipmi) {
		if !set(fl.name) {
			continue
		}
		if r.Ipmi == nil {
			r.Ipmi = &nodedb.IPMI{}
		}
		*ipmiFlags(r.Ipmi)[i].dst = strings.TrimSpace(*fl.dst)
	}
	var touched bool
	nd := &nodedb.NetDev{}
	if old := r.NetDevs[f.netdev]; old != nil {
		*nd = *old
	}
	for flag, pair := range map[string]struct {
		dst *string
		v   string
	}{
		"hwaddr": {&nd.Hwaddr, f.nd.Hwaddr}, "ipaddr": {&nd.Ipaddr, f.nd.Ipaddr}, "netmask": {&nd.Netmask, f.nd.Netmask},
		"gateway": {&nd.Gateway, f.nd.Gateway}, "ipaddr6": {&nd.Ipaddr6, f.nd.Ipaddr6}, "prefixlen6": {&nd.Prefixlen6, f.nd.Prefixlen6},
		"gateway6": {&nd.Gateway6, f.nd.Gateway6}, "device": {&nd.Device, f.nd.Device}, "mtu": {&nd.MTU, f.nd.MTU},
		"type": {&nd.Type, f.nd.Type}, "onboot": {&nd.OnBoot, f.nd.OnBoot},
	} {
		if set(flag) {
			*pair.dst = strings.TrimSpace(pair.v)
			touched = true
		}
	}
	if set("hwaddr") && nd.Hwaddr != "" {
		hw, err := nodedb.NormalizeHW(nd.Hwaddr)
		if err != nil {
			return fmt.Errorf("--hwaddr: %w", err)
		}
		nd.Hwaddr = hw
	}
	if touched || (set("netdev") && r.NetDevs[f.netdev] == nil) {
		if r.NetDevs == nil {
			r.NetDevs = map[string]*nodedb.NetDev{}
		}
		r.NetDevs[f.netdev] = nd
	}
	return nil
}

func applyTags(tags *map[string]string, add, del []string) error {
	for _, kv := range add {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return fmt.Errorf("--tagadd %q: write KEY=VALUE", kv)
		}
		if *tags == nil {
			*tags = map[string]string{}
		}
		(*tags)[strings.TrimSpace(k)] = v
	}
	for _, k := range del {
		delete(*tags, strings.TrimSpace(k))
	}
	return nil
}

func trimAll(in []string) []string {
	out := make([]string, 0, len(in))
	for _, s := range in {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// unsetFlags name the settings `node unset` and `profile unset` clear.
type unsetFlags struct {
	fields []string
	tags   []string
	netdev string
	ndKeys []string
}

// unsetFields maps the field names `unset --field` accepts to what they clear.
func unsetFields() map[string]func(*nodedb.Record) {
	return map[string]func(*nodedb.Record){
		"profiles":   func(r *nodedb.Record) { r.Profiles = nil },
		"image":      func(r *nodedb.Record) { r.ImageName = "" },
		"comment":    func(r *nodedb.Record) { r.Comment = "" },
		"cluster":    func(r *nodedb.Record) { r.ClusterName = "" },
		"ipxe":       func(r *nodedb.Record) { r.Ipxe = "" },
		"init":       func(r *nodedb.Record) { r.Init = "" },
		"root":       func(r *nodedb.Record) { r.Root = "" },
		"primarynet": func(r *nodedb.Record) { r.PrimaryNetDev = "" },
		"kernelargs": func(r *nodedb.Record) {
			if r.Kernel != nil {
				r.Kernel.Args = nil
			}
		},
		"kernelversion": func(r *nodedb.Record) {
			if r.Kernel != nil {
				r.Kernel.Version = ""
			}
		},
		"system-overlays":  func(r *nodedb.Record) { r.SystemOverlay = nil },
		"runtime-overlays": func(r *nodedb.Record) { r.RuntimeOverlay = nil },
		"discoverable":     func(r *nodedb.Record) { r.Discoverable = "" },
		"asset":            func(r *nodedb.Record) { r.AssetKey = "" },
		"tags":             func(r *nodedb.Record) { r.Tags = nil },
		"ipmi":             func(r *nodedb.Record) { r.Ipmi = nil },
		"resources":        func(r *nodedb.Record) { r.Resources = nil },
	}
}

// netdevKeys maps the names `unset --netdev-field` accepts to what they clear.
func netdevKeys() map[string]func(*nodedb.NetDev) {
	return map[string]func(*nodedb.NetDev){
		"hwaddr": func(d *nodedb.NetDev) { d.Hwaddr = "" }, "ipaddr": func(d *nodedb.NetDev) { d.Ipaddr = "" },
		"netmask": func(d *nodedb.NetDev) { d.Netmask = "" }, "gateway": func(d *nodedb.NetDev) { d.Gateway = "" },
		"ipaddr6": func(d *nodedb.NetDev) { d.Ipaddr6 = "" }, "prefixlen6": func(d *nodedb.NetDev) { d.Prefixlen6 = "" },
		"gateway6": func(d *nodedb.NetDev) { d.Gateway6 = "" }, "device": func(d *nodedb.NetDev) { d.Device = "" },
		"mtu": func(d *nodedb.NetDev) { d.MTU = "" }, "type": func(d *nodedb.NetDev) { d.Type = "" },
		"onboot": func(d *nodedb.NetDev) { d.OnBoot = "" }, "tags": func(d *nodedb.NetDev) { d.Tags = nil },
	}
}

func (u *unsetFlags) bind(fs *pflag.FlagSet) {
	fs.StringSliceVarP(&u.fields, "field", "f", nil, "fields to clear: "+strings.Join(sortedNames(unsetFields()), ", "))
	fs.StringSliceVar(&u.tags, "tag", nil, "tags to delete by KEY")
	fs.StringVar(&u.netdev, "netdev", "", "network device to remove (all of it, or only the --netdev-field values)")
	fs.StringSliceVar(&u.ndKeys, "netdev-field", nil, "fields of --netdev to clear: "+strings.Join(sortedNames(netdevKeys()), ", "))
}

func (u *unsetFlags) apply(r *nodedb.Record) error {
	for _, f := range u.fields {
		clear, ok := unsetFields()[f]
		if !ok {
			return fmt.Errorf("--field %q: not a field; use one of %s", f, strings.Join(sortedNames(unsetFields()), ", "))
		}
		clear(r)
	}
	for _, k := range u.tags {
		delete(r.Tags, k)
	}
	if u.netdev == "" {
		if len(u.ndKeys) > 0 {
			return fmt.Errorf("--netdev-field needs --netdev NAME")
		}
		return nil
	}
	nd, ok := r.NetDevs[u.netdev]
	if !ok {
		return fmt.Errorf("network device %q: %w", u.netdev, nodedb.ErrNotFound)
	}
	if len(u.ndKeys) == 0 {
		delete(r.NetDevs, u.netdev)
		return nil
	}
	for _, k := range u.ndKeys {
		clear, ok := netdevKeys()[k]
		if !ok {
			return fmt.Errorf("--netdev-field %q: use one of %s", k, strings.Join(sortedNames(netdevKeys()), ", "))
		}
		clear(nd)
	}
	return nil
}

func sortedNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// outputFlag adds -o table|json|yaml.
func outputFlag(cmd *cobra.Command, dst *string) {
	cmd.Flags().StringVarP(dst, "output", "o", "table", "output format: table, json or yaml (json and yaml use nodes.conf's keys)")
}

// printStructured writes v as JSON or YAML; it reports false for "table".
func printStructured(w io.Writer, format string, v any) (bool, error) {
	switch format {
	case "table", "":
		return false, nil
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return true, enc.Encode(v)
	case "yaml":
		enc := yaml.NewEncoder(w)
		enc.SetIndent(2)
		if err := enc.Encode(v); err != nil {
			return true, err
		}
		return true, enc.Close()
	}
	return true, fmt.Errorf("-o %q: use table, json or yaml", format)
}
