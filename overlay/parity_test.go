package overlay

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/nodedb"
)

// siteWith writes files (path under SITE/o1/rootfs → text) and returns SITE.
func siteWith(t *testing.T, files map[string]string) string {
	t.Helper()
	site := t.TempDir()
	for p, text := range files {
		full := filepath.Join(site, "o1", "rootfs", p)
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, []byte(text), 0o644))
	}
	return site
}

// dbFromText loads a nodes.conf text through the real parser.
func dbFromText(t *testing.T, text string) *nodedb.DB {
	t.Helper()
	cfg, err := nodedb.Parse("nodes.conf", []byte(text))
	require.NoError(t, err)
	db, err := nodedb.New(cfg)
	require.NoError(t, err)
	return db
}

// TestStorageSwitchesAreBooleans: with wipe_table, should_exist and
// wipe_filesystem false in nodes.conf, {{ if }} on them is false (a
// template would otherwise wipe and format disks marked false); true is
// true, in any of nodes.conf's spellings. (Issue 10 item 3; Warewulf 4.7's
// Disk, Partition and FileSystem hold bools.)
func TestStorageSwitchesAreBooleans(t *testing.T) {
	db := dbFromText(t, `nodes:
  n1:
    disks:
      /dev/sda:
        wipe_table: false
        partitions:
          scratch: {should_exist: false, resize: "no", wipe_partition_entry: "yes"}
      /dev/sdb:
        wipe_table: "true"
    filesystems:
      /dev/sda1: {wipe_filesystem: false, mount_options: [defaults, noatime]}
      /dev/sdb1:
        wipe_filesystem: true
        mount_options: defaults,noatime
`)
	site := siteWith(t, map[string]string{"etc/disks.ww": `
{{- range $dev, $d := .ThisNode.Disks }}{{ $dev }} wipe={{ if $d.WipeTable }}yes{{ else }}no{{ end }}
{{ range $l, $p := $d.Partitions }}{{ $l }} exist={{ if $p.ShouldExist }}yes{{ else }}no{{ end }} resize={{ if $p.Resize }}yes{{ else }}no{{ end }} wipeentry={{ if $p.WipePartitionEntry }}yes{{ else }}no{{ end }}
{{ end }}{{ end }}
{{- range $dev, $fs := .ThisNode.FileSystems }}{{ $dev }} format={{ if $fs.WipeFileSystem }}yes{{ else }}no{{ end }} opts={{ $fs.MountOptions }}
{{ end }}`})
	n, _ := db.Node("n1")
	r := newTestRenderer(t, func(o *Options) { o.SiteDir = site; o.DefaultSystem = []string{"o1"} })
	a, err := r.Render(context.Background(), db, n, System)
	require.NoError(t, err)
	m, _ := unpack(t, a)
	assert.Equal(t, "/dev/sda wipe=no\nscratch exist=no resize=no wipeentry=yes\n/dev/sdb wipe=yes\n"+
		"/dev/sda1 format=no opts=defaults,noatime\n/dev/sdb1 format=yes opts=defaults,noatime\n", m["etc/disks"].data)
}

// TestNetDevCIDRs: IpCIDR is "" without a netmask (Warewulf's
// NetDev.IpCIDR); IpCIDR6 and PrefixLen6 (Warewulf's spellings) exist for
// every device, "" on an IPv4-only one, so a template reading IpCIDR6 for
// every device renders.
func TestNetDevCIDRs(t *testing.T) {
	db := dbFromText(t, `nodes:
  n1:
    network devices:
      a: {ipaddr: 10.0.0.5, netmask: 255.255.255.0}
      b: {ipaddr: 10.0.1.5}
      c: {ipaddr: 10.0.2.5/16}
      d: {ipaddr6: "fd00::5", prefixlen6: "48"}
      e: {ipaddr6: "fd00::6/56"}
      f: {ipaddr6: "fd00::7"}
`)
	site := siteWith(t, map[string]string{"etc/cidr.ww": `{{ range $n, $d := .NetDevs }}{{ $n }} [{{ $d.IpCIDR }}] [{{ $d.IpCIDR6 }}] [{{ $d.PrefixLen6 }}]
{{ end }}`})
	n, _ := db.Node("n1")
	r := newTestRenderer(t, func(o *Options) { o.SiteDir = site; o.DefaultSystem = []string{"o1"} })
	a, err := r.Render(context.Background(), db, n, System)
	require.NoError(t, err)
	m, _ := unpack(t, a)
	assert.Equal(t, "a [10.0.0.5/24] [] []\nb [] [] []\nc [10.0.2.5/16] [] []\n"+
		"d [] [fd00::5/48] [48]\ne [] [fd00::6/56] [56]\nf [] [fd00::7/64] []\n", m["etc/cidr"].data)
}

// TestOneBadTemplate: a template that does not parse leaves its overlay
// usable: the overlay loads, its other files render (also for a node's
// archive), and the error names the file and line where it is asked for.
func TestOneBadTemplate(t *testing.T) {
	site := siteWith(t, map[string]string{
		"etc/good.ww": "good for {{ .Id }}\n",
		"etc/bad.ww":  "fine\n{{ if }}\n",
		"etc/static":  "static\n",
	})
	var logs bytes.Buffer
	r := newTestRenderer(t, func(o *Options) {
		o.SiteDir = site
		o.DefaultSystem = []string{"o1"}
		o.Log = slog.New(slog.NewTextHandler(&logs, nil))
	})
	o, err := r.Overlay("o1")
	require.NoError(t, err, "the overlay loads")
	var bad *File
	for _, f := range o.Files {
		if f.Path == "etc/bad.ww" {
			bad = f
		}
	}
	require.NotNil(t, bad)
	var te *TemplateError
	require.ErrorAs(t, bad.ParseError(), &te)
	assert.Equal(t, "etc/bad.ww", te.File)
	assert.Equal(t, 2, te.Line)
	assert.Contains(t, logs.String(), "etc/bad.ww:2", "logged once, naming the file and line")

	db := testDB(t, testConfig(1))
	n, _ := db.Node("n00001")
	a, err := r.Render(context.Background(), db, n, System)
	require.NoError(t, err)
	m, _ := unpack(t, a)
	assert.Equal(t, "good for n00001\n", m["etc/good"].data)
	assert.Equal(t, "static\n", m["etc/static"].data)
	assert.NotContains(t, m, "etc/bad")
	assert.NotContains(t, m, "etc/bad.ww", "never shipped as a raw file")

	files, err := r.RenderFile(context.Background(), db, n, "o1", "etc/good.ww")
	require.NoError(t, err)
	require.Len(t, files, 1)
	_, err = r.RenderFile(context.Background(), db, n, "o1", "etc/bad.ww")
	require.ErrorAs(t, err, &te)
	assert.Contains(t, err.Error(), "overlay o1, file etc/bad.ww:2, node n00001")
}
