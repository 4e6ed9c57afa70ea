package overlay

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/nodedb"
)

// writeSite writes files (path → content) under a new site directory.
func writeSite(t *testing.T, files map[string]string) string {
	t.Helper()
	site := t.TempDir()
	for p, s := range files {
		full := filepath.Join(site, p)
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, []byte(s), 0o644))
	}
	return site
}

func hostileNode(id, cluster string) *nodedb.Node {
	n := &nodedb.Node{ID: id}
	n.ClusterName = cluster
	n.Tags = map[string]string{"v": "value", "f": "file"}
	return n
}

// TestFileNameIsTheTemplateDirectory is the fuzz crasher of issue 11 item
// 8: node id "0" and cluster name ".." make the hostile template's file
// name "0/.." clean to its own directory, etc, which the archive then held
// as a directory and as a file ("duplicate path etc"). The nodes come
// straight from the fuzzer, bypassing nodedb's validation.
func TestFileNameIsTheTemplateDirectory(t *testing.T) {
	site, err := filepath.Abs("testdata/fuzzsite")
	require.NoError(t, err)
	r := newTestRenderer(t, func(o *Options) { o.SiteDir = site; o.DefaultSystem = []string{"hostile"} })
	for _, n := range []*nodedb.Node{
		hostileNode("0", ".."),
		hostileNode("", ""),
		hostileNode("x/..", "."),
		hostileNode("0", "../"),
		hostileNode("0/", ".."),
	} {
		_, err := r.Render(context.Background(), nil, n, System)
		var te *TemplateError
		require.ErrorAs(t, err, &te, "node %q cluster %q", n.ID, n.ClusterName)
		assert.Equal(t, "hostile", te.Overlay)
		assert.Equal(t, "etc/hostile.ww", te.File)
		// Refused either as no file name at all (".." last) or as the
		// template's own directory.
		assert.Regexp(t, `is the directory etc itself|not a file name`, err.Error())
	}
	// The same template for a sane node still renders.
	a, err := r.Render(context.Background(), nil, hostileNode("n1", "c1"), System)
	require.NoError(t, err)
	m, _ := unpack(t, a)
	// The file starts right after the file call (Warewulf 4.7), here with
	// the template's newline.
	assert.Equal(t, "\ncluster\n", m["etc/n1/c1"].data)
}

// TestTreeConflicts: whatever the templates write, the archive never holds
// a path twice or below a file; the error names the template.
func TestTreeConflicts(t *testing.T) {
	n := hostileNode("n1", "c1")
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  string // "" = renders
		file  string
	}{
		{
			name:  "per-node file over a static directory",
			files: map[string]string{"a/rootfs/etc/sub/x": "x\n", "a/rootfs/etc/gen.ww": "{{ file .Id }}\nnode {{ .Id }}\n{{ file \"sub\" }}\nsub\n"},
			want:  "path etc/sub", file: "etc/gen.ww",
		},
		{
			name:  "shared file over a static directory",
			files: map[string]string{"a/rootfs/etc/sub/x": "x\n", "a/rootfs/etc/gen.ww": "{{ file \"sub\" }}\nshared\n"},
			want:  "path etc/sub", file: "etc/gen.ww",
		},
		{
			name:  "per-node file below a static file",
			files: map[string]string{"a/rootfs/etc/motd": "x\n", "a/rootfs/etc/gen.ww": "{{ file (print \"motd/\" .Id) }}\nnode\n"},
			want:  "path etc/motd", file: "etc/gen.ww",
		},
		{
			name:  "two per-node files, one below the other",
			files: map[string]string{"a/rootfs/etc/gen.ww": "{{ file .Id }}\none\n{{ file (print .Id \"/x\") }}\ntwo\n"},
			want:  "etc/n1", file: "etc/gen.ww",
		},
		{
			name: "a later overlay's per-node file over a directory (slow path)",
			files: map[string]string{"a/rootfs/etc/d/x": "x\n", "a/rootfs/etc/motd": "m\n",
				"b/rootfs/etc/gen.ww": "{{ file \"motd\" }}\nnode {{ .Id }}\n{{ file \"d\" }}\nd\n"},
			want: "path etc/d", file: "etc/gen.ww",
		},
		{
			name:  "a per-node file replacing a static file is fine",
			files: map[string]string{"a/rootfs/etc/motd": "static\n", "b/rootfs/etc/motd.ww": "node {{ .Id }}\n"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			site := writeSite(t, tc.files)
			var names []string
			for _, o := range []string{"a", "b"} {
				if _, err := os.Stat(filepath.Join(site, o)); err == nil {
					names = append(names, o)
				}
			}
			r := newTestRenderer(t, func(o *Options) { o.SiteDir = site; o.DefaultSystem = names })
			a, err := r.Render(context.Background(), nil, n, System)
			if tc.want == "" {
				require.NoError(t, err)
				unpack(t, a) // fails on a duplicate path
				return
			}
			var te *TemplateError
			require.ErrorAs(t, err, &te)
			assert.Contains(t, err.Error(), tc.want)
			assert.Equal(t, tc.file, te.File)
			if te.Node != "" {
				assert.Equal(t, "n1", te.Node)
			}
		})
	}
}

// TestStaticTreeConflict: one overlay's file where another has a directory
// is refused when the overlays are combined, with both named.
func TestStaticTreeConflict(t *testing.T) {
	site := writeSite(t, map[string]string{"a/rootfs/etc/x/y": "y\n", "b/rootfs/etc/x": "x\n"})
	r := newTestRenderer(t, func(o *Options) { o.SiteDir = site; o.DefaultSystem = []string{"a", "b"} })
	_, err := r.Render(context.Background(), nil, &nodedb.Node{ID: "n1"}, System)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "etc/x")
	assert.Contains(t, err.Error(), "[a b]")
}
