package config

import (
	"fmt"
	"github.com/ftpsproxy/ftpsproxy/tlsterm"
	"net/netip"
	"net/url"
	"strings"
)

// Summary is a short human description of the configuration, for -check.
func (f *File) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "listeners: %d\n", len(f.Listeners))
	for _, l := range f.Listeners {
		name := l.Address
		if l.Name != l.Address {
			name = fmt.Sprintf("%s (%s)", l.Name, l.Address)
		}
		fmt.Fprintf(&b, "  %s: tls %s, pool %s", name, l.TLS, l.Pool)
		if l.ProxyProtocol.On() {
			fmt.Fprintf(&b, ", PROXY protocol from %s", prefixList(l.TrustedProxies))
		}
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "pools: %d\n", len(f.Pools))
	for _, p := range f.Pools {
		health := "health checks off"
		if p.HealthInterval > 0 {
			health = "health check every " + p.HealthInterval.String()
		}
		if !p.Panic {
			health += ", panic mode off"
		}
		srv := ""
		if p.SRV != "" {
			srv = ", and those of SRV " + p.SRV
		}
		fmt.Fprintf(&b, "  %s: %s, %d backend%s%s, %s\n", p.Name, p.Policy, len(p.Backends), plural(len(p.Backends)), srv, health)
	}
	fmt.Fprintf(&b, "routes: %d\n", len(f.Routes))
	b.WriteString("certificates: " + certSummary(f) + "\n")
	data := "data ports: " + f.Data.PortRange.String()
	if f.Data.PublicAddress.IsValid() {
		data += ", announced as " + f.Data.PublicAddress.String()
	}
	if n := len(f.Data.AddressOverrides); n > 0 {
		data += fmt.Sprintf(" (address overrides: %d)", n)
	}
	if off := f.Data.AnnouncePortOffset; off != 0 {
		data += fmt.Sprintf(", announced ports %+d", off)
	}
	b.WriteString(data + "\n")
	if f.Admin.Address == "" {
		b.WriteString("admin: off\n")
	} else {
		fmt.Fprintf(&b, "admin: %s\n", f.Admin.Address)
	}
	if f.Cluster.RedisURL != "" {
		fmt.Fprintf(&b, "cluster: shared state in Redis at %s, instance %q\n", redactURL(f.Cluster.RedisURL), f.Cluster.Instance)
	}
	return b.String()
}

// prefixList writes prefixes space-separated, a single address without its /32 or /128 (as
// the file may write it).
func prefixList(ps []netip.Prefix) string {
	out := make([]string, len(ps))
	for i, p := range ps {
		if p.IsSingleIP() {
			out[i] = p.Addr().String()
		} else {
			out[i] = p.String()
		}
	}
	return strings.Join(out, " ")
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// certSummary says where the client-facing certificates come from.
func certSummary(f *File) string {
	t := &f.TLS
	if f.UsesACME() {
		s := "ACME for " + strings.Join(t.ACME.Domains, ", ")
		if t.ACME.OnDemand.Enabled() {
			s += " and on demand"
		}
		return s
	}
	var parts []string
	if t.CertFile != "" {
		parts = append(parts, t.CertFile)
	}
	if n := len(t.Certificates); n > 0 {
		parts = append(parts, fmt.Sprintf("%d [[tls.certificate]]", n))
	}
	if t.CertDir != "" {
		parts = append(parts, "cert_dir "+t.CertDir)
	}
	if len(parts) == 0 {
		return "none"
	}
	s := strings.Join(parts, ", ")
	if t.ClientAuth != tlsterm.ClientAuthNone {
		s += fmt.Sprintf("; client certificates %s", t.ClientAuth)
	}
	return s
}

// redactURL hides a password in a URL (the summary may end up in a ticket).
func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	return s
}
