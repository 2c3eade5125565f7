package nat

import (
	"errors"
	"net/netip"
	"testing"
)

func TestAnnounceAddress(t *testing.T) {
	a := Announce{
		Public: netip.MustParseAddr("203.0.113.10"),
		Overrides: []AddressOverride{
			{Net: netip.MustParsePrefix("10.1.0.0/16"), Address: netip.MustParseAddr("10.1.0.5")},
			{Net: netip.MustParsePrefix("10.0.0.0/8"), Address: netip.MustParseAddr("10.0.0.5")},
			{Net: netip.MustParsePrefix("2001:db8::/32"), Address: netip.MustParseAddr("10.9.9.9")},
		},
	}
	local := netip.MustParseAddr("192.168.1.1")
	tests := []struct {
		name   string
		a      Announce
		client string
		want   string
	}{
		{"first match wins", a, "10.1.2.3", "10.1.0.5"},
		{"second override", a, "10.2.0.1", "10.0.0.5"},
		{"mapped client matches ipv4 net", a, "::ffff:10.2.0.1", "10.0.0.5"},
		{"ipv6 client override", a, "2001:db8::1", "10.9.9.9"},
		{"outside every override: public", a, "198.51.100.7", "203.0.113.10"},
		{"no public: local address", Announce{Overrides: a.Overrides}, "198.51.100.7", "192.168.1.1"},
		{"no overrides", Announce{Public: a.Public}, "10.1.2.3", "203.0.113.10"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.a.Address(netip.MustParseAddr(tt.client), local)
			if got != netip.MustParseAddr(tt.want) {
				t.Errorf("Address(%s) = %v; want %s", tt.client, got, tt.want)
			}
		})
	}
}

func TestAnnouncePort(t *testing.T) {
	tests := []struct {
		name    string
		offset  int
		bound   uint16
		want    uint16
		wantErr bool
	}{
		{"no offset", 0, 20000, 20000, false},
		{"nodeport offset", 10000, 20000, 30000, false},
		{"negative offset", -19000, 20000, 1000, false},
		{"top of the port space", 1, 65534, 65535, false},
		{"past 65535", 2, 65534, 0, true},
		{"to port 0", -20000, 20000, 0, true},
		{"below 0", -30000, 20000, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Announce{PortOffset: tt.offset}.Port(tt.bound)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("Port(%d) with offset %d = %d, %v; want %d, error %v", tt.bound, tt.offset, got, err, tt.want, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrPortOffset) {
				t.Errorf("error %v does not wrap ErrPortOffset", err)
			}
		})
	}
}

func TestAnnounceValidate(t *testing.T) {
	r := PortRange{First: 20000, Last: 20999}
	tests := []struct {
		name    string
		a       Announce
		wantErr bool
	}{
		{"zero value", Announce{}, false},
		{"offset inside", Announce{PortOffset: 10000}, false},
		{"last port pushed out", Announce{PortOffset: 44537}, true},
		{"first port pushed below 1", Announce{PortOffset: -20000}, true},
		{"ipv6 override address", Announce{Overrides: []AddressOverride{{Net: netip.MustParsePrefix("10.0.0.0/8"), Address: netip.MustParseAddr("2001:db8::1")}}}, true},
		{"invalid network", Announce{Overrides: []AddressOverride{{Address: netip.MustParseAddr("10.0.0.1")}}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.a.Validate(r); (err != nil) != tt.wantErr {
				t.Errorf("Validate = %v; want error %v", err, tt.wantErr)
			}
		})
	}
}
