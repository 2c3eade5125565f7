package tlsterm

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"
)

// ClientAuth is tls.client_auth: whether clients must present a certificate.
type ClientAuth int

// The client_auth modes. With Optional a certificate, when given, must verify against the
// client CA; with Required a handshake without one fails.
const (
	ClientAuthNone ClientAuth = iota
	ClientAuthOptional
	ClientAuthRequired
)

var clientAuthNames = []string{"none", "optional", "required"}

// String returns the config name of the mode.
func (a ClientAuth) String() string { return enumName(clientAuthNames, int(a), "ClientAuth") }

// ParseClientAuth reads a config value.
func ParseClientAuth(s string) (ClientAuth, error) {
	i, err := parseEnum(clientAuthNames, s)
	return ClientAuth(i), err
}

// enumName and parseEnum map the config modes to their names (the index is the value).
func enumName(names []string, i int, typ string) string {
	if i >= 0 && i < len(names) {
		return names[i]
	}
	return fmt.Sprintf("%s(%d)", typ, i)
}

func parseEnum(names []string, s string) (int, error) {
	for i, n := range names {
		if s == n {
			return i, nil
		}
	}
	return 0, fmt.Errorf("unknown value %q; must be one of %s", s, strings.Join(names, ", "))
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
type ClientCertUser int

// The client_cert_user modes.
const (
	CertUserOff      ClientCertUser = iota
	CertUserCN                      // the subject's common name
	CertUserSANEmail                // one of the rfc822Name SANs
)

var certUserNames = []string{"off", "cn", "san-email"}

// String returns the config name of the mode.
func (m ClientCertUser) String() string { return enumName(certUserNames, int(m), "ClientCertUser") }

// ParseClientCertUser reads a config value.
func ParseClientCertUser(s string) (ClientCertUser, error) {
	i, err := parseEnum(certUserNames, s)
	return ClientCertUser(i), err
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
