package provision

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"syscall"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/u-root/u-root/pkg/cpio"
)

// Agent runs on a node and keeps its runtime overlay current: it fetches the
// node's runtime overlay from the provisioning server and applies it to the
// node's file system, now and then every Interval. It is the node side of
// the runtime overlay's protection: it connects from a privileged source
// port (below 1024, so only root on the node can ask, as Warewulf's secure
// mode requires), from the node's own address, with the asset key when the
// node has one.
//
// Files are replaced one by one, each atomically (a temporary file renamed
// over the old one); nothing outside Root is ever written, whatever the
// archive says. Files the overlay no longer carries are left alone.
type Agent struct {
	// Server is the provisioning server's base URL (http://10.0.0.1:9873).
	Server string
	// HWAddr is the node's hardware address, which names it to the server.
	HWAddr net.HardwareAddr
	// Root is where the overlay is applied ("/" on a node).
	Root string
	// Interval between fetches; zero fetches once.
	Interval time.Duration
	// AssetKey is sent when the node has one.
	AssetKey string
	// Client makes the requests; nil means one that dials from a
	// privileged source port.
	Client *http.Client
	// Log receives progress and errors; nil discards them.
	Log *slog.Logger

	etag string // of the archive last applied
}

// Run fetches and applies the runtime overlay until ctx ends (or once, when
// Interval is zero). A failed fetch is logged and retried at the next tick.
func (a *Agent) Run(ctx context.Context) error {
	for {
		changed, err := a.Sync(ctx)
		switch {
		case a.Interval == 0:
			return err
		case err != nil:
			a.log().Error("runtime overlay", "err", err)
		case changed:
			a.log().Info("runtime overlay applied", "etag", a.etag)
		}
		// A little jitter, so that a thousand nodes booted together do
		// not ask together forever.
		wait := a.Interval + rand.N(a.Interval/10+1)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// Sync fetches the runtime overlay once and applies it if it changed since
// the last Sync. changed reports whether files were written.
func (a *Agent) Sync(ctx context.Context) (changed bool, err error) {
	u := strings.TrimRight(a.Server, "/") + "/overlay/runtime/" + strings.ReplaceAll(a.HWAddr.String(), ":", "-")
	if a.AssetKey != "" {
		u += "?assetkey=" + url.QueryEscape(a.AssetKey)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return false, fmt.Errorf("runtime overlay: %w", err)
	}
	if a.etag != "" {
		req.Header.Set("If-None-Match", a.etag)
	}
	client := a.Client
	if client == nil {
		client = PrivilegedClient()
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, fmt.Errorf("runtime overlay from %s: %w", u, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		return false, nil
	case http.StatusOK:
	default:
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return false, fmt.Errorf("runtime overlay from %s: %s: %s", u, resp.Status, strings.TrimSpace(string(msg)))
	}
	// Runtime overlays are small (hosts, keys, accounts): read it whole,
	// since the cpio reader wants random access.
	zr, err := gzip.NewReader(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return false, fmt.Errorf("runtime overlay from %s: %w", u, err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		return false, fmt.Errorf("runtime overlay from %s: %w", u, err)
	}
	if err := Apply(a.Root, bytes.NewReader(data)); err != nil {
		return false, err
	}
	a.etag = resp.Header.Get("ETag")
	return true, nil
}

func (a *Agent) log() *slog.Logger {
	if a.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return a.Log
}

// Apply writes the records of a newc cpio archive under root: directories,
// regular files (each replaced atomically) and symlinks, with their modes
// and owners. Paths are confined to root (os.Root): an entry naming "..",
// an absolute path or a path through a symlink out of root is refused.
func Apply(root string, archive io.ReaderAt) error {
	r, err := os.OpenRoot(root)
	if err != nil {
		return fmt.Errorf("apply overlay: %w", err)
	}
	defer r.Close()
	rr := cpio.Newc.Reader(archive)
	for {
		rec, err := rr.ReadRecord()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("apply overlay: %w", err)
		}
		if rec.Name == "TRAILER!!!" {
			return nil
		}
		if err := applyRecord(r, rec); err != nil {
			return fmt.Errorf("apply overlay: %s: %w", rec.Name, err)
		}
	}
}

func applyRecord(r *os.Root, rec cpio.Record) error {
	name := path.Clean(strings.TrimPrefix(rec.Name, "/"))
	if name == "." || name == ".." || strings.HasPrefix(name, "../") {
		return errors.New("path leaves the overlay's root")
	}
	perm := fs.FileMode(rec.Mode & 0o7777)
	switch rec.Mode & cpio.S_IFMT {
	case cpio.S_IFDIR:
		if err := r.MkdirAll(name, perm); err != nil {
			return err
		}
		if err := r.Chmod(name, perm); err != nil {
			return err
		}
	case cpio.S_IFREG:
		if dir := path.Dir(name); dir != "." {
			if err := r.MkdirAll(dir, 0o755); err != nil {
				return err
			}
		}
		tmp := path.Join(path.Dir(name), fmt.Sprintf(".%s.wwboot-%d", path.Base(name), rand.Uint64()))
		f, err := r.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, io.NewSectionReader(rec.ReaderAt, 0, int64(rec.FileSize)))
		if err == nil {
			err = f.Chmod(perm)
		}
		if err == nil {
			err = f.Chown(int(rec.UID), int(rec.GID))
		}
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = r.Rename(tmp, name)
		}
		if err != nil {
			_ = r.Remove(tmp)
			return err
		}
		return nil
	case cpio.S_IFLNK:
		target, err := io.ReadAll(io.NewSectionReader(rec.ReaderAt, 0, int64(rec.FileSize)))
		if err != nil {
			return err
		}
		if old, err := r.Readlink(name); err == nil && old == string(target) {
			return nil
		}
		_ = r.Remove(name)
		if err := r.Symlink(string(target), name); err != nil {
			return err
		}
		return r.Lchown(name, int(rec.UID), int(rec.GID))
	default:
		return nil // devices and fifos do not belong in a runtime overlay
	}
	return r.Lchown(name, int(rec.UID), int(rec.GID))
}

// PrivilegedClient returns an HTTP client whose connections come from a
// privileged source port (below 1024), which the provisioning server
// requires for runtime overlays. It needs root (or CAP_NET_BIND_SERVICE).
func PrivilegedClient() *http.Client {
	return &http.Client{
		Timeout: 2 * time.Minute,
		Transport: &http.Transport{
			DialContext:       dialPrivileged,
			DisableKeepAlives: true, // one port per fetch, given back at once
		},
	}
}

// dialPrivileged connects from the first free port of 512-1023, starting at
// a random one.
func dialPrivileged(ctx context.Context, network, addr string) (net.Conn, error) {
	const lo, n = 512, 512
	start := rand.N(n)
	var last error
	for i := range n {
		d := net.Dialer{LocalAddr: &net.TCPAddr{Port: lo + (start+i)%n}}
		c, err := d.DialContext(ctx, network, addr)
		if err == nil {
			return c, nil
		}
		last = err
		if errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) {
			return nil, fmt.Errorf("binding a privileged source port needs root or CAP_NET_BIND_SERVICE: %w", err)
		}
		if !errors.Is(err, syscall.EADDRINUSE) && !errors.Is(err, syscall.EADDRNOTAVAIL) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("no free privileged source port: %w", last)
}

// AgentFromNodeConf makes an Agent from the node.conf that the built-in
// wwinit overlay renders on every node (/etc/wwboot/node.conf): it names
// the node's hardware address (WWBOOT_HWADDR) and the server
// (WWBOOT_SERVER), whose provisioning service listens on port.
func AgentFromNodeConf(path string, port int) (*Agent, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("agent: %w (name the server and MAC with --server and --hwaddr instead)", err)
	}
	vars := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok || strings.HasPrefix(k, "#") {
			continue
		}
		vars[k] = shellUnquote(v)
	}
	hw, err := net.ParseMAC(vars["WWBOOT_HWADDR"])
	if err != nil {
		return nil, fmt.Errorf("agent: %s: WWBOOT_HWADDR %q: %w", path, vars["WWBOOT_HWADDR"], err)
	}
	srv := vars["WWBOOT_SERVER"]
	if net.ParseIP(srv) == nil {
		return nil, fmt.Errorf("agent: %s: WWBOOT_SERVER %q is not an address", path, srv)
	}
	return &Agent{Server: "http://" + net.JoinHostPort(srv, fmt.Sprint(port)), HWAddr: hw, Root: "/"}, nil
}

// shellUnquote undoes the single quoting of overlay's ShellQuote ('it'\”s').
func shellUnquote(s string) string {
	var b strings.Builder
	in := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\'':
			in = !in
		case c == '\\' && !in && i+1 < len(s):
			i++
			b.WriteByte(s[i])
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
