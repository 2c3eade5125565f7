package nat

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Errors returned by the parsers and formatters. Every parse failure wraps ErrSyntax except an
// unknown address family, which wraps ErrUnsupportedProtocol so the proxy can answer 522 (EPRT)
// instead of 501.
var (
	// ErrSyntax reports a malformed address, port or reply text.
	ErrSyntax = errors.New("nat: syntax error")
	// ErrUnsupportedProtocol reports a well-formed EPRT net-prt other than 1 or 2.
	ErrUnsupportedProtocol = errors.New("nat: unsupported network protocol")
	// ErrNotIPv4 reports an address that a 227 reply or a PORT argument cannot carry; the proxy
	// then has to use the extended forms (229, EPRT) instead.
	ErrNotIPv4 = errors.New("nat: address is not IPv4")
)

// Field limits. Bounding the digit count before accumulating is what keeps an input such as
// "9999999999999999999" an error instead of a wrapped-around value.
const (
	maxByteDigits = 3 // 0..255
	maxPortDigits = 5 // 0..65535
	maxNetPrt     = 5 // EPRT net-prt: address family numbers are 16-bit (RFC 2428 refers to IANA's list)
)

// Parse227 extracts the data address from the text of a 227 reply: everything after "227 " or
// "227-", for example "Entering Passive Mode (192,168,1,2,195,80).".
//
// RFC 1123 section 4.1.2.6 warns that the wording around the numbers is not fixed, so Parse227
// scans for the first digit and reads six comma-separated decimal numbers 0..255 from there;
// parentheses are optional ("=10,0,0,1,4,1" is accepted). A sign before the first number, a
// seventh number, a number of more than three digits, a port of 0 and any byte outside printable
// ASCII are errors. The address 0.0.0.0 is returned as is; whether to replace it by the control
// connection's peer is the caller's decision.
func Parse227(text string) (netip.AddrPort, error) {
	if err := checkText(text); err != nil {
		return netip.AddrPort{}, fmt.Errorf("227: %w", err)
	}
	start := firstDigit(text)
	if start < 0 {
		return netip.AddrPort{}, fmt.Errorf("%w: 227: no address in reply text", ErrSyntax)
	}
	if err := checkNoSign(text, start); err != nil {
		return netip.AddrPort{}, fmt.Errorf("227: %w", err)
	}
	var b [6]byte
	n, _, err := readByteList(text, start, b[:])
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("227: %w", err)
	}
	if n != len(b) {
		return netip.AddrPort{}, fmt.Errorf("%w: 227: %d numbers, want 6", ErrSyntax, n)
	}
	return addrPort4(b, "227")
}

// Format227 returns the complete 227 reply line for ap, without CRLF:
// "227 Entering Passive Mode (a,b,c,d,p1,p2).". An IPv4-mapped IPv6 address is unmapped first;
// any other IPv6 address wraps ErrNotIPv4, and port 0 is an error because no client can connect
// to it.
func Format227(ap netip.AddrPort) (string, error) {
	s, err := formatCommaForm(ap)
	if err != nil {
		return "", fmt.Errorf("227: %w", err)
	}
	return "227 Entering Passive Mode (" + s + ").", nil
}

// Parse229 extracts the port from the text of a 229 reply (everything after "229 "), for example
// "Entering Extended Passive Mode (|||6446|)".
//
// RFC 2428 lets the server pick any delimiter in ASCII 33..126; it is the byte after '('. The
// net-prt and address fields must be empty, as RFC 2428 requires of EPSV replies, and the port
// must be 1..65535 followed by the delimiter and ')'. If the text holds more than one '(', the
// first that starts a valid form wins, so wording such as "(EPSV)" before the numbers is
// tolerated.
func Parse229(text string) (uint16, error) {
	if err := checkText(text); err != nil {
		return 0, fmt.Errorf("229: %w", err)
	}
	var firstErr error
	for i := 0; i < len(text); i++ {
		if text[i] != '(' {
			continue
		}
		port, err := parse229At(text, i+1)
		if err == nil {
			return port, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	if firstErr == nil {
		return 0, fmt.Errorf("%w: 229: no '(' in reply text", ErrSyntax)
	}
	return 0, fmt.Errorf("229: %w", firstErr)
}

// parse229At parses "<d><d><d><port><d>)" starting at text[i], just after a '('.
func parse229At(text string, i int) (uint16, error) {
	if i >= len(text) || !isDelim(text[i]) {
		return 0, fmt.Errorf("%w: missing or invalid delimiter after '('", ErrSyntax)
	}
	d := text[i]
	rest := text[i+1:]
	if len(rest) < 2 || rest[0] != d || rest[1] != d {
		return 0, fmt.Errorf("%w: net-prt and address fields must be empty", ErrSyntax)
	}
	rest = rest[2:]
	end := strings.IndexByte(rest, d)
	if end < 0 {
		return 0, fmt.Errorf("%w: missing delimiter after port", ErrSyntax)
	}
	port, err := parsePort(rest[:end])
	if err != nil {
		return 0, err
	}
	if end+1 >= len(rest) || rest[end+1] != ')' {
		return 0, fmt.Errorf("%w: missing ')' after port", ErrSyntax)
	}
	return port, nil
}

// Format229 returns the complete 229 reply line for port, without CRLF:
// "229 Entering Extended Passive Mode (|||port|)".
func Format229(port uint16) string {
	return "229 Entering Extended Passive Mode (|||" + strconv.Itoa(int(port)) + "|)"
}

// ParsePORT parses the argument of a PORT command, "h1,h2,h3,h4,p1,p2" (RFC 959). The whole
// argument must be that form: surrounding spaces are errors (the proxy has already split the
// command), each field has one to three decimal digits and is 0..255, and port 0 is refused.
func ParsePORT(arg string) (netip.AddrPort, error) {
	if err := checkArg(arg); err != nil {
		return netip.AddrPort{}, fmt.Errorf("PORT: %w", err)
	}
	var b [6]byte
	n, end, err := readByteList(arg, 0, b[:])
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("PORT: %w", err)
	}
	if end != len(arg) {
		return netip.AddrPort{}, fmt.Errorf("%w: PORT: unexpected %q after field %d", ErrSyntax, arg[end], n)
	}
	if n != len(b) {
		return netip.AddrPort{}, fmt.Errorf("%w: PORT: %d fields, want 6", ErrSyntax, n)
	}
	return addrPort4(b, "PORT")
}

// FormatPORT returns the PORT argument "h1,h2,h3,h4,p1,p2" for ap. IPv4-mapped addresses are
// unmapped; other IPv6 addresses wrap ErrNotIPv4; port 0 is an error.
func FormatPORT(ap netip.AddrPort) (string, error) {
	s, err := formatCommaForm(ap)
	if err != nil {
		return "", fmt.Errorf("PORT: %w", err)
	}
	return s, nil
}

// ParseEPRT parses the argument of an EPRT command (RFC 2428), such as "|1|132.235.1.2|6275|" or
// "|2|1080::8:800:200C:417A|5282|".
//
// The first byte is the delimiter, any of ASCII 33..126 as RFC 2428 allows; the argument must
// hold exactly four delimiters and end with the last. net-prt 1 means IPv4 and 2 IPv6, and must
// agree with the address; any other all-digit net-prt wraps ErrUnsupportedProtocol. Zones
// ("fe80::1%eth0") are refused, the port must be 1..65535, and an IPv4-mapped IPv6 address sent
// with net-prt 2 is returned unmapped so that callers compare it with the control peer's IP
// directly.
func ParseEPRT(arg string) (netip.AddrPort, error) {
	if err := checkArg(arg); err != nil {
		return netip.AddrPort{}, fmt.Errorf("EPRT: %w", err)
	}
	d := arg[0]
	if !isDelim(d) {
		return netip.AddrPort{}, fmt.Errorf("%w: EPRT: invalid delimiter %q", ErrSyntax, d)
	}
	var fields [3]string
	rest := arg[1:]
	for k := range fields {
		end := strings.IndexByte(rest, d)
		if end < 0 {
			return netip.AddrPort{}, fmt.Errorf("%w: EPRT: %d fields, want 3", ErrSyntax, k)
		}
		fields[k] = rest[:end]
		rest = rest[end+1:]
	}
	if rest != "" {
		return netip.AddrPort{}, fmt.Errorf("%w: EPRT: unexpected text after the last delimiter", ErrSyntax)
	}

	netPrt, err := parseNetPrt(fields[0])
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("EPRT: %w", err)
	}
	addr, err := netip.ParseAddr(fields[1])
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%w: EPRT: address: %v", ErrSyntax, err)
	}
	if addr.Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("%w: EPRT: address has a zone", ErrSyntax)
	}
	if (netPrt == 1) != addr.Is4() {
		return netip.AddrPort{}, fmt.Errorf("%w: EPRT: net-prt %d does not match address %s", ErrSyntax, netPrt, addr)
	}
	port, err := parsePort(fields[2])
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("EPRT: %w", err)
	}
	return netip.AddrPortFrom(addr.Unmap(), port), nil
}

// parseNetPrt returns 1 or 2 for an EPRT net-prt field.
func parseNetPrt(s string) (int, error) {
	if s == "" || !allDigits(s) {
		return 0, fmt.Errorf("%w: net-prt %q is not a number", ErrSyntax, s)
	}
	if len(s) > maxNetPrt {
		return 0, fmt.Errorf("%w: net-prt has more than %d digits", ErrSyntax, maxNetPrt)
	}
	n, _ := strconv.Atoi(s) // cannot fail: at most five digits
	if n != 1 && n != 2 {
		return 0, fmt.Errorf("%w: net-prt %d", ErrUnsupportedProtocol, n)
	}
	return n, nil
}

// FormatEPRT returns the EPRT argument for ap: "|1|a.b.c.d|port|" for IPv4 and IPv4-mapped
// addresses, "|2|v6|port|" otherwise. A zone is dropped, since it means nothing to the peer. ap
// must be valid; the caller is expected to format only addresses it obtained from a connection.
func FormatEPRT(ap netip.AddrPort) string {
	a := ap.Addr().Unmap().WithZone("")
	netPrt := "2"
	if a.Is4() {
		netPrt = "1"
	}
	return "|" + netPrt + "|" + a.String() + "|" + strconv.Itoa(int(ap.Port())) + "|"
}

// PassiveAddr returns the address to announce in a 227 or 229 reply: public if it is set, else
// local, the local address of the client's control connection. The result is unmapped so that
// Format227 accepts an IPv4 client reached through a dual-stack listener. An unspecified public
// address (0.0.0.0 or ::) counts as unset, because announcing it would send the client nowhere.
func PassiveAddr(public, local netip.Addr) netip.Addr {
	if public.IsValid() && !public.IsUnspecified() {
		return public.Unmap()
	}
	return local.Unmap()
}

// readByteList reads comma-separated decimal numbers 0..255 from s[i:] into dst and returns how
// many it read and the index just after the last one. It stops at the first byte after a number
// that is not a comma; a comma must be followed by a number, and more numbers than dst holds is
// an error, which is how extra fields are caught without reading an unbounded list.
func readByteList(s string, i int, dst []byte) (n, end int, err error) {
	for {
		v, j, err := readUint(s, i, maxByteDigits)
		if err != nil {
			return n, i, fmt.Errorf("field %d: %w", n+1, err)
		}
		if v > 255 {
			return n, i, fmt.Errorf("%w: field %d: %d out of range 0..255", ErrSyntax, n+1, v)
		}
		if n == len(dst) {
			return n, i, fmt.Errorf("%w: more than %d fields", ErrSyntax, len(dst))
		}
		dst[n] = byte(v)
		n++
		if j >= len(s) || s[j] != ',' {
			return n, j, nil
		}
		i = j + 1
	}
}

// readUint reads the decimal number that starts at s[i], of one to maxDigits digits, and
// returns it with the index after its last digit. Digits beyond maxDigits are an error rather
// than a separate field, so "1234" is never read as 123 followed by 4.
func readUint(s string, i, maxDigits int) (v, end int, err error) {
	j := i
	for j < len(s) && isDigit(s[j]) {
		if j-i == maxDigits {
			return 0, i, fmt.Errorf("%w: number of more than %d digits", ErrSyntax, maxDigits)
		}
		v = v*10 + int(s[j]-'0')
		j++
	}
	if j == i {
		if i >= len(s) {
			return 0, i, fmt.Errorf("%w: missing number at end of input", ErrSyntax)
		}
		return 0, i, fmt.Errorf("%w: expected a digit, found %q", ErrSyntax, s[i])
	}
	return v, j, nil
}

// parsePort parses a whole field as a TCP port 1..65535.
func parsePort(s string) (uint16, error) {
	v, end, err := readUint(s, 0, maxPortDigits)
	if err != nil {
		return 0, fmt.Errorf("port: %w", err)
	}
	if end != len(s) {
		return 0, fmt.Errorf("%w: port: unexpected %q", ErrSyntax, s[end])
	}
	if v < 1 || v > 65535 {
		return 0, fmt.Errorf("%w: port %d out of range 1..65535", ErrSyntax, v)
	}
	return uint16(v), nil
}

// addrPort4 builds the result of the six-number forms (227, PORT).
func addrPort4(b [6]byte, what string) (netip.AddrPort, error) {
	port := uint16(b[4])<<8 | uint16(b[5])
	if port == 0 {
		return netip.AddrPort{}, fmt.Errorf("%w: %s: port 0", ErrSyntax, what)
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[:4])), port), nil
}

// formatCommaForm returns "h1,h2,h3,h4,p1,p2", shared by 227 and PORT.
func formatCommaForm(ap netip.AddrPort) (string, error) {
	a := ap.Addr().Unmap()
	if !a.Is4() {
		return "", fmt.Errorf("%w: %s", ErrNotIPv4, ap.Addr())
	}
	if ap.Port() == 0 {
		return "", errors.New("nat: port 0 cannot be announced")
	}
	b := a.As4()
	p := ap.Port()
	buf := make([]byte, 0, len("255,255,255,255,255,255"))
	for _, v := range [6]byte{b[0], b[1], b[2], b[3], byte(p >> 8), byte(p)} {
		if len(buf) > 0 {
			buf = append(buf, ',')
		}
		buf = strconv.AppendUint(buf, uint64(v), 10)
	}
	return string(buf), nil
}

// checkText accepts reply text made of printable ASCII and spaces. Control bytes (NUL, CR, LF)
// and non-ASCII never belong in a reply the proxy rewrites, and refusing them here keeps a
// smuggled line break from reaching a client.
func checkText(s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty", ErrSyntax)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e {
			return fmt.Errorf("%w: byte %#02x at offset %d", ErrSyntax, c, i)
		}
	}
	return nil
}

// checkArg accepts a command argument of printable ASCII without spaces: none of the address
// forms contains one, so a space is either padding the caller forgot to trim or an attack.
func checkArg(s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty", ErrSyntax)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= 0x20 || c > 0x7e {
			return fmt.Errorf("%w: byte %#02x at offset %d", ErrSyntax, c, i)
		}
	}
	return nil
}

// checkNoSign refuses a sign directly before the first number of a reply, which scanning for the
// first digit would otherwise silently drop ("(-1,2,…)" is not "(1,2,…)").
func checkNoSign(s string, start int) error {
	if start > 0 && (s[start-1] == '-' || s[start-1] == '+') {
		return fmt.Errorf("%w: signed number", ErrSyntax)
	}
	return nil
}

func firstDigit(s string) int {
	for i := 0; i < len(s); i++ {
		if isDigit(s[i]) {
			return i
		}
	}
	return -1
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// isDelim reports whether c may delimit EPRT and 229 fields: RFC 2428 allows ASCII 33..126.
func isDelim(c byte) bool { return 33 <= c && c <= 126 }
