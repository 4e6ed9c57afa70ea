package provision_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/provision"
)

// TestCAIsCreatedOnceAtomically: the CA is made on first open (key 0600,
// directory 0700, CN naming the cluster, 10 years), kept as it is by every
// later open, and eight processes (goroutines here) opening a fresh
// directory at once end up with one CA and no temporary files. A key
// whose certificate is missing (a crash between the two files) gets a
// certificate for that key; a certificate that does not match is an error.
func TestCAIsCreatedOnceAtomically(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	now := time.Now()
	cas := make([]*provision.CA, 8)
	var wg sync.WaitGroup
	for i := range cas {
		wg.Go(func() {
			ca, err := provision.OpenCA(dir, "alpha", now)
			assert.NoError(t, err)
			cas[i] = ca
		})
	}
	wg.Wait()
	for _, ca := range cas[1:] {
		require.NotNil(t, ca)
		assert.Equal(t, cas[0].CertPEM(), ca.CertPEM(), "one CA however many open it at once")
	}
	c := cas[0].Certificate()
	assert.Equal(t, "wwboot cluster CA alpha", c.Subject.CommonName)
	assert.True(t, c.IsCA)
	assert.InDelta(t, provision.CAValidity.Hours(), c.NotAfter.Sub(now).Hours(), 2)
	fi, err := os.Stat(filepath.Join(dir, provision.CAKeyFile))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	fi, err = os.Stat(dir)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o755), fi.Mode().Perm(), "ca.crt is public (the wwclient overlay includes it); ca.key is 0600 itself")
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	assert.ElementsMatch(t, []string{provision.CAKeyFile, provision.CACertFile}, names, "no temporary files left")

	again, err := provision.OpenCA(dir, "other name", now.Add(time.Hour))
	require.NoError(t, err)
	assert.Equal(t, cas[0].CertPEM(), again.CertPEM(), "an existing CA is kept")

	// A crash after the key, before the certificate.
	key, err := os.ReadFile(filepath.Join(dir, provision.CAKeyFile))
	require.NoError(t, err)
	require.NoError(t, os.Remove(filepath.Join(dir, provision.CACertFile)))
	healed, err := provision.OpenCA(dir, "alpha", now)
	require.NoError(t, err)
	after, err := os.ReadFile(filepath.Join(dir, provision.CAKeyFile))
	require.NoError(t, err)
	assert.Equal(t, key, after, "the key stays")
	assert.True(t, healed.Certificate().PublicKey.(*ecdsa.PublicKey).Equal(c.PublicKey), "the new certificate is for the same key")

	// Another CA's certificate beside this key: refused, naming the files.
	other, err := provision.OpenCA(filepath.Join(t.TempDir(), "tls"), "beta", now)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, provision.CACertFile), other.CertPEM(), 0o644))
	_, err = provision.OpenCA(dir, "alpha", now)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "does not match")
	assert.Contains(t, err.Error(), provision.CAKeyFile)
}

// TestServerCertificate: the server certificate is kept while it names
// the same hosts and has more than 30 days left, and issued again (key
// 0600) when the hosts change, when it nears its end, or when its key and
// certificate do not match.
func TestServerCertificate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	now := time.Now()
	ca, err := provision.OpenCA(dir, "c", now)
	require.NoError(t, err)
	hosts := []string{"10.0.0.1", "head", "127.0.0.1"}
	c1, err := ca.ServerCertificate(hosts, now)
	require.NoError(t, err)
	assert.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, c1.Leaf.ExtKeyUsage)
	assert.Equal(t, []string{"head"}, c1.Leaf.DNSNames)
	assert.Len(t, c1.Leaf.IPAddresses, 2)
	_, err = c1.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	require.NoError(t, err)
	fi, err := os.Stat(filepath.Join(dir, provision.ServerKeyFile))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	c2, err := ca.ServerCertificate([]string{"127.0.0.1", "head", "10.0.0.1", "head"}, now.Add(24*time.Hour))
	require.NoError(t, err)
	assert.Equal(t, c1.Leaf.SerialNumber, c2.Leaf.SerialNumber, "same hosts, time left: kept")

	c3, err := ca.ServerCertificate(append(hosts, "10.0.0.2"), now)
	require.NoError(t, err)
	assert.NotEqual(t, c2.Leaf.SerialNumber, c3.Leaf.SerialNumber, "new address: issued again")

	near := c3.Leaf.NotAfter.Add(-provision.ServerCertRenew + time.Hour)
	c4, err := ca.ServerCertificate(append(hosts, "10.0.0.2"), near)
	require.NoError(t, err)
	assert.NotEqual(t, c3.Leaf.SerialNumber, c4.Leaf.SerialNumber, "less than 30 days left: issued again")

	// A crash between the key and the certificate: they do not match.
	other, err := provision.OpenCA(filepath.Join(t.TempDir(), "x"), "x", now)
	require.NoError(t, err)
	foreign, err := other.ServerCertificate(hosts, now)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, provision.ServerCertFile),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: foreign.Leaf.Raw}), 0o644))
	c5, err := ca.ServerCertificate(append(hosts, "10.0.0.2"), near)
	require.NoError(t, err)
	require.NoError(t, c5.Leaf.CheckSignatureFrom(ca.Certificate()), "a certificate not of this CA is replaced")
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range ents {
		assert.False(t, strings.Contains(e.Name(), ".tmp"), "temporary file left: %s", e.Name())
	}
}

// TestServerCertificateRenewsWhileServing: the HTTPS listener's
// configuration issues a new server certificate when, while serving, less
// than 30 days of the old one are left.
func TestServerCertificateRenewsWhileServing(t *testing.T) {
	ca, err := provision.OpenCA(filepath.Join(t.TempDir(), "tls"), "c", time.Now())
	require.NoError(t, err)
	at, err := provision.NewAgentTLS(ca, 9874, nil)
	require.NoError(t, err)
	now := time.Now()
	at.Now = func() time.Time { return now }
	cfg, err := at.ServerConfig([]string{"127.0.0.1"}, now)
	require.NoError(t, err)
	c1, err := cfg.GetCertificate(nil)
	require.NoError(t, err)
	c2, err := cfg.GetCertificate(nil)
	require.NoError(t, err)
	assert.Equal(t, c1.Leaf.SerialNumber, c2.Leaf.SerialNumber)
	now = c1.Leaf.NotAfter.Add(-provision.ServerCertRenew + time.Hour)
	c3, err := cfg.GetCertificate(nil)
	require.NoError(t, err)
	assert.NotEqual(t, c1.Leaf.SerialNumber, c3.Leaf.SerialNumber, "renewed while serving")
	assert.True(t, c3.Leaf.NotAfter.After(c1.Leaf.NotAfter))
}

// csrPEM makes a certificate request for key, PEM-encoded.
func csrPEM(t testing.TB, key any) []byte {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}}, key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// TestParseCSR: ECDSA P-256 and ed25519 requests pass, in PEM or DER;
// other keys, a broken signature, garbage and oversized bodies do not.
func TestParseCSR(t *testing.T) {
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)

	good := csrPEM(t, p256)
	_, err = provision.ParseCSR(good)
	require.NoError(t, err)
	blk, _ := pem.Decode(csrPEM(t, ed))
	_, err = provision.ParseCSR(blk.Bytes)
	require.NoError(t, err, "DER and ed25519")

	for name, tc := range map[string]struct {
		body []byte
		want string
	}{
		"P-384":     {csrPEM(t, p384), "P-256"},
		"RSA":       {csrPEM(t, rsaKey), "ECDSA P-256 or ed25519"},
		"empty":     {nil, "empty"},
		"garbage":   {[]byte("hello"), "bad certificate request"},
		"cert type": {pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}), "not a PEM CERTIFICATE REQUEST"},
		"too big":   {make([]byte, 5000), "larger than"},
	} {
		_, err := provision.ParseCSR(tc.body)
		require.Error(t, err, name)
		assert.ErrorIs(t, err, provision.ErrCSR, name)
		assert.Contains(t, err.Error(), tc.want, name)
	}
	// A flipped byte in the signature.
	blk, _ = pem.Decode(good)
	der := blk.Bytes
	der[len(der)-3] ^= 0xff
	_, err = provision.ParseCSR(der)
	assert.ErrorIs(t, err, provision.ErrCSR)
}

// FuzzParseCSR: no body makes ParseCSR panic, and whatever it accepts has
// a P-256 or ed25519 key and a valid signature.
func FuzzParseCSR(f *testing.F) {
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(f, err)
	f.Add(csrPEM(f, p256))
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"))
	f.Add([]byte{0x30, 0x82, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		csr, err := provision.ParseCSR(b)
		if err != nil {
			require.ErrorIs(t, err, provision.ErrCSR)
			return
		}
		switch k := csr.PublicKey.(type) {
		case *ecdsa.PublicKey:
			require.Equal(t, elliptic.P256(), k.Curve)
		case ed25519.PublicKey:
		default:
			t.Fatalf("accepted a %T key", k)
		}
		require.NoError(t, csr.CheckSignature())
	})
}

// BenchmarkEnroll measures one enrollment on the server (the request
// checks, ParseCSR, the signature, the fsync'd record), each after a
// boot-chain request (GET /ipxe/{mac}) that opens a new boot, over
// loopback HTTP.
func BenchmarkEnroll(b *testing.B) {
	l := newLab(b)
	ca, err := provision.OpenCA(filepath.Join(b.TempDir(), "tls"), "bench", time.Now())
	require.NoError(b, err)
	at, err := provision.NewAgentTLS(ca, 9874, nil)
	require.NoError(b, err)
	opts := l.options(b)
	opts.AgentTLS, opts.InsecurePorts = at, true
	h, err := provision.NewHandler(opts)
	require.NoError(b, err)
	ts := httptest.NewServer(h)
	defer ts.Close()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(b, err)
	csr := csrPEM(b, key)
	b.ResetTimer()
	for b.Loop() {
		resp, err := http.Get(ts.URL + "/ipxe/" + mac1)
		require.NoError(b, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		resp, err = http.Post(ts.URL+"/agent/enroll/"+mac1, "application/pkcs10", bytes.NewReader(csr))
		require.NoError(b, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		require.Equal(b, http.StatusOK, resp.StatusCode)
	}
}
