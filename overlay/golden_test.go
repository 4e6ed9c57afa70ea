package overlay

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/wwboot/wwboot/nodedb"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// goldenConfig is testConfig(3) with the tags the fixtures read.
func goldenConfig() *nodedb.Config {
	cfg := testConfig(3)
	n := cfg.Nodes["n00002"]
	n.Tags = map[string]string{"localtime": "Europe/Paris", "site": "lab"}
	n.NetDevs["default"].Tags = map[string]string{"DNS1": "10.0.0.53", "DNS2": "10.0.0.54"}
	n.NetDevs["ib"] = &nodedb.NetDev{Type: "infiniband", Device: "ib0", Ipaddr: "10.10.0.3", Netmask: "255.255.0.0", OnBoot: "false", MTU: "2044"}
	n.NetDevs["default"].Ipaddr6 = "fd00::3/64"
	n.NetDevs["default"].Gateway6 = "fd00::1"
	return cfg
}

func goldenServer(t testing.TB) ServerInfo {
	s := testServer()
	abs, err := filepath.Abs("testdata/sysconf")
	require.NoError(t, err)
	s.Paths.Sysconfdir = abs
	s.Ssh.AuthorizedKeys = filepath.Join(abs, "authorized_keys")
	return s
}

// dump renders an archive as text: one header line per entry, then the
// contents. withOwner prints uid:gid (built-in files are root's; checked
// out test files are whoever checked them out).
func dump(t testing.TB, a *Archive, withOwner bool, mask func(path, data string) string) string {
	m, order := unpack(t, a)
	var b strings.Builder
	for _, p := range order {
		e := m[p]
		owner := ""
		if withOwner {
			owner = fmt.Sprintf(" %d:%d", e.uid, e.gid)
		}
		data, size := e.data, fmt.Sprintf(" %d bytes", len(e.data))
		if mask != nil {
			if data = mask(p, data); data != e.data {
				size = ""
			}
		}
		switch e.mode & 0o170000 {
		case sIFDIR:
			fmt.Fprintf(&b, "== /%s dir %04o%s\n", p, e.mode&0o7777, owner)
		case sIFLNK:
			fmt.Fprintf(&b, "== /%s -> %s\n", p, data)
		default:
			fmt.Fprintf(&b, "== /%s file %04o%s%s\n%s", p, e.mode&0o7777, owner, size, data)
			if data != "" && !strings.HasSuffix(data, "\n") {
				b.WriteString("\n[no final newline]\n")
			}
		}
	}
	return b.String()
}

func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", "golden", name)
	if *update {
		require.NoError(t, os.WriteFile(p, []byte(got), 0o644))
		return
	}
	want, err := os.ReadFile(p)
	require.NoError(t, err, "missing golden file: run go test ./overlay -run %s -update", t.Name())
	assert.Equal(t, string(want), got, "golden %s differs: review, then go test ./overlay -update", p)
}

// TestGoldenBuiltin renders every built-in overlay alone for one node.
func TestGoldenBuiltin(t *testing.T) {
	db := testDB(t, goldenConfig())
	n, err := db.Node("n00002")
	require.NoError(t, err)
	for _, name := range BuiltinNames() {
		t.Run(name, func(t *testing.T) {
			r := newTestRenderer(t, func(o *Options) {
				o.Server = goldenServer(t)
				o.Server.Paths.Agent = fakeAgent(t)
				o.DefaultSystem = []string{name}
				o.Server.Ssh.KeyTypes = []string{"ed25519", "ecdsa", "rsa"}
				o.RSABits = 1024 // fast; the type, not the size, is under test
			})
			a, err := r.Render(context.Background(), db, n, System)
			require.NoError(t, err)
			got := dump(t, a, true, func(p, data string) string {
				if p == "etc/machine-id" {
					require.True(t, validMachineID([]byte(data)), "%q", data)
					return "<machine-id>\n"
				}
				// Host keys are random: check them, then mask them.
				if strings.HasPrefix(p, "etc/ssh/ssh_host_") {
					if strings.HasSuffix(p, ".pub") {
						pk, comment, _, _, err := ssh.ParseAuthorizedKey([]byte(data))
						require.NoError(t, err, p)
						return fmt.Sprintf("<%s public key, comment %s>\n", pk.Type(), comment)
					}
					k, err := ssh.ParseRawPrivateKey([]byte(data))
					require.NoError(t, err, p)
					return fmt.Sprintf("<%T private key in OpenSSH format>\n", k)
				}
				// The host overlay starts the server's /etc/hosts with this
				// machine's own lines.
				if name == "host" && p == "etc/hosts" {
					const marker = "# Do not edit after this line\n"
					if _, after, ok := strings.Cut(data, marker); ok {
						return "<this machine's /etc/hosts up to the marker>\n" + marker + after
					}
				}
				return data
			})
			checkGolden(t, "builtin-"+name+".txt", got)
		})
	}
}

// TestGoldenFunctions renders a site overlay with one template per
// function (testdata/site/funcs).
func TestGoldenFunctions(t *testing.T) {
	db := testDB(t, goldenConfig())
	n, err := db.Node("n00002")
	require.NoError(t, err)
	img, err := filepath.Abs("testdata/image")
	require.NoError(t, err)
	r := newTestRenderer(t, func(o *Options) {
		o.SiteDir = "testdata/site"
		o.Server = goldenServer(t)
		o.DefaultSystem = []string{"funcs"}
		o.ImageRoot = func(name string) string {
			if name == "rocky9" {
				return img
			}
			return ""
		}
	})
	a, err := r.Render(context.Background(), db, n, System)
	require.NoError(t, err)
	got := dump(t, a, false, nil)
	checkGolden(t, "functions.txt", got)

	// What Warewulf's documentation promises, asserted directly.
	m, _ := unpack(t, a)
	assert.NotContains(t, m, "etc/funcs/abort", "abort writes no file")
	assert.Equal(t, "/usr/share/zoneinfo/Europe/Paris", m["etc/funcs/localtime"].data, "softlink makes a symlink")
	assert.Equal(t, uint64(sIFLNK), m["etc/funcs/localtime"].mode&0o170000)
	assert.Equal(t, "../usr/share/zoneinfo/Europe/Berlin", m["etc/funcs/importlink"].data, "ImportLink copies a link's target")
	assert.Equal(t, "/tmp/test-target1", m["etc/funcs/link1"].data)
	assert.Equal(t, "/tmp/test-target2", m["etc/funcs/link2"].data)
	assert.Contains(t, m, "etc/funcs/ifcfg-default.conf", "file names are relative to the template's directory")
	assert.Contains(t, m, "etc/funcs/ifcfg-ib.conf")
	assert.NotContains(t, m, "etc/funcs/multi", "a template that names its files writes no file under its own name")
	assert.Equal(t, "[10.0.0.1 head\n10.0.0.254 gw\n# Do not edit after this line\n10.9.9.9 stale]\nmissing=[]\n", m["etc/funcs/include"].data)
	assert.Equal(t, "10.0.0.1 head\n10.0.0.254 gw\n# Do not edit after this line\n10.0.0.2 added-by-template\n", m["etc/funcs/includeblock"].data)
	assert.Contains(t, m["etc/funcs/misc"].data, "missingkey=<no value>\n", "a missing map key renders as <no value> (missingkey=default)")
	assert.Contains(t, m["etc/funcs/misc"].data, "index-missing=[]\n")
	assert.Equal(t, "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\nbob:x:1001:1001::/home/bob:/bin/sh\n", m["etc/funcs/uniquefield"].data)
}

// TestGoldenWarewulfStyle renders templates written the way Warewulf's
// distribution overlays are (testdata/site/wwstyle), layered over hostname.
func TestGoldenWarewulfStyle(t *testing.T) {
	db := testDB(t, goldenConfig())
	r := newTestRenderer(t, func(o *Options) {
		o.SiteDir = "testdata/site"
		o.Server = goldenServer(t)
		o.DefaultSystem = []string{"hostname", "wwstyle"}
	})
	var all strings.Builder
	for _, name := range []string{"n00001", "n00002"} {
		n, err := db.Node(name)
		require.NoError(t, err)
		a, err := r.Render(context.Background(), db, n, System)
		require.NoError(t, err)
		fmt.Fprintf(&all, "##### %s\n%s", name, dump(t, a, false, nil))
	}
	checkGolden(t, "warewulf-style.txt", all.String())
}

// fakeAgent writes a stand-in for the wwboot-agent binary the wwclient
// overlay delivers.
func fakeAgent(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "wwboot-agent")
	require.NoError(t, os.WriteFile(p, []byte("#!/bin/sh\necho a stand-in for wwboot-agent\n"), 0o755))
	return p
}
