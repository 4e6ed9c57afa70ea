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
	pub := filepath.Join(t.TempDir(), "motd")
	require.NoError(t, os.WriteFile(pub, []byte("welcome\n"), 0o644))
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
	assert.ElementsMatch(t, []string{"etc/ssh/ssh_host_ed25519_key", "etc/munge/munge.key", "etc/static.secret", "etc/pasted"},
		a.Private())

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

	cfg := testConfig(1)
	cfg.Nodes["n00001"].Ipmi = &nodedb.IPMI{UserName: "admin", Password: "S3cretBMC!", Ipaddr: "10.99.0.1"}
	db := testDB(t, cfg)
	n, err := db.Node("n00001")
	require.NoError(t, err)
	r := newTestRenderer(t, func(o *Options) {
		o.SiteDir = site
		o.DefaultSystem = []string{"bmc"}
	})
	a, err := r.Render(ctx, db, n, System)
	require.NoError(t, err)
	m, _ := unpack(t, a)
	require.Contains(t, m["etc/bmc.json"].data, "S3cretBMC!", "the value check has something to find")
	assert.ElementsMatch(t, []string{"etc/bmc.conf", "etc/bmc-with", "etc/bmc-root", "etc/bmc.json", "etc/bmc-printf", "etc/munge.key"},
		a.Private())
}
