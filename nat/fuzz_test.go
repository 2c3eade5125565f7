package nat

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// The fuzz targets check two properties: the parsers never panic, and whatever they accept
// survives formatting and re-parsing unchanged. More seeds live in testdata/fuzz/<FuzzName>/.

// checkParseErr fails if a parse error wraps neither of the package's sentinels, since the proxy
// maps errors to reply codes with errors.Is.
func checkParseErr(t *testing.T, in string, err error) {
	t.Helper()
	if !errors.Is(err, ErrSyntax) && !errors.Is(err, ErrUnsupportedProtocol) {
		t.Fatalf("parse(%q): error %v wraps no sentinel", in, err)
	}
}

// checkAccepted fails if a parser returned an address no data connection could use.
func checkAccepted(t *testing.T, in string, ap netip.AddrPort) {
	t.Helper()
	if !ap.IsValid() || ap.Port() == 0 || ap.Addr().Is4In6() || ap.Addr().Zone() != "" {
		t.Fatalf("parse(%q) = %v: invalid, port 0, mapped or zoned", in, ap)
	}
}

func FuzzParse227(f *testing.F) {
	for _, s := range []string{
		"Entering Passive Mode (127,0,0,1,200,13).", // vsftpd
		"Entering Passive Mode (127,0,0,1,117,50)",  // pure-ftpd, no trailing period
		"Entering Passive Mode (10,0,0,1,4,1).",     // IIS
		"Entering Passive Mode 10,0,0,1,4,1",        // no parentheses (RFC 1123 4.1.2.6)
		"=10,0,0,1,4,1",                             // terse form some servers use
		"(255,255,255,255,255,255)",                 // every field at its maximum
		"(256,0,0,1,4,1)",                           // octet out of range
		"(-1,0,0,1,4,1)",                            // signed
		"(1,2,3,4,5,6,7)",                           // a seventh field
		"(9999999999999999999,0,0,1,4,1)",           // overflow
		"(1,2,3,4,0,0)",                             // port 0
		"(1,2,3,4,5,6)\r\n227 (6,6,6,6,6,6)",        // smuggled second line
		"",                                          // empty
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		ap, err := Parse227(in)
		if err != nil {
			checkParseErr(t, in, err)
			return
		}
		checkAccepted(t, in, ap)
		line, err := Format227(ap)
		if err != nil {
			t.Fatalf("Format227(%v) after Parse227(%q): %v", ap, in, err)
		}
		text, ok := strings.CutPrefix(line, "227 ")
		if !ok {
			t.Fatalf("Format227(%v) = %q: no 227 prefix", ap, line)
		}
		if back, err := Parse227(text); err != nil || back != ap {
			t.Fatalf("Parse227(%q) = %v, %v; want %v (from %q)", text, back, err, ap, in)
		}
	})
}

func FuzzParse229(f *testing.F) {
	for _, s := range []string{
		"Entering Extended Passive Mode (|||6446|)",  // RFC 2428 example
		"Entering Extended Passive Mode (|||6446|).", // trailing period
		"(!!!1!)",           // another delimiter, smallest port
		"((((65535()",       // '(' as the delimiter
		"(|||65536|)",       // port out of range
		"(|||0|)",           // port 0
		"(|1|1.2.3.4|5|)",   // fields that must be empty
		"(|||99999999999|)", // overflow
		"(EPSV) (|||21|)",   // an earlier parenthesis
		"(",                 // truncated
		"",                  // empty
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		port, err := Parse229(in)
		if err != nil {
			checkParseErr(t, in, err)
			return
		}
		if port == 0 {
			t.Fatalf("Parse229(%q) = 0 without error", in)
		}
		text := strings.TrimPrefix(Format229(port), "229 ")
		if back, err := Parse229(text); err != nil || back != port {
			t.Fatalf("Parse229(%q) = %d, %v; want %d (from %q)", text, back, err, port, in)
		}
	})
}

func FuzzParsePORT(f *testing.F) {
	for _, s := range []string{
		"127,0,0,1,4,1",           // RFC 959 form
		"255,255,255,255,255,255", // maxima
		"001,002,003,004,000,001", // leading zeros
		"1,2,3,4,5",               // five fields
		"1,2,3,4,5,6,7",           // seven fields
		" 1,2,3,4,5,6",            // untrimmed
		"1,2,3,4,5,6\x00",         // NUL
		"1,2,3,4,0,0",             // port 0
		"1,2,3,4,5,99999999999",   // overflow
		"",                        // empty
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		ap, err := ParsePORT(in)
		if err != nil {
			checkParseErr(t, in, err)
			return
		}
		checkAccepted(t, in, ap)
		arg, err := FormatPORT(ap)
		if err != nil {
			t.Fatalf("FormatPORT(%v) after ParsePORT(%q): %v", ap, in, err)
		}
		if back, err := ParsePORT(arg); err != nil || back != ap {
			t.Fatalf("ParsePORT(%q) = %v, %v; want %v (from %q)", arg, back, err, ap, in)
		}
	})
}

func FuzzParseEPRT(f *testing.F) {
	for _, s := range []string{
		"|1|132.235.1.2|6275|",           // RFC 2428 IPv4 example
		"|2|1080::8:800:200C:417A|5282|", // RFC 2428 IPv6 example
		"|2|::ffff:10.0.0.1|1025|",       // mapped address, returned unmapped
		"!1!10.0.0.1!1025!",              // another delimiter
		"5151.3.3.35775",                 // a digit as delimiter
		"||1|1.2.3.4|5|",                 // an extra delimiter in front
		"|1|1.2.3.4|5",                   // final delimiter missing
		"|1|1.2.3.4|5||",                 // an extra delimiter at the end
		"|3|1.2.3.4|5|",                  // unsupported net-prt
		"|2|fe80::1%eth0|5|",             // zone
		"|1|::1|5|",                      // net-prt mismatch
		"|1|1.2.3.4|65536|",              // port out of range
		"",                               // empty
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		ap, err := ParseEPRT(in)
		if err != nil {
			checkParseErr(t, in, err)
			return
		}
		checkAccepted(t, in, ap)
		arg := FormatEPRT(ap)
		if back, err := ParseEPRT(arg); err != nil || back != ap {
			t.Fatalf("ParseEPRT(%q) = %v, %v; want %v (from %q)", arg, back, err, ap, in)
		}
	})
}
