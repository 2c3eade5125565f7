package config

import (
	"fmt"
	"strings"

	"github.com/ftpsproxy/ftpsproxy/tlsterm"
)

// checkEdge validates the hosting-edge keys (issue 17): certificates chosen by SNI, client
// certificates, on-demand ACME and the announced port offset. The allow/deny lists and the
// address overrides need no more than their types (CIDRs and addresses parsed on decoding)
// and the IPv4 check below.
func (c *checker) checkEdge(f *File) {
	c.checkCertFiles(&f.TLS)
	c.checkClientAuth(&f.TLS)
	if c.defined["tls.acme.on_demand"] {
		o := f.TLS.ACME.OnDemand
		if err := o.Validate(); err != nil {
			c.add("tls.acme.on_demand", err.Error())
		}
		c.atLeast("tls.acme.on_demand.per_minute", o.PerMinute, 1, "")
		c.atLeast("tls.acme.on_demand.burst", o.Burst, 1, "")
	}
	d := &f.Data
	for i, o := range d.AddressOverrides {
		if a := o.Address; !a.Is4() || a.IsUnspecified() {
			c.addf(fmt.Sprintf("data.public_address_override[%d].address", i), "%q is not an IPv4 address (227 replies carry IPv4 only)", a.String())
		}
		if !o.Net.IsValid() {
			c.add(fmt.Sprintf("data.public_address_override[%d].cidr", i), "required")
		}
	}
	if r := d.PortRange; r.First != 0 {
		lo, hi := int(r.First)+d.AnnouncePortOffset, int(r.Last)+d.AnnouncePortOffset
		if lo < 1 || hi > 65535 {
			c.addf("data.announce_port_offset", "%d moves port_range %s to %d-%d, outside 1-65535", d.AnnouncePortOffset, r, lo, hi)
		}
	}
}

// checkCertFiles loads every [[tls.certificate]] pair and the cert_dir as the proxy would,
// one problem per file that does not load.
func (c *checker) checkCertFiles(t *TLS) {
	for i, p := range t.Certificates {
		k := fmt.Sprintf("tls.certificate[%d]", i)
		if p.CertFile == "" {
			c.add(k+".cert_file", "required")
		}
		if p.KeyFile == "" {
			c.add(k+".key_file", "required")
		}
		if p.CertFile != "" && p.KeyFile != "" {
			for _, err := range tlsterm.CheckCertStore(tlsterm.CertStoreOptions{Pairs: []tlsterm.CertPair{p}}) {
				c.add(k+".cert_file", strings.TrimPrefix(err.Error(), "tls: "))
			}
		}
	}
	if t.DefaultCertificate != "" && t.CertDir == "" {
		c.add("tls.default_certificate", "names a pair in tls.cert_dir, which is not set")
	}
	if t.CertDir != "" {
		for i, err := range tlsterm.CheckCertStore(tlsterm.CertStoreOptions{Dir: t.CertDir, Default: t.DefaultCertificate}) {
			c.add(fmt.Sprintf("tls.cert_dir[%d]", i), strings.TrimPrefix(err.Error(), "tls: "))
		}
	}
}

func (c *checker) checkClientAuth(t *TLS) {
	if t.ClientAuth != tlsterm.ClientAuthNone && t.ClientCAFile == "" {
		c.addf("tls.client_ca_file", "required with client_auth = %q", t.ClientAuth)
	}
	if t.ClientCAFile != "" {
		c.certFile("tls.client_ca_file", t.ClientCAFile)
	}
	if t.ClientCertUser != tlsterm.CertUserOff && t.ClientAuth == tlsterm.ClientAuthNone {
		c.addf("tls.client_cert_user", "%q needs client_auth = \"optional\" or \"required\"", t.ClientCertUser)
	}
}
