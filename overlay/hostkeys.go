package overlay

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sync/singleflight"
	"golang.org/x/sys/unix"
)

// hostKeys generates SSH host keys per node once and keeps them under dir:
// dir/nodes/NODE/ssh_host_TYPE_key (0600) and .pub (0644), or, when shared,
// one set in dir/shared/ for every node.
type hostKeys struct {
	dir    string
	shared bool
	rsa    int // RSA modulus bits
	sf     singleflight.Group

	mu  sync.Mutex
	mem map[string]*hostKey // by private key path; revalidated by stamps
}

type hostKey struct {
	private, public string
	stamps          []fileStamp
}

func validKeyType(t string) bool {
	switch t {
	case "ed25519", "ecdsa", "rsa":
		return true
	}
	return false
}

// nodeDir is where node's keys live.
func (k *hostKeys) nodeDir(node string) (string, error) {
	if k.dir == "" {
		return "", errors.New("ssh host keys: no key directory configured (Options.KeyDir): set one so keys survive restarts")
	}
	if k.shared {
		return filepath.Join(k.dir, "shared"), nil
	}
	if node == "" || node == "." || node == ".." || strings.ContainsAny(node, "/\x00") {
		return "", fmt.Errorf("ssh host keys: node name %q cannot name a directory: rename the node", node)
	}
	return filepath.Join(k.dir, "nodes", node), nil
}

// get returns node's key of type typ, generating the node's keys if they
// do not exist yet.
func (k *hostKeys) get(node, typ string) (*hostKey, error) {
	if !validKeyType(typ) {
		return nil, fmt.Errorf("ssh host key type %q: use ed25519, ecdsa or rsa", typ)
	}
	dir, err := k.nodeDir(node)
	if err != nil {
		return nil, err
	}
	priv := filepath.Join(dir, "ssh_host_"+typ+"_key")
	k.mu.Lock()
	hk := k.mem[priv]
	k.mu.Unlock()
	if hk != nil && stampsValid(hk.stamps) {
		return hk, nil
	}
	if hk, err := readKey(priv); err == nil {
		k.remember(priv, hk)
		return hk, nil
	}
	_, err, _ = k.sf.Do(priv, func() (any, error) {
		if _, err := os.Stat(priv); err == nil {
			return nil, nil
		}
		files, err := generateKey(typ, node, k.rsa)
		if err != nil {
			return nil, err
		}
		return nil, writeKeyFiles(dir, files, true)
	})
	if err != nil {
		return nil, fmt.Errorf("ssh host key %s for node %s: %w", typ, node, err)
	}
	hk, err = readKey(priv)
	if err != nil {
		return nil, fmt.Errorf("ssh host key %s for node %s: %w", typ, node, err)
	}
	k.remember(priv, hk)
	return hk, nil
}

func (k *hostKeys) remember(priv string, hk *hostKey) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.mem == nil || len(k.mem) > 1<<17 {
		k.mem = map[string]*hostKey{}
	}
	k.mem[priv] = hk
}

func readKey(priv string) (*hostKey, error) {
	st1, st2 := stampOf(priv), stampOf(priv+".pub")
	p, err := os.ReadFile(priv)
	if err != nil {
		return nil, err
	}
	pub, err := os.ReadFile(priv + ".pub")
	if err != nil {
		return nil, err
	}
	return &hostKey{private: string(p), public: string(pub), stamps: []fileStamp{st1, st2}}, nil
}

// ensure generates, in one batch, the missing keys of types for nodes:
// files are written beside their final names, the file system is synced
// once, then each file is renamed into place. Used by Build, where one
// fsync per file would dominate.
func (k *hostKeys) ensure(nodes, types []string, workers int) error {
	type job struct {
		dir   string
		files map[string][]byte
	}
	var jobs []job
	seen := map[string]bool{}
	for _, n := range nodes {
		dir, err := k.nodeDir(n)
		if err != nil {
			return err
		}
		if seen[dir] {
			continue
		}
		seen[dir] = true
		var missing []string
		for _, t := range types {
			if _, err := os.Stat(filepath.Join(dir, "ssh_host_"+t+"_key")); err != nil {
				missing = append(missing, t)
			}
		}
		if len(missing) > 0 {
			jobs = append(jobs, job{dir: dir, files: map[string][]byte{}})
			for _, t := range missing {
				jobs[len(jobs)-1].files[t] = nil
			}
		}
	}
	if len(jobs) == 0 {
		return nil
	}
	errs := make([]error, len(jobs))
	parallel(len(jobs), workers, func(i int) {
		j := &jobs[i]
		all := map[string][]byte{}
		node := filepath.Base(j.dir)
		for t := range j.files {
			f, err := generateKey(t, node, k.rsa)
			if err != nil {
				errs[i] = err
				return
			}
			for name, data := range f {
				all[name] = data
			}
		}
		errs[i] = writeKeyFiles(j.dir, all, false)
	})
	if err := errors.Join(errs...); err != nil {
		return err
	}
	// One sync for the whole batch, then the renames, then the directories.
	if err := syncFS(k.dir); err != nil {
		return err
	}
	dirs := map[string]bool{}
	for _, j := range jobs {
		ents, err := os.ReadDir(j.dir)
		if err != nil {
			return err
		}
		// Public keys first: a private key on disk means the pair is complete.
		for _, pub := range []bool{true, false} {
			for _, e := range ents {
				final, ok := strings.CutPrefix(e.Name(), ".tmp-")
				if !ok || strings.HasSuffix(final, ".pub") != pub {
					continue
				}
				if err := renameNoReplace(filepath.Join(j.dir, e.Name()), filepath.Join(j.dir, final)); err != nil {
					return err
				}
			}
		}
		dirs[j.dir] = true
	}
	for d := range dirs {
		if err := syncDir(d); err != nil {
			return err
		}
	}
	return nil
}

// generateKey returns the files (name → content) of a new key of type typ.
func generateKey(typ, node string, rsaBits int) (map[string][]byte, error) {
	var priv crypto.Signer
	var err error
	switch typ {
	case "ed25519":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	case "ecdsa":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "rsa":
		if rsaBits == 0 {
			rsaBits = 3072
		}
		priv, err = rsa.GenerateKey(rand.Reader, rsaBits)
	default:
		return nil, fmt.Errorf("ssh host key type %q: use ed25519, ecdsa or rsa", typ)
	}
	if err != nil {
		return nil, fmt.Errorf("generating %s host key: %w", typ, err)
	}
	comment := "root@" + node
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, fmt.Errorf("encoding %s host key: %w", typ, err)
	}
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		return nil, fmt.Errorf("encoding %s public key: %w", typ, err)
	}
	line := strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(pub)), "\n") + " " + comment + "\n"
	name := "ssh_host_" + typ + "_key"
	return map[string][]byte{name: pem.EncodeToMemory(block), name + ".pub": []byte(line)}, nil
}

// writeKeyFiles writes files into dir. With durable, each file is written
// to a temporary name, fsynced and renamed (and the directory fsynced);
// without, files are left under ".tmp-NAME" for the caller's batch.
func writeKeyFiles(dir string, files map[string][]byte, durable bool) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for name, data := range files {
		perm := fs.FileMode(0o600)
		if strings.HasSuffix(name, ".pub") {
			perm = 0o644
		}
		tmp := filepath.Join(dir, ".tmp-"+name)
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
		if err != nil {
			return err
		}
		_, err = f.Write(data)
		if err == nil && durable {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(tmp)
			return err
		}
	}
	if !durable {
		return nil
	}
	// Public keys first: a private key on disk means the pair is complete.
	for _, pass := range []bool{true, false} {
		for name := range files {
			if strings.HasSuffix(name, ".pub") == pass {
				if err := renameNoReplace(filepath.Join(dir, ".tmp-"+name), filepath.Join(dir, name)); err != nil {
					return err
				}
			}
		}
	}
	return syncDir(dir)
}

// renameNoReplace renames, keeping an existing destination (another
// process won the race; its key stays).
func renameNoReplace(from, to string) error {
	err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EEXIST) {
		return os.Remove(from)
	}
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		if _, serr := os.Stat(to); serr == nil {
			return os.Remove(from)
		}
		return os.Rename(from, to)
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func syncFS(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return unix.Syncfs(int(d.Fd()))
}
