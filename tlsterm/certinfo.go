package tlsterm

import (
	"crypto/tls"
	"crypto/x509"
	"time"
)

// CertInfo is one certificate the server presents, for expiry monitoring.
type CertInfo struct {
	// Name is the certificate's first DNS name (else its subject CN, else its serial): a
	// bounded label, since certificates come from the config.
	Name     string
	NotAfter time.Time
}

// certLister is a CertSource that can list what it serves.
type certLister interface {
	Certificates() []CertInfo
}

// Certificates returns the certificates in force now (after the last Reload, or the last ACME
// renewal). A source that cannot list its certificates gives none.
func (s *Server) Certificates() []CertInfo {
	if s == nil {
		return nil
	}
	if l, ok := s.src.(certLister); ok {
		return l.Certificates()
	}
	if st, ok := s.src.(StaticSource); ok {
		return certInfos(st.Cert)
	}
	return nil
}

// Certificates implements certLister for certificate files: every pair loaded.
func (s *CertStore) Certificates() []CertInfo {
	var out []CertInfo
	for _, c := range s.idx.Load().all {
		out = append(out, certInfos(c)...)
	}
	return out
}

// Certificates implements certLister: the managed certificate of each domain in certmagic's
// cache (renewals replace it there).
func (a *ACME) Certificates() []CertInfo {
	var out []CertInfo
	for _, d := range a.domains {
		c, err := a.cfg.GetCertificate(&tls.ClientHelloInfo{ServerName: d})
		if err == nil {
			out = append(out, certInfos(c)...)
		}
	}
	return out
}

func certInfos(c *tls.Certificate) []CertInfo {
	if c == nil {
		return nil
	}
	leaf := c.Leaf
	if leaf == nil && len(c.Certificate) > 0 {
		leaf, _ = x509.ParseCertificate(c.Certificate[0])
	}
	if leaf == nil {
		return nil
	}
	name := leaf.Subject.CommonName
	if len(leaf.DNSNames) > 0 {
		name = leaf.DNSNames[0]
	}
	if name == "" {
		name = leaf.SerialNumber.Text(16)
	}
	return []CertInfo{{Name: name, NotAfter: leaf.NotAfter}}
}
