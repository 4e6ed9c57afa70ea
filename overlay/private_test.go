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

// TestArchivePrivate: Archive.Private names the files that are secrets of
// the node, whatever makes them: SSHHostKey (built-in ssh.host_keys, private
// keys only), Include of a server file into a file others may not read (a
// munge key), a static file others may not read, a literal private key in a
// world-readable template. Public keys, NetworkManager's 0600 connection
// files (rendered from the inventory alone) and an Include into a
// world-readable file are not secrets.
func TestArchivePrivate(t *testing.T) {
	ctx := context.Background()
	site := t.TempDir()
	secretFile := filepath.Join(t.TempDir(), "munge.key")
	require.NoError(t, os.WriteFile(secretFile, []byte("\x01\x02binary munge key"), 0o400))
	pubDir := openTempDir(t) // t.TempDir is 0700, which hides what is in it
	pub := filepath.Join(pubDir, "motd")
	require.NoError(t, os.WriteFile(pub, []byte("welcome\n"), 0o644))
	hiddenDir := t.TempDir()
	require.NoError(t, os.Chmod(hiddenDir, 0o700)) // a 0644 file in it is its owner's alone
	hidden := filepath.Join(hiddenDir, "token")
	require.NoError(t, os.WriteFile(hidden, []byte("site token\n"), 0o644))
	// Deeper: a 0755 directory inside the closed one (systemd's
	// /var/lib/private/SERVICE/).
	require.NoError(t, os.Mkdir(filepath.Join(hiddenDir, "sub"), 0o755))
	nested := filepath.Join(hiddenDir, "sub", "state")
	require.NoError(t, os.WriteFile(nested, []byte("nested secret\n"), 0o644))
	write := func(rel, text string, mode os.FileMode) {
		p := filepath.Join(site, "secrets", "rootfs", rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(text), mode))
		require.NoError(t, os.Chmod(p, mode))
	}
	write("etc/munge/munge.key.ww", `{{ Include "`+secretFile+`" }}`, 0o400)
	write("etc/motd.ww", `{{ Include "`+pub+`" }}`, 0o644)
	write("etc/static.secret", "not for others", 0o600)
	write("etc/pasted.ww", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbg==\n-----END OPENSSH PRIVATE KEY-----\n", 0o644)
	write("etc/plain.conf", "x=1\n", 0o644)
	write("etc/token.ww", `{{ Include "`+hidden+`" }}`, 0o644)
	write("etc/nested.ww", `{{ Include "`+nested+`" }}`, 0o644)
	write("etc/ssl/private/site.pem", "a key in a closed directory\n", 0o644)
	write("etc/ssl/private/gen.conf.ww", "password=literal {{ .Id }}\n", 0o644)
	require.NoError(t, os.Chmod(filepath.Join(site, "secrets", "rootfs", "etc/ssl/private"), 0o700))

	db := testDB(t, testConfig(1))
	n, err := db.Node("n00001")
	require.NoError(t, err)
	r := newTestRenderer(t, func(o *Options) {
		o.SiteDir = site
		o.Server.Ssh.KeyTypes = []string{"ed25519"}
		o.DefaultSystem = []string{"NetworkManager", "ssh.host_keys", "secrets"}
	})
	a, err := r.Render(ctx, db, n, System)
	require.NoError(t, err)
	m, _ := unpack(t, a)
	require.Contains(t, m, "etc/NetworkManager/system-connections/wwboot-default.nmconnection")
	assert.Equal(t, uint64(0o600), m["etc/NetworkManager/system-connections/wwboot-default.nmconnection"].mode&0o777)
	assert.ElementsMatch(t, []string{"etc/ssh/ssh_host_ed25519_key", "etc/munge/munge.key", "etc/static.secret", "etc/pasted",
		"etc/token", "etc/nested", "etc/ssl/private/site.pem", "etc/ssl/private/gen.conf"}, a.Private())

	r2 := newTestRenderer(t, func(o *Options) { o.DefaultSystem = []string{"wwinit", "hostname", "NetworkManager"} })
	a, err = r2.Render(ctx, db, n, System)
	require.NoError(t, err)
	assert.Empty(t, a.Private())
}

// BenchmarkArchivePrivate is the cost the server adds to every system
// overlay request (the check walks the records, no I/O).
func BenchmarkArchivePrivate(b *testing.B) {
	db := testDB(b, testConfig(1))
	n, err := db.Node("n00001")
	require.NoError(b, err)
	r := newTestRenderer(b, func(o *Options) {
		o.DefaultSystem = []string{"wwinit", "hostname", "machine-id", "udev.netname", "systemd.netname",
			"ifupdown", "NetworkManager", "systemd-networkd", "fstab", "resolv"}
	})
	a, err := r.Render(context.Background(), db, n, System)
	require.NoError(b, err)
	b.ReportAllocs()
	for b.Loop() {
		if len(a.Private()) != 0 {
			b.Fatal("private files")
		}
	}
}

// TestArchivePrivateRenderedSecrets: a template that renders a secret is
// private whatever the output's mode: a BMC password reached as
// .Ipmi.Password, inside a with, through toJson or printf; and a server file
// that denies others read (a 0400 munge key) included by a 0644 template.
// An attacker fetched both from a system overlay before (the check looked
// only at the template's mode). The inventory's other BMC fields are not
// secrets.
func TestArchivePrivateRenderedSecrets(t *testing.T) {
	ctx := context.Background()
	site := t.TempDir()
	secretFile := filepath.Join(t.TempDir(), "munge.key")
	require.NoError(t, os.WriteFile(secretFile, []byte("\x01\x02binary munge key"), 0o400))
	write := func(rel, text string) {
		p := filepath.Join(site, "bmc", "rootfs", rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(text), 0o644))
	}
	write("etc/bmc.conf.ww", "IPMI_PASSWORD={{ .Ipmi.Password }}\n")
	write("etc/bmc-with.ww", "{{ with .Ipmi }}{{ .UserName }}:{{ .Password }}{{ end }}\n")
	write("etc/bmc-root.ww", "{{ $.Ipmi.Password }}\n")
	write("etc/bmc.json.ww", "{{ .Ipmi | toJson }}\n")
	write("etc/bmc-printf.ww", `{{ printf "%v" .Ipmi }}`+"\n")
	write("etc/munge.key.ww", `{{ Include "`+secretFile+`" }}`)
	write("etc/bmc-addr.ww", "BMC={{ .Ipmi.Ipaddr }} USER={{ .Ipmi.UserName }}\n")
	// Every node's secrets, without naming a Password field: a template
	// reading only .AllNodes is rendered once for all nodes.
	write("etc/all.json.ww", "{{ toJson .AllNodes }}\n")
	write("etc/all-ipmi.ww", `{{ range .AllNodes }}{{ printf "%v" .Ipmi }} {{ end }}`+"\n")
	write("etc/first.json.ww", "{{ (index .AllNodes 1).Ipmi | toJson }}\n")
	write("etc/dump.json.ww", "{{ toJson . }}\n")
	// A transformed secret is not caught as such, but what it transforms
	// in a system render is the stand-in, never the password.
	write("etc/b64.ww", "{{ toJson .Ipmi | b64enc }}\n")

	cfg := testConfig(2)
	cfg.Nodes["n00001"].Ipmi = &nodedb.IPMI{UserName: "admin", Password: "S3cretBMC!", Ipaddr: "10.99.0.1"}
	cfg.Nodes["n00002"].Ipmi = &nodedb.IPMI{UserName: "admin", Password: "Other2BMC", Ipaddr: "10.99.0.2"}
	cfg.Nodes["n00002"].AssetKey = "AssetK3y"
	db := testDB(t, cfg)
	n, err := db.Node("n00001")
	require.NoError(t, err)
	r := newTestRenderer(t, func(o *Options) {
		o.SiteDir = site
		o.DefaultSystem = []string{"bmc"}
		o.DefaultRuntime = []string{"bmc"}
	})
	a, err := r.Render(ctx, db, n, System)
	require.NoError(t, err)
	m, _ := unpack(t, a)
	require.Contains(t, m, "etc/all.json")
	for p, e := range m {
		for _, secret := range []string{"S3cretBMC!", "Other2BMC", "AssetK3y"} {
			assert.NotContains(t, e.data, secret, "%s of a system overlay carries a secret", p)
		}
	}
	assert.ElementsMatch(t, []string{"etc/bmc.conf", "etc/bmc-with", "etc/bmc-root", "etc/bmc.json", "etc/bmc-printf", "etc/munge.key",
		"etc/all.json", "etc/all-ipmi", "etc/first.json", "etc/dump.json"}, a.Private())

	// The runtime overlay goes to the node alone: it gets its real values.
	a, err = r.Render(ctx, db, n, Runtime)
	require.NoError(t, err)
	m, _ = unpack(t, a)
	assert.Contains(t, m["etc/bmc.conf"].data, "IPMI_PASSWORD=S3cretBMC!")
	assert.Contains(t, m["etc/all.json"].data, "Other2BMC")
}

// TestPrivateFollowsChmod: a render is stale when a file it included
// changes mode (chmod moves the inode's ctime, not its mtime), so a file
// made 0600 after a first render is private at the next request.
func TestPrivateFollowsChmod(t *testing.T) {
	ctx := context.Background()
	site := t.TempDir()
	src := filepath.Join(openTempDir(t), "site.conf")
	require.NoError(t, os.WriteFile(src, []byte("token=abc\n"), 0o644))
	p := filepath.Join(site, "inc", "rootfs", "etc", "site.conf.ww")
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, []byte(`{{ Include "`+src+`" }}`), 0o644))
	db := testDB(t, testConfig(1))
	n, err := db.Node("n00001")
	require.NoError(t, err)
	r := newTestRenderer(t, func(o *Options) {
		o.SiteDir = site
		o.DefaultSystem = []string{"inc"}
		o.CheckInterval = -1
	})
	a, err := r.Render(ctx, db, n, System)
	require.NoError(t, err)
	assert.Empty(t, a.Private())
	require.NoError(t, os.Chmod(src, 0o600))
	a, err = r.Render(ctx, db, n, System)
	require.NoError(t, err)
	assert.Equal(t, []string{"etc/site.conf"}, a.Private(), "the chmod made the included file a secret")
}
