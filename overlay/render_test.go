package overlay

import (
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"text/template"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/nodedb"
)

// TestGNUTools checks archives with the tools a user would: gzip -t,
// gzip -d | cpio -t and cpio -idm.
func TestGNUTools(t *testing.T) {
	for _, tool := range []string{"gzip", "cpio"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s not installed (see .ci/packages)", tool)
			}
			t.Skipf("%s not installed", tool)
		}
	}
	db := testDB(t, goldenConfig())
	n, _ := db.Node("n00002")
	r := newTestRenderer(t, func(o *Options) { o.Server = goldenServer(t) })
	dir := t.TempDir()
	var concat []byte
	for _, k := range []Kind{System, Runtime} {
		a, err := r.Render(context.Background(), db, n, k)
		require.NoError(t, err)
		require.Zero(t, a.Size()%4)
		f := filepath.Join(dir, string(k)+".cpio.gz")
		require.NoError(t, os.WriteFile(f, a.Bytes(), 0o644))
		concat = append(concat, a.Bytes()...)

		out, err := exec.Command("gzip", "-t", f).CombinedOutput()
		require.NoError(t, err, "gzip -t: %s", out)
		list, err := exec.Command("sh", "-c", "gzip -dc "+f+" | cpio -t --quiet").CombinedOutput()
		require.NoError(t, err, "cpio -t: %s", list)
		var want []string
		for _, e := range a.Entries() {
			want = append(want, e.Path)
		}
		assert.Equal(t, strings.Join(want, "\n")+"\n", string(list))

		root := filepath.Join(dir, string(k))
		require.NoError(t, os.Mkdir(root, 0o755))
		cmd := exec.Command("sh", "-c", "gzip -dc "+f+" | cpio -idm --quiet --no-absolute-filenames")
		cmd.Dir = root
		out, err = cmd.CombinedOutput()
		require.NoError(t, err, "cpio -idm: %s", out)
	}
	sys := filepath.Join(dir, "system")
	b, err := os.ReadFile(filepath.Join(sys, "etc/hostname"))
	require.NoError(t, err)
	assert.Equal(t, "n00002\n", string(b))
	fi, err := os.Stat(filepath.Join(sys, "init"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o755), fi.Mode().Perm())
	fi, err = os.Stat(filepath.Join(dir, "runtime", "etc/ssh/ssh_host_ed25519_key"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	b, err = os.ReadFile(filepath.Join(dir, "runtime", "root/.ssh/authorized_keys"))
	require.NoError(t, err)
	assert.Contains(t, string(b), "admin@head")

	// Two archives back to back, as iPXE hands them to the kernel: gzip -d
	// reads the concatenation as one stream (both archives' members).
	f := filepath.Join(dir, "both.gz")
	require.NoError(t, os.WriteFile(f, concat, 0o644))
	out, err := exec.Command("gzip", "-t", f).CombinedOutput()
	require.NoError(t, err, "gzip -t on concatenated archives: %s", out)
}

// TestInitScript checks /init's syntax with busybox sh, the shell of the
// boot test's image.
func TestInitScript(t *testing.T) {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("busybox not installed (see .ci/packages: busybox-static)")
		}
		t.Skip("busybox not installed")
	}
	out, err := exec.Command(bb, "sh", "-n", "builtin/wwinit/rootfs/init").CombinedOutput()
	require.NoError(t, err, "%s", out)
	// node.conf must be valid shell even with hostile values.
	cfg := testConfig(1)
	cfg.Nodes["n00001"].Init = "/sbin/init'; echo pwned; '"
	db := testDB(t, cfg)
	n, _ := db.Node("n00001")
	// nodedb refuses control characters in a cluster name (it names
	// files); the quoting must hold even for a node built without nodedb.
	n.ClusterName = "$(echo pwned)\n`id`"
	r := newTestRenderer(t, func(o *Options) { o.DefaultSystem = []string{"wwinit"} })
	a, err := r.Render(context.Background(), db, n, System)
	require.NoError(t, err)
	m, _ := unpack(t, a)
	conf := filepath.Join(t.TempDir(), "node.conf")
	require.NoError(t, os.WriteFile(conf, []byte(m["etc/wwboot/node.conf"].data), 0o644))
	out, err = exec.Command(bb, "sh", "-c", `. "$1"; echo "$WWBOOT_NODE|$WWBOOT_IPADDR|$WWBOOT_INIT"`, "sh", conf).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Equal(t, "n00001|10.0.0.2|/sbin/init'; echo pwned; '\n", string(out))
}

// TestCacheDependsOnWhatTemplatesRead checks what a change re-renders.
func TestCacheDependsOnWhatTemplatesRead(t *testing.T) {
	ctx := context.Background()
	st, err := nodedb.NewMemoryStore(testConfig(3))
	require.NoError(t, err)
	db, _ := st.Snapshot(ctx)
	r := newTestRenderer(t, nil)
	render := func(db *nodedb.DB, name string, k Kind) *Archive {
		n, err := db.Node(name)
		require.NoError(t, err)
		a, err := r.Render(ctx, db, n, k)
		require.NoError(t, err)
		return a
	}
	sys1, run1 := render(db, "n00001", System), render(db, "n00001", Runtime)
	render(db, "n00002", System)
	render(db, "n00002", Runtime)
	assert.Equal(t, Stats{Renders: 4, SharedRenders: 2}, r.Stats(), "hosts (runtime) and the D-Bus machine-id link (system), both shared, rendered once for both nodes")
	assert.Same(t, sys1, render(db, "n00001", System))
	assert.Equal(t, int64(1), r.Stats().Hits)

	// Change n00002's address: its own archives and everybody's runtime
	// (hosts reads .AllNodes) change; n00001's system archive does not.
	require.NoError(t, st.Update(ctx, func(c *nodedb.Config) error {
		c.Nodes["n00002"].NetDevs["default"].Ipaddr = "10.0.9.9"
		return nil
	}))
	db2, _ := st.Snapshot(ctx)
	before := r.Stats()
	assert.Same(t, sys1, render(db2, "n00001", System), "system overlays do not read the inventory")
	run1b := render(db2, "n00001", Runtime)
	assert.NotEqual(t, run1.ETag(), run1b.ETag())
	sys2 := render(db2, "n00002", System)
	m, _ := unpack(t, sys2)
	assert.Contains(t, m["etc/wwboot/node.conf"].data, "WWBOOT_IPADDR='10.0.9.9'")
	m, _ = unpack(t, run1b)
	assert.Contains(t, m["etc/hosts"].data, "10.0.9.9  n00002 n00002-default")
	after := r.Stats()
	assert.Equal(t, before.Renders+2, after.Renders, "n00001 runtime + n00002 system")
	assert.Equal(t, before.SharedRenders+1, after.SharedRenders, "hosts rendered once more")
}

// TestConcurrentRequestsRenderOnce: 100 nodes ask at once right after an
// inventory change; each archive is rendered once.
func TestConcurrentRequestsRenderOnce(t *testing.T) {
	ctx := context.Background()
	st, err := nodedb.NewMemoryStore(testConfig(100))
	require.NoError(t, err)
	db, _ := st.Snapshot(ctx)
	r := newTestRenderer(t, nil)
	_, err = r.Build(ctx, db)
	require.NoError(t, err)
	require.NoError(t, st.Update(ctx, func(c *nodedb.Config) error {
		c.Nodes["n00050"].NetDevs["default"].Ipaddr = "10.0.99.99"
		return nil
	}))
	db2, _ := st.Snapshot(ctx)
	before := r.Stats()
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for i := 1; i <= 100; i++ {
		for rep := 0; rep < 2; rep++ { // every node asks twice, concurrently
			wg.Add(1)
			go func() {
				defer wg.Done()
				n, _ := db2.Node(fmt.Sprintf("n%05d", i))
				for _, k := range []Kind{System, Runtime} {
					if _, err := r.Render(ctx, db2, n, k); err != nil {
						errs <- err
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	after := r.Stats()
	assert.Equal(t, int64(101), after.Renders-before.Renders, "100 runtime archives (hosts changed) + n00050's system archive")
	assert.Equal(t, int64(1), after.SharedRenders-before.SharedRenders, "one /etc/hosts for everybody")
}

// TestSiteOverlayWinsAndReloads: a site overlay shadows the built-in one of
// the same name and is re-read when its files change.
func TestSiteOverlayWinsAndReloads(t *testing.T) {
	site := t.TempDir()
	tmpl := filepath.Join(site, "hostname", "rootfs", "etc", "hostname.ww")
	require.NoError(t, os.MkdirAll(filepath.Dir(tmpl), 0o755))
	require.NoError(t, os.WriteFile(tmpl, []byte("site-{{ .Id }}\n"), 0o640))
	db := testDB(t, testConfig(1))
	n, _ := db.Node("n00001")
	r := newTestRenderer(t, func(o *Options) {
		o.SiteDir = site
		o.CheckInterval = -1
		o.DefaultSystem = []string{"hostname"}
	})
	a, err := r.Render(context.Background(), db, n, System)
	require.NoError(t, err)
	m, _ := unpack(t, a)
	assert.Equal(t, "site-n00001\n", m["etc/hostname"].data)
	assert.Equal(t, uint64(0o640), m["etc/hostname"].mode&0o777, "mode comes from the source file")

	require.NoError(t, os.WriteFile(tmpl, []byte("changed-{{ .Id }}\n"), 0o640))
	a, err = r.Render(context.Background(), db, n, System)
	require.NoError(t, err)
	m, _ = unpack(t, a)
	assert.Equal(t, "changed-n00001\n", m["etc/hostname"].data)

	require.NoError(t, os.RemoveAll(filepath.Join(site, "hostname")))
	a, err = r.Render(context.Background(), db, n, System)
	require.NoError(t, err)
	m, _ = unpack(t, a)
	assert.Equal(t, "n00001\n", m["etc/hostname"].data, "back to the built-in")
}

// TestLayering: later overlays win, also over a path another template
// produces with file; every path appears once.
func TestLayering(t *testing.T) {
	site := t.TempDir()
	write := func(p, s string) {
		full := filepath.Join(site, p)
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, []byte(s), 0o644))
	}
	write("a/rootfs/etc/motd", "from a\n")
	write("a/rootfs/etc/only-a", "a\n")
	write("a/rootfs/etc/gen.ww", "{{ file \"issue\" -}}\nissue from a for {{ .Id }}\n")
	write("b/rootfs/etc/motd.ww", "from b for {{ .Id }}\n")
	write("b/rootfs/etc/issue", "static issue from b\n")
	write("c/rootfs/etc/gen.ww", "{{ file \"only-a\" -}}\nc wins only-a for {{ .Id }}\n")
	db := testDB(t, testConfig(1))
	n, _ := db.Node("n00001")
	r := newTestRenderer(t, func(o *Options) { o.SiteDir = site; o.DefaultSystem = []string{"a", "b", "c"} })
	a, err := r.Render(context.Background(), db, n, System)
	require.NoError(t, err)
	m, _ := unpack(t, a) // fails on duplicate names
	assert.Equal(t, "from b for n00001\n", m["etc/motd"].data)
	assert.Equal(t, "static issue from b\n", m["etc/issue"].data, "b is later than a's generated issue")
	assert.Equal(t, "c wins only-a for n00001\n", m["etc/only-a"].data, "c's generated file beats a's static one")
	assert.Equal(t, int64(1), r.Stats().Fallbacks)
}

// TestTemplateErrors: errors name the overlay, the file, the line and the
// node.
func TestTemplateErrors(t *testing.T) {
	site := t.TempDir()
	p := filepath.Join(site, "bad", "rootfs", "etc", "x.ww")
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, []byte("line one\n{{ .Id }}\n{{ .NoSuchField }}\n"), 0o644))
	db := testDB(t, testConfig(1))
	n, _ := db.Node("n00001")
	r := newTestRenderer(t, func(o *Options) { o.SiteDir = site; o.DefaultSystem = []string{"bad"} })
	_, err := r.Render(context.Background(), db, n, System)
	var te *TemplateError
	require.ErrorAs(t, err, &te)
	assert.Equal(t, TemplateError{Overlay: "bad", File: "etc/x.ww", Line: 3, Node: "n00001", Err: te.Err}, *te)
	assert.Contains(t, err.Error(), "overlay bad, file etc/x.ww:3, node n00001")

	require.NoError(t, os.WriteFile(p, []byte("ok\n{{ if }}\n"), 0o644))
	r2 := newTestRenderer(t, func(o *Options) { o.SiteDir = site; o.DefaultSystem = []string{"bad"} })
	_, err = r2.RenderFile(context.Background(), db, n, "bad", "etc/x.ww") // a parse error: see TestOneBadTemplate
	require.ErrorAs(t, err, &te)
	assert.Equal(t, 2, te.Line)
	assert.Contains(t, err.Error(), "node n00001")

	r3 := newTestRenderer(t, func(o *Options) { o.DefaultSystem = []string{"no-such-overlay"} })
	_, err = r3.Render(context.Background(), db, n, System)
	assert.ErrorIs(t, err, ErrNotFound)
	assert.Contains(t, err.Error(), "no-such-overlay")
}

// TestIncludedFileChange: a changed Include'd server file re-renders.
func TestIncludedFileChange(t *testing.T) {
	keys := filepath.Join(t.TempDir(), "authorized_keys")
	require.NoError(t, os.WriteFile(keys, []byte("ssh-ed25519 AAAA one\n"), 0o600))
	db := testDB(t, testConfig(1))
	n, _ := db.Node("n00001")
	r := newTestRenderer(t, func(o *Options) { o.Server.Ssh.AuthorizedKeys = keys; o.CheckInterval = -1 })
	a, err := r.Render(context.Background(), db, n, Runtime)
	require.NoError(t, err)
	m, _ := unpack(t, a)
	assert.Equal(t, "ssh-ed25519 AAAA one\n", m["root/.ssh/authorized_keys"].data)
	require.NoError(t, os.WriteFile(keys, []byte("ssh-ed25519 AAAA one\nssh-ed25519 BBBB two\n"), 0o600))
	a, err = r.Render(context.Background(), db, n, Runtime)
	require.NoError(t, err)
	m, _ = unpack(t, a)
	assert.Equal(t, "ssh-ed25519 AAAA one\nssh-ed25519 BBBB two\n", m["root/.ssh/authorized_keys"].data)
}

// TestHostKeys: keys are per node, kept across renderers, shared only on
// request.
func TestHostKeys(t *testing.T) {
	keyDir := t.TempDir()
	db := testDB(t, testConfig(2))
	pub := func(r *Renderer, name string) string {
		n, _ := db.Node(name)
		a, err := r.Render(context.Background(), db, n, System)
		require.NoError(t, err)
		m, _ := unpack(t, a)
		return m["etc/ssh/ssh_host_ed25519_key.pub"].data
	}
	mk := func(shared bool) *Renderer {
		return newTestRenderer(t, func(o *Options) {
			o.KeyDir, o.SharedHostKeys, o.DefaultSystem = keyDir, shared, []string{"ssh.host_keys"}
		})
	}
	r1 := mk(false)
	k1, k2 := pub(r1, "n00001"), pub(r1, "n00002")
	assert.NotEqual(t, k1, k2, "each node has its own keys")
	assert.Equal(t, k1, pub(mk(false), "n00001"), "keys are kept")
	fi, err := os.Stat(filepath.Join(keyDir, "nodes", "n00001", "ssh_host_ed25519_key"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	r3 := mk(true)
	assert.Equal(t, pub(r3, "n00001"), pub(r3, "n00002"), "shared on request")

	// Build generates missing keys in one batch.
	r4 := newTestRenderer(t, func(o *Options) { o.DefaultSystem = []string{"ssh.host_keys"} })
	res, err := r4.Build(context.Background(), db)
	require.NoError(t, err)
	require.Len(t, res, 2)
	require.NoError(t, os.WriteFile(filepath.Join(r4.opts.KeyDir, "probe"), nil, 0o600))
	ents, err := os.ReadDir(filepath.Join(r4.opts.KeyDir, "nodes", "n00002"))
	require.NoError(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	assert.ElementsMatch(t, []string{"ssh_host_ecdsa_key", "ssh_host_ecdsa_key.pub", "ssh_host_ed25519_key", "ssh_host_ed25519_key.pub", "ssh_host_rsa_key", "ssh_host_rsa_key.pub"}, names, "every type sshd loads by default, rsa included")
}

// TestBuildStores: Build writes every node's archives under BuildDir.
func TestBuildStores(t *testing.T) {
	dir := t.TempDir()
	db := testDB(t, testConfig(5))
	r := newTestRenderer(t, func(o *Options) { o.BuildDir = dir })
	res, err := r.Build(context.Background(), db, "n00002", "n00004")
	require.NoError(t, err)
	require.Len(t, res, 2)
	for _, rr := range res {
		for _, a := range []*Archive{rr.System, rr.Runtime} {
			b, err := os.ReadFile(BuiltPath(dir, rr.Node, a.Kind))
			require.NoError(t, err)
			assert.Equal(t, a.Bytes(), b)
		}
	}
	_, err = os.Stat(filepath.Join(dir, "n00001"))
	assert.True(t, errors.Is(err, os.ErrNotExist))

	// Two builds at once into the same directory: every file whole.
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := newTestRenderer(t, func(o *Options) { o.BuildDir = dir })
			_, err := r.Build(context.Background(), db)
			assert.NoError(t, err)
		}()
	}
	wg.Wait()
	for _, name := range db.Names() {
		for _, k := range []Kind{System, Runtime} {
			out, err := exec.Command("gzip", "-t", BuiltPath(dir, name, k)).CombinedOutput()
			assert.NoError(t, err, "%s", out)
		}
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*", ".tmp-*"))
	assert.Empty(t, left)
	_, err = r.Build(context.Background(), db, "nope")
	assert.ErrorIs(t, err, nodedb.ErrNotFound)
}

// TestServeContent: an Archive served with http.ServeContent answers
// ranges and conditional requests.
func TestServeContent(t *testing.T) {
	db := testDB(t, testConfig(1))
	n, _ := db.Node("n00001")
	r := newTestRenderer(t, nil)
	a, err := r.Render(context.Background(), db, n, System)
	require.NoError(t, err)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("ETag", a.ETag())
		http.ServeContent(w, req, "system.cpio.gz", a.ModTime, a.NewReader())
	}))
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.Header.Set("Range", "bytes=5-20")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusPartialContent, resp.StatusCode)
	assert.Equal(t, a.Bytes()[5:21], body)
	req, _ = http.NewRequest("GET", srv.URL, nil)
	req.Header.Set("If-None-Match", a.ETag())
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotModified, resp.StatusCode)
}

// TestAnalyze: what the parse-tree walk concludes a template reads.
func TestAnalyze(t *testing.T) {
	for _, tc := range []struct {
		src                 string
		node, allNodes, ext bool
	}{
		{"{{ .Ipaddr }} {{ .BuildHost }} {{ .Ssh.KeyTypes }}", false, false, false},
		{"{{ .Id }}", true, false, false},
		{"{{ range .AllNodes }}{{ .Id }}{{ .NetDevs }}{{ end }}", false, true, false},
		{"{{ range $n := $.AllNodes }}{{ $n.Id }}{{ $.Id }}{{ end }}", true, true, false},
		{"{{ with .Tags }}{{ .x }}{{ end }}", true, false, false},
		{"{{ with .Ipaddr }}{{ . }}{{ else }}{{ .Id }}{{ end }}", true, false, false},
		{"{{ template \"x\" . }}{{ define \"x\" }}{{ .Ipaddr }}{{ end }}", true, true, false},
		{"{{ $x := . }}{{ $x.Ipaddr }}", true, true, false},
		{"{{ index . \"Ipaddr\" }}", true, true, false},
		{"{{ Include \"/etc/x\" }}", false, false, true},
		{"{{ SSHHostKey \"ed25519\" }}", true, false, true},
		{"{{ (.ThisNode).Id }}", true, false, false},
		{"{{ $ }}", true, true, false},
	} {
		tt, err := template.New("t").Funcs(baseFuncs()).Parse(tc.src)
		require.NoError(t, err, tc.src)
		d := analyze(tt)
		assert.Equal(t, []bool{tc.node, tc.allNodes, tc.ext}, []bool{d.node, d.allNodes, d.external}, tc.src)
	}
}

// TestEmptyOverlayList: a node without overlays gets an archive holding
// only the trailer, in one (non-empty) gzip member.
func TestEmptyOverlayList(t *testing.T) {
	db := testDB(t, testConfig(1))
	n, _ := db.Node("n00001")
	r := newTestRenderer(t, func(o *Options) { o.DefaultRuntime = []string{} })
	a, err := r.Render(context.Background(), db, n, Runtime)
	require.NoError(t, err)
	m, _ := unpack(t, a)
	assert.Empty(t, m)
	assert.Len(t, a.parts, 1)
}

// TestMembersEndOnRecordBoundaries checks what the kernel's initramfs
// unpacker needs from concatenated gzip members: each member, decompressed
// on its own, holds whole 4-byte-aligned newc records (its cpio parser must
// be between records when a member ends), none is empty, and the archive's
// length is a multiple of 4.
func TestMembersEndOnRecordBoundaries(t *testing.T) {
	db := testDB(t, goldenConfig())
	r := newTestRenderer(t, func(o *Options) { o.Server = goldenServer(t) })
	for _, name := range []string{"n00001", "n00002"} {
		n, _ := db.Node(name)
		for _, k := range []Kind{System, Runtime} {
			a, err := r.Render(context.Background(), db, n, k)
			require.NoError(t, err)
			require.Zero(t, a.Size()%4)
			br := bufio.NewReader(a.NewReader())
			members := 0
			for {
				if _, err := br.Peek(1); err == io.EOF {
					break
				}
				zr, err := gzip.NewReader(br)
				require.NoError(t, err)
				zr.Multistream(false)
				raw, err := io.ReadAll(zr)
				require.NoError(t, err)
				require.NotEmpty(t, raw, "empty gzip member")
				members++
				off := 0
				for off < len(raw) {
					require.GreaterOrEqual(t, len(raw)-off, 110, "partial header at member end")
					require.Equal(t, "070701", string(raw[off:off+6]))
					field := func(i int) int {
						v, err := strconv.ParseUint(string(raw[off+6+8*i:off+14+8*i]), 16, 32)
						require.NoError(t, err)
						return int(v)
					}
					size, namesize := field(6), field(11)
					off += (110 + namesize + 3) &^ 3
					off += (size + 3) &^ 3
				}
				require.Equal(t, len(raw), off, "member ends inside a record")
			}
			assert.GreaterOrEqual(t, members, 2, "static, shared and node members")
		}
	}
}

// TestBuildKeepsSecretsPrivate: a built archive that carries a private file
// of the node (the runtime overlay's host keys) is stored 0600, others
// 0644, and an archive stored 0644 before is given 0600 even when its
// content did not change: a new user read every node's private host key
// from ROOT/overlays-built as nobody.
func TestBuildKeepsSecretsPrivate(t *testing.T) {
	dir := t.TempDir()
	db := testDB(t, testConfig(1))
	r := newTestRenderer(t, func(o *Options) {
		o.BuildDir = dir
		o.DefaultRuntime = []string{"hosts", "ssh.host_keys"}
		o.Server.Ssh.KeyTypes = []string{"ed25519"}
	})
	mode := func(k Kind) os.FileMode {
		fi, err := os.Stat(BuiltPath(dir, "n00001", k))
		require.NoError(t, err)
		return fi.Mode().Perm()
	}
	_, err := r.Build(context.Background(), db)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), mode(Runtime), "the runtime archive holds the node's private host key")
	assert.Equal(t, os.FileMode(0o644), mode(System))

	require.NoError(t, os.Chmod(BuiltPath(dir, "n00001", Runtime), 0o644))
	_, err = r.Build(context.Background(), db)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), mode(Runtime), "an unchanged archive gets its mode too")
}
