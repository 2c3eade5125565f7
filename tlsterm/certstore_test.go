package tlsterm

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/internal/testpki"
)

func fingerprint(c *tls.Certificate) string {
	l := testpki.Leaf{Cert: c.Leaf}
	return l.Fingerprint()
}

func TestCertStoreSNI(t *testing.T) {
	ca := testpki.NewCA(t, "store CA")
	dir := t.TempDir()
	want := ca.WriteDomains(t, dir, 50, "customer%02d.example")
	top := ca.Server(t, 0, "ftp.hoster.example")
	topCert, topKey := top.WritePair(t, t.TempDir(), "top")
	extra := ca.Server(t, 0, "*.extra.example", "extra.example")
	extraCert, extraKey := extra.WritePair(t, t.TempDir(), "extra")

	s, err := LoadCertStore(CertStoreOptions{
		Pairs: []CertPair{{topCert, topKey}, {extraCert, extraKey}},
		Dir:   dir,
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 52 {
		t.Fatalf("loaded %d certificates, want 52", s.Len())
	}
	want["ftp.hoster.example"] = top.Fingerprint()
	want["a.extra.example"] = extra.Fingerprint()
	want["EXTRA.example."] = extra.Fingerprint()        // case and a trailing dot
	want["a.b.extra.example"] = top.Fingerprint()       // a wildcard covers one label only
	want[""] = top.Fingerprint()                        // no SNI: the top-level pair
	want["unknown.example"] = top.Fingerprint()         // unknown name: the default
	want["customer03.example.evil"] = top.Fingerprint() // no suffix games
	for name, fp := range want {
		c, err := s.GetCertificate(&tls.ClientHelloInfo{ServerName: name})
		if err != nil || c == nil {
			t.Fatalf("%q: %v", name, err)
		}
		if got := fingerprint(c); got != fp {
			t.Errorf("%q: got certificate for %v", name, c.Leaf.DNSNames)
		}
	}
}

func TestCertStoreDefaultAndReload(t *testing.T) {
	ca := testpki.NewCA(t, "store CA")
	dir := t.TempDir()
	a := ca.Server(t, 0, "a.example")
	a.WritePair(t, dir, "a")
	b := ca.Server(t, 0, "b.example")
	b.WritePEM(t, dir, "b")
	s, err := LoadCertStore(CertStoreOptions{Dir: dir, Default: "b"})
	if err != nil {
		t.Fatal(err)
	}
	get := func(name string) string {
		c, err := s.GetCertificate(&tls.ClientHelloInfo{ServerName: name})
		if err != nil {
			t.Fatal(err)
		}
		return fingerprint(c)
	}
	if get("") != b.Fingerprint() || get("nope.example") != b.Fingerprint() {
		t.Fatal("default_certificate b not served without SNI")
	}
	// A renewed certificate for a.example dropped in beside the old one takes over on reload
	// (it expires later); a new customer appears.
	a2 := ca.Server(t, 48*time.Hour, "a.example")
	a2.WritePair(t, dir, "a-renewed")
	c := ca.Server(t, 0, "c.example")
	c.WritePEM(t, dir, "c")
	if get("c.example") != b.Fingerprint() {
		t.Fatal("c.example served before the reload")
	}
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if get("c.example") != c.Fingerprint() || get("a.example") != a2.Fingerprint() {
		t.Fatal("reload did not pick up the new and renewed certificates")
	}
	// A broken file makes the reload fail and keeps what is in use.
	os.WriteFile(filepath.Join(dir, "d.pem"), []byte("not a certificate"), 0o600)
	if err := s.Reload(); err == nil || !strings.Contains(err.Error(), "d.pem") {
		t.Fatalf("reload with a broken file: %v; want an error naming d.pem", err)
	}
	if get("c.example") != c.Fingerprint() {
		t.Fatal("failed reload dropped the certificates in use")
	}
}

func TestCertStoreErrorsNameTheFile(t *testing.T) {
	ca := testpki.NewCA(t, "store CA")
	good := ca.Server(t, 0, "good.example")
	other := ca.Server(t, 0, "other.example")
	tests := []struct {
		name  string
		setup func(dir string) CertStoreOptions
		want  []string
	}{
		{"crt without key", func(dir string) CertStoreOptions {
			good.WritePair(t, dir, "x")
			os.Remove(filepath.Join(dir, "x.key"))
			return CertStoreOptions{Dir: dir}
		}, []string{"x.crt", "no key file"}},
		{"key without crt", func(dir string) CertStoreOptions {
			good.WritePEM(t, dir, "ok")
			os.WriteFile(filepath.Join(dir, "y.key"), good.KeyPEM, 0o600)
			return CertStoreOptions{Dir: dir}
		}, []string{"y.key"}},
		{"key of another certificate", func(dir string) CertStoreOptions {
			cf, _ := good.WritePair(t, dir, "z")
			os.WriteFile(filepath.Join(dir, "z.key"), other.KeyPEM, 0o600)
			return CertStoreOptions{Pairs: []CertPair{{cf, filepath.Join(dir, "z.key")}}}
		}, []string{"z.crt", "z.key"}},
		{"missing pair file", func(dir string) CertStoreOptions {
			return CertStoreOptions{Pairs: []CertPair{{filepath.Join(dir, "none.crt"), filepath.Join(dir, "none.key")}}}
		}, []string{"none.crt"}},
		{"unknown default", func(dir string) CertStoreOptions {
			good.WritePEM(t, dir, "good")
			return CertStoreOptions{Dir: dir, Default: "missing"}
		}, []string{`default_certificate "missing"`}},
		{"empty dir", func(dir string) CertStoreOptions { return CertStoreOptions{Dir: dir} }, []string{"no certificate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.setup(t.TempDir())
			_, err := LoadCertStore(o)
			if err == nil {
				t.Fatal("loaded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if errs := CheckCertStore(o); len(errs) == 0 {
				t.Error("CheckCertStore found nothing")
			}
		})
	}
}

func TestClientCertUser(t *testing.T) {
	ca := testpki.NewCA(t, "clients")
	alice := ca.Client(t, "alice", "alice@example.com", "a@example.org").Cert
	tests := []struct {
		mode   ClientCertUser
		user   string
		nocert bool
		ok     bool
	}{
		{CertUserOff, "anyone", true, true},
		{CertUserCN, "alice", false, true},
		{CertUserCN, "Alice", false, false},
		{CertUserCN, "bob", false, false},
		{CertUserCN, "alice", true, false},
		{CertUserSANEmail, "alice@example.com", false, true},
		{CertUserSANEmail, "A@EXAMPLE.ORG", false, true},
		{CertUserSANEmail, "alice", false, false},
		{CertUserSANEmail, "alice@example.com", true, false},
	}
	for _, tt := range tests {
		cert := alice
		if tt.nocert {
			cert = nil
		}
		reason := tt.mode.CheckUser(cert, tt.user)
		if (reason == "") != tt.ok {
			t.Errorf("%s user %q nocert %v: reason %q, want ok %v", tt.mode, tt.user, tt.nocert, reason, tt.ok)
		}
	}
	for _, s := range []string{"off", "cn", "san-email"} {
		m, err := ParseClientCertUser(s)
		if err != nil || m.String() != s {
			t.Errorf("ParseClientCertUser(%q) = %v, %v", s, m, err)
		}
	}
	if _, err := ParseClientCertUser("email"); err == nil {
		t.Error("unknown mode accepted")
	}
	for _, s := range []string{"none", "optional", "required"} {
		m, err := ParseClientAuth(s)
		if err != nil || m.String() != s {
			t.Errorf("ParseClientAuth(%q) = %v, %v", s, m, err)
		}
	}
}

// FuzzCertLookup: any server name a client sends is looked up without panicking, the same
// whatever its case, and a certificate is only returned for a name one of its SANs covers.
func FuzzCertLookup(f *testing.F) {
	f.Add("a.example")        // exact
	f.Add("x.wild.example")   // wildcard
	f.Add("x.y.wild.example") // two labels below a wildcard: no match
	f.Add("WILD.example.")    // case and trailing dot
	f.Add("")                 // no SNI
	f.Add(".")                // nothing but a dot
	f.Add("*.wild.example")   // a client sending the wildcard itself
	ca := testpki.NewCA(f, "fuzz CA")
	dir := f.TempDir()
	ca.Server(f, 0, "a.example").WritePEM(f, dir, "a")
	ca.Server(f, 0, "*.wild.example", "wild.example").WritePEM(f, dir, "wild")
	s, err := LoadCertStore(CertStoreOptions{Dir: dir})
	if err != nil {
		f.Fatal(err)
	}
	idx := s.idx.Load()
	f.Fuzz(func(t *testing.T, name string) {
		c := idx.lookup(name)
		if c != idx.lookup(strings.ToUpper(name)) && strings.EqualFold(strings.ToUpper(name), name) {
			t.Fatalf("lookup(%q) depends on case", name)
		}
		if c == nil {
			return
		}
		n := strings.TrimSuffix(strings.ToLower(name), ".")
		if err := c.Leaf.VerifyHostname(n); err != nil && n != "*.wild.example" {
			t.Fatalf("lookup(%q) returned a certificate for %v: %v", name, c.Leaf.DNSNames, err)
		}
	})
}

// FuzzLabelMatch: a glob's "*" never spans a dot, so a match has as many labels as the glob.
func FuzzLabelMatch(f *testing.F) {
	f.Add("*.customers.example", "a.customers.example")
	f.Add("*.customers.example", "a.b.customers.example")
	f.Add("ftp-*.example", "ftp-x.example")
	f.Add("[", "x")
	f.Add("a[+-0]b", "a.b") // a range that includes the dot's stand-in
	f.Fuzz(func(t *testing.T, glob, name string) {
		if labelMatch(glob, strings.ToLower(name)) && strings.Count(glob, ".") != strings.Count(name, ".") {
			t.Fatalf("labelMatch(%q, %q): label counts differ", glob, name)
		}
	})
}
