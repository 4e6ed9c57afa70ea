package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/wwboot/wwboot/busy"
	"github.com/wwboot/wwboot/image"
	"github.com/wwboot/wwboot/nodedb"
)

// newImageCopyCmds returns `image copy` and `image rename`, in wwctl's
// shape.
func newImageCopyCmds(a *app) []*cobra.Command {
	return []*cobra.Command{newImageCopyCmd(a), newImageRenameCmd(a)}
}

// rebuildOptions are the options image m was built with, to build a copy
// or a renamed image the same way.
func rebuildOptions(m image.Meta) image.BuildOptions {
	return image.BuildOptions{
		Options: image.Options{Compression: m.Compression, Level: m.Level, Excludes: m.Excludes,
			NoDefaultExcludes: m.NoDefaultExcl, KeepHostFiles: m.KeepHostFiles},
		Kernel: m.KernelOption,
	}
}

func newImageCopyCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "copy NAME NEW",
		Short: "Copy image NAME's tree to ROOT/images/roots/NEW and build it as image NEW",
		Long: `The copy keeps owners (when run as root), permissions with setuid/setgid bits, symlinks,
hard links, device nodes and extended attributes (file capabilities), so NEW boots like NAME
and can then be changed on its own.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			s, err := image.OpenStore(a.path("images"))
			if err != nil {
				return err
			}
			m, err := s.Lookup(ctx, args[0])
			if err != nil {
				return err
			}
			if _, err := s.Lookup(ctx, args[1]); err == nil {
				return fmt.Errorf("image %s exists: delete it first or choose another name", args[1])
			}
			// Hold the store's shared busy lock from here to the import, so
			// that no sweep takes the new tree under roots/ for a leftover
			// before an image uses it.
			release, err := busy.Begin(s.Dir(), nil)
			if err != nil {
				return err
			}
			defer release()
			dst := filepath.Join(s.Dir(), "roots", args[1])
			if _, err := os.Lstat(dst); err == nil {
				return fmt.Errorf("%s exists: remove it or choose another name", dst)
			}
			start := time.Now()
			n, _, err := copyTree(m.Root, dst)
			if err != nil {
				return fmt.Errorf("image copy %s %s: %w", args[0], args[1], err)
			}
			res, err := s.Import(ctx, dst, args[1], rebuildOptions(m))
			if err != nil {
				_ = os.RemoveAll(dst)
				return err
			}
			fmt.Fprintf(a.stdout, "copied %s (%d entries) to %s\n", args[0], n, dst)
			printResult(a.stdout, res, time.Since(start))
			return nil
		},
	}
}

func newImageRenameCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "rename NAME NEW",
		Short: "Rename image NAME to NEW, and the nodes and profiles that boot it",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			old, name := args[0], args[1]
			s, err := image.OpenStore(a.path("images"))
			if err != nil {
				return err
			}
			m, err := s.Lookup(ctx, old)
			if err != nil {
				return err
			}
			if _, err := s.Lookup(ctx, name); err == nil {
				return fmt.Errorf("image %s exists: delete it first or choose another name", name)
			}
			// Hold the store's shared busy lock from here to the import, so
			// that no sweep takes the new tree under roots/ for a leftover
			// before an image uses it.
			release, err := busy.Begin(s.Dir(), nil)
			if err != nil {
				return err
			}
			defer release()
			tree := m.Root
			roots := filepath.Join(s.Dir(), "roots")
			if filepath.Dir(tree) == roots && filepath.Base(tree) == old {
				// A tree the store unpacked moves with the name.
				dst := filepath.Join(roots, name)
				if _, err := os.Lstat(dst); err == nil {
					return fmt.Errorf("%s exists: remove it or choose another name", dst)
				}
				if err := os.Rename(tree, dst); err != nil {
					return err
				}
				tree = dst
			}
			start := time.Now()
			res, err := s.Import(ctx, tree, name, rebuildOptions(m))
			if err != nil {
				if tree != m.Root {
					_ = os.Rename(tree, m.Root)
				}
				return err
			}
			var users int
			err = a.update(ctx, func(c *nodedb.Config) error {
				users = 0
				for _, recs := range []map[string]*nodedb.Record{c.NodeProfiles, c.Nodes} {
					for _, r := range recs {
						if r != nil && r.ImageName == old {
							r.ImageName = name
							users++
						}
					}
				}
				return nil
			}, "renamed image in", "node", nil)
			if err != nil {
				return fmt.Errorf("image %s built, but the inventory still names %s: %w", name, old, err)
			}
			if err := s.Delete(ctx, old); err != nil && !errors.Is(err, image.ErrNotFound) {
				return err
			}
			printResult(a.stdout, res, time.Since(start))
			fmt.Fprintf(a.stdout, "renamed %s to %s; %d nodes and profiles now name %s\n", old, name, users, name)
			return nil
		},
	}
}

// copyTree copies the tree src to dst (which must not exist) with
// everything a root file system carries: owners (as root), permission and
// setuid/setgid/sticky bits, symlinks, hard links, device nodes, FIFOs,
// sockets' absence aside, extended attributes and modification times. It
// goes through dst.tmp, one syncfs and a rename, so a failed copy leaves
// nothing and a crash no half-written file; it returns the number of
// entries and of regular files among them. Image copy and import warewulf's
// overlays use it.
func copyTree(src, dst string) (entries, files int, err error) {
	tmp := dst + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return 0, 0, err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return 0, 0, err
	}
	type inode struct{ dev, ino uint64 }
	links := map[inode]string{}
	asRoot := os.Geteuid() == 0
	type dirTime struct {
		path string
		mt   time.Time
	}
	var dirs []dirTime
	err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		out := filepath.Join(tmp, rel)
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st, _ := info.Sys().(*syscall.Stat_t)
		mode := info.Mode()
		entries++
		if mode.IsRegular() {
			files++
		}
		if st != nil && !mode.IsDir() && st.Nlink > 1 {
			key := inode{uint64(st.Dev), st.Ino}
			if first, ok := links[key]; ok {
				return os.Link(first, out)
			}
			links[key] = out
		}
		switch {
		case mode.IsDir():
			if err := os.Mkdir(out, 0o700); err != nil {
				return err
			}
			dirs = append(dirs, dirTime{out, info.ModTime()})
		case mode&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if err := os.Symlink(target, out); err != nil {
				return err
			}
		case mode.IsRegular():
			if err := copyRegular(p, out); err != nil {
				return err
			}
		case mode&(fs.ModeDevice|fs.ModeNamedPipe) != 0 && st != nil:
			if err := unix.Mknod(out, st.Mode, int(st.Rdev)); err != nil {
				return fmt.Errorf("%s: %w (device nodes need root)", p, err)
			}
		case mode&fs.ModeSocket != 0:
			entries-- // a socket is recreated by whoever listens on it
			return nil
		default:
			return fmt.Errorf("%s: cannot copy a file of mode %s", p, mode)
		}
		if asRoot && st != nil {
			if err := os.Lchown(out, int(st.Uid), int(st.Gid)); err != nil {
				return err
			}
		}
		if err := copyXattrs(p, out); err != nil {
			return err
		}
		if mode&fs.ModeSymlink != 0 {
			return nil
		}
		// After chown, which clears setuid and setgid.
		if err := os.Chmod(out, mode.Perm()|mode&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
			return err
		}
		if !mode.IsDir() {
			return os.Chtimes(out, info.ModTime(), info.ModTime())
		}
		return nil
	})
	if err == nil {
		// Directories last: creating their entries changed their times.
		for i := len(dirs) - 1; i >= 0; i-- {
			if err = os.Chtimes(dirs[i].path, dirs[i].mt, dirs[i].mt); err != nil {
				break
			}
		}
	}
	if err == nil {
		err = syncFS(tmp)
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		_ = os.RemoveAll(tmp)
		return 0, 0, err
	}
	return entries, files, nil
}

// syncFS flushes the file system that holds dir (syncfs(2)): one call for
// every file a copy wrote, where an fsync each would cost a disk flush per
// file.
func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}

func copyRegular(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// copyXattrs copies the extended attributes of src to dst (neither
// followed if a symlink). A file system without them is not an error.
func copyXattrs(src, dst string) error {
	size, err := unix.Llistxattr(src, nil)
	if err != nil || size == 0 {
		return nil
	}
	buf := make([]byte, size)
	size, err = unix.Llistxattr(src, buf)
	if err != nil {
		return nil
	}
	for _, name := range splitNul(buf[:size]) {
		vs, err := unix.Lgetxattr(src, name, nil)
		if err != nil {
			continue
		}
		v := make([]byte, vs)
		vs, err = unix.Lgetxattr(src, name, v)
		if err != nil {
			continue
		}
		if err := unix.Lsetxattr(dst, name, v[:vs], 0); err != nil && !errors.Is(err, unix.ENOTSUP) && !errors.Is(err, unix.EPERM) {
			return fmt.Errorf("%s: extended attribute %s: %w", dst, name, err)
		}
	}
	return nil
}

func splitNul(b []byte) []string {
	var out []string
	start := 0
	for i, c := range b {
		if c == 0 {
			if i > start {
				out = append(out, string(b[start:i]))
			}
			start = i + 1
		}
	}
	return out
}
