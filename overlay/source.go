package overlay

import (
	"crypto/sha256"
	"embed"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"

	"github.com/wwboot/wwboot/names"
)

//go:embed all:builtin
var builtinFS embed.FS

// builtinModes gives the permissions of built-in files that are not 0644
// (files) or 0755 (directories): embed.FS keeps no modes. Keys are
// "overlay/path-in-rootfs".
func builtinMode(overlay, p string, dir bool) fs.FileMode {
	switch overlay + "/" + p {
	case "wwinit/init", "wwinit/etc/wwboot/restore-xattrs", "wwclient/usr/sbin/wwboot-agent.ww",
		"udev.netname/etc/wwboot/init.d/10-netname", "systemd.netname/etc/wwboot/init.d/10-netname",
		"sfdisk/warewulf/wwinit.d/10-sfdisk.sh.ww", "mkfs/warewulf/wwinit.d/20-mkfs.sh.ww",
		"mkswap/warewulf/wwinit.d/20-mkswap.sh.ww", "ignition/warewulf/wwinit.d/10-ignition.sh.ww":
		return 0o755
	case "ssh.host_keys/etc/ssh/ssh_host_ed25519_key.ww",
		"ssh.host_keys/etc/ssh/ssh_host_ecdsa_key.ww",
		"ssh.host_keys/etc/ssh/ssh_host_rsa_key.ww",
		"NetworkManager/etc/NetworkManager/system-connections/wwboot.nmconnection.ww",
		"ssh.authorized_keys/root/.ssh/authorized_keys.ww",
		"netplan/etc/netplan/warewulf.yaml.ww": // netplan warns about group- or world-readable files
		return 0o600
	case "ssh.authorized_keys/root", "ssh.authorized_keys/root/.ssh":
		return 0o700
	case "machine-id/etc/machine-id.ww":
		return 0o444 // as systemd-machine-id-setup leaves it
	}
	if dir {
		return 0o755
	}
	return 0o644
}

// Source says where an overlay was found.
type Source string

// Overlay sources.
const (
	Site    Source = "site"    // Options.SiteDir/NAME
	Builtin Source = "builtin" // compiled into the binary
)

// Overlay is a loaded overlay: its files in walk (lexical) order and a
// content hash that changes whenever any file, mode or owner does.
type Overlay struct {
	Name   string  // overlay name
	Source Source  // site or builtin
	Dir    string  // rootfs directory (site), or "builtin:NAME"
	Files  []*File // every entry below rootfs, parents before children
	Hash   string  // hex sha256 over paths, modes, owners and contents

	fingerprint string // cheap stat-based fingerprint of a site overlay
}

// File is one entry of an overlay.
type File struct {
	Path   string      // slash-separated, relative to rootfs ("etc/hosts.ww")
	Mode   fs.FileMode // type and permission bits
	UID    int         // owner
	GID    int         // group
	MTime  time.Time   // modification time (built-ins: BuiltinTime)
	Data   []byte      // contents of a regular file (template source for .ww)
	Target string      // symlink target

	tmpl     *template.Template // parsed template (nil unless .ww)
	parseErr error              // why a .ww file does not parse (a *TemplateError), or nil
	deps     deps               // what the template reads
	pool     sync.Pool          // *instance clones bound to their own state
	setup    func() *instance   // makes a new instance
}

// IsTemplate reports whether the file is a .ww template (one that parses
// or not: see ParseError).
func (f *File) IsTemplate() bool { return f.tmpl != nil || f.parseErr != nil }

// ParseError returns why the template does not parse (a *TemplateError
// naming the overlay, file and line), or nil. Such a template produces
// nothing; the overlay's other files render.
func (f *File) ParseError() error { return f.parseErr }

// OutputPath is where the file lands in the archive (".ww" dropped).
func (f *File) OutputPath() string {
	if f.IsTemplate() {
		return strings.TrimSuffix(f.Path, ".ww")
	}
	return f.Path
}

// validName reports whether s can name an overlay: the one naming rule of
// package names (Warewulf's).
func validName(s string) bool { return names.Valid(s) }

// siteRoot returns the rootfs directory of site overlay name, or "" if the
// site has no such overlay.
func siteRoot(siteDir, name string) string {
	if siteDir == "" {
		return ""
	}
	dir := filepath.Join(siteDir, name)
	if fi, err := os.Stat(filepath.Join(dir, "rootfs")); err == nil && fi.IsDir() {
		return filepath.Join(dir, "rootfs")
	}
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
		return dir // Warewulf's older layout: files directly under NAME/
	}
	return ""
}

// siteFingerprint stats every entry below root: it changes when a file is
// added, removed, renamed, resized, touched, chmod'ed or chown'ed.
func siteFingerprint(root string) (string, error) {
	h := sha256.New()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		var b [48]byte
		binary.LittleEndian.PutUint64(b[0:], uint64(fi.Size()))
		binary.LittleEndian.PutUint64(b[8:], uint64(fi.ModTime().UnixNano()))
		binary.LittleEndian.PutUint64(b[16:], uint64(fi.Mode()))
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			binary.LittleEndian.PutUint64(b[24:], uint64(st.Ino))
			binary.LittleEndian.PutUint64(b[32:], uint64(st.Uid)<<32|uint64(st.Gid))
			binary.LittleEndian.PutUint64(b[40:], uint64(st.Ctim.Nano()))
		}
		h.Write([]byte(p))
		h.Write(b[:])
		return nil
	})
	return hex.EncodeToString(h.Sum(nil)), err
}

// loadSite reads a site overlay from disk.
func (r *Renderer) loadSite(name, root string) (*Overlay, error) {
	fp, err := siteFingerprint(root)
	if err != nil {
		return nil, fmt.Errorf("overlay %s: reading %s: %w", name, root, err)
	}
	o := &Overlay{Name: name, Source: Site, Dir: root, fingerprint: fp}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		f := &File{Path: filepath.ToSlash(rel), Mode: fi.Mode(), MTime: fi.ModTime()}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			f.UID, f.GID = int(st.Uid), int(st.Gid)
		}
		switch {
		case fi.Mode().IsRegular():
			if f.Data, err = os.ReadFile(p); err != nil {
				return err
			}
		case fi.Mode()&fs.ModeSymlink != 0:
			if f.Target, err = os.Readlink(p); err != nil {
				return err
			}
		case fi.IsDir():
		default:
			return nil // sockets, devices, fifos: not carried
		}
		o.Files = append(o.Files, f)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("overlay %s: reading %s: %w", name, root, err)
	}
	return o, r.prepare(o)
}

// BuiltinEpoch is the time of the built-in overlays' files in a binary built
// without version control information (go test, -buildvcs=false): embed.FS
// keeps no times, and a zero time would be 1970 on the node.
// It is 2026-11-29T00:00:00Z, in seconds since 1970.
const BuiltinEpoch = 1795910400

// BuiltinTime is the modification time given to every file of the built-in
// overlays (and what is rendered from them): the commit time of the wwboot
// source the binary was built from (the vcs.time Go stamps into binaries
// built from a checkout), which is when those files last could have changed,
// or BuiltinEpoch when the binary carries none. It is fixed for a binary, so
// archives stay reproducible.
func BuiltinTime() time.Time {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.time" {
				if t, err := time.Parse(time.RFC3339, s.Value); err == nil && t.Unix() > 0 {
					return t.UTC()
				}
			}
		}
	}
	return time.Unix(BuiltinEpoch, 0).UTC()
}

// BuiltinAlias returns the built-in overlay that name stands for when name
// is one Warewulf 4.7's distribution gives an overlay wwboot has under
// another name, so that a nodes.conf brought from Warewulf renders
// unchanged: "debian.interfaces" (Warewulf's /etc/network/interfaces.d
// writer) is "ifupdown", "systemd.networkd" is "systemd-networkd". The overlay keeps the name it was asked by (its
// archive, cache and messages say "debian.interfaces").
func BuiltinAlias(name string) (target string, ok bool) {
	switch name {
	case "debian.interfaces":
		return "ifupdown", true
	case "systemd.networkd":
		return "systemd-networkd", true
	}
	return "", false
}

// builtinAliasNames lists the names BuiltinAlias accepts.
func builtinAliasNames() []string { return []string{"debian.interfaces", "systemd.networkd"} }

// loadBuiltin reads a built-in overlay from the embedded tree.
func (r *Renderer) loadBuiltin(name string) (*Overlay, error) {
	dir := name
	if target, ok := BuiltinAlias(name); ok {
		dir = target
	}
	root := "builtin/" + dir + "/rootfs"
	if _, err := fs.Stat(builtinFS, root); err != nil {
		return nil, fmt.Errorf("overlay %q: not in %s nor built in: create %s/%s/rootfs or remove it from the node's overlay list: %w",
			name, r.opts.SiteDir, r.opts.SiteDir, name, ErrNotFound)
	}
	o := &Overlay{Name: name, Source: Builtin, Dir: "builtin:" + name}
	mtime := BuiltinTime()
	err := fs.WalkDir(builtinFS, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(p, root), "/")
		if rel == "" {
			return nil
		}
		f := &File{Path: rel, Mode: builtinMode(dir, rel, d.IsDir()), MTime: mtime}
		if d.IsDir() {
			f.Mode |= fs.ModeDir
		} else if f.Data, err = builtinFS.ReadFile(p); err != nil {
			return err
		}
		o.Files = append(o.Files, f)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("overlay %s: reading built-in tree: %w", name, err)
	}
	return o, r.prepare(o)
}

// prepare parses templates and computes the content hash.
func (r *Renderer) prepare(o *Overlay) error {
	sort.SliceStable(o.Files, func(i, j int) bool { return o.Files[i].Path < o.Files[j].Path })
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00", o.Name, o.Source)
	for _, f := range o.Files {
		fmt.Fprintf(h, "%s\x00%o\x00%d\x00%d\x00%d\x00%s\x00%d\x00", f.Path, uint32(f.Mode), f.UID, f.GID, f.MTime.Unix(), f.Target, len(f.Data))
		h.Write(f.Data)
		if f.Mode.IsRegular() && strings.HasSuffix(f.Path, ".ww") {
			// One template that does not parse must not take the overlay
			// down: it is kept with its error, renders nothing, and the
			// error names it wherever it is used.
			if err := r.parseTemplate(o, f); err != nil {
				f.parseErr = err
				r.log.Warn("overlay: template does not parse; it is left out, the overlay's other files render", "err", err)
			}
		}
	}
	o.Hash = hex.EncodeToString(h.Sum(nil))
	return nil
}

// Names lists the overlays available: site overlays and built-ins, sorted,
// each once.
func (r *Renderer) Names() ([]string, error) {
	seen := map[string]bool{}
	if r.opts.SiteDir != "" {
		ents, err := os.ReadDir(r.opts.SiteDir)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("listing site overlays in %s: %w", r.opts.SiteDir, err)
		}
		for _, e := range ents {
			if e.IsDir() && validName(e.Name()) && !strings.HasPrefix(e.Name(), ".") {
				seen[e.Name()] = true
			}
		}
	}
	ents, _ := fs.ReadDir(builtinFS, "builtin")
	for _, e := range ents {
		seen[e.Name()] = true
	}
	for _, n := range builtinAliasNames() {
		seen[n] = true
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}

// BuiltinNames lists the overlays compiled into the package.
func BuiltinNames() []string {
	ents, _ := fs.ReadDir(builtinFS, "builtin")
	out := make([]string, 0, len(ents))
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// Overlay returns overlay name, loaded: the site's if the site has it, else
// the built-in one. Loaded overlays are cached; a site overlay is re-read
// when its files change (checked at most every Options.CheckInterval).
func (r *Renderer) Overlay(name string) (*Overlay, error) {
	if !validName(name) {
		return nil, fmt.Errorf("overlay name %q: use letters, digits, '-', '.', '_' and ':': %w", name, ErrNotFound)
	}
	now := r.now()
	r.mu.Lock()
	c := r.overlays[name]
	if c == nil {
		c = &overlayCache{}
		r.overlays[name] = c
	}
	r.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.o != nil && (c.o.Source == Builtin && r.opts.SiteDir == "" || now.Sub(c.checked) < r.opts.CheckInterval) {
		return c.o, nil
	}
	c.checked = now
	root := siteRoot(r.opts.SiteDir, name)
	if root == "" {
		if c.o != nil && c.o.Source == Builtin {
			return c.o, nil
		}
		o, err := r.loadBuiltin(name)
		if err != nil {
			return nil, err
		}
		c.o = o
		return o, nil
	}
	if c.o != nil && c.o.Source == Site && c.o.Dir == root {
		if fp, err := siteFingerprint(root); err == nil && fp == c.o.fingerprint {
			return c.o, nil
		}
	}
	o, err := r.loadSite(name, root)
	if err != nil {
		return nil, err
	}
	c.o = o
	return o, nil
}

type overlayCache struct {
	mu      sync.Mutex
	o       *Overlay
	checked time.Time
}

// cleanRel cleans a slash path relative to an overlay root and reports
// whether it stays inside it.
func cleanRel(p string) (string, bool) {
	if strings.ContainsRune(p, 0) {
		return "", false
	}
	c := path.Clean("/" + p)[1:]
	if c == "" {
		return "", false
	}
	// path.Clean of "/"+p can never leave "/", so c stays below the root;
	// reject ".." components in the input anyway: they point at a mistake.
	for _, el := range strings.Split(p, "/") {
		if el == ".." {
			return "", false
		}
	}
	return c, true
}
