package provision

import (
	"bytes"
	"crypto"
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
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Files of the cluster CA's directory (wwboot keeps it in ROOT/tls).
const (
	CAKeyFile      = "ca.key"     // the CA's private key (PKCS#8 PEM, mode 0600)
	CACertFile     = "ca.crt"     // the CA's self-signed certificate (PEM, 0644), which nodes get
	ServerKeyFile  = "server.key" // the HTTPS listener's private key (0600)
	ServerCertFile = "server.crt" // its certificate, signed by the CA (0644)
)

// Lifetimes of the certificates the CA makes.
const (
	// CAValidity is how long the cluster CA's certificate is valid.
	CAValidity = 10 * 365 * 24 * time.Hour
	// ServerCertValidity is how long a server certificate is valid.
	ServerCertValidity = 397 * 24 * time.Hour
	// ServerCertRenew is how long before its end a server certificate is
	// issued again.
	ServerCertRenew = 30 * 24 * time.Hour
	// NodeCertValidity is how long a node's certificate is valid (the
	// node enrolls again at every boot anyway).
	NodeCertValidity = 400 * 24 * time.Hour
)

// CA is the cluster's certificate authority for the node agents' TLS
// channel: an ECDSA P-256 key and a self-signed certificate kept in a
// directory (ROOT/tls). It signs the server's certificate and the nodes'
// client certificates. Create it with OpenCA; it is safe for concurrent
// use (it is immutable once opened).
type CA struct {
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

// OpenCA opens the CA kept in dir, creating the directory (0755: the
// certificate in it is public and the wwclient overlay includes it, while a
// 0700 directory would make every file in it a secret of overlay rendering;
// a 0700 one from an earlier version is opened up), the key
// (0600) and the certificate (CN "wwboot cluster CA CLUSTER", valid
// CAValidity) when they are missing. The key and the certificate are one
// unit: the key is written first, and a key found without its certificate
// gets a new certificate; a certificate that does not match the key is an
// error naming both files. Every file is written atomically (temporary
// file, fsync, link or rename, fsync of the directory), and two processes
// creating the CA at once end up with the same one.
func OpenCA(dir, cluster string, now time.Time) (*CA, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	keyPath, certPath := filepath.Join(dir, CAKeyFile), filepath.Join(dir, CACertFile)
	key, err := readKey(keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		k, gerr := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if gerr != nil {
			return nil, fmt.Errorf("cluster CA: %w", gerr)
		}
		der, merr := x509.MarshalPKCS8PrivateKey(k)
		if merr != nil {
			return nil, fmt.Errorf("cluster CA: %w", merr)
		}
		if err := createFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, fmt.Errorf("cluster CA: %w", err)
		}
		key, err = readKey(keyPath) // another process may have won the race
	}
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %s: %w (move it away to make a new CA; every node then enrolls again at its next boot)", keyPath, err)
	}
	ca := &CA{dir: dir, key: key}
	data, err := os.ReadFile(certPath)
	if errors.Is(err, fs.ErrNotExist) {
		name := strings.TrimSpace("wwboot cluster CA " + cluster)
		tmpl := &x509.Certificate{
			SerialNumber:          randSerial(),
			Subject:               pkix.Name{CommonName: name},
			NotBefore:             now.Add(-time.Hour),
			NotAfter:              now.Add(CAValidity),
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
			BasicConstraintsValid: true,
			IsCA:                  true,
			MaxPathLenZero:        true,
		}
		der, cerr := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if cerr != nil {
			return nil, fmt.Errorf("cluster CA: %w", cerr)
		}
		if err := createFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
			return nil, fmt.Errorf("cluster CA: %w", err)
		}
		data, err = os.ReadFile(certPath)
	}
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	cert, err := parseCertPEM(data)
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %s: %w", certPath, err)
	}
	if !cert.IsCA || !publicKeyEqual(cert.PublicKey, &key.PublicKey) {
		return nil, fmt.Errorf("cluster CA: %s does not match %s (or is no CA certificate): remove %s to make a new one from the key", certPath, keyPath, certPath)
	}
	ca.cert, ca.pem = cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	return ca, nil
}

// CertPEM returns the CA's certificate in PEM, which the nodes get
// (/etc/wwboot/ca.crt) to check the server.
func (ca *CA) CertPEM() []byte { return bytes.Clone(ca.pem) }

// CertPath returns the file of the CA's certificate.
func (ca *CA) CertPath() string { return filepath.Join(ca.dir, CACertFile) }

// Certificate returns the CA's certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// Pool returns a pool holding only the CA's certificate.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// ServerCertificate returns the HTTPS listener's certificate for hosts
// (IP addresses and names the server is known by): the one kept in the
// CA's directory when it was signed by this CA, names exactly hosts and
// has more than ServerCertRenew left, else a new one (ECDSA P-256,
// ExtKeyUsageServerAuth, valid ServerCertValidity), written key first
// then certificate, each atomically. The result's Leaf is set.
func (ca *CA) ServerCertificate(hosts []string, now time.Time) (tls.Certificate, error) {
	keyPath, certPath := filepath.Join(ca.dir, ServerKeyFile), filepath.Join(ca.dir, ServerCertFile)
	ips, names := splitHosts(hosts)
	if key, err := readKey(keyPath); err == nil {
		if data, err := os.ReadFile(certPath); err == nil {
			if cert, err := parseCertPEM(data); err == nil && cert.CheckSignatureFrom(ca.cert) == nil &&
				publicKeyEqual(cert.PublicKey, &key.PublicKey) && cert.NotAfter.Sub(now) > ServerCertRenew &&
				sameHosts(cert, ips, names) {
				return tls.Certificate{Certificate: [][]byte{cert.Raw, ca.cert.Raw}, PrivateKey: key, Leaf: cert}, nil
			}
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("server certificate: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: randSerial(),
		Subject:      pkix.Name{CommonName: "wwboot server"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(ServerCertValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  ips,
		DNSNames:     names,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("server certificate: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("server certificate: %w", err)
	}
	// Key first: a crash between the two leaves a certificate that does
	// not match the key, which the next start replaces.
	if err := writeFileAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return tls.Certificate{}, fmt.Errorf("server certificate: %w", err)
	}
	if err := writeFileAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return tls.Certificate{}, fmt.Errorf("server certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("server certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.cert.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// issueNode signs a client certificate for node name over pub: CN the
// node's name, ExtKeyUsageClientAuth, a random 128-bit serial, valid
// NodeCertValidity.
func (ca *CA) issueNode(name string, pub crypto.PublicKey, now time.Time) (*x509.Certificate, error) {
	tmpl := &x509.Certificate{
		SerialNumber: randSerial(),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     now.Add(NodeCertValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

func randSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n.Add(n, big.NewInt(1))
}

func splitHosts(hosts []string) (ips []net.IP, names []string) {
	seen := map[string]bool{}
	for _, h := range hosts {
		h = strings.Trim(strings.TrimSpace(h), "[]")
		if h == "" || seen[h] {
			continue
		}
		seen[h] = true
		if ip := net.ParseIP(h); ip != nil {
			if ip4 := ip.To4(); ip4 != nil {
				ip = ip4
			}
			ips = append(ips, ip)
		} else {
			names = append(names, h)
		}
	}
	return ips, names
}

func sameHosts(c *x509.Certificate, ips []net.IP, names []string) bool {
	key := func(ips []net.IP, names []string) []string {
		var out []string
		for _, ip := range ips {
			out = append(out, ip.String())
		}
		out = append(out, names...)
		slices.Sort(out)
		return out
	}
	return slices.Equal(key(c.IPAddresses, c.DNSNames), key(ips, names))
}

func publicKeyEqual(a crypto.PublicKey, b interface{ Equal(crypto.PublicKey) bool }) bool {
	return b.Equal(a)
}

func readKey(path string) (*ecdsa.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "PRIVATE KEY" {
		return nil, errors.New("not a PEM private key (PKCS#8)")
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, err
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("a %T key, not ECDSA", k)
	}
	return ek, nil
}

func parseCertPEM(data []byte) (*x509.Certificate, error) {
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, errors.New("not a PEM certificate")
	}
	return x509.ParseCertificate(b.Bytes)
}

// writeTemp writes data to a new temporary file beside path and fsyncs it.
func writeTemp(path string, data []byte, perm os.FileMode) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return "", err
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
	if err != nil {
		_ = os.Remove(tmp)
		return "", err
	}
	return tmp, nil
}

// writeFileAtomic replaces path with data: temporary file, fsync, rename,
// fsync of the directory.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := writeTemp(path, data, perm)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return syncDirOf(path)
}

// createFile writes path atomically unless it exists (then it leaves the
// existing file and returns nil): temporary file, fsync, link (which fails
// on an existing name), fsync of the directory.
func createFile(path string, data []byte, perm os.FileMode) error {
	tmp, err := writeTemp(path, data, perm)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return syncDirOf(path)
}

func syncDirOf(path string) error {
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
