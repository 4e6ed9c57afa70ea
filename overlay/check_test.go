package overlay

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCheckPrivate: CheckPrivate finds, without rendering, the files that
// make an archive private: the same files Archive.Private names after a
// render of the same overlays (SSHHostKey, an Include of a 0400 server
// file into a world-readable file, a static 0600 file, a literal key, the
// BMC password), plus an Include whose path the template takes from the
// node. It makes no host key. Warewulf's default system overlays of
// wwboot (wwinit, wwclient with its CA Include, hostname, hosts'
// IncludeBlock of /etc/hosts) carry nothing private.
func TestCheckPrivate(t *testing.T) {
	ctx := context.Background()
	site := t.TempDir()
	secretFile := filepath.Join(t.TempDir(), "munge.key")
	require.NoError(t, os.WriteFile(secretFile, []byte("\x01\x02binary munge key"), 0o400))
	pub := filepath.Join(t.TempDir(), "motd")
	require.NoError(t, os.WriteFile(pub, []byte("welcome\n"), 0o644))
	write := func(ov, rel, text string, mode os.FileMode) {
		p := filepath.Join(site, ov, "rootfs", rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(text), mode))
		require.NoError(t, os.Chmod(p, mode))
	}
	write("secrets", "etc/munge/munge.key.ww", `{{ Include "`+secretFile+`" }}`, 0o644)
	write("secrets", "etc/motd.ww", `{{ Include "`+pub+`" }}`, 0o644)
	write("secrets", "etc/static.secret", "not for others", 0o600)
	write("secrets", "etc/pasted.ww", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbg==\n-----END OPENSSH PRIVATE KEY-----\n", 0o644)
	write("secrets", "etc/bmc.ww", "{{ with .Ipmi }}pw={{ .Password }}{{ end }}\n", 0o644)
	write("secrets", "etc/plain.conf", "x=1\n", 0o644)
	write("secrets", "etc/ipaddr.ww", "ip={{ .Ipaddr }} name={{ .Id }}\n", 0o644)
	write("pernode", "etc/x.ww", `{{ Include (print "/etc/" .Id) }}`, 0o644)

	keyDir := t.TempDir()
	mk := func(keys string) *Renderer {
		return newTestRenderer(t, func(o *Options) {
			o.SiteDir = site
			o.KeyDir = keys
			o.Server.Ssh.KeyTypes = []string{"ed25519"}
			o.Server.Paths.CACert = pub
		})
	}
	r := mk(keyDir)
	found, err := r.CheckPrivate([]string{"wwinit", "wwclient", "hostname", "host", "NetworkManager", "ssh.host_keys", "secrets", "pernode"})
	require.NoError(t, err)
	got := map[string]string{}
	for _, f := range found {
		got[f.Overlay+":"+f.Path] = f.Why
	}
	assert.Contains(t, got["ssh.host_keys:etc/ssh/ssh_host_ed25519_key"], "SSHHostKey")
	assert.Contains(t, got["secrets:etc/munge/munge.key"], "denies others read on the server")
	assert.Contains(t, got["secrets:etc/static.secret"], "0600")
	assert.Contains(t, got["secrets:etc/pasted"], "private key")
	assert.Contains(t, got["secrets:etc/bmc"], "BMC password")
	assert.Contains(t, got["pernode:etc/x"], "names from the node")
	for k := range got {
		ov, _, _ := strings.Cut(k, ":")
		assert.Contains(t, []string{"ssh.host_keys", "secrets", "pernode"}, ov, "only those overlays carry private files: %s", k)
	}
	ents, err := os.ReadDir(keyDir)
	require.NoError(t, err)
	assert.Empty(t, ents, "CheckPrivate renders nothing: no host key made")

	// The render's own verdict on the same overlays agrees.
	db := testDB(t, testConfig(1))
	n, err := db.Node("n00001")
	require.NoError(t, err)
	r2 := mk(t.TempDir())
	names := []string{"wwinit", "hostname", "NetworkManager", "ssh.host_keys", "secrets"} // wwclient needs an agent binary to render
	r2.opts.DefaultSystem = names
	a, err := r2.Render(ctx, db, n, System)
	require.NoError(t, err)
	var want []string
	for _, f := range found {
		if f.Overlay != "pernode" {
			want = append(want, f.Path)
		}
		if f.Overlay == "secrets" {
			assert.Contains(t, a.Private(), f.Path, "the render makes it private too")
		}
	}
	// ssh.host_keys renders only the key types configured; the check names
	// every file that may carry a key.
	assert.Subset(t, want, a.Private(), "every private file of the render is found")

	// Warewulf's shared key set, as an imported Warewulf overlay includes it.
	write("wwkeys", "etc/ssh/ssh_host_rsa_key.ww", `{{ Include "keys/ssh_host_rsa_key" }}`, 0o644)
	write("wwkeys", "etc/ssh/ssh_host_rsa_key.pub.ww", `{{ Include "keys/ssh_host_rsa_key.pub" }}`, 0o644)
	found, err = r.CheckPrivate([]string{"wwkeys"})
	require.NoError(t, err)
	require.Len(t, found, 1)
	assert.Equal(t, "etc/ssh/ssh_host_rsa_key", found[0].Path)

	_, err = r.CheckPrivate([]string{"no-such-overlay"})
	assert.ErrorIs(t, err, ErrNotFound)
}

// TestCheckPrivateDumps: node check lists templates that print a whole
// structure holding secrets (the second attack pass's system overlay
// templates, which the server refuses by value), and none of the built-in
// overlays of wwboot's default profile.
func TestCheckPrivateDumps(t *testing.T) {
	site := t.TempDir()
	dumps := map[string]string{
		"etc/all.json.ww":    "{{ toJson .AllNodes }}\n",
		"etc/all-ipmi.ww":    "{{ range .AllNodes }}{{ toJson .Ipmi }} {{ end }}\n",
		"etc/all-printf.ww":  `{{ range .AllNodes }}{{ printf "%v" .Ipmi }} {{ end }}` + "\n",
		"etc/first.json.ww":  "{{ (index .AllNodes 0).Ipmi | toJson }}\n",
		"etc/dump.json.ww":   "{{ toJson . }}\n",
		"etc/b64.ww":         "{{ toJson .Ipmi | b64enc }}\n",
		"etc/upper.ww":       `{{ printf "%v" .Ipmi | upper }}` + "\n",
		"etc/ipmi-alone.ww":  "{{ .Ipmi }}\n",
		"etc/root-dump.ww":   "{{ toPrettyJson $ }}\n",
		"etc/fine-args.ww":   "{{ range .Kernel.Args }}{{ . }} {{ end }}\n",
		"etc/fine-fields.ww": "{{ .Ipmi.Ipaddr }} {{ toJson .Tags }} {{ printf \"%s\" .Id }}\n",
	}
	for rel, text := range dumps {
		p := filepath.Join(site, "dumps", "rootfs", rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(text), 0o644))
	}
	r := newTestRenderer(t, func(o *Options) { o.SiteDir = site })
	found, err := r.CheckPrivate([]string{"dumps"})
	require.NoError(t, err)
	var got []string
	for _, f := range found {
		got = append(got, f.Path)
		assert.Contains(t, f.Why, "whole structure", f.Path)
	}
	assert.ElementsMatch(t, []string{"etc/all.json", "etc/all-ipmi", "etc/all-printf", "etc/first.json", "etc/dump.json",
		"etc/b64", "etc/upper", "etc/ipmi-alone", "etc/root-dump"}, got)

	found, err = r.CheckPrivate([]string{"wwinit", "hostname", "machine-id", "udev.netname", "systemd.netname",
		"ifupdown", "NetworkManager", "systemd-networkd", "fstab", "resolv", "hosts", "ignition", "debug"})
	require.NoError(t, err)
	assert.Empty(t, found, "the built-in overlays print no secret")
}
