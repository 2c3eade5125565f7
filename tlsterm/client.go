package tlsterm

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
)

// BackendOptions configures TLS toward one backend.
type BackendOptions struct {
	Address    string // host:port of the backend (its host is the default server name)
	ServerName string // tls_server_name; overrides the host of Address
	Verify     bool   // verify the certificate chain and name
	CAFile     string // extra roots (PEM); empty: the system roots
	Legacy     bool   // accept TLS 1.0/1.1 and legacy cipher suites
}

// BackendConfig returns the client config for a backend. Sessions must not share it as is:
// ForSession gives each proxied session its own session cache.
func BackendConfig(o BackendOptions) (*tls.Config, error) {
	name := o.ServerName
	if name == "" {
		host, _, err := net.SplitHostPort(o.Address)
		if err != nil {
			return nil, fmt.Errorf("tls: backend %q: %w", o.Address, err)
		}
		name = host
	}
	c := &tls.Config{
		// ServerName is set even for IP addresses: Go keys its client session cache by it
		// (else by the remote address, which differs on every data port), and verifies IP
		// SANs against it. No SNI is sent for an IP.
		ServerName:         name,
		InsecureSkipVerify: !o.Verify,
		MinVersion:         tls.VersionTLS12,
		NextProtos:         []string{ALPN},
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: backend %s: ca_file: %w", o.Address, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: backend %s: ca_file %s holds no PEM certificate", o.Address, o.CAFile)
		}
		c.RootCAs = pool
	}
	if o.Legacy {
		c.MinVersion = tls.VersionTLS10
		var suites []uint16
		for _, s := range tls.CipherSuites() {
			suites = append(suites, s.ID)
		}
		for _, s := range tls.InsecureCipherSuites() {
			suites = append(suites, s.ID)
		}
		c.CipherSuites = suites
	}
	return c, nil
}

// ForSession returns a copy of a backend config with a session cache of its own, for one
// proxied session: its data connections resume its control session, never another's.
func ForSession(c *tls.Config) *tls.Config {
	s := c.Clone()
	s.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	return s
}
