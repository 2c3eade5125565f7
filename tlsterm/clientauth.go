package tlsterm

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"

	"github.com/ftpsproxy/ftpsproxy/internal/enum"
)

// ClientAuth is tls.client_auth: whether clients must present a certificate.
type ClientAuth uint8

// The client_auth modes. With Optional a certificate, when given, must verify against the
// client CA; with Required a handshake without one fails.
const (
	ClientAuthNone ClientAuth = iota
	ClientAuthOptional
	ClientAuthRequired
)

var clientAuthNames = enum.Names[ClientAuth]{"none", "optional", "required"}

// String returns the config name of the mode.
func (a ClientAuth) String() string { return clientAuthNames.Name(a) }

// UnmarshalText parses a config name; an unknown one is an error listing the legal names.
func (a *ClientAuth) UnmarshalText(b []byte) error { return clientAuthNames.Parse(a, b) }

// ParseClientAuth reads a config value.
func ParseClientAuth(s string) (ClientAuth, error) {
	var a ClientAuth
	return a, a.UnmarshalText([]byte(s))
}

// apply sets the client-certificate policy on the server config.
func (a ClientAuth) apply(c *tls.Config, caFile string) error {
	if a == ClientAuthNone {
		return nil
	}
	if caFile == "" {
		return fmt.Errorf("tls: client_auth %s needs client_ca_file", a)
	}
	pemBytes, err := readBounded(caFile)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return fmt.Errorf("tls: %s: no PEM certificate found", caFile)
	}
	c.ClientCAs = pool
	c.ClientAuth = tls.VerifyClientCertIfGiven
	if a == ClientAuthRequired {
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return nil
}

// ClientCertUser is tls.client_cert_user: which name of a client certificate must equal the
// USER of the session.
type ClientCertUser uint8

// The client_cert_user modes.
const (
	CertUserOff      ClientCertUser = iota
	CertUserCN                      // the subject's common name
	CertUserSANEmail                // one of the rfc822Name SANs
)

var certUserNames = enum.Names[ClientCertUser]{"off", "cn", "san-email"}

// String returns the config name of the mode.
func (m ClientCertUser) String() string { return certUserNames.Name(m) }

// UnmarshalText parses a config name; an unknown one is an error listing the legal names.
func (m *ClientCertUser) UnmarshalText(b []byte) error { return certUserNames.Parse(m, b) }

// ParseClientCertUser reads a config value.
func ParseClientCertUser(s string) (ClientCertUser, error) {
	var m ClientCertUser
	return m, m.UnmarshalText([]byte(s))
}

// CheckUser reports why user may not log in with the verified client certificate cert
// ("" when it may). cert is nil when the client presented none. The common name must equal
// user exactly (user names are case-sensitive on most servers); an email SAN is compared
// without regard to case (domains are case-insensitive and mail systems treat local parts
// so in practice).
func (m ClientCertUser) CheckUser(cert *x509.Certificate, user string) string {
	if m == CertUserOff {
		return ""
	}
	if cert == nil {
		return "no client certificate"
	}
	switch m {
	case CertUserCN:
		if cert.Subject.CommonName == user {
			return ""
		}
		return fmt.Sprintf("certificate CN %q is not the user name", cert.Subject.CommonName)
	case CertUserSANEmail:
		for _, e := range cert.EmailAddresses {
			if strings.EqualFold(e, user) {
				return ""
			}
		}
		if len(cert.EmailAddresses) == 0 {
			return "certificate has no email SAN"
		}
		return fmt.Sprintf("certificate email SANs %q do not include the user name", cert.EmailAddresses)
	}
	return "unknown client_cert_user mode"
}
