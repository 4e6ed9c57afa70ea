package nodedb

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"
)

// FileStore is an inventory kept in a Warewulf-format nodes.conf file.
//
// Every write is atomic (temporary file, fsync, rename, fsync of the
// directory) and serialized across processes by an exclusive lock on a
// sibling lock file, and it applies its change to the file as it is under
// the lock, so concurrent writers never lose each other's updates. A write
// changes only the records it touches: comments and key order elsewhere in
// the file stay as the user wrote them.
//
// Readers see changes made by other processes without a restart: the file
// is checked at most once per CheckInterval and reloaded when it changed. A
// file that no longer parses is logged and the last good inventory is kept.
//
// A reload that would lose more than half of the nodes (an emptied or
// truncated file, a bad copy, an editor's accident) is held back the same
// way: the last good inventory stays in service and the change is logged
// at error level, once per version of the file, unless the change is
// explicit. A change is explicit when it was written by a FileStore (the
// wwboot CLI or any embedder using Update, in any process: each write
// records the SHA-256 of what it wrote in a sibling file
// .nodes.conf.written, and a reload of exactly those bytes is trusted), or
// when the file PATH.allow-shrink exists (create it to apply a hand edit
// that removes most nodes, before or after the edit; it is removed once
// used). See ShrinkGuard.
type FileStore struct {
	path  string
	log   *slog.Logger
	every time.Duration

	mu        sync.Mutex // serializes reloads and writes within the process
	cur       atomic.Pointer[fileState]
	lastCheck atomic.Int64 // unix nanoseconds of the last stat
	heldBack  fileID       // the version last held back as a drastic shrink (under mu)
}

// fileState is one loaded version of the file.
type fileState struct {
	db  *DB
	doc *yaml.Node
	id  fileID
}

// fileID tells whether the file changed since it was read.
type fileID struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64
}

// Option configures a FileStore.
type Option func(*FileStore)

// WithLogger sets the logger for reload problems (default: discard).
func WithLogger(l *slog.Logger) Option { return func(s *FileStore) { s.log = l } }

// CheckInterval sets how often readers look for changes to the file (default
// one second; zero checks on every read).
func CheckInterval(d time.Duration) Option { return func(s *FileStore) { s.every = d } }

// Open loads a nodes.conf file. The file must exist (see Create).
func Open(ctx context.Context, path string, opts ...Option) (*FileStore, error) {
	s := &FileStore{path: path, log: slog.New(slog.DiscardHandler), every: time.Second}
	for _, o := range opts {
		o(s)
	}
	st, err := s.load()
	if err != nil {
		return nil, err
	}
	s.cur.Store(st)
	s.lastCheck.Store(time.Now().UnixNano())
	return s, nil
}

// Create writes a new nodes.conf holding cfg, failing with ErrExists if the
// file is already there, and opens it.
func Create(ctx context.Context, path string, cfg *Config, opts ...Option) (*FileStore, error) {
	if cfg == nil {
		cfg = &Config{}
	}
	db, err := New(cloneConfig(normalize(cfg)))
	if err != nil {
		return nil, err
	}
	if err := refuseNew(nil, db); err != nil {
		return nil, err
	}
	unlock, err := lockFile(ctx, path)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if _, err := os.Lstat(path); err == nil {
		return nil, fmt.Errorf("%s: %w", path, ErrExists)
	}
	data, err := encodeDoc(encodeConfig(db.cfg))
	if err != nil {
		return nil, err
	}
	if err := recordWrite(path, data); err != nil {
		return nil, err
	}
	if err := writeAtomic(path, data, 0o640); err != nil {
		return nil, err
	}
	return Open(ctx, path, opts...)
}

// Path returns the file's path.
func (s *FileStore) Path() string { return s.path }

func (s *FileStore) load() (*fileState, error) {
	data, id, err := s.read()
	if err != nil {
		return nil, err
	}
	st, err := s.decode(data, id, false)
	if err == nil { // once per loaded version: see wwboot node check for the list
		for _, f := range st.db.Findings() {
			s.log.Warn("inventory: "+f.Error(), "file", f.File, "line", f.Line, f.Kind, f.Name, "field", f.Field)
		}
	}
	return st, err
}

// read returns the file's contents and identity, both from one open file.
func (s *FileStore) read() (string, fileID, error) {
	f, err := os.Open(s.path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fileID{}, fmt.Errorf("inventory %s does not exist: run 'wwboot init' or name another with --root: %w", s.path, err)
		}
		return "", fileID{}, fmt.Errorf("inventory: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fileID{}, fmt.Errorf("inventory: %w", err)
	}
	var b strings.Builder // read straight into the string the parser keeps: no copy
	b.Grow(int(fi.Size()))
	if _, err := io.Copy(&b, f); err != nil {
		return "", fileID{}, fmt.Errorf("inventory %s: %w", s.path, err)
	}
	return b.String(), idOf(fi), nil
}

// decode builds a state from the file's bytes. The fast parser serves
// readers; writers (withDoc) need the YAML tree to keep the user's comments,
// and errors need it for their line numbers.
func (s *FileStore) decode(data string, id fileID, withDoc bool) (*fileState, error) {
	if !withDoc {
		if cfg, ok := fastParse(data); ok {
			// Findings need the YAML tree for their lines: parse again then.
			if db, err := build(cfg, s.path, nil, nil); err == nil && len(db.Findings()) == 0 {
				return &fileState{db: db, id: id}, nil
			}
		}
	}
	cfg, doc, unknown, err := parse(s.path, []byte(data))
	if err != nil {
		return nil, err
	}
	db, err := build(cfg, s.path, doc, unknown)
	if err != nil {
		return nil, err
	}
	return &fileState{db: db, doc: doc, id: id}, nil
}

// loadWithDoc reads the file with its YAML tree, for a write.
func (s *FileStore) loadWithDoc() (*fileState, error) {
	data, id, err := s.read()
	if err != nil {
		return nil, err
	}
	return s.decode(data, id, true)
}

// Snapshot returns the current inventory, reloading the file first if it
// changed since the last check.
func (s *FileStore) Snapshot(context.Context) (*DB, error) {
	now := time.Now().UnixNano()
	last := s.lastCheck.Load()
	if now-last >= int64(s.every) && s.lastCheck.CompareAndSwap(last, now) {
		s.refresh()
	}
	return s.cur.Load().db, nil
}

// refresh reloads the file if it changed. Only one goroutine reloads; the
// others keep answering from the previous snapshot meanwhile.
func (s *FileStore) refresh() {
	fi, err := os.Stat(s.path)
	if err != nil || idOf(fi) == s.cur.Load().id {
		return
	}
	if !s.mu.TryLock() {
		return
	}
	defer s.mu.Unlock()
	if idOf(fi) == s.heldBack && !s.allowExists() {
		return // already logged
	}
	data, id, err := s.read()
	var st *fileState
	if err == nil {
		st, err = s.decode(data, id, false)
	}
	if err != nil {
		s.log.Error("inventory changed but cannot be loaded; still serving the previous version", "file", s.path, "err", err)
		return
	}
	prev := s.cur.Load().db.Len()
	if next := st.db.Len(); ShrinkGuard(prev, next) {
		switch {
		case s.writtenByStore(data):
			s.log.Warn("inventory shrank drastically through wwboot; applied", "file", s.path, "nodes_before", prev, "nodes", next)
		case s.allowShrink():
			s.log.Warn("inventory shrank drastically; applied because "+s.allowPath()+" exists (now removed)", "file", s.path, "nodes_before", prev, "nodes", next)
		default:
			s.heldBack = id
			s.log.Error("inventory changed to lose more than half of its nodes; still serving the previous version. "+
				"If that is intended, make the change with wwboot (node delete), or create "+s.allowPath()+" to apply this version",
				"file", s.path, "nodes_before", prev, "nodes", next)
			return
		}
	}
	s.heldBack = fileID{}
	s.cur.Store(st)
	s.log.Info("inventory reloaded", "file", s.path, "nodes", st.db.Len())
}

// ShrinkGuard reports whether a reload from prev to next nodes is drastic
// enough to be held back unless explicit: it loses more than half of the
// nodes (an empty file among them).
func ShrinkGuard(prev, next int) bool {
	return prev > 0 && (prev-next)*2 > prev
}

// writtenPath is the sibling file in which writes record what they wrote.
func writtenPath(path string) string {
	return filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".written")
}

// allowPath is the file whose presence makes a hand-made drastic shrink
// explicit.
func (s *FileStore) allowPath() string { return s.path + ".allow-shrink" }

// writtenByStore reports whether data is exactly what a FileStore last
// wrote to the file.
func (s *FileStore) writtenByStore(data string) bool {
	rec, err := os.ReadFile(writtenPath(s.path))
	if err != nil {
		return false
	}
	sum := sha256.Sum256([]byte(data))
	return strings.TrimSpace(string(rec)) == hex.EncodeToString(sum[:])
}

// allowExists reports whether the allow-shrink file exists.
func (s *FileStore) allowExists() bool {
	_, err := os.Lstat(s.allowPath())
	return err == nil
}

// allowShrink consumes the allow-shrink file if it exists.
func (s *FileStore) allowShrink() bool {
	return os.Remove(s.allowPath()) == nil
}

// recordWrite notes, before data replaces the file at path, that a
// FileStore wrote it: the SHA-256 of data, in writtenPath.
func recordWrite(path string, data []byte) error {
	sum := sha256.Sum256(data)
	return writeAtomic(writtenPath(path), []byte(hex.EncodeToString(sum[:])+"\n"), 0o600)
}

// Update applies fn to the inventory as it is in the file under the lock
// and writes the result atomically. Nothing is written if fn fails or the
// result does not validate.
func (s *FileStore) Update(ctx context.Context, fn func(*Config) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	unlock, err := lockFile(ctx, s.path)
	if err != nil {
		return err
	}
	defer unlock()
	removeStaleTemps(s.path)

	st := s.cur.Load()
	fi, err := os.Stat(s.path)
	if err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	if idOf(fi) != st.id || st.doc == nil { // another writer got there first, or no tree yet
		if st, err = s.loadWithDoc(); err != nil {
			return err
		}
		s.cur.Store(st)
	}
	cfg := cloneConfig(st.db.cfg)
	if err := fn(cfg); err != nil {
		return err
	}
	normalize(cfg)
	db, err := New(cfg)
	if err != nil {
		return err
	}
	if err := refuseNew(st.db, db); err != nil {
		return err
	}
	doc := patchDoc(st.doc, st.db.cfg, db.cfg)
	data, err := encodeDoc(doc)
	if err != nil {
		return err
	}
	// The record goes first: a reader that sees the new file then also
	// sees that wwboot wrote it.
	if err := recordWrite(s.path, data); err != nil {
		s.log.Warn("inventory record for other wwboot processes not written: a large removal may be held back there", "file", s.path, "err", err)
	}
	if err := writeAtomic(s.path, data, fi.Mode().Perm()); err != nil {
		return err
	}
	fi, err = os.Stat(s.path)
	if err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	s.cur.Store(&fileState{db: db, doc: doc, id: idOf(fi)})
	s.lastCheck.Store(time.Now().UnixNano())
	return nil
}

// NodeByHW looks a node up by hardware address in the current snapshot.
func (s *FileStore) NodeByHW(ctx context.Context, hw net.HardwareAddr) (*Node, error) {
	db, _ := s.Snapshot(ctx)
	return db.NodeByHW(ctx, hw)
}

// NodeByIP looks a node up by IPv4 address in the current snapshot.
func (s *FileStore) NodeByIP(ctx context.Context, ip netip.Addr) (*Node, error) {
	db, _ := s.Snapshot(ctx)
	return db.NodeByIP(ctx, ip)
}

// NodeByName looks a node up by name in the current snapshot.
func (s *FileStore) NodeByName(ctx context.Context, name string) (*Node, error) {
	db, _ := s.Snapshot(ctx)
	return db.NodeByName(ctx, name)
}

func idOf(fi os.FileInfo) fileID {
	id := fileID{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.dev, id.ino = uint64(st.Dev), st.Ino
		id.ctime = st.Ctim.Nano()
	}
	return id
}

// lockFile takes an exclusive lock on PATH.lock, waiting until it is free
// or ctx ends, and returns the function that releases it.
func lockFile(ctx context.Context, path string) (func(), error) {
	lp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".lock")
	f, err := os.OpenFile(lp, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("inventory lock: %w", err)
	}
	delay := time.Millisecond
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil // closing releases the lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("inventory lock %s: %w", lp, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for inventory lock %s (another wwboot is writing): %w", lp, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(delay*2, 20*time.Millisecond)
	}
}

// removeStaleTemps deletes temporary files that writers killed mid-write
// left behind. It runs under the lock, when no writer can own one.
func removeStaleTemps(path string) {
	stale, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*"))
	more, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "."+filepath.Base(writtenPath(path))+".tmp-*"))
	for _, f := range append(stale, more...) {
		os.Remove(f)
	}
}

// writeAtomic replaces path with data: temporary file in the same
// directory, fsync, rename, fsync of the directory. A crash at any point
// leaves either the old or the new file.
func writeAtomic(path string, data []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	committed := false
	defer func() {
		if !committed {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write %s: fsync: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	committed = true
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("write %s: fsync directory: %w", path, err)
	}
	return nil
}

// encodeConfig renders a whole Config as a YAML document tree.
func encodeConfig(cfg *Config) *yaml.Node {
	var n yaml.Node
	if err := n.Encode(cfg); err != nil {
		panic(fmt.Sprintf("nodedb: encode: %v", err)) // plain data: cannot fail
	}
	return &yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{&n}}
}

func encodeDoc(doc *yaml.Node) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("encode inventory: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode inventory: %w", err)
	}
	return buf.Bytes(), nil
}

// patchDoc returns doc changed to hold next instead of prev, touching only
// the records that differ, so that comments and order elsewhere survive.
func patchDoc(doc *yaml.Node, prev, next *Config) *yaml.Node {
	if doc == nil || doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return encodeConfig(next)
	}
	root := doc.Content[0]
	if next.WWInternal != prev.WWInternal {
		setKey(root, "WW_INTERNAL", encodeValue(next.WWInternal))
	}
	for _, sec := range []struct {
		key        string
		prev, next map[string]*Record
	}{{"nodeprofiles", prev.NodeProfiles, next.NodeProfiles}, {"nodes", prev.Nodes, next.Nodes}} {
		_, m := lookupKey(root, sec.key)
		if m == nil || m.Kind != yaml.MappingNode {
			setKey(root, sec.key, encodeValue(sec.next))
			continue
		}
		kept := m.Content[:0]
		for i := 0; i+1 < len(m.Content); i += 2 {
			if _, ok := sec.next[m.Content[i].Value]; ok {
				kept = append(kept, m.Content[i], m.Content[i+1])
			}
		}
		m.Content = kept
		if len(m.Content) == 0 {
			m.Style = yaml.FlowStyle // "nodes: {}"
		}
		for _, name := range sortedKeys(sec.next) {
			rec := sec.next[name]
			if old, ok := sec.prev[name]; ok && reflect.DeepEqual(old, rec) {
				continue
			}
			setKey(m, name, encodeValue(rec))
		}
	}
	return doc
}

func encodeValue(v any) *yaml.Node {
	var n yaml.Node
	if err := n.Encode(v); err != nil {
		panic(fmt.Sprintf("nodedb: encode: %v", err))
	}
	return &n
}

// setKey sets key in mapping m to val, merging into an existing value so
// that its comments and key order survive.
func setKey(m *yaml.Node, key string, val *yaml.Node) {
	if _, old := lookupKey(m, key); old != nil {
		mergeNode(old, val)
		return
	}
	if m.Style == yaml.FlowStyle {
		m.Style = 0
	}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, val)
}

// mergeNode makes dst hold src's value, keeping dst's comments and, for
// mappings, the order and comments of keys both have.
func mergeNode(dst, src *yaml.Node) {
	if dst.Kind != yaml.MappingNode || src.Kind != yaml.MappingNode {
		head, line, foot := dst.HeadComment, dst.LineComment, dst.FootComment
		*dst = *src
		dst.HeadComment, dst.LineComment, dst.FootComment = head, line, foot
		return
	}
	want := make(map[string]*yaml.Node, len(src.Content)/2)
	for i := 0; i+1 < len(src.Content); i += 2 {
		want[src.Content[i].Value] = src.Content[i+1]
	}
	kept := dst.Content[:0]
	have := make(map[string]bool, len(dst.Content)/2)
	for i := 0; i+1 < len(dst.Content); i += 2 {
		k, v := dst.Content[i], dst.Content[i+1]
		if nv, ok := want[k.Value]; ok {
			mergeNode(v, nv)
			kept = append(kept, k, v)
			have[k.Value] = true
		}
	}
	dst.Content = kept
	for i := 0; i+1 < len(src.Content); i += 2 {
		if !have[src.Content[i].Value] {
			dst.Content = append(dst.Content, src.Content[i], src.Content[i+1])
		}
	}
	if len(dst.Content) > 0 && dst.Style == yaml.FlowStyle {
		dst.Style = 0
	}
}
