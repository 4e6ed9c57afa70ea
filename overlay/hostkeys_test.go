package overlay

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
)

// renderKeys renders node's ssh.host_keys and returns the archive's files
// below etc/ssh.
func renderKeys(t *testing.T, r *Renderer, node string) map[string]string {
	t.Helper()
	db := testDB(t, testConfig(3))
	n, err := db.Node(node)
	require.NoError(t, err)
	a, err := r.Render(context.Background(), db, n, System)
	require.NoError(t, err)
	m, _ := unpack(t, a)
	out := map[string]string{}
	for p, e := range m {
		if name, ok := strings.CutPrefix(p, "etc/ssh/"); ok {
			out[name] = e.data
		}
	}
	return out
}

// checkPairs asserts that files hold a private key and the matching .pub
// for each of types, read with x/crypto/ssh and with ssh-keygen.
func checkPairs(t *testing.T, files map[string]string, types ...string) {
	t.Helper()
	require.Len(t, files, 2*len(types), "exactly the pairs of %v", types)
	keygen, _ := exec.LookPath("ssh-keygen")
	for _, typ := range types {
		name := "ssh_host_" + typ + "_key"
		priv, pub := files[name], files[name+".pub"]
		signer, err := ssh.ParsePrivateKey([]byte(priv))
		require.NoError(t, err, name)
		pk, comment, _, _, err := ssh.ParseAuthorizedKey([]byte(pub))
		require.NoError(t, err, name+".pub")
		assert.Equal(t, signer.PublicKey().Marshal(), pk.Marshal(), "%s.pub is the private key's", name)
		assert.NotEmpty(t, comment)
		if keygen == "" {
			continue
		}
		// The real client: ssh-keygen derives the same public key.
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(priv), 0o600))
		out, err := exec.Command(keygen, "-y", "-f", filepath.Join(dir, name)).CombinedOutput()
		require.NoError(t, err, "%s", out)
		fromKeygen, _, _, _, err := ssh.ParseAuthorizedKey(out)
		require.NoError(t, err)
		assert.Equal(t, pk.Marshal(), fromKeygen.Marshal(), "ssh-keygen -y %s", name)
	}
}

// TestHostKeysEveryType: every type sshd loads by default (rsa included) is
// generated per node, real keys whose halves match, and kept.
func TestHostKeysEveryType(t *testing.T) {
	keyDir := t.TempDir()
	mk := func() *Renderer {
		return newTestRenderer(t, func(o *Options) {
			o.KeyDir, o.DefaultSystem = keyDir, []string{"ssh.host_keys"}
			o.RSABits = 0 // the real default size, 3072
			o.Server.Ssh.KeyTypes = nil
		})
	}
	r := mk()
	k1, k2 := renderKeys(t, r, "n00001"), renderKeys(t, r, "n00002")
	checkPairs(t, k1, "ed25519", "ecdsa", "rsa")
	checkPairs(t, k2, "ed25519", "ecdsa", "rsa")
	for name := range k1 {
		assert.NotEqual(t, k1[name], k2[name], "%s: each node has its own", name)
	}
	rsaKey, err := ssh.ParseRawPrivateKey([]byte(k1["ssh_host_rsa_key"]))
	require.NoError(t, err)
	assert.Equal(t, "*rsa.PrivateKey", fmt.Sprintf("%T", rsaKey))
	assert.Equal(t, k1, renderKeys(t, mk(), "n00001"), "a new renderer over the same state serves the same keys")
}

// TestHostKeysRepairMismatchedPair: the state issue 11 item 5 found (the old
// scheme renamed the .pub, then died; the next build put a new private key
// beside the old .pub) is repaired on read: the .pub is rebuilt from the
// private key the node's sshd presents.
func TestHostKeysRepairMismatchedPair(t *testing.T) {
	keyDir := t.TempDir()
	dir := filepath.Join(keyDir, "nodes", "n00001")
	require.NoError(t, os.MkdirAll(dir, 0o700))
	privA, _, err := generateKey("ed25519", "root@n00001", 0)
	require.NoError(t, err)
	_, pubB, err := generateKey("ed25519", "root@n00001", 0)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ssh_host_ed25519_key"), privA, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ssh_host_ed25519_key.pub"), pubB, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".tmp-ssh_host_ecdsa_key"), []byte("half"), 0o600))

	r := newTestRenderer(t, func(o *Options) {
		o.KeyDir, o.DefaultSystem = keyDir, []string{"ssh.host_keys"}
		o.Server.Ssh.KeyTypes = []string{"ed25519"}
	})
	files := renderKeys(t, r, "n00001")
	checkPairs(t, files, "ed25519")
	assert.Equal(t, string(privA), files["ssh_host_ed25519_key"], "the private key is kept")
	onDisk, err := os.ReadFile(filepath.Join(dir, "ssh_host_ed25519_key.pub"))
	require.NoError(t, err)
	assert.Equal(t, files["ssh_host_ed25519_key.pub"], string(onDisk), "the .pub on disk is repaired")
	assert.NotEqual(t, string(pubB), string(onDisk))
	assert.NoFileExists(t, filepath.Join(dir, ".tmp-ssh_host_ecdsa_key"), "the old writer's leftovers go")
}

// crashEnv names the crash point for the helper process of
// TestHostKeysCrash.
const crashEnv = "WWBOOT_TEST_HOSTKEYS_CRASH"

// TestHostKeysCrashHelper is the child of TestHostKeysCrash: it adds rsa
// to the node's keys and kills itself (SIGKILL, no cleanup) at the point
// named in $WWBOOT_TEST_HOSTKEYS_CRASH.
func TestHostKeysCrashHelper(t *testing.T) {
	spec := os.Getenv(crashEnv)
	if spec == "" {
		t.Skip("helper process of TestHostKeysCrash")
	}
	parts := strings.SplitN(spec, ",", 3)
	require.Len(t, parts, 3)
	point, keyDir, fallback := parts[0], parts[1], parts[2]
	k := &hostKeys{dir: keyDir, rsa: 1024, noExchange: fallback == "fallback"}
	k.crashAt = func(p string) {
		if p == point {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	}
	dir := filepath.Join(keyDir, "nodes", "n00001")
	err := k.update([]job{{dir: dir, types: []string{"ed25519", "rsa"}, machineID: true}}, true, 1)
	t.Fatalf("not killed at %s: %v", point, err)
}

// TestHostKeysCrash kills a writer at each point of a directory swap, with
// and without RENAME_EXCHANGE, and checks that the next renderer finds
// either the old set or the new one, each pair matching, the old keys
// unchanged, and no leftovers once it has written.
func TestHostKeysCrash(t *testing.T) {
	for _, c := range []struct{ point, mode string }{
		{"written", "exchange"}, {"exchanged", "exchange"},
		{"written", "fallback"}, {"moved-away", "fallback"},
	} {
		t.Run(c.point+"-"+c.mode, func(t *testing.T) {
			keyDir := t.TempDir()
			mk := func() *Renderer {
				return newTestRenderer(t, func(o *Options) {
					o.KeyDir, o.DefaultSystem = keyDir, []string{"ssh.host_keys", "machine-id"}
					o.Server.Ssh.KeyTypes = []string{"ed25519"}
				})
			}
			before := renderKeys(t, mk(), "n00001")
			checkPairs(t, before, "ed25519")
			id, err := os.ReadFile(filepath.Join(keyDir, "nodes", "n00001", "machine-id"))
			require.NoError(t, err)

			cmd := exec.Command(os.Args[0], "-test.run=^TestHostKeysCrashHelper$", "-test.count=1")
			cmd.Env = append(os.Environ(), crashEnv+"="+c.point+","+keyDir+","+c.mode)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			require.ErrorAs(t, err, &ee, "%s", out)
			require.Equal(t, syscall.SIGKILL, ee.Sys().(syscall.WaitStatus).Signal(), "%s", out)

			// Whatever the crash left, every pair on disk that reads as a
			// pair matches, and the old key is never changed.
			dir := filepath.Join(keyDir, "nodes", "n00001")
			if b, err := os.ReadFile(filepath.Join(dir, "ssh_host_rsa_key")); err == nil {
				pub, err := os.ReadFile(filepath.Join(dir, "ssh_host_rsa_key.pub"))
				require.NoError(t, err, "an rsa key without its .pub")
				pk, err := publicOf("rsa", b)
				require.NoError(t, err)
				assert.True(t, samePublic(pub, pk), "the rsa pair matches")
			}

			// The next renderer (wanting rsa now) serves matching pairs,
			// the same ed25519 key and machine-id, and cleans up.
			after := renderKeys(t, newTestRenderer(t, func(o *Options) {
				o.KeyDir, o.DefaultSystem = keyDir, []string{"ssh.host_keys"}
				o.Server.Ssh.KeyTypes = []string{"ed25519", "rsa"}
			}), "n00001")
			checkPairs(t, after, "ed25519", "rsa")
			assert.Equal(t, before["ssh_host_ed25519_key"], after["ssh_host_ed25519_key"])
			assert.Equal(t, before["ssh_host_ed25519_key.pub"], after["ssh_host_ed25519_key.pub"])
			id2, err := os.ReadFile(filepath.Join(dir, "machine-id"))
			require.NoError(t, err)
			assert.Equal(t, id, id2, "the machine-id survives")
			for _, left := range []string{".tmp/nodes/n00001", ".old/nodes/n00001"} {
				assert.NoFileExists(t, filepath.Join(keyDir, left))
				assert.NoDirExists(t, filepath.Join(keyDir, left))
			}
		})
	}
}

// TestHostKeysConcurrentWriters: renderers in one process over the same
// key directory (as serve and overlay build share it) asking for the same
// new node at once all get the same keys.
func TestHostKeysConcurrentWriters(t *testing.T) {
	keyDir := t.TempDir()
	var wg sync.WaitGroup
	got := make([]map[string]string, 6)
	for i := range got {
		r := newTestRenderer(t, func(o *Options) {
			o.KeyDir, o.DefaultSystem = keyDir, []string{"ssh.host_keys"}
		})
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = renderKeys(t, r, "n00003")
		}()
	}
	wg.Wait()
	checkPairs(t, got[0], "ed25519", "ecdsa", "rsa")
	for i := 1; i < len(got); i++ {
		assert.Equal(t, got[0], got[i], "renderer %d", i)
	}
}

// TestImportHostKeys: a Warewulf server's key set (made here by ssh-keygen,
// as Warewulf makes it) becomes every node's keys with SharedHostKeys.
func TestImportHostKeys(t *testing.T) {
	keygen, err := exec.LookPath("ssh-keygen")
	if err != nil {
		t.Skip("ssh-keygen not installed (.ci/packages: openssh-client)")
	}
	src := t.TempDir()
	for _, typ := range []string{"ed25519", "ecdsa", "rsa"} {
		out, err := exec.Command(keygen, "-q", "-t", typ, "-N", "", "-C", "root@warewulf", "-f", filepath.Join(src, "ssh_host_"+typ+"_key")).CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
	require.NoError(t, os.Remove(filepath.Join(src, "ssh_host_ecdsa_key.pub")), "a missing .pub is derived")
	keyDir := t.TempDir()
	types, err := ImportHostKeys(keyDir, src)
	require.NoError(t, err)
	assert.Equal(t, []string{"ed25519", "ecdsa", "rsa"}, types)

	r := newTestRenderer(t, func(o *Options) {
		o.KeyDir, o.SharedHostKeys, o.DefaultSystem = keyDir, true, []string{"ssh.host_keys"}
	})
	k1, k2 := renderKeys(t, r, "n00001"), renderKeys(t, r, "n00002")
	checkPairs(t, k1, "ed25519", "ecdsa", "rsa")
	assert.Equal(t, k1, k2, "one key set for every node")
	for _, typ := range types {
		want, err := os.ReadFile(filepath.Join(src, "ssh_host_"+typ+"_key"))
		require.NoError(t, err)
		assert.Equal(t, string(bytes.TrimSuffix(want, []byte("\n"))), strings.TrimSuffix(k1["ssh_host_"+typ+"_key"], "\n"), "the imported %s key is served", typ)
	}
	wantPub, err := os.ReadFile(filepath.Join(src, "ssh_host_rsa_key.pub"))
	require.NoError(t, err)
	assert.Equal(t, string(wantPub), k1["ssh_host_rsa_key.pub"], "an imported .pub is served as it is")

	// A pair that does not match is refused, and the set in place stays.
	_, otherPub, err := generateKey("ed25519", "x", 0)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(src, "ssh_host_ed25519_key.pub"), otherPub, 0o644))
	_, err = ImportHostKeys(keyDir, src)
	require.ErrorContains(t, err, "ssh_host_ed25519_key.pub does not match")
	_, err = ImportHostKeys(keyDir, t.TempDir())
	require.ErrorContains(t, err, "no ssh_host_{ed25519,ecdsa,rsa}_key in")
	assert.Equal(t, k1, renderKeys(t, newTestRenderer(t, func(o *Options) {
		o.KeyDir, o.SharedHostKeys, o.DefaultSystem = keyDir, true, []string{"ssh.host_keys"}
	}), "n00003"))
}
