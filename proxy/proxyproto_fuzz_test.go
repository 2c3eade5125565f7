package proxy

import (
	"bufio"
	"log/slog"
	"net"
	"net/netip"
	"testing"
)

// FuzzProxyHeader feeds arbitrary bytes to the PROXY-header path of a session from a trusted
// peer: it never panics, and an accepted header always yields a valid client address.
func FuzzProxyHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 198.51.100.7 203.0.113.10 40000 21\r\n"))                                      // v1
	f.Add([]byte("PROXY TCP6 2001:db8::1 2001:db8::2 40000 21\r\nUSER x\r\n"))                              // v1 IPv6, then a command
	f.Add([]byte("PROXY UNKNOWN\r\n"))                                                                      // v1 unknown
	f.Add([]byte("PROXY TCP4 999.1.1.1 1.1.1.1 1 2\r\n"))                                                   // bad address
	f.Add([]byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\x7f\x00\x00\x01\x7f\x00\x00\x01\x00\x01\x00\x02")) // v2 TCP4
	f.Add([]byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\xff\xff"))                                                 // v2 oversized length
	f.Fuzz(func(t *testing.T, in []byte) {
		c1, c2 := net.Pipe()
		defer c1.Close()
		go func() { c2.Write(in); c2.Close() }()
		log := slog.New(slog.DiscardHandler)
		s := &session{
			srv:        &Server{log: log},
			log:        log,
			raw:        c1,
			cr:         bufio.NewReaderSize(c1, MaxLine),
			lc:         &ListenerConfig{ProxyProtocol: true, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}},
			clientAddr: netip.MustParseAddrPort("10.0.0.1:1000"),
		}
		if err := s.readProxyHeader(); err == nil && (!s.clientAddr.IsValid() || s.clientAddr.Port() == 0 || s.clientAddr.Addr().IsUnspecified()) {
			t.Fatalf("accepted header gave client %v", s.clientAddr)
		}
	})
}
