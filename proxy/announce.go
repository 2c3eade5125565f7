package proxy

import (
	"net/netip"

	"github.com/ftpsproxy/ftpsproxy/nat"
)

// announcer returns the data config's announce policy (address overrides, port offset).
func (d *DataConfig) announcer() nat.Announce {
	return nat.Announce{Public: d.PublicAddress, Overrides: d.AddressOverrides, PortOffset: d.AnnouncePortOffset}
}

// announce writes the 227 or 229 reply for a passive lease: the port is the bound one plus
// data.announce_port_offset; a 227's address is chosen per client network
// (data.public_address_override, then data.public_address, then the address the client
// connected to). EPSV carries no address, so overrides do not touch it.
func (s *session) announce(verb string, lease *nat.Lease) error {
	a := s.cfg.Data.announcer()
	port, err := a.Port(lease.Port())
	if err != nil { // Validate keeps the range inside; this guards a config built in code
		s.log.Warn("passive port cannot be announced", "err", err)
		s.clearData()
		return s.writeLine(replyCantOpen)
	}
	if verb == "EPSV" {
		return s.writeLine(nat.Format229(port))
	}
	local := s.localAddr.Addr()
	if h := s.header; h != nil && h.dst.IsValid() && h.dst.Addr().Is4() {
		local = h.dst.Addr() // what the client connected to, in front of the PROXY sender
	}
	line, err := nat.Format227(netip.AddrPortFrom(a.Address(s.clientAddr.Addr(), local), port))
	if err != nil {
		s.clearData()
		return s.writeLine(replyPasvV6)
	}
	return s.writeLine(line)
}
