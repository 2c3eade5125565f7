// Package testpki makes certificate authorities and certificates for tests: server
// certificates with DNS SANs and client certificates with a common name and email SANs,
// written as PEM files the way operators keep them.
//
// It is for tests only: keys are small-ish ECDSA P-256 and nothing is protected.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a certificate authority that signs test certificates.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	PEM  []byte // the CA certificate
}

// NewCA makes a self-signed CA named name.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &CA{Cert: cert, Key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// Leaf is a signed certificate and its key in PEM.
type Leaf struct {
	Cert    *x509.Certificate
	CertPEM []byte // the leaf, then the CA (chain first)
	KeyPEM  []byte
}

// Fingerprint returns the SHA-256 of the leaf's DER, in lower-case hex.
func (l *Leaf) Fingerprint() string {
	s := sha256.Sum256(l.Cert.Raw)
	return hex.EncodeToString(s[:])
}

// TLS returns the pair as a tls.Certificate.
func (l *Leaf) TLS(t testing.TB) tls.Certificate {
	c, err := tls.X509KeyPair(l.CertPEM, l.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Server signs a server certificate for DNS names (wildcards allowed), valid for notAfter
// from now (a day when zero).
func (ca *CA) Server(t testing.TB, notAfter time.Duration, names ...string) *Leaf {
	t.Helper()
	tmpl := ca.template(t, notAfter)
	tmpl.Subject = pkix.Name{CommonName: names[0]}
	tmpl.DNSNames = names
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	return ca.sign(t, tmpl)
}

// Client signs a client certificate with common name cn and email SANs.
func (ca *CA) Client(t testing.TB, cn string, emails ...string) *Leaf {
	t.Helper()
	tmpl := ca.template(t, 0)
	tmpl.Subject = pkix.Name{CommonName: cn, Organization: []string{"ftpsproxy tests"}}
	tmpl.EmailAddresses = emails
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	return ca.sign(t, tmpl)
}

func (ca *CA) template(t testing.TB, notAfter time.Duration) *x509.Certificate {
	if notAfter == 0 {
		notAfter = 24 * time.Hour
	}
	return &x509.Certificate{
		SerialNumber: serial(t),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(notAfter),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
}

func (ca *CA) sign(t testing.TB, tmpl *x509.Certificate) *Leaf {
	key := newKey(t)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), ca.PEM...)
	return &Leaf{Cert: cert, CertPEM: certPEM, KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})}
}

// WritePair writes NAME.crt and NAME.key into dir and returns their paths.
func (l *Leaf) WritePair(t testing.TB, dir, name string) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	write(t, certFile, l.CertPEM)
	write(t, keyFile, l.KeyPEM)
	return certFile, keyFile
}

// WritePEM writes NAME.pem holding the chain and the key, and returns its path.
func (l *Leaf) WritePEM(t testing.TB, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name+".pem")
	write(t, p, append(append([]byte{}, l.CertPEM...), l.KeyPEM...))
	return p
}

// WriteDomains writes n server pairs into dir, one per name fmt.Sprintf(pattern, i): even
// ones as NAME.crt + NAME.key, odd ones as NAME.pem, and every fifth with a wildcard SAN
// "*.NAME" too. It returns the fingerprint expected per server name, with "x.NAME" for the
// wildcards.
func (ca *CA) WriteDomains(t testing.TB, dir string, n int, pattern string) map[string]string {
	t.Helper()
	want := map[string]string{}
	for i := range n {
		name := fmt.Sprintf(pattern, i)
		names := []string{name}
		if i%5 == 0 {
			names = append(names, "*."+name)
		}
		l := ca.Server(t, 0, names...)
		if i%2 == 0 {
			l.WritePair(t, dir, name)
		} else {
			l.WritePEM(t, dir, name)
		}
		want[name] = l.Fingerprint()
		if i%5 == 0 {
			want["x."+name] = l.Fingerprint()
		}
	}
	return want
}

// WriteCA writes the CA certificate to dir/name and returns its path.
func (ca *CA) WriteCA(t testing.TB, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	write(t, p, ca.PEM)
	return p
}

func write(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}
