package overlay

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sync/singleflight"
	"golang.org/x/sys/unix"
)

// hostKeys keeps what is private to a node on the server, created once and
// kept: its SSH host keys and its machine-id.
//
// Layout (below Options.KeyDir):
//
//	nodes/NODE/ssh_host_TYPE_key      private key, OpenSSH format, 0600
//	nodes/NODE/ssh_host_TYPE_key.pub  public key line, 0644
//	nodes/NODE/machine-id             32 lower-case hex digits and a newline
//	shared/ssh_host_TYPE_key{,.pub}   the one key set of SharedHostKeys
//	.lock                             flock serializing writers (all processes)
//	.tmp/REL, .old/REL                a directory's next and previous content
//
// A directory is the unit of change, so a key pair always changes as one:
// the new content (kept files and new ones) is written to .tmp/REL, synced,
// and swapped with REL by one rename (RENAME_EXCHANGE when REL exists), under
// the lock. A crash leaves the old directory or the new one, never a private
// key beside another key's .pub; the leftovers are cleaned up by the next
// writer. Reading verifies each pair, and a .pub that does not match its
// private key (a directory written before this scheme, an edit by hand) is
// rebuilt from the private key, which is what the node's sshd presents.
type hostKeys struct {
	dir    string
	shared bool
	rsa    int      // RSA modulus bits
	types  []string // the configured types, made together on first use
	sf     singleflight.Group

	mu  sync.Mutex
	mem map[string]*hostKey // by private key path; revalidated by stamps

	// crashAt, when set (tests only), is called at each point of a
	// directory swap where a crash leaves a state to recover from:
	// "written" (new content complete, not in place), "exchanged" (new
	// content in place, old not yet removed), "moved-away" (fallback: old
	// moved aside, new not in place).
	crashAt func(point string)
	// noExchange makes swapDir take its two-rename fallback (tests only).
	noExchange bool

	swept sync.Once // leftovers of dead writers, cleaned up at first use

	// wmu serializes this process's writers before they take the flock:
	// waiting on a mutex costs a goroutine, waiting in flock(2) an OS
	// thread and a descriptor each (a boot storm of 10,000 first boots
	// had 2,574 threads and 7,374 descriptors stuck on the lock file).
	wmu sync.Mutex
}

// sweep cleans up, once, after writers that died: every directory under
// KeyDir/.tmp and KeyDir/.old is resolved by recoverDir. Errors are left
// for the writers, which recover their own directory again.
func (k *hostKeys) sweep() {
	k.swept.Do(func() {
		if k.dir == "" {
			return
		}
		var rels []string
		for _, twin := range []string{".tmp", ".old"} {
			if _, err := os.Lstat(filepath.Join(k.dir, twin, "shared")); err == nil {
				rels = append(rels, "shared")
			}
			ents, _ := os.ReadDir(filepath.Join(k.dir, twin, "nodes"))
			for _, e := range ents {
				rels = append(rels, filepath.Join("nodes", e.Name()))
			}
		}
		if len(rels) == 0 {
			return
		}
		unlock, err := k.lock()
		if err != nil {
			return
		}
		defer unlock()
		for _, rel := range rels {
			dir := filepath.Join(k.dir, rel)
			if tmp, old, err := k.twins(dir); err == nil {
				recoverDir(tmp, old, dir)
			}
		}
	})
}

func (k *hostKeys) hit(point string) {
	if k.crashAt != nil {
		k.crashAt(point)
	}
}

type hostKey struct {
	private, public string
	stamps          []fileStamp
}

// keyTypes are the SSH host key types wwboot generates, in file order.
var keyTypes = [...]string{"ed25519", "ecdsa", "rsa"}

func validKeyType(t string) bool { return slices.Contains(keyTypes[:], t) }

// stateDir is node's own directory (machine-id, and keys unless shared).
func (k *hostKeys) stateDir(node string) (string, error) {
	if k.dir == "" {
		return "", errors.New("node state: no key directory configured (Options.KeyDir): set one so keys and machine-ids survive restarts")
	}
	if node == "" || node == "." || node == ".." || strings.ContainsAny(node, "/\x00") {
		return "", fmt.Errorf("node state: node name %q cannot name a directory: rename the node", node)
	}
	return filepath.Join(k.dir, "nodes", node), nil
}

// nodeDir is where node's keys live.
func (k *hostKeys) nodeDir(node string) (string, error) {
	if k.shared {
		if k.dir == "" {
			return "", errors.New("ssh host keys: no key directory configured (Options.KeyDir): set one so keys survive restarts")
		}
		return filepath.Join(k.dir, "shared"), nil
	}
	return k.stateDir(node)
}

// get returns node's key of type typ, generating the node's keys if they
// do not exist yet.
func (k *hostKeys) get(node, typ string) (*hostKey, error) {
	if !validKeyType(typ) {
		return nil, fmt.Errorf("ssh host key type %q: use ed25519, ecdsa or rsa", typ)
	}
	dir, err := k.nodeDir(node)
	if err != nil {
		return nil, fmt.Errorf("ssh host key %s for node %s: %w", typ, node, err)
	}
	k.sweep()
	priv := filepath.Join(dir, "ssh_host_"+typ+"_key")
	k.mu.Lock()
	hk := k.mem[priv]
	k.mu.Unlock()
	if hk != nil && stampsValid(hk.stamps) {
		return hk, nil
	}
	if hk, err := readPair(priv, typ); err == nil {
		k.remember(priv, hk)
		return hk, nil
	}
	_, err, _ = k.sf.Do(dir, func() (any, error) {
		// Every configured type at once: one directory swap, not one per type.
		types := append([]string{typ}, k.types...)
		slices.Sort(types)
		return nil, k.update([]job{{dir: dir, types: slices.Compact(types)}}, true, 1)
	})
	if err != nil {
		return nil, fmt.Errorf("ssh host key %s for node %s: %w", typ, node, err)
	}
	hk, err = readPair(priv, typ)
	if err != nil {
		return nil, fmt.Errorf("ssh host key %s for node %s: %w", typ, node, err)
	}
	k.remember(priv, hk)
	return hk, nil
}

// machineID returns node's machine-id (32 hex digits and a newline),
// creating it once.
func (k *hostKeys) machineID(node string) (string, fileStamp, error) {
	dir, err := k.stateDir(node)
	if err != nil {
		return "", fileStamp{}, fmt.Errorf("machine-id for node %s: %w", node, err)
	}
	k.sweep()
	p := filepath.Join(dir, "machine-id")
	if st, b, err := readStamped(p); err == nil && validMachineID(b) {
		return string(b), st, nil
	}
	_, err, _ = k.sf.Do(dir, func() (any, error) {
		return nil, k.update([]job{{dir: dir, machineID: true}}, true, 1)
	})
	if err != nil {
		return "", fileStamp{}, fmt.Errorf("machine-id for node %s: %w", node, err)
	}
	st, b, err := readStamped(p)
	if err == nil && !validMachineID(b) {
		err = fmt.Errorf("%s is not a machine-id: remove it and it is made again", p)
	}
	if err != nil {
		return "", fileStamp{}, fmt.Errorf("machine-id for node %s: %w", node, err)
	}
	return string(b), st, nil
}

func readStamped(p string) (fileStamp, []byte, error) {
	st := stampOf(p)
	b, err := os.ReadFile(p)
	return st, b, err
}

// validMachineID reports whether b is a machine-id as systemd writes it:
// 32 lower-case hex digits, a newline, and not all zero.
func validMachineID(b []byte) bool {
	if len(b) != 33 || b[32] != '\n' || string(b[:32]) == strings.Repeat("0", 32) {
		return false
	}
	for _, c := range b[:32] {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// newMachineID returns a random machine-id, formatted like systemd's (a
// version 4 UUID's 128 bits as 32 hex digits and a newline).
func newMachineID() ([]byte, error) {
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, err
	}
	id[6] = id[6]&0x0f | 0x40
	id[8] = id[8]&0x3f | 0x80
	return []byte(hex.EncodeToString(id[:]) + "\n"), nil
}

func (k *hostKeys) remember(priv string, hk *hostKey) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.mem == nil || len(k.mem) > 1<<17 {
		k.mem = map[string]*hostKey{}
	}
	k.mem[priv] = hk
}

// readPair reads a key pair and checks that the .pub is the private key's.
func readPair(priv, typ string) (*hostKey, error) {
	st1, st2 := stampOf(priv), stampOf(priv+".pub")
	p, err := os.ReadFile(priv)
	if err != nil {
		return nil, err
	}
	pub, err := os.ReadFile(priv + ".pub")
	if err != nil {
		return nil, err
	}
	want, err := publicOf(typ, p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", priv, err)
	}
	if !samePublic(pub, want) {
		return nil, fmt.Errorf("%s.pub does not match its private key", priv)
	}
	return &hostKey{private: string(p), public: string(pub), stamps: []fileStamp{st1, st2}}, nil
}

// publicOf parses a private key of type typ (OpenSSH or PEM format) and
// returns its public key.
func publicOf(typ string, private []byte) (ssh.PublicKey, error) {
	raw, err := ssh.ParseRawPrivateKey(private)
	if err != nil {
		return nil, fmt.Errorf("not a readable private key: %w", err)
	}
	s, err := ssh.NewSignerFromKey(raw)
	if err != nil {
		return nil, fmt.Errorf("not a usable private key: %w", err)
	}
	pk := s.PublicKey()
	var ok bool
	switch typ {
	case "ed25519":
		ok = pk.Type() == ssh.KeyAlgoED25519
	case "ecdsa":
		ok = strings.HasPrefix(pk.Type(), "ecdsa-sha2-")
	case "rsa":
		ok = pk.Type() == ssh.KeyAlgoRSA
	}
	if !ok {
		return nil, fmt.Errorf("a %s key where a %s key belongs", pk.Type(), typ)
	}
	return pk, nil
}

// samePublic reports whether line (an authorized_keys line) holds pk.
func samePublic(line []byte, pk ssh.PublicKey) bool {
	got, _, _, _, err := ssh.ParseAuthorizedKey(line)
	return err == nil && bytes.Equal(got.Marshal(), pk.Marshal())
}

// pubLine is the .pub file of pk.
func pubLine(pk ssh.PublicKey, comment string) []byte {
	return append(bytes.TrimSuffix(ssh.MarshalAuthorizedKey(pk), []byte("\n")), []byte(" "+comment+"\n")...)
}

// job is one directory to complete: the key types and the machine-id it
// must hold. pre holds keys generated before the lock was taken.
type job struct {
	dir       string
	types     []string
	machineID bool
	pre       map[string]keyFile
}

// keyFile is a file of a node directory.
type keyFile struct {
	data []byte
	perm fs.FileMode
}

// needs reports what j's directory lacks (without the lock: a hint, the
// plan under the lock decides).
func (j *job) needs() (types []string) {
	for _, t := range j.types {
		if _, err := readPair(filepath.Join(j.dir, "ssh_host_"+t+"_key"), t); err != nil {
			types = append(types, t)
		}
	}
	return types
}

// ensure completes, in one batch, the directories of nodes: keys of types
// for keyNodes (in the shared directory when keys are shared) and the
// machine-id of idNodes. Keys are generated on workers cores before the lock is
// taken; the files are written without a sync each, the file system is
// synced once, the directories are swapped in, and synced once more. Used
// by Build, where one fsync per file would dominate.
func (k *hostKeys) ensure(keyNodes, types, idNodes []string, workers int) error {
	k.sweep()
	byDir := map[string]*job{}
	var order []string
	add := func(dir string, types []string, id bool) {
		j := byDir[dir]
		if j == nil {
			j = &job{dir: dir}
			byDir[dir] = j
			order = append(order, dir)
		}
		j.types = append(j.types, types...)
		j.machineID = j.machineID || id
	}
	for _, n := range keyNodes {
		if len(types) > 0 {
			dir, err := k.nodeDir(n)
			if err != nil {
				return err
			}
			add(dir, types, false)
		}
	}
	for _, n := range idNodes {
		dir, err := k.stateDir(n)
		if err != nil {
			return err
		}
		add(dir, nil, true)
	}
	jobs := make([]job, 0, len(order))
	for _, d := range order {
		j := byDir[d]
		slices.Sort(j.types)
		j.types = slices.Compact(j.types)
		jobs = append(jobs, *j)
	}
	return k.update(jobs, false, workers)
}

// update brings the directories of jobs up to date: keys are generated
// outside the lock, then, under it, each directory that changes is written
// to its temporary twin and swapped in. durable syncs file by file (one
// directory, on demand); otherwise the file system is synced once before
// and once after the swaps (a batch).
func (k *hostKeys) update(jobs []job, durable bool, workers int) error {
	errs := make([]error, len(jobs))
	need := make([]bool, len(jobs))
	parallel(len(jobs), workers, func(i int) {
		j := &jobs[i]
		missing := j.needs()
		if j.machineID {
			b, err := os.ReadFile(filepath.Join(j.dir, "machine-id"))
			need[i] = err != nil || !validMachineID(b)
		}
		if len(missing) == 0 {
			return
		}
		need[i] = true
		j.pre = map[string]keyFile{}
		comment := "root@" + filepath.Base(j.dir)
		for _, t := range missing {
			priv, pub, err := generateKey(t, comment, k.rsa)
			if err != nil {
				errs[i] = err
				return
			}
			j.pre["ssh_host_"+t+"_key"] = keyFile{priv, 0o600}
			j.pre["ssh_host_"+t+"_key.pub"] = keyFile{pub, 0o644}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return err
	}
	var todoJobs []job
	for i, j := range jobs {
		if need[i] {
			todoJobs = append(todoJobs, j)
		}
	}
	if jobs = todoJobs; len(jobs) == 0 {
		return nil
	}
	errs = make([]error, len(jobs))
	unlock, err := k.lock()
	if err != nil {
		return err
	}
	defer unlock()
	type swap struct{ tmp, old, dir string }
	swaps := make([]*swap, len(jobs))
	parallel(len(jobs), workers, func(i int) {
		j := &jobs[i]
		tmp, old, err := k.twins(j.dir)
		if err == nil {
			err = recoverDir(tmp, old, j.dir)
		}
		var files map[string]keyFile
		changed := false
		if err == nil {
			files, changed, err = k.plan(j)
		}
		if err == nil && changed {
			err = writeDir(tmp, files, durable)
			swaps[i] = &swap{tmp, old, j.dir}
		}
		if err != nil {
			errs[i] = fmt.Errorf("%s: %w", j.dir, err)
		}
	})
	if err := errors.Join(errs...); err != nil {
		return err
	}
	var todo []*swap
	for _, s := range swaps {
		if s != nil {
			todo = append(todo, s)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	if !durable {
		if err := syncFS(k.dir); err != nil {
			return err
		}
	}
	for _, s := range todo {
		k.hit("written")
		if err := k.swapDir(s.tmp, s.old, s.dir, durable); err != nil {
			return fmt.Errorf("%s: %w", s.dir, err)
		}
	}
	if !durable {
		return syncFS(k.dir)
	}
	return nil
}

// twins returns the temporary and previous-content paths of dir
// (KeyDir/.tmp/REL and KeyDir/.old/REL), creating their parents.
func (k *hostKeys) twins(dir string) (tmp, old string, err error) {
	rel, err := filepath.Rel(k.dir, dir)
	if err != nil || strings.HasPrefix(rel, "..") {
		return "", "", fmt.Errorf("%s is not below %s", dir, k.dir)
	}
	tmp, old = filepath.Join(k.dir, ".tmp", rel), filepath.Join(k.dir, ".old", rel)
	for _, d := range []string{filepath.Dir(tmp), filepath.Dir(old), filepath.Dir(dir)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return "", "", err
		}
	}
	return tmp, old, nil
}

// recoverDir cleans up after a writer that died: a temporary directory is
// incomplete (or, after an exchange, the old content) and goes; a previous
// content directory without its directory is put back (the death came
// between the two renames of swapDir's fallback), else it goes.
func recoverDir(tmp, old, dir string) error {
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if _, err := os.Lstat(old); err != nil {
		return nil
	}
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		return os.Rename(old, dir)
	}
	return os.RemoveAll(old)
}

// plan returns the complete new content of j's directory and whether it
// differs from what is there: every valid key pair is kept (its .pub
// rebuilt from the private key when they disagree), missing or unreadable
// keys of j.types are generated (or taken from j.pre), a missing or invalid
// machine-id is made when j.machineID, and any other file is kept as it is.
func (k *hostKeys) plan(j *job) (map[string]keyFile, bool, error) {
	files := map[string]keyFile{}
	ents, err := os.ReadDir(j.dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".tmp-") {
			continue // .tmp-*: left by the file-by-file writer of old
		}
		fi, err := e.Info()
		if err != nil {
			return nil, false, err
		}
		b, err := os.ReadFile(filepath.Join(j.dir, e.Name()))
		if err != nil {
			return nil, false, err
		}
		files[e.Name()] = keyFile{b, fi.Mode().Perm()}
	}
	changed := false
	comment := "root@" + filepath.Base(j.dir)
	for _, t := range keyTypes {
		name := "ssh_host_" + t + "_key"
		priv, hasPriv := files[name]
		pub, hasPub := files[name+".pub"]
		want := slices.Contains(j.types, t)
		if hasPriv {
			if pk, err := publicOf(t, priv.data); err == nil {
				if !hasPub || !samePublic(pub.data, pk) {
					files[name+".pub"] = keyFile{pubLine(pk, comment), 0o644}
					changed = true
				}
				continue
			}
			if !want {
				continue // not ours to judge
			}
		} else if hasPub {
			delete(files, name+".pub") // a .pub without its key is useless
			changed = true
		}
		if !want {
			continue
		}
		p, q := j.pre[name], j.pre[name+".pub"]
		if p.data == nil {
			var err error
			if p.data, q.data, err = generateKey(t, comment, k.rsa); err != nil {
				return nil, false, err
			}
			p.perm, q.perm = 0o600, 0o644
		}
		files[name], files[name+".pub"] = p, q
		changed = true
	}
	if j.machineID {
		if f, ok := files["machine-id"]; !ok || !validMachineID(f.data) {
			id, err := newMachineID()
			if err != nil {
				return nil, false, err
			}
			files["machine-id"] = keyFile{id, 0o644}
			changed = true
		}
	}
	return files, changed, nil
}

// writeDir creates dir holding files; with durable, each file and the
// directory are synced.
func writeDir(dir string, files map[string]keyFile, durable bool) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	for name, f := range files {
		w, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, f.perm)
		if err != nil {
			return err
		}
		_, err = w.Write(f.data)
		if err == nil {
			err = w.Chmod(f.perm) // the umask may have narrowed it
		}
		if err == nil && durable {
			err = w.Sync()
		}
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	if durable {
		return syncDir(dir)
	}
	return nil
}

// swapDir puts tmp in dir's place as one rename: a plain rename when dir
// does not exist, else an exchange (the old content, now at tmp, is then
// removed). Where the file system cannot exchange, dir moves to old first
// and tmp to dir next; recoverDir repairs a death between the two.
func (k *hostKeys) swapDir(tmp, old, dir string, durable bool) error {
	sync := func(dirs ...string) error {
		if !durable {
			return nil
		}
		for _, d := range dirs {
			if err := syncDir(d); err != nil {
				return err
			}
		}
		return nil
	}
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.Rename(tmp, dir); err != nil {
			return err
		}
		return sync(filepath.Dir(dir), filepath.Dir(tmp))
	}
	var err error = unix.EINVAL // as from a file system that cannot exchange
	if !k.noExchange {
		err = unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, dir, unix.RENAME_EXCHANGE)
	}
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP) {
		if err := os.Rename(dir, old); err != nil {
			return err
		}
		k.hit("moved-away")
		if err := os.Rename(tmp, dir); err != nil {
			return err
		}
		if err := sync(filepath.Dir(dir), filepath.Dir(old)); err != nil {
			return err
		}
		return os.RemoveAll(old)
	}
	if err != nil {
		return err
	}
	if err := sync(filepath.Dir(dir), filepath.Dir(tmp)); err != nil {
		return err
	}
	k.hit("exchanged")
	return os.RemoveAll(tmp)
}

// lock takes the key directory's writer lock (flock on KeyDir/.lock; it is
// released when the process dies).
func (k *hostKeys) lock() (func(), error) {
	k.wmu.Lock()
	if err := os.MkdirAll(k.dir, 0o700); err != nil {
		k.wmu.Unlock()
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(k.dir, ".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		k.wmu.Unlock()
		return nil, err
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		k.wmu.Unlock()
		return nil, fmt.Errorf("locking %s: %w", f.Name(), err)
	}
	return func() { f.Close(); k.wmu.Unlock() }, nil
}

// generateKey returns a new key of type typ: the private key in OpenSSH
// format and the public key line.
func generateKey(typ, comment string, rsaBits int) (private, public []byte, err error) {
	var priv crypto.Signer
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
		return nil, nil, fmt.Errorf("ssh host key type %q: use ed25519, ecdsa or rsa", typ)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("generating %s host key: %w", typ, err)
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding %s host key: %w", typ, err)
	}
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		return nil, nil, fmt.Errorf("encoding %s public key: %w", typ, err)
	}
	return pem.EncodeToMemory(block), pubLine(pub, comment), nil
}

// ImportHostKeys makes the SSH host keys in src (ssh_host_TYPE_key and, if
// present, .pub, as a Warewulf server keeps them in /etc/warewulf/keys) the
// cluster-wide key set of keyDir (keyDir/shared, used when
// Options.SharedHostKeys is set), replacing the set there as one unit. Every
// private key must parse and match its .pub; a missing .pub is derived.
// It returns the key types imported. Errors name the file and what to do.
func ImportHostKeys(keyDir, src string) ([]string, error) {
	files := map[string]keyFile{}
	var types []string
	for _, t := range keyTypes {
		name := "ssh_host_" + t + "_key"
		priv, err := os.ReadFile(filepath.Join(src, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("importing host keys: %w", err)
		}
		pk, err := publicOf(t, priv)
		if err != nil {
			return nil, fmt.Errorf("importing host keys: %s: %w: give a private host key as ssh-keygen writes it", filepath.Join(src, name), err)
		}
		pub, err := os.ReadFile(filepath.Join(src, name+".pub"))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			pub = pubLine(pk, "root@wwboot-shared")
		case err != nil:
			return nil, fmt.Errorf("importing host keys: %w", err)
		case !samePublic(pub, pk):
			return nil, fmt.Errorf("importing host keys: %s.pub does not match %s: remove the .pub (it is derived) or fix the pair", filepath.Join(src, name), name)
		}
		files[name], files[name+".pub"] = keyFile{priv, 0o600}, keyFile{pub, 0o644}
		types = append(types, t)
	}
	if len(types) == 0 {
		return nil, fmt.Errorf("importing host keys: no ssh_host_{ed25519,ecdsa,rsa}_key in %s: give the directory holding them (Warewulf: /etc/warewulf/keys)", src)
	}
	k := &hostKeys{dir: keyDir}
	dir := filepath.Join(keyDir, "shared")
	unlock, err := k.lock()
	if err != nil {
		return nil, fmt.Errorf("importing host keys: %w", err)
	}
	defer unlock()
	tmp, old, err := k.twins(dir)
	if err == nil {
		err = recoverDir(tmp, old, dir)
	}
	if err == nil {
		err = writeDir(tmp, files, true)
	}
	if err == nil {
		err = k.swapDir(tmp, old, dir, true)
	}
	if err != nil {
		return nil, fmt.Errorf("importing host keys into %s: %w", dir, err)
	}
	return types, nil
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
