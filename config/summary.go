package config

import (
	"fmt"
	"net/netip"
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
		fmt.Fprintf(&b, "  %s: %s, %d backend%s, %s\n", p.Name, p.Policy, len(p.Backends), plural(len(p.Backends)), health)
	}
	fmt.Fprintf(&b, "routes: %d\n", len(f.Routes))
	switch {
	case f.UsesACME():
		fmt.Fprintf(&b, "certificates: ACME for %s\n", strings.Join(f.TLS.ACME.Domains, ", "))
	case f.TLS.CertFile != "":
		fmt.Fprintf(&b, "certificates: %s\n", f.TLS.CertFile)
	default:
		b.WriteString("certificates: none\n")
	}
	data := "data ports: " + f.Data.PortRange.String()
	if f.Data.PublicAddress.IsValid() {
		data += ", announced as " + f.Data.PublicAddress.String()
	}
	b.WriteString(data + "\n")
	if f.Admin.Address == "" {
		b.WriteString("admin: off\n")
	} else {
		fmt.Fprintf(&b, "admin: %s\n", f.Admin.Address)
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
