package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/wwboot/wwboot/busy"
	"github.com/wwboot/wwboot/image"
)

// exitCodeError carries a command's exit code out of wwboot: main exits
// with code (printing msg when it is not empty) instead of 1.
type exitCodeError struct {
	code int
	msg  string
}

func (e *exitCodeError) Error() string { return e.msg }

// childPath is the PATH the command runs with inside the image.
const childPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// newImageExecCmds builds `wwboot image exec`, `image shell` and the hidden
// `image exec-child` that the exec re-runs itself as, inside the new
// namespaces, to mount and chroot.
func newImageExecCmds(a *app) []*cobra.Command {
	var noBuild bool
	execCmd := &cobra.Command{
		Use:   "exec NAME -- CMD [ARGS...]",
		Short: "Run CMD inside image NAME's tree (own mount, uts, ipc and pid namespaces, host network), then rebuild the image",
		Long: `CMD runs chrooted into the image's tree with /proc, /dev, /sys, /run and /tmp mounted
and the host's /etc/resolv.conf over the image's, for the duration only (nothing of these
ends up in the tree). When CMD exits 0, the image's /etc/warewulf/image_exit.sh (or
container_exit.sh) runs as wwctl runs it, then the image is rebuilt, as by wwboot image
build NAME, unless --no-build is given. The shell keeps no history (HISTFILE=/dev/null). wwboot exits with CMD's exit code. Needs root.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 1 {
				return fmt.Errorf("usage: wwboot image exec NAME -- CMD [ARGS...]")
			}
			return runImageExec(cmd.Context(), a, cmd, args[0], args[1:], noBuild)
		},
	}
	execCmd.Flags().BoolVar(&noBuild, "no-build", false, "do not rebuild the image afterwards")

	var shellNoBuild bool
	shellCmd := &cobra.Command{
		Use:   "shell NAME",
		Short: "Run an interactive shell inside image NAME's tree ($SHELL if the image has it, else /bin/sh), then rebuild the image",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runImageExec(cmd.Context(), a, cmd, args[0], nil, shellNoBuild)
		},
	}
	shellCmd.Flags().BoolVar(&shellNoBuild, "no-build", false, "do not rebuild the image afterwards")

	var hostname string
	child := &cobra.Command{
		Use:    "exec-child ROOT -- CMD [ARGS...]",
		Hidden: true,
		Args:   cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			err := execChild(args[0], hostname, args[1:])
			// Only reached on failure: report on the setup pipe (fd 3)
			// so that the parent tells it from CMD's own exit code.
			report := os.NewFile(3, "setup")
			fmt.Fprintln(report, err)
			os.Exit(125)
			return err
		},
	}
	child.Flags().StringVar(&hostname, "hostname", "", "host name in the new uts namespace")
	return []*cobra.Command{execCmd, shellCmd, child}
}

// runImageExec runs argv (nil: a shell) in image name's tree and rebuilds
// the image when it exits 0 and noBuild is false.
func runImageExec(ctx context.Context, a *app, cmd *cobra.Command, name string, argv []string, noBuild bool) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("image %s: exec needs root (it mounts /proc, /dev, /sys inside the tree and chroots into it): run it with sudo", name)
	}
	s, err := image.OpenStore(a.path("images"))
	if err != nil {
		return err
	}
	// Hold the store's shared busy lock for the duration, as import and
	// build do, so that no sweep takes the tree for a leftover.
	release, err := busy.Begin(s.Dir(), nil)
	if err != nil {
		return err
	}
	defer release()
	m, err := s.Lookup(ctx, name)
	if err != nil {
		if errors.Is(err, image.ErrNotFound) {
			return fmt.Errorf("image %q: %w: import it first (wwboot image import SRC %s)", name, err, name)
		}
		return err
	}
	root := m.Root
	if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
		return fmt.Errorf("image %s: its tree %s is not there (%v): import it again (wwboot image import SRC %s --overwrite)", name, root, err, name)
	}
	// One exec or shell at a time in a tree, as wwctl allows: an
	// exclusive flock on the tree's directory, dropped when we return
	// (or die).
	dir, err := os.Open(root)
	if err != nil {
		return fmt.Errorf("image %s: %w", name, err)
	}
	defer dir.Close()
	if err := unix.Flock(int(dir.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return fmt.Errorf("image %s: another image exec or shell is running in its tree %s: wait for it to end", name, root)
		}
		return fmt.Errorf("image %s: locking %s: %w", name, root, err)
	}
	if argv == nil {
		sh := a.getenv("SHELL")
		if sh == "" || !filepath.IsAbs(sh) || !isExecutableIn(root, sh) {
			sh = "/bin/sh"
		}
		argv = []string{sh}
	}
	code, err := execInImage(ctx, a, name, root, argv)
	if err != nil {
		return fmt.Errorf("image %s: %w", name, err)
	}
	if code != 0 {
		return &exitCodeError{code: code, msg: fmt.Sprintf("image %s: %s exited with %d: image not rebuilt", name, argv[0], code)}
	}
	// As wwctl does: the image's exit script, the first of these that
	// exists, runs after a command that succeeded.
	for _, script := range []string{"/etc/warewulf/image_exit.sh", "/etc/warewulf/container_exit.sh"} {
		if fi, err := os.Stat(filepath.Join(root, script)); err != nil || !fi.Mode().IsRegular() {
			continue
		}
		code, err := execInImage(ctx, a, name, root, []string{"/bin/sh", script})
		if err != nil {
			return fmt.Errorf("image %s: exit script %s: %w", name, script, err)
		}
		if code != 0 {
			return &exitCodeError{code: code, msg: fmt.Sprintf("image %s: exit script %s exited with %d: image not rebuilt", name, script, code)}
		}
		break
	}
	if noBuild {
		return nil
	}
	var f buildFlags
	o, err := f.options(a, cmd)
	if err != nil {
		return err
	}
	start := time.Now()
	res, err := s.Build(ctx, name, o)
	if err != nil {
		return fmt.Errorf("image %s: rebuilding after exec: %w", name, err)
	}
	printResult(a.stdout, res, time.Since(start))
	return nil
}

// isExecutableIn reports whether path, inside the tree root, is an
// executable file (one level of absolute symlink followed within root).
func isExecutableIn(root, path string) bool {
	p := filepath.Join(root, path)
	if t, err := os.Readlink(p); err == nil && filepath.IsAbs(t) {
		p = filepath.Join(root, t)
	}
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// execInImage re-runs this binary as `image exec-child` in new mount, uts,
// ipc and pid namespaces and returns argv's exit code. A setup failure of
// the child (mount, chroot, exec) is an error.
func execInImage(ctx context.Context, a *app, name, root string, argv []string) (int, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("finding the wwboot binary to re-run: %w", err)
	}
	// resolv.conf: the child mounts the host's over it; if it has to
	// create the file to mount on, drop it afterwards.
	resolv := filepath.Join(root, "etc/resolv.conf")
	_, statErr := os.Lstat(resolv)
	created := errors.Is(statErr, os.ErrNotExist)
	if created {
		defer func() {
			if fi, err := os.Lstat(resolv); err == nil && fi.Mode().IsRegular() && fi.Size() == 0 {
				_ = os.Remove(resolv)
			}
		}()
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer pr.Close()
	c := exec.CommandContext(ctx, self, append([]string{"image", "exec-child", "--hostname", name, root, "--"}, argv...)...)
	c.Stdin, c.Stdout, c.Stderr = os.Stdin, a.stdout, a.stderr
	c.ExtraFiles = []*os.File{pw}
	env := []string{"PATH=" + childPath, "HOME=/root", "SHELL=" + argv[0], "PS1=[wwboot image " + name + "] \\w# ", "HISTFILE=/dev/null"}
	if t := a.getenv("TERM"); t != "" {
		env = append(env, "TERM="+t)
	}
	c.Env = env
	c.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC | syscall.CLONE_NEWPID,
		Pdeathsig:  syscall.SIGKILL,
	}
	if err := c.Start(); err != nil {
		pw.Close()
		return 0, fmt.Errorf("starting %s in new namespaces: %w", self, err)
	}
	pw.Close()
	setup, _ := io.ReadAll(pr)
	werr := c.Wait()
	if msg := strings.TrimSpace(string(setup)); msg != "" {
		return 0, fmt.Errorf("preparing the tree %s: %s", root, msg)
	}
	var ee *exec.ExitError
	if errors.As(werr, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ee.ExitCode(), nil
	}
	if werr != nil {
		return 0, werr
	}
	return 0, nil
}

// execChild runs in the new namespaces (pid 1 of its pid namespace): it
// makes every mount private, mounts /proc, /sys, /dev, /run, /tmp and the
// host's resolv.conf inside root, chroots and execs argv. It returns only
// on failure. The mounts go away with the mount namespace when argv exits.
func execChild(root, hostname string, argv []string) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making mounts private: %w", err)
	}
	if hostname != "" {
		if err := unix.Sethostname([]byte(hostname)); err != nil {
			return fmt.Errorf("sethostname: %w", err)
		}
	}
	mounts := []struct {
		src, dir, fstype string
		flags            uintptr
		data             string
	}{
		{"proc", "proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"/sys", "sys", "", unix.MS_BIND | unix.MS_REC, ""},
		{"/dev", "dev", "", unix.MS_BIND | unix.MS_REC, ""},
		{"tmpfs", "run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
		{"tmpfs", "tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
	}
	for _, m := range mounts {
		dir := filepath.Join(root, m.dir)
		if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("/%s: %w", m.dir, err)
			}
		}
		if err := unix.Mount(m.src, dir, m.fstype, m.flags, m.data); err != nil {
			return fmt.Errorf("mounting %s on %s: %w", m.src, dir, err)
		}
	}
	if err := bindResolvConf(root); err != nil {
		return err
	}
	if err := unix.Chroot(root); err != nil {
		return fmt.Errorf("chroot %s: %w", root, err)
	}
	if err := os.Chdir("/"); err != nil {
		return err
	}
	path := argv[0]
	if !strings.Contains(path, "/") {
		p, err := exec.LookPath(path)
		if err != nil {
			return fmt.Errorf("%s: not found in the image (PATH %s)", path, childPath)
		}
		path = p
	}
	unix.CloseOnExec(3)
	if err := unix.Exec(path, argv, os.Environ()); err != nil {
		return fmt.Errorf("exec %s in the image: %w", path, err)
	}
	return nil
}

// bindResolvConf mounts the host's /etc/resolv.conf over the image's, so
// that package managers resolve names. A missing file is created empty to
// mount on (the parent removes it afterwards); a symlink into /run or /tmp
// (tmpfs here) gets its target created there; any other symlink is left
// alone.
func bindResolvConf(root string) error {
	host := "/etc/resolv.conf"
	if _, err := os.Stat(host); err != nil {
		return nil // nothing to offer
	}
	target := filepath.Join(root, "etc/resolv.conf")
	if t, err := os.Readlink(target); err == nil {
		if !filepath.IsAbs(t) {
			t = filepath.Join("/etc", t)
		}
		t = filepath.Clean(t)
		if !strings.HasPrefix(t, "/run/") && !strings.HasPrefix(t, "/tmp/") {
			return nil
		}
		target = filepath.Join(root, t)
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return fmt.Errorf("resolv.conf: %w", err)
		}
	} else if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		return fmt.Errorf("resolv.conf: %w", err)
	}
	if _, err := os.Lstat(target); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(target, nil, 0o644); err != nil {
			return fmt.Errorf("resolv.conf: %w", err)
		}
	}
	if err := unix.Mount(host, target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("binding %s on %s: %w", host, target, err)
	}
	return nil
}
