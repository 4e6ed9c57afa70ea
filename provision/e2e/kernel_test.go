package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// kernel is a Debian kernel and the NIC modules the test image needs, in the
// order they must be loaded.
type kernel struct {
	Version string   // e.g. 6.1.0-56-amd64
	Vmlinuz string   // path
	Modules []string // paths of uncompressed .ko files, dependencies first
}

// nicModules are the drivers the test's NICs need: e1000 (BIOS path) and
// virtio-net (UEFI path). Their dependencies are read from each module's
// .modinfo and added.
func nicModules() []string { return []string{"e1000", "virtio_net", "virtio_pci"} }

// fetchKernel downloads Debian's linux-image-amd64 and the versioned package
// it depends on with apt-get download, into the user cache directory, and
// extracts the kernel and the NIC modules. A complete earlier extraction is
// reused without touching the network.
func fetchKernel(t *testing.T) *kernel {
	t.Helper()
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = "/var/cache"
	}
	dir := filepath.Join(cache, "wwboot-test", "kernel")
	if _, err := os.Stat(filepath.Join(dir, "COMPLETE")); err == nil {
		if k, err := loadKernel(dir); err == nil {
			t.Logf("kernel %s from cache %s", k.Version, dir)
			return k
		}
	}
	requireTools(t, "apt-get", "dpkg-deb", "tar")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	dl := filepath.Join(dir, "deb")
	if err := os.MkdirAll(dl, 0o755); err != nil {
		t.Fatal(err)
	}
	aptDownload := func(pkg string) string {
		t.Helper()
		run := func() ([]byte, error) {
			cmd := exec.CommandContext(ctx, "apt-get", "download", "-q", pkg)
			cmd.Dir = dl
			return cmd.CombinedOutput()
		}
		out, err := run()
		if err != nil {
			// A machine whose package lists were never fetched knows no
			// packages yet.
			if up, uerr := exec.CommandContext(ctx, "apt-get", "update", "-qq").CombinedOutput(); uerr != nil {
				t.Fatalf("apt-get update: %v: %s", uerr, up)
			}
			if out, err = run(); err != nil {
				t.Fatalf("apt-get download %s (in %s): %v: %s", pkg, dl, err, out)
			}
		}
		debs, _ := filepath.Glob(filepath.Join(dl, pkg+"_*.deb"))
		if len(debs) == 0 {
			t.Fatalf("apt-get download %s left no %s_*.deb in %s: %s", pkg, pkg, dl, out)
		}
		sort.Strings(debs)
		return debs[len(debs)-1]
	}
	meta := aptDownload("linux-image-amd64")
	dep, err := exec.CommandContext(ctx, "dpkg-deb", "-f", meta, "Depends").Output()
	if err != nil {
		t.Fatalf("dpkg-deb -f %s Depends: %v", meta, err)
	}
	pkg := strings.Fields(strings.Split(string(dep), ",")[0])[0] // "linux-image-6.1.0-56-amd64 (= ...)"
	deb := aptDownload(pkg)

	// Extract only the kernel and the network and virtio driver directories
	// (the whole package is ~400 MB unpacked).
	tmp := dir + ".tmp"
	_ = os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	script := `dpkg-deb --fsys-tarfile "$1" | tar -x -C "$2" --wildcards --no-anchored 'boot/vmlinuz-*' '*/kernel/drivers/net/*' '*/kernel/drivers/virtio/*' '*/kernel/net/core/*'`
	if out, err := exec.CommandContext(ctx, "sh", "-c", script, "sh", deb, tmp).CombinedOutput(); err != nil {
		t.Fatalf("extract %s: %v: %s", deb, err, out)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		t.Fatal(err)
	}
	// Keep the .debs out of the cache: the extraction is what is reused.
	k, err := loadKernel(dir)
	if err != nil {
		t.Fatalf("kernel package %s: %v", deb, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "COMPLETE"), []byte(k.Version+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("kernel %s downloaded into %s", k.Version, dir)
	return k
}

// loadKernel finds the kernel and the NIC modules in an extracted package
// tree and orders the modules by their dependencies.
func loadKernel(dir string) (*kernel, error) {
	vmlinuz, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	if len(vmlinuz) != 1 {
		return nil, fmt.Errorf("want one boot/vmlinuz-* in %s, found %d", dir, len(vmlinuz))
	}
	version := strings.TrimPrefix(filepath.Base(vmlinuz[0]), "vmlinuz-")
	// Debian 12 keeps modules under /lib/modules, later releases under
	// /usr/lib/modules, compressed.
	byName := map[string]string{}
	for _, root := range []string{"lib", "usr/lib"} {
		base := filepath.Join(dir, root, "modules", version, "kernel")
		_ = filepath.WalkDir(base, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				name := d.Name()
				for _, ext := range []string{".ko", ".ko.xz", ".ko.zst"} {
					if m, ok := strings.CutSuffix(name, ext); ok {
						byName[strings.ReplaceAll(m, "-", "_")] = p
					}
				}
			}
			return nil
		})
	}
	var order []string
	seen := map[string]bool{}
	var visit func(m string) error
	visit = func(m string) error {
		if seen[m] {
			return nil
		}
		seen[m] = true
		p, ok := byName[m]
		if !ok {
			return fmt.Errorf("module %s not in %s (kernel %s)", m, dir, version)
		}
		ko, err := plainModule(p)
		if err != nil {
			return err
		}
		deps, err := moduleDepends(ko)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d); err != nil {
				return err
			}
		}
		order = append(order, ko)
		return nil
	}
	for _, m := range nicModules() {
		if err := visit(m); err != nil {
			return nil, err
		}
	}
	return &kernel{Version: version, Vmlinuz: vmlinuz[0], Modules: order}, nil
}

// plainModule returns an uncompressed copy of a compressed module (busybox
// insmod loads only plain ones), or p itself.
func plainModule(p string) (string, error) {
	var tool string
	switch {
	case strings.HasSuffix(p, ".ko"):
		return p, nil
	case strings.HasSuffix(p, ".xz"):
		tool = "xz"
	case strings.HasSuffix(p, ".zst"):
		tool = "zstd"
	}
	out := p[:strings.LastIndex(p, ".")]
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	if b, err := exec.Command(tool, "-d", "-k", "-q", p).CombinedOutput(); err != nil {
		return "", fmt.Errorf("%s -d %s: %v: %s", tool, p, err, b)
	}
	return out, nil
}

// moduleDepends reads the depends= entry of a module's .modinfo section.
func moduleDepends(ko string) ([]string, error) {
	b, err := os.ReadFile(ko)
	if err != nil {
		return nil, err
	}
	i := bytes.Index(b, []byte("\x00depends="))
	if i < 0 {
		return nil, nil
	}
	rest := b[i+len("\x00depends="):]
	rest = rest[:bytes.IndexByte(rest, 0)]
	if len(rest) == 0 {
		return nil, nil
	}
	return strings.Split(string(rest), ","), nil
}
