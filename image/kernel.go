package image

import (
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// Kernel is a kernel image found in a tree.
type Kernel struct {
	// Path is the slash path of the kernel file from the tree root,
	// symlinks resolved inside the tree (e.g. "boot/vmlinuz-6.1.0-13-amd64").
	Path string `json:"path"`
	// Version is taken from the file name (vmlinuz-VERSION) or from the
	// modules directory (lib/modules/VERSION/vmlinuz).
	Version string `json:"version"`
	// Size is the kernel file's size in bytes.
	Size int64 `json:"size"`
	// Skipped says why the kernel is not chosen by default ("debug",
	// "rescue"), or is empty.
	Skipped string `json:"skipped,omitempty"`
}

// FindKernels lists the kernels of a tree: /boot/vmlinuz-* and
// /lib/modules/*/vmlinuz (also under /usr/lib/modules), best first: kernels
// that are not debug or rescue builds before those that are, then by
// descending version (numeric parts compared as numbers). The first entry
// without Skipped is the default kernel. Symlinks are followed within the
// tree only.
func FindKernels(fsys fs.FS) ([]Kernel, error) {
	var ks []Kernel
	seen := map[string]bool{}
	add := func(p, version string) error {
		real, fi, err := resolveInTree(fsys, p)
		if err != nil || !fi.Mode().IsRegular() {
			return nil // dangling or odd: not a kernel
		}
		if seen[real] {
			return nil
		}
		seen[real] = true
		k := Kernel{Path: real, Version: version, Size: fi.Size()}
		lv := strings.ToLower(version)
		switch {
		case strings.Contains(lv, "rescue"):
			k.Skipped = "rescue"
		case strings.Contains(lv, "debug") || strings.HasSuffix(lv, "+dbg"):
			k.Skipped = "debug"
		}
		ks = append(ks, k)
		return nil
	}
	if ents, err := fs.ReadDir(fsys, "boot"); err == nil {
		for _, e := range ents {
			if v, ok := strings.CutPrefix(e.Name(), "vmlinuz-"); ok && v != "" {
				if err := add("boot/"+e.Name(), v); err != nil {
					return nil, err
				}
			}
		}
	}
	for _, mods := range []string{"lib/modules", "usr/lib/modules"} {
		ents, err := fs.ReadDir(fsys, mods)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if err := add(mods+"/"+e.Name()+"/vmlinuz", e.Name()); err != nil {
				return nil, err
			}
		}
	}
	sort.SliceStable(ks, func(i, j int) bool {
		if (ks[i].Skipped == "") != (ks[j].Skipped == "") {
			return ks[i].Skipped == ""
		}
		if c := CompareVersions(ks[i].Version, ks[j].Version); c != 0 {
			return c > 0
		}
		return ks[i].Path < ks[j].Path
	})
	return ks, nil
}

// DefaultKernel returns the kernel FindKernels ranks first that is not a
// debug or rescue build.
func DefaultKernel(fsys fs.FS) (Kernel, error) {
	ks, err := FindKernels(fsys)
	if err != nil {
		return Kernel{}, err
	}
	for _, k := range ks {
		if k.Skipped == "" {
			return k, nil
		}
	}
	return Kernel{}, fmt.Errorf("no kernel in the image (looked for /boot/vmlinuz-* and /lib/modules/*/vmlinuz, skipping debug and rescue builds): install one in the image or pass --kernel: %w", fs.ErrNotExist)
}

// ResolveInTree follows the symlinks of the slash path p inside the tree
// fsys as a chroot would: absolute targets are taken from the tree root,
// ".." stops at the root. It returns the real slash path (no symlink in
// it) and its info; nothing outside the tree is read.
func ResolveInTree(fsys fs.FS, p string) (string, fs.FileInfo, error) {
	return resolveInTree(fsys, p)
}

func resolveInTree(fsys fs.FS, p string) (string, fs.FileInfo, error) {
	parts := strings.Split(p, "/")
	var done []string
	for hops := 0; len(parts) > 0; {
		c := parts[0]
		parts = parts[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(done) > 0 {
				done = done[:len(done)-1]
			}
			continue
		}
		cur := path.Join(append(done, c)...)
		fi, err := fs.Lstat(fsys, cur)
		if err != nil {
			return "", nil, err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			done = append(done, c)
			if len(parts) == 0 {
				return cur, fi, nil
			}
			continue
		}
		if hops++; hops > 40 {
			return "", nil, fmt.Errorf("%s: too many levels of symbolic links", p)
		}
		t, err := fs.ReadLink(fsys, cur)
		if err != nil {
			return "", nil, err
		}
		if strings.HasPrefix(t, "/") {
			done = nil
		}
		parts = append(strings.Split(t, "/"), parts...)
	}
	fi, err := fs.Stat(fsys, ".")
	return ".", fi, err
}

// CompareVersions compares kernel version strings the way sort -V roughly
// does: runs of digits compare as numbers, other runs as strings. It returns
// -1, 0 or +1.
func CompareVersions(a, b string) int {
	for a != "" && b != "" {
		ad, an := splitRun(a)
		bd, bn := splitRun(b)
		ca, cb := a[:an], b[:bn]
		a, b = a[an:], b[bn:]
		switch {
		case ad && bd:
			ca, cb = strings.TrimLeft(ca, "0"), strings.TrimLeft(cb, "0")
			if len(ca) != len(cb) {
				if len(ca) < len(cb) {
					return -1
				}
				return 1
			}
			if c := strings.Compare(ca, cb); c != 0 {
				return c
			}
		case ad != bd:
			// A number sorts after text: 6.1.10 > 6.1.rc
			if ad {
				return 1
			}
			return -1
		default:
			if c := strings.Compare(ca, cb); c != 0 {
				return c
			}
		}
	}
	switch {
	case a == b:
		return 0
	case a == "":
		return -1
	}
	return 1
}

func splitRun(s string) (digits bool, n int) {
	digits = s[0] >= '0' && s[0] <= '9'
	for n < len(s) && (s[n] >= '0' && s[n] <= '9') == digits {
		n++
	}
	return digits, n
}
