package peers

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// tlsFiles are the PEM files a server is configured with.
type tlsFiles struct {
	cert, key string
	// combined is key then certificate in one file (pure-ftpd's format).
	combined string
}

var (
	certOnce        sync.Once
	certPEM, keyPEM []byte
	certErr         error
)

// generatedCert makes one self-signed RSA-2048 certificate per test process:
// RSA because every server's defaults accept it (vsftpd's option is even named
// rsa_cert_file), once because key generation costs up to a second under -race.
func generatedCert() ([]byte, []byte, error) {
	certOnce.Do(func() {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			certErr = err
			return
		}
		serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
		if err != nil {
			certErr = err
			return
		}
		tmpl := &x509.Certificate{
			SerialNumber:          serial,
			Subject:               pkix.Name{CommonName: "localhost", Organization: []string{"ftpsproxy test peers"}},
			NotBefore:             time.Now().Add(-time.Hour),
			NotAfter:              time.Now().Add(10 * 24 * time.Hour),
			KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageCertSign,
			ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			BasicConstraintsValid: true,
			IsCA:                  true, // self-signed: clients trust it as its own root
			DNSNames:              []string{"localhost"},
			IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			certErr = err
			return
		}
		certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: mustPKCS8(key)})
	})
	return certPEM, keyPEM, certErr
}

func mustPKCS8(key *rsa.PrivateKey) []byte {
	b, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		panic(err) // cannot fail for an RSA key
	}
	return b
}

// setupTLS writes the server's certificate files into its directory: the
// caller's, or the generated ones.
func setupTLS(t testing.TB, l layout, o Options) tlsFiles {
	t.Helper()
	var cert, key []byte
	switch {
	case o.CertFile == "" && o.KeyFile == "":
		var err error
		cert, key, err = generatedCert()
		if err != nil {
			t.Fatalf("peers: generating a certificate: %v", err)
		}
	case o.CertFile == "" || o.KeyFile == "":
		t.Fatalf("peers: Options.CertFile and KeyFile go together")
	default:
		var err error
		if cert, err = os.ReadFile(o.CertFile); err != nil {
			t.Fatalf("peers: %v", err)
		}
		if key, err = os.ReadFile(o.KeyFile); err != nil {
			t.Fatalf("peers: %v", err)
		}
	}
	f := tlsFiles{cert: l.path("cert.pem"), key: l.path("key.pem"), combined: l.path("key+cert.pem")}
	writeFile(t, f.cert, string(cert), 0o644)
	writeFile(t, f.key, string(key), 0o600)
	writeFile(t, f.combined, string(key)+string(cert), 0o600)
	return f
}
