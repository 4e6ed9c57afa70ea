package overlay

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFileSwitchesAtTheCall renders issue 10's multi-file templates (node
// n1, overlay o1) and checks each file against what Warewulf 4.7 writes:
// output switches to the new file exactly where file is called.
func TestFileSwitchesAtTheCall(t *testing.T) {
	site := t.TempDir()
	write := func(p, s string) {
		full := filepath.Join(site, "o1", "rootfs", p)
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, []byte(s), 0o644))
	}
	write("etc/ownline.ww", "{{ file \"x\" }}\nX\n{{ file \"y\" }}\nY\n")
	write("etc/inline.ww", "before{{ file \"p\" }}after\n")
	write("etc/ranged.ww", "{{- range $n := list \"a\" \"b\" -}}{{- file $n -}}\nfirst-{{ $n }}\nlast-{{ $n }}\n{{- end }}\n")
	write("etc/sub/t.ww", "{{ file \"/etc/abs.conf\" }}abs\n")
	write("etc/perdev.ww", "{{- range $dev := list \"eth0\" \"ib0\" }}\n{{- file (print \"net-\" $dev \".env\") -}}\nDEVICE={{ $dev }}\n{{ end }}")
	write("etc/oneline.ww", "{{ file \"m1\" }}one{{ file \"m2\" }}two{{ file \"m3\" }}\n")
	write("etc/linkfirst.ww", "{{ softlink \"/usr/share/target\" }}{{ file \"q\" }}Q\n")
	write("etc/plain.ww", "no files named\n")

	db := testDB(t, testConfig(1))
	n, err := db.Node("n00001")
	require.NoError(t, err)
	r := newTestRenderer(t, func(o *Options) { o.SiteDir = site; o.DefaultSystem = []string{"o1"} })
	a, err := r.Render(context.Background(), db, n, System)
	require.NoError(t, err)
	m, _ := unpack(t, a)

	want := map[string]string{
		"etc/x":            "\nX\n",
		"etc/y":            "\nY\n",
		"etc/p":            "after\n",
		"etc/a":            "first-a\nlast-a",
		"etc/b":            "first-b\nlast-b\n",
		"etc/abs.conf":     "abs\n",
		"etc/net-eth0.env": "DEVICE=eth0\n",
		"etc/net-ib0.env":  "DEVICE=ib0\n",
		"etc/m1":           "one",
		"etc/m2":           "two",
		"etc/m3":           "\n",
		"etc/q":            "Q\n",
		"etc/plain":        "no files named\n",
	}
	for p, data := range want {
		if assert.Contains(t, m, p) {
			assert.Equal(t, data, m[p].data, p)
			assert.Equal(t, uint64(sIFREG), m[p].mode&0o170000, p)
		}
	}
	for _, p := range []string{"etc/ownline", "etc/inline", "etc/ranged", "etc/perdev", "etc/oneline", "etc/sub/t", "etc/sub/etc/abs.conf"} {
		assert.NotContains(t, m, p, "text before the first file() is not written")
	}
	require.Contains(t, m, "etc/linkfirst", "a softlink before the first file() stays")
	assert.Equal(t, uint64(sIFLNK), m["etc/linkfirst"].mode&0o170000)
	assert.Equal(t, "/usr/share/target", m["etc/linkfirst"].data)
}

// TestFileNamesStayInTheOverlay: a name that climbs out of the overlay
// root is an error naming the template; absolute names cannot escape.
func TestFileNamesStayInTheOverlay(t *testing.T) {
	for _, tmpl := range []string{`{{ file "../../../x" }}`, `{{ file "/" }}`, `{{ file "/../x" }}`, `{{ file "" }}`, `{{ file "." }}`, `{{ file "sub/" }}`} {
		site := t.TempDir()
		full := filepath.Join(site, "o1", "rootfs", "etc", "t.ww")
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, []byte(tmpl), 0o644))
		db := testDB(t, testConfig(1))
		n, _ := db.Node("n00001")
		r := newTestRenderer(t, func(o *Options) { o.SiteDir = site; o.DefaultSystem = []string{"o1"} })
		_, err := r.Render(context.Background(), db, n, System)
		var te *TemplateError
		require.ErrorAs(t, err, &te, tmpl)
		assert.Equal(t, "etc/t.ww", te.File)
	}
}

// TestSplitMarkersCannotBeForged: node data that looks like a marker of
// another render (or a Warewulf comment marker) stays text.
func TestSplitMarkersCannotBeForged(t *testing.T) {
	st := &state{nonce: "abc", names: []string{"real"}}
	out := []byte("keep\x00abcF9\x00 {{ /* file \"evil\" */ }}" + st.marker('F', 0) + "mine\x00xyzF0\x00")
	res, err := st.split(out, "etc/t")
	require.NoError(t, err)
	require.Len(t, res, 1)
	assert.Equal(t, "etc/real", res[0].path)
	assert.Equal(t, "mine\x00xyzF0\x00", string(res[0].data))
}
