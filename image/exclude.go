package image

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"path"
	"strings"
)

// DefaultExcludes returns the patterns applied unless
// Options.NoDefaultExcludes is set: the contents of the kernel's virtual file
// systems and of scratch and cache directories. The directories themselves
// stay (they are mount points), and so do the device nodes early boot needs
// before devtmpfs is mounted.
func DefaultExcludes() []string {
	return []string{
		"/proc/*",
		"/sys/*",
		"/dev/*",
		"!/dev/console",
		"!/dev/null",
		"!/dev/zero",
		"!/dev/tty",
		"!/dev/ptmx",
		"!/dev/random",
		"!/dev/urandom",
		"/tmp/*",
		"/var/tmp/*",
		"/run/*",
		"/var/cache/apt/*",
		"/var/cache/dnf/*",
		"/var/cache/yum/*",
		"/var/cache/zypp/*",
		"/var/cache/pacman/pkg/*",
		"/var/cache/apk/*",
	}
}

// HostFile is a per-host file: state a tree picks up on the machine that
// made it (its identity, secrets, caches of its network) that would be
// wrong, or shared between every node, if it went into the image.
type HostFile struct {
	// Pattern is an exclude pattern (see Excluder).
	Pattern string
	// Empty keeps a regular file as an empty file (same owner, mode and
	// time) instead of leaving it out, for files whose presence matters.
	Empty bool
	// Why says what goes wrong if the build host's copy is kept.
	Why string
}

// DefaultHostFiles returns the per-host files a build leaves out or empties
// unless Options.KeepHostFiles is set. They are applied after
// DefaultExcludes and before the image's /etc/warewulf/excludes and
// Options.Excludes, so a later "!PATTERN" there keeps one of them.
//
// Only regular files and directories are matched: a symbolic link at one of
// these paths is kept as it is (Debian's /etc/resolv.conf may point into
// /run, where systemd-resolved or resolvconf writes the node's own file; the
// link carries nothing of the build host). The list follows what
// virt-sysprep's machine-id, ssh-hostkeys, udev-persistent-net,
// dhcp-client-state, logfiles/utmp and random-seed operations and mkosi's
// package metadata cleaning do, for a diskless node whose per-node identity
// (machine-id, host keys, hostname, resolv.conf) comes from its overlays.
func DefaultHostFiles() []HostFile {
	return []HostFile{
		// machine-id(5): an empty file makes systemd generate an id at
		// boot and write it (without "first boot" semantics, whose
		// systemd-firstboot could prompt on the console); a missing one is
		// first boot. A node overlay may write the node's own id on top.
		{Pattern: "/etc/machine-id", Empty: true, Why: "every node would share the build host's machine id"},
		{Pattern: "/var/lib/dbus/machine-id", Why: "systemd and D-Bus read it when /etc/machine-id is empty (a symlink to /etc/machine-id is kept)"},
		{Pattern: "/etc/hostname", Why: "the build host's name; the hostname overlay writes the node's"},
		{Pattern: "/etc/resolv.conf", Why: "the build host's name servers; the resolv overlay writes the node's"},
		{Pattern: "/etc/ssh/ssh_host_*", Why: "every node would share one ssh host identity; the ssh.host_keys overlay gives each node its keys"},
		{Pattern: "/var/lib/systemd/random-seed", Why: "every node would seed its random pool with the same bytes"},
		{Pattern: "/var/lib/systemd/credential.secret", Why: "the build host's credential encryption secret"},
		{Pattern: "/var/lib/urandom/random-seed", Why: "every node would seed its random pool with the same bytes"},
		{Pattern: "/var/lib/random-seed", Why: "every node would seed its random pool with the same bytes"},
		{Pattern: "/etc/udev/rules.d/70-persistent-net.rules", Why: "names NICs after the build host's MAC addresses"},
		{Pattern: "/var/lib/dhcp/*.leases", Why: "the build host's DHCP leases"},
		{Pattern: "/var/lib/dhclient/*", Why: "the build host's DHCP leases"},
		{Pattern: "/var/lib/NetworkManager/*.lease", Why: "the build host's DHCP leases"},
		{Pattern: "/var/lib/apt/lists/*_*", Why: "package index downloads: stale on the node, tens of MB of RAM"},
		{Pattern: "/var/log/journal/*", Why: "the build host's journal"},
		{Pattern: "/var/log/wtmp", Empty: true, Why: "the build host's logins (kept empty: login records need the file)"},
		{Pattern: "/var/log/btmp", Empty: true, Why: "the build host's failed logins"},
		{Pattern: "/var/log/lastlog", Empty: true, Why: "the build host's last logins"},
	}
}

// ExcludesFile is where an image lists its own exclude patterns, one per
// line, as Warewulf does (# starts a comment).
const ExcludesFile = "/etc/warewulf/excludes"

// Excluder decides which paths of a tree stay out of an image. Patterns are
// path.Match globs. One that contains a "/" (other than a trailing one) is
// matched against the whole slash path from the tree root, with a leading
// "/" ("/usr/share/doc/*"; "usr/share/doc/*" means the same); one without is
// matched against the base name at any depth ("*.pyc"). A pattern that
// matches a directory excludes all of it; a trailing "/" is ignored. A
// pattern starting with "!" re-includes what an earlier pattern excluded; the
// last matching pattern wins. A re-include only works for entries whose
// directory is itself included.
type Excluder struct {
	pats []pattern
}

type pattern struct {
	glob   string
	negate bool
	base   bool // match the base name only
	host   bool // a HostFile rule: never matches symlinks
	empty  bool // a HostFile rule that empties a regular file
}

// NewExcluder compiles patterns, reporting the first malformed one.
func NewExcluder(patterns ...string) (*Excluder, error) {
	e := &Excluder{}
	if err := e.Add("", patterns...); err != nil {
		return nil, err
	}
	return e, nil
}

// Add appends patterns; origin names where they came from in errors.
func (e *Excluder) Add(origin string, patterns ...string) error {
	for i, p := range patterns {
		p = strings.TrimSpace(p)
		if p == "" || strings.HasPrefix(p, "#") {
			continue
		}
		neg := strings.HasPrefix(p, "!")
		p = strings.TrimPrefix(p, "!")
		p = strings.TrimRight(p, "/")
		base := !strings.Contains(p, "/")
		if !base && !strings.HasPrefix(p, "/") {
			p = "/" + p
		}
		if p == "" {
			continue
		}
		if _, err := path.Match(p, "/"); err != nil {
			where := fmt.Sprintf("pattern %d", i+1)
			if origin != "" {
				where = fmt.Sprintf("%s line %d", origin, i+1)
			}
			return fmt.Errorf("exclude %s %q: %w; fix the glob", where, patterns[i], err)
		}
		e.pats = append(e.pats, pattern{glob: p, negate: neg, base: base})
	}
	return nil
}

// AddHostFiles appends per-host file rules (see DefaultHostFiles). Unlike
// plain patterns they never match a symbolic link, and an Empty rule keeps a
// regular file with no content rather than leaving it out.
func (e *Excluder) AddHostFiles(files ...HostFile) error {
	for _, f := range files {
		n := len(e.pats)
		if err := e.Add("per-host files", f.Pattern); err != nil {
			return err
		}
		for i := n; i < len(e.pats); i++ {
			e.pats[i].host, e.pats[i].empty = true, f.Empty
		}
	}
	return nil
}

// AddFile adds the patterns of an excludes file's content; name is used in
// error messages.
func (e *Excluder) AddFile(name string, content []byte) error {
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(content))
	sc.Buffer(make([]byte, 4096), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading %s: %w", name, err)
	}
	return e.Add(name, lines...)
}

// Patterns returns the compiled patterns in order, as they would be written
// to an excludes file.
func (e *Excluder) Patterns() []string {
	out := make([]string, len(e.pats))
	for i, p := range e.pats {
		out[i] = p.glob
		if p.negate {
			out[i] = "!" + p.glob
		}
	}
	return out
}

// Excluded reports whether the entry at slash path p (relative to the tree
// root, with or without a leading "/") is excluded, whatever its type.
// Per-host file rules count as excluding (see Decide for the type-aware
// answer a build uses).
func (e *Excluder) Excluded(p string) bool {
	return e.Decide(p, 0) != Include
}

// Decision is what a build does with an entry.
type Decision int

// The decisions of Excluder.Decide.
const (
	Include  Decision = iota // archived as it is
	Exclude                  // left out by an exclude pattern
	HostOut                  // left out as a per-host file
	HostZero                 // archived empty as a per-host file
)

// Decide says what happens to the entry at slash path p of type typ (the
// fs.FileMode type bits; 0 for a regular file): the last matching pattern
// wins, and per-host file rules (AddHostFiles) are skipped for symbolic
// links and empty only regular files (a directory they match is left out).
func (e *Excluder) Decide(p string, typ fs.FileMode) Decision {
	if e == nil || len(e.pats) == 0 {
		return Include
	}
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	d := Include
	name := path.Base(p)
	for _, pt := range e.pats {
		if pt.host && typ&fs.ModeSymlink != 0 {
			continue
		}
		subject := p
		if pt.base {
			subject = name
		}
		if ok, _ := path.Match(pt.glob, subject); ok {
			switch {
			case pt.negate:
				d = Include
			case pt.host && pt.empty && typ.IsRegular():
				d = HostZero
			case pt.host:
				d = HostOut
			default:
				d = Exclude
			}
		}
	}
	return d
}
