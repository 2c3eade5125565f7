package tlsterm

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
)

// TestCertificates lists the certificate in force for a static and a file source, and sees a
// replaced file after Reload (what a SIGHUP after a renewal does).
func TestCertificates(t *testing.T) {
	write := func(dir, host string) *x509.Certificate {
		c, certPEM, err := SelfSigned(host)
		if err != nil {
			t.Fatal(err)
		}
		key, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "cert.pem"), certPEM, 0o600)
		os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600)
		leaf, _ := x509.ParseCertificate(c.Certificate[0])
		return leaf
	}
	dir := t.TempDir()
	first := write(dir, "one.example")
	srv, err := NewServer(ServerOptions{CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem")})
	if err != nil {
		t.Fatal(err)
	}
	got := srv.Certificates()
	if len(got) != 1 || got[0].Name != "one.example" || !got[0].NotAfter.Equal(first.NotAfter) {
		t.Fatalf("Certificates() = %+v, want one.example until %v", got, first.NotAfter)
	}
	second := write(dir, "two.example")
	if err := srv.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := srv.Certificates(); len(got) != 1 || got[0].Name != "two.example" || !got[0].NotAfter.Equal(second.NotAfter) {
		t.Fatalf("after Reload: %+v", got)
	}

	c, _, _ := SelfSigned("127.0.0.1")
	st, _ := NewServer(ServerOptions{Source: StaticSource{Cert: c}})
	if got := st.Certificates(); len(got) != 1 || got[0].Name != "ftpsproxy self-signed" {
		t.Fatalf("static source: %+v", got)
	}
	if (*Server)(nil).Certificates() != nil {
		t.Fatal("nil server lists certificates")
	}
}
