package image

import (
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Kernel is a kernel image found in a tree.
type Kernel struct {
	// Path is the slash path of the kernel file from the tree root,
	// symlinks resolved inside the tree (e.g. "boot/vmlinuz-6.1.0-13-amd64").
	Path string `json:"path"`
	// Version is taken from the file name (vmlinuz-VERSION, Image-VERSION)
	// or from the modules directory (lib/modules/VERSION/vmlinuz).
	Version string `json:"version"`
	// Size is the kernel file's size in bytes.
	Size int64 `json:"size"`
	// Skipped says why the kernel is not chosen by default ("debug",
	// "rescue"), or is empty.
	Skipped string `json:"skipped,omitempty"`
}

// kernelPatterns are where Warewulf looks for kernels, in its order
// (internal/pkg/kernel/kernel.go, kernelSearchPaths), each also under usr/
// (merged-/usr trees keep lib/modules in usr/lib/modules). The vmlinux
// patterns come last and only count when nothing else is found: Warewulf
// does not look for them (an uncompressed ELF vmlinux is what SUSE's
// aarch64 images have beside the Image that boots).
var kernelPatterns = []string{
	"boot/Image-*",
	"boot/vmlinuz-linux*",
	"boot/vmlinuz-*",
	"lib/modules/*/vmlinuz",
	"lib/modules/*/vmlinuz.gz",
	"lib/modules/*/vmlinuz.zst",
	"usr/lib/modules/*/vmlinuz",
	"usr/lib/modules/*/vmlinuz.gz",
	"usr/lib/modules/*/vmlinuz.zst",
}

var vmlinuxPatterns = []string{"boot/vmlinux-*", "lib/modules/*/vmlinux", "usr/lib/modules/*/vmlinux"}

// FindKernels lists the kernels of a tree in Warewulf's places
// (kernelPatterns), best first, Warewulf's default choice
// (collection.Default) leading: kernels that are no debug ("+debug") or
// rescue ("-rescue") build before those that are, then by descending
// version as Warewulf reads it from the path (KernelVersionOf, compared
// as hashicorp/go-version does: a release after its pre-releases), then
// in search order. The first entry without Skipped is the default
// kernel. Symlinks are followed within the tree only; the same file found
// twice is listed once. vmlinux files are listed only when no other
// kernel is found.
func FindKernels(fsys fs.FS) ([]Kernel, error) {
	ks, err := findKernels(fsys, kernelPatterns)
	if err != nil || len(ks) > 0 {
		return ks, err
	}
	return findKernels(fsys, vmlinuxPatterns)
}

func findKernels(fsys fs.FS, patterns []string) ([]Kernel, error) {
	type found struct {
		k     Kernel
		order int
		v     *kversion
	}
	var list []found
	seen := map[string]bool{}
	for _, pat := range patterns {
		matches, err := fs.Glob(fsys, pat)
		if err != nil {
			return nil, err
		}
		sort.Strings(matches)
		for _, p := range matches {
			real, fi, err := resolveInTree(fsys, p)
			if err != nil || !fi.Mode().IsRegular() || seen[real] {
				continue // dangling, odd, or found already
			}
			seen[real] = true
			k := Kernel{Path: real, Version: versionFromPath(p), Size: fi.Size()}
			switch {
			case strings.Contains(p, "-rescue"):
				k.Skipped = "rescue"
			case strings.Contains(p, "+debug"):
				k.Skipped = "debug"
			}
			list = append(list, found{k, len(list), parseKVersion(p)})
		}
	}
	sort.SliceStable(list, func(i, j int) bool {
		a, b := list[i], list[j]
		if (a.k.Skipped == "") != (b.k.Skipped == "") {
			return a.k.Skipped == ""
		}
		if c := a.v.compare(b.v); c != 0 {
			return c > 0
		}
		return a.order < b.order
	})
	ks := make([]Kernel, len(list))
	for i, f := range list {
		ks[i] = f.k
	}
	return ks, nil
}

// versionFromPath is the kernel release a path names: what follows
// vmlinuz- (or Image-, vmlinux-) without a compression suffix, or the
// lib/modules directory name.
func versionFromPath(p string) string {
	base := path.Base(p)
	for _, pre := range []string{"vmlinuz-", "Image-", "vmlinux-"} {
		if v, ok := strings.CutPrefix(base, pre); ok && v != "" {
			for _, ext := range []string{".gz", ".zst", ".xz"} {
				v = strings.TrimSuffix(v, ext)
			}
			return v
		}
	}
	if dir := path.Dir(p); path.Base(path.Dir(dir)) == "modules" {
		return path.Base(dir)
	}
	return ""
}

// KernelVersionOf is the version Warewulf reads from a kernel's path
// (internal/pkg/util/version.go ParseVersion): the first
// MAJOR.MINOR.PATCH with an optional -N.N... build number in it, e.g.
// "5.14.0-427.37.1" for /lib/modules/5.14.0-427.37.1.el9_4.aarch64/vmlinuz
// ("" when there is none, as for /boot/vmlinuz-linux). Warewulf's tests
// (util/version_test.go) pin the first match: a dist tag like
// el10_2.0.1 does not count.
func KernelVersionOf(p string) string {
	if v := parseKVersion(p); v != nil {
		return v.String()
	}
	return ""
}

// kversion is a kernel version as hashicorp/go-version reads
// MAJOR.MINOR.PATCH-PRERELEASE (the pre-release here numbers only).
type kversion struct {
	seg [3]uint64
	pre []uint64
	str string
}

var kversionRE = regexp.MustCompile(`\d+\.\d+\.\d+(-[\d.]+|)`)

func parseKVersion(p string) *kversion {
	for _, m := range kversionRE.FindAllString(p, -1) {
		m = strings.TrimSuffix(m, ".")
		v := &kversion{str: m}
		main, pre, hasPre := strings.Cut(m, "-")
		ok := true
		for i, s := range strings.Split(main, ".") {
			n, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				ok = false
				break
			}
			v.seg[i] = n
		}
		if ok && hasPre {
			for _, s := range strings.Split(pre, ".") {
				n, err := strconv.ParseUint(s, 10, 64)
				if err != nil {
					ok = false
					break
				}
				v.pre = append(v.pre, n)
			}
		}
		if ok {
			return v
		}
	}
	return nil
}

func (v *kversion) String() string { return v.str }

// compare orders versions as go-version does (no version lowest; a
// release after its pre-releases; pre-releases part by part, the longer
// one after an equal prefix). It returns -1, 0 or +1.
func (v *kversion) compare(o *kversion) int {
	switch {
	case v == nil && o == nil:
		return 0
	case v == nil:
		return -1
	case o == nil:
		return 1
	}
	for i := range v.seg {
		if c := cmpU(v.seg[i], o.seg[i]); c != 0 {
			return c
		}
	}
	switch {
	case len(v.pre) == 0 && len(o.pre) == 0:
		return 0
	case len(v.pre) == 0:
		return 1
	case len(o.pre) == 0:
		return -1
	}
	for i := 0; i < len(v.pre) && i < len(o.pre); i++ {
		if c := cmpU(v.pre[i], o.pre[i]); c != 0 {
			return c
		}
	}
	return cmpU(uint64(len(v.pre)), uint64(len(o.pre)))
}

func cmpU(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// KernelByVersion picks from ks (as FindKernels lists them) the kernel a
// node's kernel version selects, as Warewulf's collection.Version does:
// the first in search order, no debug or rescue build, whose version
// (KernelVersionOf) starts with version. ok is false when none does.
func KernelByVersion(ks []Kernel, version string) (Kernel, bool) {
	best, bestOrder := Kernel{}, -1
	for _, k := range ks {
		if k.Skipped != "" || !strings.HasPrefix(KernelVersionOf(k.Path), version) {
			continue
		}
		order := searchOrder(k.Path)
		if bestOrder < 0 || order < bestOrder {
			best, bestOrder = k, order
		}
	}
	return best, bestOrder >= 0
}

// searchOrder is the index of the first pattern matching p.
func searchOrder(p string) int {
	for i, pat := range append(append([]string{}, kernelPatterns...), vmlinuxPatterns...) {
		if ok, _ := path.Match(pat, p); ok {
			return i
		}
	}
	return len(kernelPatterns) + len(vmlinuxPatterns)
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
	return Kernel{}, fmt.Errorf("no kernel in the image (looked where Warewulf does: /boot/Image-*, /boot/vmlinuz-*, /lib/modules/*/vmlinuz{,.gz}, skipping debug and rescue builds): install one in the image or pass --kernel: %w", fs.ErrNotExist)
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
