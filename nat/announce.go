package nat

import (
	"errors"
	"fmt"
	"net/netip"
)

// AddressOverride announces Address in 227 replies to clients inside Net
// ([[data.public_address_override]], whose keys the toml tags name): LAN clients get the
// internal address, the rest the public one.
type AddressOverride struct {
	Net     netip.Prefix `toml:"cidr"`
	Address netip.Addr   `toml:"address"`
}

// Announce is what the proxy tells clients about its passive ports: the address of a 227
// reply per client network and the offset between the port it binds and the port it
// announces (data.announce_port_offset, for Kubernetes NodePorts and Docker port maps that
// publish a bound port under another number). The zero value announces the bound port on
// the control connection's local address.
type Announce struct {
	Public     netip.Addr        // data.public_address; invalid or unspecified: the local address
	Overrides  []AddressOverride // first match on the client address wins
	PortOffset int               // announced = bound + PortOffset
}

// ErrPortOffset reports a bound port that the offset moves outside 1..65535.
var ErrPortOffset = errors.New("nat: announced port out of range")

// Address returns the IPv4 or IPv6 address to announce to client, whose control connection
// arrived at local: the first override whose network holds client, else PassiveAddr(Public,
// local). Addresses are compared unmapped, so an IPv4 client on a dual-stack listener
// matches IPv4 networks.
func (a Announce) Address(client, local netip.Addr) netip.Addr {
	client = client.Unmap()
	for _, o := range a.Overrides {
		if o.Net.Contains(client) {
			return o.Address.Unmap()
		}
	}
	return PassiveAddr(a.Public, local)
}

// Port returns the port to announce for a bound passive port.
func (a Announce) Port(bound uint16) (uint16, error) {
	p := int(bound) + a.PortOffset
	if p < 1 || p > 65535 {
		return 0, fmt.Errorf("%w: %d%+d", ErrPortOffset, bound, a.PortOffset)
	}
	return uint16(p), nil
}

// Validate checks that every port of r stays within 1..65535 once offset, and that every
// override is a valid network with an IPv4 address (227 carries IPv4 only). A zero range
// (validated elsewhere) has no ports to check.
func (a Announce) Validate(r PortRange) error {
	if r.First != 0 {
		if _, err := a.Port(r.First); err != nil {
			return err
		}
		if _, err := a.Port(r.Last); err != nil {
			return err
		}
	}
	for i, o := range a.Overrides {
		if !o.Net.IsValid() {
			return fmt.Errorf("nat: override %d: invalid network", i)
		}
		if !o.Address.Unmap().Is4() {
			return fmt.Errorf("nat: override %d: %w: %v", i, ErrNotIPv4, o.Address)
		}
	}
	return nil
}
