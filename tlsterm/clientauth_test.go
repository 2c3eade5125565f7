package tlsterm

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"

	"github.com/ftpsproxy/ftpsproxy/internal/testpki"
)

// TestReloadRereadsClientCA: a SIGHUP reload reads client_ca_file again. A session started
// after it verifies client certificates against the new CA; one started before keeps the CA
// it started with.
func TestReloadRereadsClientCA(t *testing.T) {
	dir := t.TempDir()
	server, oldCA, newCA := testpki.NewCA(t, "server CA"), testpki.NewCA(t, "old client CA"), testpki.NewCA(t, "new client CA")
	server.Server(t, 0, "ftp.example").WritePair(t, dir, "ftp")
	caFile := oldCA.WriteCA(t, t.TempDir(), "clients.pem")
	s, err := NewServer(ServerOptions{CertDir: dir, ClientAuth: ClientAuthRequired, ClientCAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(server.Cert)
	oldClient, newClient := oldCA.Client(t, "alice").TLS(t), newCA.Client(t, "alice").TLS(t)
	verify := func(server *tls.Config, cert tls.Certificate) error { // the server side's error
		err, _ := handshake(t, server, &tls.Config{RootCAs: roots, ServerName: "ftp.example", Certificates: []tls.Certificate{cert}}, "")
		return err
	}

	before := s.NewBinding()
	if err := verify(before.Control(), oldClient); err != nil {
		t.Fatalf("a certificate of the configured CA refused: %v", err)
	}
	if err := os.WriteFile(caFile, newCA.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	after := s.NewBinding()
	if err := verify(after.Control(), newClient); err != nil {
		t.Fatalf("after the reload, a certificate of the new CA refused: %v", err)
	}
	if verify(after.Control(), oldClient) == nil {
		t.Fatal("after the reload, a certificate of the old CA accepted")
	}
	if err := verify(before.Control(), oldClient); err != nil {
		t.Fatalf("a session started before the reload lost its CA: %v", err)
	}

	// A reload with a broken CA file fails and keeps the CA in force.
	if err := os.WriteFile(caFile, []byte("not PEM"), 0o644); err != nil {
		t.Fatal(err)
	}
	if s.Reload() == nil {
		t.Fatal("a reload with a client_ca_file holding no certificate succeeded")
	}
	if err := verify(s.NewBinding().Control(), newClient); err != nil {
		t.Fatalf("after a refused reload, the CA in force was lost: %v", err)
	}
}
