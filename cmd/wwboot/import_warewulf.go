package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/wwboot/wwboot/hostlist"
	"github.com/wwboot/wwboot/image"
	"github.com/wwboot/wwboot/nodedb"
	"github.com/wwboot/wwboot/overlay"
)

// mergeResult counts what mergeNodesConf did.
type mergeResult struct {
	added, replaced int
	// initDefault is set when the incoming default profile replaced the one
	// `wwboot init` wrote, unchanged since.
	initDefault bool
	names       []string // "profile NAME" / "node NAME", in merge order
}

// mergeNodesConf merges the profiles and nodes of in (read from src) into
// c. A name already in c is an error naming src and the record unless
// overwrite is set; the one exception is the default profile `wwboot init`
// writes, which a nodes.conf's own default profile replaces as long as it
// is unchanged, so that `wwboot node import` works right after `wwboot
// init`.
func mergeNodesConf(c *nodedb.Config, in *nodedb.Config, src string, overwrite bool) (mergeResult, error) {
	var res mergeResult
	if c.NodeProfiles == nil {
		c.NodeProfiles = map[string]*nodedb.Record{}
	}
	if c.Nodes == nil {
		c.Nodes = map[string]*nodedb.Record{}
	}
	for _, sec := range []struct {
		what     string
		dst, src map[string]*nodedb.Record
	}{{"profile", c.NodeProfiles, in.NodeProfiles}, {"node", c.Nodes, in.Nodes}} {
		names := make([]string, 0, len(sec.src))
		for name := range sec.src {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			if old, ok := sec.dst[name]; ok {
				switch {
				case sec.what == "profile" && name == "default" && sameRecord(old, defaultProfile()):
					res.initDefault = true
				case !overwrite:
					return res, fmt.Errorf("%s: %s %q is already in the inventory: pass --overwrite to replace it", src, sec.what, name)
				}
				res.replaced++
			} else {
				res.added++
			}
			// A record shown without --secrets carries the mask: it keeps
			// the stored secret, and with none stored it must not become one.
			if r := sec.src[name]; r != nil {
				if missing := r.Unredact(sec.dst[name]); len(missing) > 0 {
					return res, fmt.Errorf("%s: %s %q: %s reads %q, a masked secret, and the inventory has none to keep: "+
						"import a copy of nodes.conf itself (the lossless backup) or put the real value in the file",
						src, sec.what, name, strings.Join(missing, ", "), nodedb.Redacted)
				}
			}
			sec.dst[name] = sec.src[name]
			res.names = append(res.names, sec.what+" "+name)
		}
	}
	return res, nil
}

// sameRecord reports whether a and b write the same nodes.conf text.
func sameRecord(a, b *nodedb.Record) bool {
	x, err1 := yaml.Marshal(a)
	y, err2 := yaml.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

// newImportCmd is `wwboot import`: bring a site from another provisioning
// system.
func newImportCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "import",
		Short: "Take over a site from another provisioning system (warewulf)",
	}
	cmd.AddCommand(newImportWarewulfCmd(a))
	return cmd
}

// warewulfImport is the state of one `wwboot import warewulf` run.
type warewulfImport struct {
	a         *app
	src       string // the Warewulf server's root (/ on the server itself)
	overwrite bool
	images    []string // image names nodes.conf uses
	// report lines by section
	taken, changed, left []string
	failed               []string
	todo                 []string // to do before 'wwboot serve'
	// needIface is the listen address when no interface of this machine
	// has it and DHCP is on: serve then needs --interface.
	needIface string
}

// interfaceWithAddr names this machine's interface that has address a, or
// returns "" when none has.
func interfaceWithAddr(a netip.Addr) string {
	ifs, err := net.Interfaces()
	if err != nil {
		return ""
	}
	for _, ifi := range ifs {
		addrs, err := ifi.Addrs()
		if err != nil {
			continue
		}
		for _, ad := range addrs {
			if ipn, ok := ad.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(ipn.IP); ok && ip.Unmap() == a {
					return ifi.Name
				}
			}
		}
	}
	return ""
}

func (w *warewulfImport) take(format string, args ...any) {
	w.taken = append(w.taken, fmt.Sprintf(format, args...))
}
func (w *warewulfImport) change(format string, args ...any) {
	w.changed = append(w.changed, fmt.Sprintf(format, args...))
}
func (w *warewulfImport) leave(format string, args ...any) {
	w.left = append(w.left, fmt.Sprintf(format, args...))
}
func (w *warewulfImport) fail(format string, args ...any) {
	w.failed = append(w.failed, fmt.Sprintf(format, args...))
}

// in returns the path of a Warewulf server path (absolute, as warewulf.conf
// gives it) under the imported root.
func (w *warewulfImport) in(p string) string { return filepath.Join(w.src, filepath.Clean("/"+p)) }

func newImportWarewulfCmd(a *app) *cobra.Command {
	var overwrite bool
	cmd := &cobra.Command{
		Use:   "warewulf DIR",
		Short: "Serve a Warewulf site with wwboot: its configuration, nodes, host keys, site overlays and images",
		Long: `DIR is a Warewulf server's root: / on the server itself, or a copy of it holding
etc/warewulf/{warewulf.conf,nodes.conf,keys/} and var/lib/warewulf/{overlays,chroots}/
(images/ for image trees kept there; paths: in warewulf.conf moves them, as for Warewulf).

  warewulf.conf  mapped to ROOT/wwboot.conf (address, port, secure, DHCP and its range, TFTP, SSH key types)
  nodes.conf     merged into ROOT/nodes.conf unchanged (its default profile replaces the one
                 'wwboot init' wrote; other names already there need --overwrite)
  keys/          the cluster-wide SSH host keys (nodes keep their host keys: shared host keys: true)
  overlays/      site overlays copied to ROOT/overlays; an overlay with the name of a built-in one
                 is not (the built-in does its work in wwboot)
  chroots/       each image tree imported as an image (built in place, not copied)

ROOT is initialized first when needed. The report says what was taken over, what changed and why.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			w := &warewulfImport{a: a, src: args[0], overwrite: overwrite}
			return w.run(cmd)
		},
	}
	cmd.Flags().BoolVar(&overwrite, "overwrite", false, "replace nodes and profiles already in the inventory")
	return cmd
}

// wwConf is what the import reads of Warewulf 4.7's warewulf.conf
// (internal/pkg/config in Warewulf's source); keys it does not list are
// reported as not taken over.
type wwConf struct {
	Ipaddr   string `yaml:"ipaddr"`
	Ipaddr6  string `yaml:"ipaddr6"`
	Netmask  string `yaml:"netmask"`
	Network  string `yaml:"network"`
	Warewulf struct {
		Port              *int  `yaml:"port"`
		Secure            *bool `yaml:"secure"`
		UpdateInterval    *int  `yaml:"update interval"`
		AutobuildOverlays *bool `yaml:"autobuild overlays"`
		EnableHostOverlay *bool `yaml:"host overlay"`
		Syslog            *bool `yaml:"syslog"`
		GrubBoot          *bool `yaml:"grubboot"`
	} `yaml:"warewulf"`
	DHCP struct {
		Enabled    *bool  `yaml:"enabled"`
		RangeStart string `yaml:"range start"`
		RangeEnd   string `yaml:"range end"`
		Template   string `yaml:"template"`
	} `yaml:"dhcp"`
	TFTP struct {
		Enabled *bool `yaml:"enabled"`
	} `yaml:"tftp"`
	NFS struct {
		Enabled     *bool `yaml:"enabled"`
		ExportPaths []struct {
			Path string `yaml:"path"`
		} `yaml:"export paths"`
	} `yaml:"nfs"`
	SSH struct {
		KeyTypes []string `yaml:"key types"`
	} `yaml:"ssh"`
	Paths map[string]string `yaml:"paths"`
	// Rest holds every top-level key, to report those not mapped.
	Rest map[string]any `yaml:",inline"`
}

func (w *warewulfImport) run(cmd *cobra.Command) error {
	ctx := cmd.Context()
	a := w.a
	if fi, err := os.Stat(w.in("etc/warewulf")); err != nil || !fi.IsDir() {
		return fmt.Errorf("import warewulf: %s has no etc/warewulf: give the root of a Warewulf server (/ on the server, or a copy)", w.src)
	}
	if err := w.initRoot(cmd); err != nil {
		return err
	}

	// warewulf.conf.
	conf := w.readConf()
	paths := func(key, def string) string {
		if p := conf.Paths[key]; p != "" {
			w.take("paths: %s: %s", key, p)
			return w.in(p)
		}
		return w.in(def)
	}
	sysconf := paths("sysconfdir", "/etc")
	if err := w.mapConf(conf); err != nil {
		return err
	}

	// nodes.conf: loaded unchanged.
	var names []string
	ncPath := filepath.Join(sysconf, "warewulf", "nodes.conf")
	if data, err := os.ReadFile(ncPath); err != nil {
		w.fail("%s: %v: no nodes imported", ncPath, err)
	} else if in, err := nodedb.Parse(ncPath, data); err != nil {
		w.fail("%v: no nodes imported; fix the file (wwboot loads what Warewulf 4.7 loads) and run the import again", err)
	} else {
		var res mergeResult
		err := a.update(ctx, func(c *nodedb.Config) error {
			var err error
			res, err = mergeNodesConf(c, in, ncPath, w.overwrite)
			return err
		}, "imported", "node", nil)
		if err != nil {
			return err
		}
		w.take("%s: %d added, %d replaced (%s)", ncPath, res.added, res.replaced, strings.Join(res.names, ", "))
		if res.initDefault {
			w.change("profile default: Warewulf's replaced the one 'wwboot init' wrote, so nodes keep Warewulf's overlay lists and kernel arguments")
		}
		names = overlayNames(in)
		w.images = imageNames(in)
	}

	// Host keys.
	keys := filepath.Join(sysconf, "warewulf", "keys")
	if ents, _ := filepath.Glob(filepath.Join(keys, "ssh_host_*_key")); len(ents) > 0 {
		var types []string
		var err error
		if diff := sharedKeysDiffer(a.path("keys"), keys); len(diff) > 0 && !w.overwrite {
			err = fmt.Errorf("%s holds another cluster-wide key set (%s differ), left as it is: pass --overwrite to replace it "+
				"(every node's host keys change)", a.path("keys", "shared"), strings.Join(diff, ", "))
		} else {
			if len(diff) > 0 {
				w.change("host keys: replaced the cluster-wide key set %s had (%s differed)", a.path("keys", "shared"), strings.Join(diff, ", "))
			}
			types, err = overlay.ImportHostKeys(a.path("keys"), keys)
		}
		if err != nil {
			w.fail("host keys: %v", err)
		} else {
			w.take("%s: %s host keys, the cluster-wide set every node gets", keys, strings.Join(types, ", "))
			if err := setConfigKeys(a.path("wwboot.conf"), map[string]string{"shared host keys": "true"}); err != nil {
				return err
			}
			w.change("shared host keys: true — Warewulf gives every node this one key set; keeping it keeps the nodes' host keys, so users' known_hosts stay valid")
		}
	} else {
		w.leave("%s: no ssh_host_*_key files: each node gets its own host keys (new ones: clients will see changed host keys)", keys)
	}

	// Site overlays.
	ovDir := paths("wwoverlaydir", "/var/lib/warewulf/overlays")
	copied := w.importOverlays(ovDir)
	builtin := map[string]bool{}
	for _, n := range overlay.BuiltinNames() {
		builtin[n] = true
	}
	for _, n := range names {
		target, alias := overlay.BuiltinAlias(n)
		switch {
		case copied[n]:
		case alias:
			w.change("overlay %s (named in nodes.conf): rendered by the built-in %s, which writes the same configuration", n, target)
		case builtin[n]:
		default:
			w.fail("overlay %s is named in nodes.conf but is neither in %s nor built in: nodes that list it will not build until it exists in %s", n, ovDir, a.path("overlays"))
		}
	}

	// Images.
	w.importImages(cmd, paths("wwchrootdir", "/var/lib/warewulf/chroots"), w.in("/var/lib/warewulf/images"))
	if st, err := image.OpenStore(a.path("images")); err == nil {
		for _, n := range w.images {
			if _, err := st.Lookup(ctx, n); err != nil {
				w.fail("image %s is named in nodes.conf but was not imported: nodes that boot it get no image until 'wwboot image import TREE %s'", n, n)
			}
		}
	}

	w.checkSystemSecrets(ctx)

	w.print()
	if len(w.failed) > 0 {
		return fmt.Errorf("import warewulf: %d part(s) not taken over (see above); fix them and run the import again (it is safe to repeat with --overwrite)", len(w.failed))
	}
	return nil
}

// checkSystemSecrets reports the nodes whose system overlay the server
// would refuse because it carries private files (Warewulf's default profile
// lists ssh.host_keys there): one node per distinct system overlay list is
// rendered, so a large site costs a few renders, not one per node.
func (w *warewulfImport) checkSystemSecrets(ctx context.Context) {
	if w.a.systemSecretsAllowed() {
		return
	}
	r, err := (&overlayFlags{}).renderer(w.a)
	if err != nil {
		return
	}
	db, err := inventory(ctx, w.a)
	if err != nil {
		return
	}
	verdict := map[string][]string{} // system overlay list -> private files
	var nodes, files []string
	for _, name := range db.Names() {
		n, err := db.Node(name)
		if err != nil {
			continue
		}
		key := strings.Join(r.OverlayNames(n, overlay.System), ",")
		priv, seen := verdict[key]
		if !seen {
			if ar, err := r.Render(ctx, db, n, overlay.System); err == nil {
				priv = ar.Private()
			}
			verdict[key] = priv
		}
		if len(priv) > 0 {
			nodes = append(nodes, name)
			if files == nil {
				files = priv
			}
		}
	}
	if len(nodes) == 0 {
		return
	}
	w.todo = append(w.todo, fmt.Sprintf("%d node(s) (%s) have system overlays with private files (/%s): wwboot serve refuses "+
		"them, since anyone on the provisioning network may fetch a system overlay; move the overlays that make them "+
		"(Warewulf's default profile lists ssh.host_keys) to the runtime overlays with 'wwboot profile set PROFILE "+
		"--system-overlays ... --runtime-overlays ...', or accept the exposure with 'system overlay secrets: true' in %s",
		len(nodes), hostlist.Compress(nodes), strings.Join(files[:min(len(files), 3)], ", /"), w.a.path("wwboot.conf")))
}

// initRoot does what `wwboot init` does when ROOT has no wwboot.conf or
// nodes.conf yet.
func (w *warewulfImport) initRoot(cmd *cobra.Command) error {
	a := w.a
	_, err1 := os.Stat(a.path("wwboot.conf"))
	_, err2 := os.Stat(a.path("nodes.conf"))
	if err1 == nil && err2 == nil {
		return nil
	}
	ic := newInitCmd(a)
	ic.SetContext(cmd.Context())
	out := a.stdout
	a.stdout = io.Discard
	err := ic.RunE(ic, nil)
	a.stdout = out
	if err != nil {
		return err
	}
	w.take("%s: initialized (wwboot.conf, nodes.conf, overlays/, images/, tftp/)", a.root)
	return nil
}

// readConf reads warewulf.conf; a missing or unreadable file is reported
// and the defaults stay.
func (w *warewulfImport) readConf() wwConf {
	var c wwConf
	p := w.in("etc/warewulf/warewulf.conf")
	data, err := os.ReadFile(p)
	if err != nil {
		w.leave("%s: %v: wwboot.conf keeps its defaults", p, err)
		return c
	}
	if err := yaml.Unmarshal(data, &c); err != nil {
		w.fail("%s: %v: wwboot.conf keeps its defaults", p, err)
		return wwConf{}
	}
	return c
}

// mapConf writes the settings of warewulf.conf that have a wwboot.conf
// counterpart, and reports the others.
func (w *warewulfImport) mapConf(c wwConf) error {
	set := map[string]string{}
	if c.Ipaddr != "" {
		addr := strings.SplitN(c.Ipaddr, "/", 2)[0]
		if a, err := netip.ParseAddr(addr); err == nil && a.Is4() {
			set["listen"] = strconv.Quote(a.String())
			if ifname := interfaceWithAddr(a); ifname != "" {
				set["interface"] = strconv.Quote(ifname)
				w.take("ipaddr %s: listen: %s, interface: %s (this machine's interface with that address)", c.Ipaddr, a, ifname)
			} else {
				w.needIface = a.String()
				w.take("ipaddr %s: listen: %s (no interface of this machine has it: DHCP needs interface: in wwboot.conf, or serve --interface IF)", c.Ipaddr, a)
			}
		} else {
			w.fail("warewulf.conf ipaddr %q is not an IPv4 address: listen left empty", c.Ipaddr)
		}
	}
	if c.Netmask != "" || c.Network != "" {
		w.leave("netmask %s, network %s: wwboot reads both from the interface that has the listen address", c.Netmask, c.Network)
	}
	if c.Ipaddr6 != "" {
		w.leave("ipaddr6 %s: wwboot provisions over IPv4; nodes keep their IPv6 settings from nodes.conf", c.Ipaddr6)
	}
	if p := c.Warewulf.Port; p != nil {
		set["http port"] = strconv.Itoa(*p)
		w.take("warewulf port %d: http port: %d", *p, *p)
	}
	if s := c.Warewulf.Secure; s != nil {
		set["secure"] = strconv.FormatBool(*s)
		w.take("warewulf secure %t: secure: %t (runtime overlay only to privileged source ports)", *s, *s)
	}
	if c.Warewulf.UpdateInterval != nil {
		w.leave("warewulf update interval %d: the node agent's interval is its own setting", *c.Warewulf.UpdateInterval)
	}
	if c.Warewulf.AutobuildOverlays != nil {
		w.leave("warewulf autobuild overlays: wwboot renders overlays when a node asks and caches them; nothing to build ahead")
	}
	if c.Warewulf.EnableHostOverlay != nil && *c.Warewulf.EnableHostOverlay {
		w.leave("warewulf host overlay: wwboot serves DHCP and TFTP itself; the built-in host overlay renders the server's hosts, exports and ssh_setup files on request (wwboot overlay show --render HOST host ...)")
	}
	if c.Warewulf.GrubBoot != nil && *c.Warewulf.GrubBoot {
		w.change("warewulf grubboot true: wwboot boots through iPXE only; nodes get iPXE")
	}
	dhcpOn := c.DHCP.Enabled == nil || *c.DHCP.Enabled
	if dhcpOn {
		set["dhcp"] = "full"
		w.take("dhcp enabled: dhcp: full (wwboot answers DHCP itself; stop Warewulf's dhcpd before 'wwboot serve')")
		if c.DHCP.RangeStart != "" || c.DHCP.RangeEnd != "" {
			set["range start"] = strconv.Quote(c.DHCP.RangeStart)
			set["range end"] = strconv.Quote(c.DHCP.RangeEnd)
			w.take("dhcp range %s-%s: range start/end (addresses for machines not in the inventory, leases in ROOT/dhcp.leases)", c.DHCP.RangeStart, c.DHCP.RangeEnd)
		}
		if c.DHCP.Template != "" && c.DHCP.Template != "default" {
			w.leave("dhcp template %s: wwboot has no dhcpd.conf template; its DHCP answers what Warewulf's default template answers", c.DHCP.Template)
		}
	} else {
		w.needIface = "" // without DHCP, serve needs only the listen address
		set["dhcp"] = "off"
		w.change("dhcp enabled false: dhcp: off — Warewulf did not answer DHCP on this site; point the site's DHCP server at wwboot (or set dhcp: proxy to have wwboot add only the boot information)")
	}
	if t := c.TFTP.Enabled; t != nil {
		set["tftp"] = strconv.FormatBool(*t)
		w.take("tftp enabled %t: tftp: %t (wwboot serves the iPXE binaries itself)", *t, *t)
	}
	if c.NFS.Enabled != nil && *c.NFS.Enabled {
		var ps []string
		for _, e := range c.NFS.ExportPaths {
			ps = append(ps, e.Path)
		}
		w.leave("nfs exports %s: wwboot does not run the NFS server; keep the server's /etc/exports (the host overlay renders it), nodes mount through their fstab resources as before", strings.Join(ps, ", "))
	}
	if len(c.SSH.KeyTypes) > 0 {
		var keep, drop []string
		for _, t := range c.SSH.KeyTypes {
			switch t {
			case "ed25519", "ecdsa", "rsa":
				keep = append(keep, t)
			default:
				drop = append(drop, t)
			}
		}
		if len(keep) > 0 {
			set["ssh key types"] = "[" + strings.Join(keep, ", ") + "]"
			w.take("ssh key types: %s", strings.Join(keep, ", "))
		}
		if len(drop) > 0 {
			w.change("ssh key types %s dropped: OpenSSH no longer loads them", strings.Join(drop, ", "))
		}
	}
	mapped := map[string]bool{"ipaddr": true, "ipaddr6": true, "netmask": true, "network": true, "warewulf": true,
		"dhcp": true, "tftp": true, "nfs": true, "ssh": true, "paths": true}
	var rest []string
	for k := range c.Rest {
		if !mapped[k] {
			rest = append(rest, k)
		}
	}
	sort.Strings(rest)
	for _, k := range rest {
		w.leave("warewulf.conf %s: no wwboot counterpart", k)
	}
	if len(set) == 0 {
		return nil
	}
	return setConfigKeys(w.a.path("wwboot.conf"), set)
}

// overlayNames lists the overlays a nodes.conf's profiles and nodes name.
func overlayNames(c *nodedb.Config) []string {
	seen := map[string]bool{}
	for _, recs := range []map[string]*nodedb.Record{c.NodeProfiles, c.Nodes} {
		for _, r := range recs {
			if r == nil {
				continue
			}
			for _, n := range append(append([]string{}, r.SystemOverlay...), r.RuntimeOverlay...) {
				seen[strings.TrimPrefix(n, "~")] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// imageNames lists the images a nodes.conf's profiles and nodes name.
func imageNames(c *nodedb.Config) []string {
	seen := map[string]bool{}
	for _, recs := range []map[string]*nodedb.Record{c.NodeProfiles, c.Nodes} {
		for _, r := range recs {
			if r != nil && r.ImageName != "" {
				seen[r.ImageName] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// importOverlays copies the site overlays of dir (NAME/rootfs, or NAME
// holding the tree directly as before Warewulf 4.5) to ROOT/overlays/NAME/
// rootfs, and returns the names copied. An overlay with a built-in's name
// is not copied: Warewulf's own overlays (which servers before 4.6 keep in
// the same directory) would replace wwboot's, and wwinit and wwclient would
// no longer boot the node.
func (w *warewulfImport) importOverlays(dir string) map[string]bool {
	copied := map[string]bool{}
	ents, err := os.ReadDir(dir)
	if err != nil {
		w.leave("%s: %v: no site overlays", dir, err)
		return copied
	}
	builtin := map[string]bool{}
	for _, n := range overlay.BuiltinNames() {
		builtin[n] = true
	}
	for _, e := range ents {
		name := e.Name()
		if !e.IsDir() || strings.HasPrefix(name, ".") {
			continue
		}
		if _, alias := overlay.BuiltinAlias(name); builtin[name] || alias {
			w.change("overlay %s: not copied, the built-in %s does its work (a site change to it must be made again in ROOT/overlays/%s)", name, name, name)
			continue
		}
		src := filepath.Join(dir, name, "rootfs")
		if fi, err := os.Stat(src); err != nil || !fi.IsDir() {
			src = filepath.Join(dir, name)
		}
		dst := w.a.path("overlays", name, "rootfs")
		if _, err := os.Stat(filepath.Join(w.a.path("overlays"), name)); err == nil {
			if !w.overwrite {
				w.fail("overlay %s: %s exists: pass --overwrite to replace it", name, w.a.path("overlays", name))
				continue
			}
			if err := os.RemoveAll(w.a.path("overlays", name)); err != nil {
				w.fail("overlay %s: %v", name, err)
				continue
			}
		}
		_, n, err := copyTree(src, dst)
		if err != nil {
			w.fail("overlay %s: %v", name, err)
			_ = os.RemoveAll(w.a.path("overlays", name))
			continue
		}
		copied[name] = true
		w.take("overlay %s: %d files copied to %s", name, n, dst)
	}
	return copied
}

// copySyncClose copies in to out, fsyncs and closes out.
func copySyncClose(out *os.File, in io.Reader) error {
	_, err := io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// importImages imports each image tree (NAME/rootfs) of the directories.
func (w *warewulfImport) importImages(cmd *cobra.Command, dirs ...string) {
	st, err := image.OpenStore(w.a.path("images"))
	if err != nil {
		w.fail("images: %v", err)
		return
	}
	found := false
	for _, dir := range dirs {
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			tree := filepath.Join(dir, e.Name(), "rootfs")
			if fi, err := os.Stat(tree); !e.IsDir() || err != nil || !fi.IsDir() {
				continue
			}
			found = true
			// An image of that name from elsewhere is replaced only with
			// --overwrite; one built from this very tree (a repeated
			// import) is rebuilt.
			abs, _ := filepath.Abs(tree)
			if m, err := st.Lookup(cmd.Context(), e.Name()); err == nil && m.Source != "dir:"+abs {
				if !w.overwrite {
					w.fail("image %s: the store has an image of that name (from %s), left as it is: pass --overwrite to replace it with %s", e.Name(), m.Source, tree)
					continue
				}
				w.change("image %s: replaced the one the store had (from %s, built %s)", e.Name(), m.Source, m.BuiltAt.Format(time.DateTime))
			}
			res, err := st.Import(cmd.Context(), tree, e.Name(), image.BuildOptions{})
			if err != nil {
				w.fail("image %s: %v", e.Name(), err)
				continue
			}
			k := "no kernel found: give one with 'wwboot image build " + e.Name() + " --kernel PATH'"
			if res.KernelVersion != "" {
				k = "kernel " + res.KernelVersion
			}
			w.take("image %s: built from %s in place (the tree stays there; edit it and run 'wwboot image build %s'), %s", e.Name(), tree, e.Name(), k)
		}
	}
	if !found {
		w.leave("no image trees in %s: import images with 'wwboot image import'", strings.Join(dirs, " or "))
	}
}

// print writes the report.
func (w *warewulfImport) print() {
	out := w.a.stdout
	fmt.Fprintf(out, "Warewulf site %s imported into %s\n", w.src, w.a.root)
	for _, sec := range []struct {
		title string
		lines []string
	}{
		{"Taken over", w.taken},
		{"Changed, and why", w.changed},
		{"Not taken over", w.left},
		{"FAILED", w.failed},
		{"To do before 'wwboot serve'", w.todo},
	} {
		if len(sec.lines) == 0 {
			continue
		}
		fmt.Fprintf(out, "\n%s:\n", sec.title)
		for _, l := range sec.lines {
			fmt.Fprintf(out, "  - %s\n", l)
		}
	}
	if len(w.failed) == 0 {
		iface, why := "", ""
		if w.needIface != "" {
			iface, why = " --interface IF", " (IF: the cluster interface, the one with "+w.needIface+"; or set interface: in wwboot.conf)"
		}
		fmt.Fprintf(out, "\nNext: stop Warewulf's warewulfd, dhcpd and tftp, then run 'wwboot --root %s serve%s'%s.\n", w.a.root, iface, why)
	}
}

// setConfigKeys sets keys of the YAML file path (wwboot.conf) to values
// (YAML text), keeping its comments: an uncommented "key:" line is
// replaced, other keys are appended. The result must load
// (loadServeConfig); it is written atomically.
func setConfigKeys(path string, set map[string]string) error {
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	done := map[string]bool{}
	for i, l := range lines {
		for k, v := range set {
			if strings.HasPrefix(l, k+":") {
				lines[i] = k + ": " + v
				done[k] = true
			}
		}
	}
	keys := make([]string, 0, len(set))
	for k := range set {
		if !done[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	if len(keys) > 0 {
		lines = append(lines, "# set by 'wwboot import warewulf'")
	}
	for _, k := range keys {
		lines = append(lines, k+": "+set[k])
	}
	text := strings.Join(lines, "\n") + "\n"
	if err := writeFileAtomic(path, strings.NewReader(text), 0o644); err != nil {
		return err
	}
	if _, err := loadServeConfig(path); err != nil {
		return fmt.Errorf("import warewulf: the mapped configuration does not load (fix %s by hand): %w", path, err)
	}
	return nil
}
