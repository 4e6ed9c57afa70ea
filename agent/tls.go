package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Defaults of the TLS channel (Agent.TLSURL).
const (
	// DefaultCAFile is the cluster CA's certificate, which the wwclient
	// overlay puts on every node; the server's certificate must chain to it.
	DefaultCAFile = "/etc/wwboot/ca.crt"
	// DefaultRunDir keeps this boot's enrollment: KeyFile and CertFile
	// (in memory on a node; gone at the next boot, which enrolls again).
	DefaultRunDir = "/run/wwboot"
	// KeyFile and CertFile are the agent's key (PKCS#8 PEM, 0600) and the
	// certificate the server signed for it (PEM), below RunDir.
	KeyFile  = "agent.key"
	CertFile = "agent.crt"
	// lockFile serializes the enrollment of the agent processes of a boot
	// (the first sync and the daemon).
	lockFile = "agent.lock"
)

// errCertRefused marks a 401 over TLS: the server no longer takes this
// boot's certificate.
var errCertRefused = errors.New("the server refused the agent's certificate")

func (a *Agent) caFile() string {
	if a.CAFile == "" {
		return DefaultCAFile
	}
	return a.CAFile
}

func (a *Agent) runDir() string {
	if a.RunDir == "" {
		return DefaultRunDir
	}
	return a.RunDir
}

// channel returns the base URL, the dialer and the TLS configuration of the
// node's requests: the TLS channel when TLSURL is set (enrolling first
// when enroll is true and this boot has no certificate yet), else the
// plain URL. With enroll false and no certificate, it is the plain URL:
// /init's reports before the agent enrolled.
func (a *Agent) channel(ctx context.Context, enroll bool) (base string, dial DialFunc, tc *tls.Config, err error) {
	if a.TLSURL == "" {
		return a.URL, a.dial(), nil, nil
	}
	a.tlsMu.Lock()
	defer a.tlsMu.Unlock()
	if a.tlsCfg == nil {
		tc, err := a.loadTLS()
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			a.log().Warn("this boot's agent certificate cannot be used; enrolling again", "dir", a.runDir(), "err", err)
		}
		if tc == nil && enroll {
			if tc, err = a.enroll(ctx); err != nil {
				return "", nil, nil, err
			}
		}
		a.tlsCfg = tc
	}
	if a.tlsCfg == nil {
		return a.URL, a.dial(), nil, nil
	}
	return a.TLSURL, DialAny, a.tlsCfg, nil
}

// forget drops this boot's certificate after the server refused it (401),
// so that the next request enrolls again: that works when the server lost
// its record, and is refused loudly (409) when someone else enrolled in
// this boot.
func (a *Agent) forget() {
	a.tlsMu.Lock()
	defer a.tlsMu.Unlock()
	a.tlsCfg = nil
	_ = os.Remove(filepath.Join(a.runDir(), CertFile))
	_ = os.Remove(filepath.Join(a.runDir(), KeyFile))
}

// roots reads the cluster CA's certificate.
func (a *Agent) roots() (*x509.CertPool, error) {
	data, err := os.ReadFile(a.caFile())
	if err != nil {
		return nil, fmt.Errorf("agent: the cluster CA certificate: %w (the wwclient overlay puts it there when the server has agent tls: true)", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("agent: %s holds no PEM certificate", a.caFile())
	}
	return pool, nil
}

// clientConfig is the TLS configuration over the agent's certificate: TLS
// 1.3, and a server certificate that chains to the cluster CA and is meant
// for a server (ExtKeyUsageServerAuth). The name is not checked: the CA is
// the cluster's own and signs nothing but its server and its nodes, and
// nodes reach the server by address.
func clientConfig(pool *x509.CertPool, cert tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{cert},
		InsecureSkipVerify: true, // replaced by VerifyConnection, without the name check
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the server sent no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			leaf := cs.PeerCertificates[0]
			_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			if err == nil {
				return nil
			}
			if _, aerr := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); aerr == nil {
				// The cluster CA signed it, but not for a server: a node's
				// client certificate, presented by whoever answers here.
				return fmt.Errorf("the server's certificate (subject %q) is signed by the cluster CA but is not a server "+
					"certificate (its key usage is not server authentication; a node's certificate looks like this): something "+
					"other than the wwboot server answers at this address, possibly a node impersonating it; not trusted: %w",
					leaf.Subject.String(), err)
			}
			return fmt.Errorf("the server's certificate (subject %q): %w (is /etc/wwboot/ca.crt this cluster's CA?)", leaf.Subject.String(), err)
		},
	}
}

// loadTLS reads this boot's key and certificate from RunDir; nil and an
// fs.ErrNotExist error when there are none.
func (a *Agent) loadTLS() (*tls.Config, error) {
	dir := a.runDir()
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile))
	if err != nil {
		return nil, err
	}
	if cert.Leaf != nil && time.Now().After(cert.Leaf.NotAfter) {
		return nil, fmt.Errorf("the certificate in %s expired at %s", dir, cert.Leaf.NotAfter)
	}
	pool, err := a.roots()
	if err != nil {
		return nil, err
	}
	return clientConfig(pool, cert), nil
}

// enroll makes a key, has the server sign it (POST /agent/enroll/{mac}
// over the plain URL, from a privileged port), and keeps both in RunDir.
// Agent processes of one boot enroll one at a time (a lock file in RunDir);
// one that finds a certificate made meanwhile takes it.
func (a *Agent) enroll(ctx context.Context) (*tls.Config, error) {
	pool, err := a.roots()
	if err != nil {
		return nil, err
	}
	dir := a.runDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	lf, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	defer lf.Close()
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX); err != nil {
		return nil, fmt.Errorf("agent: locking %s: %w", lf.Name(), err)
	}
	defer syscall.Flock(int(lf.Fd()), syscall.LOCK_UN) //nolint:errcheck // closing unlocks anyway
	if tc, err := a.loadTLS(); err == nil {
		return tc, nil // another process of this boot enrolled
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: a.HWAddr.String()}}, key)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	req := request{method: "POST", path: a.target("/agent/enroll/", ""), wait: 30 * time.Second, limit: 64 << 10,
		body:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}),
		header: map[string]string{"Content-Type": "application/pkcs10"}}
	resp, err := do(ctx, a.dial(), a.URL, nil, req)
	if err != nil {
		return nil, fmt.Errorf("enrolling with %s: %w", a.URL, err)
	}
	if resp.code != 200 {
		return nil, fmt.Errorf("enrolling with %s%s: %s: %s", a.URL, req.path, resp.status, firstLine(resp.body))
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	cert, err := tls.X509KeyPair(resp.body, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("enrolling with %s: the answer is not a certificate for the agent's key: %w", a.URL, err)
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, fmt.Errorf("enrolling with %s: the certificate does not chain to %s: %w", a.URL, a.caFile(), err)
	}
	// Key first: a certificate is only ever found beside its key.
	if err := writeFileAtomic(filepath.Join(dir, KeyFile), keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, CertFile), resp.body, 0o644); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	a.log().Info("enrolled: the runtime overlay and reports go over TLS now", "server", a.TLSURL,
		"serial", cert.Leaf.SerialNumber.Text(16), "expires", cert.Leaf.NotAfter.Format(time.DateOnly))
	return clientConfig(pool, cert), nil
}

// writeFileAtomic replaces path with data: temporary file, fsync, rename,
// fsync of the directory.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}
