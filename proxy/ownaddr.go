package proxy

import "net/netip"

// ownAddr reports whether a PORT/EPRT target is one of Config.OwnAddrs (the admin or ACME
// HTTP listener). local is the address the client reached the proxy on: a target there, or on
// loopback, is this host, so it matches an own address bound to all interfaces.
func (c *Config) ownAddr(target netip.AddrPort, local netip.Addr) bool {
	a := target.Addr().Unmap()
	thisHost := a == local.Unmap() || a.IsLoopback()
	for _, o := range c.OwnAddrs {
		if o.Port() != target.Port() {
			continue
		}
		if oa := o.Addr().Unmap(); oa == a || oa.IsUnspecified() && thisHost {
			return true
		}
	}
	return false
}
