package main

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/ftpsproxy/ftpsproxy/nat"
	"github.com/ftpsproxy/ftpsproxy/proxy"
	"github.com/ftpsproxy/ftpsproxy/tlsterm"
)

// The hosting-edge keys (issue 17): certificates by SNI, client certificates, network
// allow/deny lists, per-network passive addresses and the announced port offset. They live
// in this file so the config package move can take them as one piece.

// CertificateFile is one [[tls.certificate]] pair.
type CertificateFile struct {
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
}

// ACMEOnDemand is [tls.acme.on_demand]: issuance during handshakes for permitted names.
type ACMEOnDemand struct {
	Allow     []string `toml:"allow"`      // globs, "*" within one label
	Ask       string   `toml:"ask"`        // URL; GET ?domain=NAME → 200 permits
	PerMinute int      `toml:"per_minute"` // issuance attempts per minute
	Burst     int      `toml:"burst"`
}

// AddressOverride is one [[data.public_address_override]].
type AddressOverride struct {
	CIDR    string `toml:"cidr"`
	Address string `toml:"address"`
}

var (
	cfgClientAuth     = []string{"none", "optional", "required"}
	cfgClientCertUser = []string{"off", "cn", "san-email"}
)

func (o *ACMEOnDemand) setDefaults() {
	o.PerMinute = tlsterm.DefaultOnDemandPerMinute
	o.Burst = tlsterm.DefaultOnDemandBurst
}

// usesOnDemand reports whether [tls.acme.on_demand] is in use.
func (f *File) usesOnDemand() bool {
	return len(f.TLS.ACME.OnDemand.Allow) > 0 || f.TLS.ACME.OnDemand.Ask != ""
}

// hasCertFiles reports whether any certificate file source is configured.
func (t *TLS) hasCertFiles() bool {
	return t.CertFile != "" || t.KeyFile != "" || len(t.Certificates) > 0 || t.CertDir != ""
}

// resolveEdgePaths makes the edge keys' file paths relative to the config file.
func (f *File) resolveEdgePaths(join func(*string)) {
	for i := range f.TLS.Certificates {
		join(&f.TLS.Certificates[i].CertFile)
		join(&f.TLS.Certificates[i].KeyFile)
	}
	join(&f.TLS.CertDir)
	join(&f.TLS.ClientCAFile)
}

// checkEdge validates the edge keys.
func (c *cfgChecker) checkEdge(f *File) {
	for i, l := range f.Listeners {
		c.prefixes(fmt.Sprintf("listener[%d].allow", i), l.Allow)
		c.prefixes(fmt.Sprintf("listener[%d].deny", i), l.Deny)
	}
	for i, r := range f.Routes {
		c.prefixes(fmt.Sprintf("route[%d].allow", i), r.Allow)
		c.prefixes(fmt.Sprintf("route[%d].deny", i), r.Deny)
	}
	c.checkEdgeTLS(&f.TLS)
	if c.defined["tls.acme.on_demand"] {
		o := f.TLS.ACME.OnDemand
		opts := tlsterm.OnDemandOptions{Allow: o.Allow, Ask: o.Ask}
		if err := opts.Validate(); err != nil {
			c.addf("tls.acme.on_demand", "%v", err)
		}
		if o.PerMinute < 1 {
			c.addf("tls.acme.on_demand.per_minute", "must be at least 1, got %d", o.PerMinute)
		}
		if o.Burst < 1 {
			c.addf("tls.acme.on_demand.burst", "must be at least 1, got %d", o.Burst)
		}
	}
	c.checkEdgeData(f)
}

func (c *cfgChecker) checkEdgeTLS(t *TLS) {
	c.enum("tls.client_auth", t.ClientAuth, cfgClientAuth)
	c.enum("tls.client_cert_user", t.ClientCertUser, cfgClientCertUser)
	if slices.Contains(cfgClientAuth, t.ClientAuth) && t.ClientAuth != "none" && t.ClientCAFile == "" {
		c.addf("tls.client_ca_file", "required with client_auth = %q", t.ClientAuth)
	}
	if t.ClientCAFile != "" {
		c.certFile("tls.client_ca_file", t.ClientCAFile)
	}
	if t.ClientCertUser != "off" && t.ClientAuth == "none" {
		c.addf("tls.client_cert_user", "%q needs client_auth = \"optional\" or \"required\"", t.ClientCertUser)
	}
	for i, p := range t.Certificates {
		k := fmt.Sprintf("tls.certificate[%d]", i)
		if p.CertFile == "" {
			c.add(k+".cert_file", "required")
		}
		if p.KeyFile == "" {
			c.add(k+".key_file", "required")
		}
		if p.CertFile != "" && p.KeyFile != "" {
			for _, err := range tlsterm.CheckCertStore(tlsterm.CertStoreOptions{Pairs: []tlsterm.CertPair{{CertFile: p.CertFile, KeyFile: p.KeyFile}}}) {
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

func (c *cfgChecker) checkEdgeData(f *File) {
	for i, o := range f.Data.PublicAddressOverrides {
		k := fmt.Sprintf("data.public_address_override[%d]", i)
		if _, err := netip.ParsePrefix(o.CIDR); err != nil {
			c.addf(k+".cidr", "%q is not a CIDR (\"10.0.0.0/8\")", o.CIDR)
		}
		if a, err := netip.ParseAddr(o.Address); err != nil || !a.Is4() || a.IsUnspecified() {
			c.addf(k+".address", "%q is not an IPv4 address (227 replies carry IPv4 only)", o.Address)
		}
	}
	if lo, hi, err := cfgParsePortRange(f.Data.PortRange); err == nil {
		off := f.Data.AnnouncePortOffset
		if lo+off < 1 || hi+off > 65535 {
			c.addf("data.announce_port_offset", "%d moves port_range %s to %d-%d, outside 1-65535", off, f.Data.PortRange, lo+off, hi+off)
		}
	}
}

func (c *cfgChecker) prefixes(key string, list []string) {
	for j, s := range list {
		if _, err := cfgParsePrefix(s); err != nil {
			c.addf(fmt.Sprintf("%s[%d]", key, j), "%q is not a CIDR (\"10.0.0.0/8\") or an IP address", s)
		}
	}
}

// accessList turns allow/deny strings (validated) into a proxy.AccessList.
func accessList(allow, deny []string) proxy.AccessList {
	var a proxy.AccessList
	for _, s := range allow {
		if p, err := cfgParsePrefix(s); err == nil {
			a.Allow = append(a.Allow, p)
		}
	}
	for _, s := range deny {
		if p, err := cfgParsePrefix(s); err == nil {
			a.Deny = append(a.Deny, p)
		}
	}
	return a
}

// addressOverrides returns [[data.public_address_override]] (validated) for the proxy.
func (d Data) addressOverrides() []nat.AddressOverride {
	var out []nat.AddressOverride
	for _, o := range d.PublicAddressOverrides {
		p, err1 := netip.ParsePrefix(o.CIDR)
		a, err2 := netip.ParseAddr(o.Address)
		if err1 == nil && err2 == nil {
			out = append(out, nat.AddressOverride{Net: p.Masked(), Address: a})
		}
	}
	return out
}

// onDemandOptions returns [tls.acme.on_demand] for tlsterm, nil when it is not in use.
func (f *File) onDemandOptions() *tlsterm.OnDemandOptions {
	if !f.usesOnDemand() {
		return nil
	}
	o := f.TLS.ACME.OnDemand
	return &tlsterm.OnDemandOptions{Allow: o.Allow, Ask: o.Ask, PerMinute: o.PerMinute, Burst: o.Burst}
}

// edgeServerOptions adds the certificate and client-certificate keys to opts.
func (f *File) edgeServerOptions(opts *tlsterm.ServerOptions) {
	t := f.TLS
	for _, p := range t.Certificates {
		opts.Certificates = append(opts.Certificates, tlsterm.CertPair{CertFile: p.CertFile, KeyFile: p.KeyFile})
	}
	opts.CertDir, opts.DefaultCertificate = t.CertDir, t.DefaultCertificate
	opts.ClientAuth, _ = tlsterm.ParseClientAuth(t.ClientAuth)
	opts.ClientCAFile = t.ClientCAFile
	if f.UsesACME() {
		// ACME serves every name; the file sources are for configs without it.
		opts.Certificates, opts.CertDir, opts.DefaultCertificate = nil, "", ""
	}
}
