package nat

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

var mustAP = netip.MustParseAddrPort

// addrCase is the table row shared by the parsers that return an address.
type addrCase struct {
	name    string
	in      string
	want    netip.AddrPort
	wantErr error // nil means the parse must succeed
}

func runAddrCases(t *testing.T, parse func(string) (netip.AddrPort, error), tests []addrCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parse(tt.in)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("parse(%q) = %v, %v; want error %v", tt.in, got, err, tt.wantErr)
				}
				if got.IsValid() {
					t.Errorf("parse(%q) returned %v along with error", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("parse(%q): unexpected error %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("parse(%q) = %v; want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParse227(t *testing.T) {
	runAddrCases(t, Parse227, []addrCase{
		// Real server replies, text after "227 ".
		{"vsftpd", "Entering Passive Mode (127,0,0,1,200,13).", mustAP("127.0.0.1:51213"), nil},
		{"pure-ftpd", "Entering Passive Mode (127,0,0,1,117,50)", mustAP("127.0.0.1:30002"), nil},
		{"proftpd", "Entering Passive Mode (192,168,10,20,156,74).", mustAP("192.168.10.20:40010"), nil},
		{"iis", "Entering Passive Mode (10,0,0,1,4,1).", mustAP("10.0.0.1:1025"), nil},
		{"filezilla", "Entering Passive Mode (10,1,2,3,195,80)", mustAP("10.1.2.3:50000"), nil},
		{"no parentheses", "Entering Passive Mode 10,0,0,1,4,1", mustAP("10.0.0.1:1025"), nil},
		{"equals sign", "=10,0,0,1,4,1", mustAP("10.0.0.1:1025"), nil},
		{"bare numbers", "10,0,0,1,4,1", mustAP("10.0.0.1:1025"), nil},
		{"max values", "(255,255,255,255,255,255)", mustAP("255.255.255.255:65535"), nil},
		{"leading zeros", "(010,000,000,001,004,001)", mustAP("10.0.0.1:1025"), nil},
		{"unspecified address kept", "Entering Passive Mode (0,0,0,0,4,1)", mustAP("0.0.0.0:1025"), nil},
		{"trailing text", "Entering Passive Mode (10,0,0,1,4,1). Have fun", mustAP("10.0.0.1:1025"), nil},
		{"port 1", "(1,2,3,4,0,1)", mustAP("1.2.3.4:1"), nil},

		{"empty", "", noAddr, ErrSyntax},
		{"no digits", "Entering Passive Mode", noAddr, ErrSyntax},
		{"octet 256", "Entering Passive Mode (256,0,0,1,4,1)", noAddr, ErrSyntax},
		{"port byte 256", "(10,0,0,1,256,1)", noAddr, ErrSyntax},
		{"negative", "Entering Passive Mode (-10,0,0,1,4,1)", noAddr, ErrSyntax},
		{"plus sign", "(+10,0,0,1,4,1)", noAddr, ErrSyntax},
		{"negative inside", "(10,-0,0,1,4,1)", noAddr, ErrSyntax},
		{"five fields", "(10,0,0,1,4)", noAddr, ErrSyntax},
		{"seven fields", "(10,0,0,1,4,1,7)", noAddr, ErrSyntax},
		{"trailing comma", "(10,0,0,1,4,1,)", noAddr, ErrSyntax},
		{"double comma", "(10,0,,0,1,4,1)", noAddr, ErrSyntax},
		{"port 0", "(10,0,0,1,0,0)", noAddr, ErrSyntax},
		{"four digits", "(1000,0,0,1,4,1)", noAddr, ErrSyntax},
		{"overflow", "(9999999999999999999,0,0,1,4,1)", noAddr, ErrSyntax},
		{"overflow port", "(10,0,0,1,4,18446744073709551617)", noAddr, ErrSyntax},
		{"space after comma", "(10, 0, 0, 1, 4, 1)", noAddr, ErrSyntax},
		{"space inside number", "(1 0,0,0,1,4,1)", noAddr, ErrSyntax},
		{"dots", "(10.0.0.1,4,1)", noAddr, ErrSyntax},
		{"NUL", "Entering Passive Mode (10,0,0,1,4,1)\x00", noAddr, ErrSyntax},
		{"CR", "Entering Passive Mode (10,0,0,1,4,1)\r", noAddr, ErrSyntax},
		{"LF", "Entering\nPassive Mode (10,0,0,1,4,1)", noAddr, ErrSyntax},
		{"non-ASCII", "Entrée en mode passif (10,0,0,1,4,1)", noAddr, ErrSyntax},
		{"non-ASCII digit", "(١٠,0,0,1,4,1)", noAddr, ErrSyntax},
		{"code included", "227 Entering Passive Mode (10,0,0,1,4,1)", noAddr, ErrSyntax},
	})
}

// noAddr is the zero AddrPort, for rows that expect an error.
var noAddr netip.AddrPort

func TestParsePORT(t *testing.T) {
	runAddrCases(t, ParsePORT, []addrCase{
		{"rfc 959 example", "127,0,0,1,4,1", mustAP("127.0.0.1:1025"), nil},
		{"max", "255,255,255,255,255,255", mustAP("255.255.255.255:65535"), nil},
		{"leading zeros", "001,002,003,004,000,001", mustAP("1.2.3.4:1"), nil},
		{"unspecified", "0,0,0,0,4,1", mustAP("0.0.0.0:1025"), nil},

		{"empty", "", noAddr, ErrSyntax},
		{"octet 256", "256,0,0,1,4,1", noAddr, ErrSyntax},
		{"port byte 256", "1,2,3,4,1,256", noAddr, ErrSyntax},
		{"negative", "-1,2,3,4,5,6", noAddr, ErrSyntax},
		{"negative inside", "1,2,-3,4,5,6", noAddr, ErrSyntax},
		{"plus", "+1,2,3,4,5,6", noAddr, ErrSyntax},
		{"five fields", "1,2,3,4,5", noAddr, ErrSyntax},
		{"seven fields", "1,2,3,4,5,6,7", noAddr, ErrSyntax},
		{"one field", "1", noAddr, ErrSyntax},
		{"trailing comma", "1,2,3,4,5,6,", noAddr, ErrSyntax},
		{"leading comma", ",1,2,3,4,5,6", noAddr, ErrSyntax},
		{"empty field", "1,2,,4,5,6", noAddr, ErrSyntax},
		{"port 0", "1,2,3,4,0,0", noAddr, ErrSyntax},
		{"four digits", "0001,2,3,4,5,6", noAddr, ErrSyntax},
		{"overflow", "9999999999999999999,2,3,4,5,6", noAddr, ErrSyntax},
		{"leading space", " 1,2,3,4,5,6", noAddr, ErrSyntax},
		{"trailing space", "1,2,3,4,5,6 ", noAddr, ErrSyntax},
		{"space inside", "1,2,3,4,5, 6", noAddr, ErrSyntax},
		{"space inside number", "1,2,3,4,5,6 6", noAddr, ErrSyntax},
		{"parentheses", "(1,2,3,4,5,6)", noAddr, ErrSyntax},
		{"dotted", "1.2.3.4,5,6", noAddr, ErrSyntax},
		{"ipv6", "::1,5,6", noAddr, ErrSyntax},
		{"ipv6 bytes", "0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1,4,1", noAddr, ErrSyntax},
		{"hex", "0x1,2,3,4,5,6", noAddr, ErrSyntax},
		{"NUL", "1,2,3,4,5,6\x00", noAddr, ErrSyntax},
		{"CRLF", "1,2,3,4,5,6\r\n", noAddr, ErrSyntax},
		{"LF inside", "1,2,3\n,4,5,6", noAddr, ErrSyntax},
		{"non-ASCII", "1,2,3,4,5,６", noAddr, ErrSyntax},
	})
}

func TestParseEPRT(t *testing.T) {
	runAddrCases(t, ParseEPRT, []addrCase{
		{"rfc 2428 ipv4", "|1|132.235.1.2|6275|", mustAP("132.235.1.2:6275"), nil},
		{"rfc 2428 ipv6", "|2|1080::8:800:200C:417A|5282|", mustAP("[1080::8:800:200c:417a]:5282"), nil},
		{"other delimiter", "!1!10.0.0.1!1025!", mustAP("10.0.0.1:1025"), nil},
		{"tilde delimiter", "~2~::1~65535~", mustAP("[::1]:65535"), nil},
		{"mapped ipv6 unmapped", "|2|::ffff:10.0.0.1|1025|", mustAP("10.0.0.1:1025"), nil},
		{"port leading zeros", "|1|10.0.0.1|01025|", mustAP("10.0.0.1:1025"), nil},
		{"digit delimiter", "5151.3.3.35775", mustAP("1.3.3.3:77"), nil},

		{"empty", "", noAddr, ErrSyntax},
		{"only delimiter", "|", noAddr, ErrSyntax},
		{"four delimiters only", "||||", noAddr, ErrSyntax},
		{"extra leading delimiter", "||1|1.2.3.4|5|", noAddr, ErrSyntax},
		{"missing final delimiter", "|1|1.2.3.4|5", noAddr, ErrSyntax},
		{"extra final delimiter", "|1|1.2.3.4|5||", noAddr, ErrSyntax},
		{"extra field", "|1|1.2.3.4|5|6|", noAddr, ErrSyntax},
		{"text after", "|1|1.2.3.4|5|x", noAddr, ErrSyntax},
		{"mixed delimiters", "|1!1.2.3.4|5|", noAddr, ErrSyntax},
		{"space delimiter", " 1 1.2.3.4 5 ", noAddr, ErrSyntax},
		{"DEL delimiter", "\x7f1\x7f1.2.3.4\x7f5\x7f", noAddr, ErrSyntax},
		{"leading space", " |1|1.2.3.4|5|", noAddr, ErrSyntax},
		{"trailing space", "|1|1.2.3.4|5| ", noAddr, ErrSyntax},
		{"space in port", "|1|1.2.3.4| 5|", noAddr, ErrSyntax},
		{"empty net-prt", "||1.2.3.4|5|", noAddr, ErrSyntax},
		{"letter net-prt", "|a|1.2.3.4|5|", noAddr, ErrSyntax},
		{"signed net-prt", "|+1|1.2.3.4|5|", noAddr, ErrSyntax},
		{"net-prt 3", "|3|1.2.3.4|5|", noAddr, ErrUnsupportedProtocol},
		{"net-prt 0", "|0|1.2.3.4|5|", noAddr, ErrUnsupportedProtocol},
		{"net-prt 65535", "|65535|1.2.3.4|5|", noAddr, ErrUnsupportedProtocol},
		{"net-prt overflow", "|9999999999999999999|1.2.3.4|5|", noAddr, ErrSyntax},
		{"net-prt 1 with ipv6", "|1|::1|5|", noAddr, ErrSyntax},
		{"net-prt 2 with ipv4", "|2|1.2.3.4|5|", noAddr, ErrSyntax},
		{"net-prt 1 with mapped", "|1|::ffff:1.2.3.4|5|", noAddr, ErrSyntax},
		{"empty address", "|1||5|", noAddr, ErrSyntax},
		{"octet 256", "|1|1.2.3.256|5|", noAddr, ErrSyntax},
		{"octal-looking octet", "|1|1.2.3.04|5|", noAddr, ErrSyntax},
		{"three octets", "|1|1.2.3|5|", noAddr, ErrSyntax},
		{"hostname", "|1|localhost|5|", noAddr, ErrSyntax},
		{"bracketed ipv6", "|2|[::1]|5|", noAddr, ErrSyntax},
		{"zone", "|2|fe80::1%eth0|5|", noAddr, ErrSyntax},
		{"zone numeric", "|2|fe80::1%1|5|", noAddr, ErrSyntax},
		{"empty port", "|1|1.2.3.4||", noAddr, ErrSyntax},
		{"port 0", "|1|1.2.3.4|0|", noAddr, ErrSyntax},
		{"port 65536", "|1|1.2.3.4|65536|", noAddr, ErrSyntax},
		{"port six digits", "|1|1.2.3.4|000005|", noAddr, ErrSyntax},
		{"port overflow", "|1|1.2.3.4|9999999999999999999|", noAddr, ErrSyntax},
		{"negative port", "|1|1.2.3.4|-5|", noAddr, ErrSyntax},
		{"signed port", "|1|1.2.3.4|+5|", noAddr, ErrSyntax},
		{"NUL", "|1|1.2.3.4|5|\x00", noAddr, ErrSyntax},
		{"NUL in address", "|1|1.2.3.4\x00|5|", noAddr, ErrSyntax},
		{"CRLF", "|1|1.2.3.4|5|\r\n", noAddr, ErrSyntax},
		{"non-ASCII delimiter", "§1§1.2.3.4§5§", noAddr, ErrSyntax},
	})
}

func TestParse229(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    uint16
		wantErr error
	}{
		{"rfc 2428", "Entering Extended Passive Mode (|||6446|)", 6446, nil},
		{"vsftpd", "Entering Extended Passive Mode (|||51213|)", 51213, nil},
		{"trailing period", "Entering Extended Passive Mode (|||6446|).", 6446, nil},
		{"other delimiter", "Entering Extended Passive Mode (!!!6446!)", 6446, nil},
		{"bare", "(|||1|)", 1, nil},
		{"max port", "(|||65535|)", 65535, nil},
		{"parenthesis in text first", "Extended Passive Mode (EPSV) ok (|||6446|)", 6446, nil},
		{"paren delimiter", "((((6446()", 6446, nil},

		{"empty", "", 0, ErrSyntax},
		{"no parenthesis", "Entering Extended Passive Mode |||6446|", 0, ErrSyntax},
		{"nothing after parenthesis", "Entering Extended Passive Mode (", 0, ErrSyntax},
		{"space delimiter", "(   6446 )", 0, ErrSyntax},
		{"net-prt given", "(|1||6446|)", 0, ErrSyntax},
		{"address given", "(||1.2.3.4|6446|)", 0, ErrSyntax},
		{"two delimiters", "(||6446|)", 0, ErrSyntax},
		{"four delimiters", "(||||6446|)", 0, ErrSyntax},
		{"mixed delimiters", "(|!|6446|)", 0, ErrSyntax},
		{"missing final delimiter", "(|||6446)", 0, ErrSyntax},
		{"missing close", "(|||6446|", 0, ErrSyntax},
		{"extra delimiter", "(|||6446||)", 0, ErrSyntax},
		{"port 0", "(|||0|)", 0, ErrSyntax},
		{"port 65536", "(|||65536|)", 0, ErrSyntax},
		{"empty port", "(||||)", 0, ErrSyntax},
		{"negative port", "(|||-1|)", 0, ErrSyntax},
		{"overflow", "(|||9999999999999999999|)", 0, ErrSyntax},
		{"space in port", "(|||64 46|)", 0, ErrSyntax},
		{"NUL", "(|||6446|)\x00", 0, ErrSyntax},
		{"CR", "(|||64\r46|)", 0, ErrSyntax},
		{"non-ASCII", "(|||6446|) ü", 0, ErrSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse229(tt.in)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || got != 0 {
					t.Fatalf("Parse229(%q) = %d, %v; want error %v", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Parse229(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestFormat(t *testing.T) {
	tests := []struct {
		name    string
		in      netip.AddrPort
		want227 string
		wantErr error // for Format227 and FormatPORT
	}{
		{"ipv4", mustAP("192.168.1.2:50000"), "227 Entering Passive Mode (192,168,1,2,195,80).", nil},
		{"mapped", mustAP("[::ffff:10.0.0.1]:1025"), "227 Entering Passive Mode (10,0,0,1,4,1).", nil},
		{"ipv6", mustAP("[2001:db8::1]:1025"), "", ErrNotIPv4},
		{"invalid", netip.AddrPort{}, "", ErrNotIPv4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Format227(tt.in)
			if !errors.Is(err, tt.wantErr) || got != tt.want227 {
				t.Errorf("Format227(%v) = %q, %v; want %q, %v", tt.in, got, err, tt.want227, tt.wantErr)
			}
			port, err := FormatPORT(tt.in)
			wantPort := strings.TrimSuffix(strings.TrimPrefix(tt.want227, "227 Entering Passive Mode ("), ").")
			if !errors.Is(err, tt.wantErr) || port != wantPort {
				t.Errorf("FormatPORT(%v) = %q, %v; want %q, %v", tt.in, port, err, wantPort, tt.wantErr)
			}
		})
	}
	if _, err := Format227(mustAP("1.2.3.4:0")); err == nil {
		t.Error("Format227 with port 0: no error")
	}
	if _, err := FormatPORT(mustAP("1.2.3.4:0")); err == nil {
		t.Error("FormatPORT with port 0: no error")
	}
	if got, want := Format229(6446), "229 Entering Extended Passive Mode (|||6446|)"; got != want {
		t.Errorf("Format229 = %q; want %q", got, want)
	}
	for in, want := range map[string]string{
		"132.235.1.2:6275":                "|1|132.235.1.2|6275|",
		"[::ffff:132.235.1.2]:6275":       "|1|132.235.1.2|6275|",
		"[1080::8:800:200C:417A]:5282":    "|2|1080::8:800:200c:417a|5282|",
		"[fe80::1%eth0]:21":               "|2|fe80::1|21|",
		"[2001:db8::1.2.3.4]:65535":       "|2|2001:db8::102:304|65535|",
		"[::]:1":                          "|2|::|1|",
		"0.0.0.0:1":                       "|1|0.0.0.0|1|",
		"[2001:db8:1:2:3:4:5:6]:1":        "|2|2001:db8:1:2:3:4:5:6|1|",
		"[2001:db8:0:0:1:0:0:1]:65000":    "|2|2001:db8::1:0:0:1|65000|",
		"[ffff:ffff:ffff:ffff::ffff]:255": "|2|ffff:ffff:ffff:ffff::ffff|255|",
	} {
		if got := FormatEPRT(mustAP(in)); got != want {
			t.Errorf("FormatEPRT(%s) = %q; want %q", in, got, want)
		}
	}
}

// roundTripAddrs are valid, announceable addresses used by the round-trip tests.
var roundTripAddrs = []string{
	"0.0.0.0:1", "1.2.3.4:1025", "10.0.0.1:65535", "255.255.255.255:256", "127.0.0.1:255",
	"[::1]:21", "[2001:db8::1]:50000", "[fe80::1]:1", "[1080::8:800:200c:417a]:5282",
}

func TestRoundTrip(t *testing.T) {
	for _, s := range roundTripAddrs {
		ap := mustAP(s)
		if ap.Addr().Is4() {
			line, err := Format227(ap)
			if err != nil {
				t.Fatalf("Format227(%v): %v", ap, err)
			}
			if got, err := Parse227(strings.TrimPrefix(line, "227 ")); err != nil || got != ap {
				t.Errorf("Parse227(Format227(%v)) = %v, %v", ap, got, err)
			}
			arg, err := FormatPORT(ap)
			if err != nil {
				t.Fatalf("FormatPORT(%v): %v", ap, err)
			}
			if got, err := ParsePORT(arg); err != nil || got != ap {
				t.Errorf("ParsePORT(FormatPORT(%v)) = %v, %v", ap, got, err)
			}
		}
		if got, err := ParseEPRT(FormatEPRT(ap)); err != nil || got != ap {
			t.Errorf("ParseEPRT(FormatEPRT(%v)) = %v, %v", ap, got, err)
		}
		line229 := Format229(ap.Port())
		if got, err := Parse229(strings.TrimPrefix(line229, "229 ")); err != nil || got != ap.Port() {
			t.Errorf("Parse229(Format229(%d)) = %d, %v", ap.Port(), got, err)
		}
	}
}

func TestPassiveAddr(t *testing.T) {
	tests := []struct {
		name          string
		public, local netip.Addr
		want          netip.Addr
	}{
		{"public set", netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("203.0.113.7")},
		{"public unset", netip.Addr{}, netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("10.0.0.5")},
		{"public unspecified", netip.IPv4Unspecified(), netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("10.0.0.5")},
		{"local mapped", netip.Addr{}, netip.MustParseAddr("::ffff:10.0.0.5"), netip.MustParseAddr("10.0.0.5")},
		{"public mapped", netip.MustParseAddr("::ffff:203.0.113.7"), netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("203.0.113.7")},
		{"ipv6 local", netip.Addr{}, netip.MustParseAddr("2001:db8::5"), netip.MustParseAddr("2001:db8::5")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PassiveAddr(tt.public, tt.local); got != tt.want {
				t.Errorf("PassiveAddr(%v, %v) = %v; want %v", tt.public, tt.local, got, tt.want)
			}
		})
	}
}

func TestParsePortRange(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    PortRange
		wantErr bool
	}{
		{"range", "50000-50999", PortRange{50000, 50999}, false},
		{"single", "50000", PortRange{50000, 50000}, false},
		{"equal ends", "2121-2121", PortRange{2121, 2121}, false},
		{"full", "1024-65535", PortRange{1024, 65535}, false},
		{"below 1024", "1023-2000", PortRange{}, true},
		{"well-known", "21", PortRange{}, true},
		{"above 65535", "2000-65536", PortRange{}, true},
		{"leading plus", "+1024-2000", PortRange{}, true},
		{"leading space", " 1024-2000", PortRange{}, true},
		{"huge", "99999999999999999999-1", PortRange{}, true},

		{"empty", "", PortRange{}, true},
		{"zero", "0", PortRange{}, true},
		{"zero first", "0-10", PortRange{}, true},
		{"inverted", "50999-50000", PortRange{}, true},
		{"too big", "65536", PortRange{}, true},
		{"overflow", "1-9999999999999999999", PortRange{}, true},
		{"missing last", "50000-", PortRange{}, true},
		{"missing first", "-50000", PortRange{}, true},
		{"three parts", "1-2-3", PortRange{}, true},
		{"spaces", "50000 - 50999", PortRange{}, true},
		{"comma", "50000,50999", PortRange{}, true},
		{"negative", "-1", PortRange{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePortRange(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("ParsePortRange(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
			if err != nil {
				return
			}
			if back, err := ParsePortRange(got.String()); err != nil || back != got {
				t.Errorf("ParsePortRange(%q) = %v, %v; want %v", got.String(), back, err, got)
			}
		})
	}
}
