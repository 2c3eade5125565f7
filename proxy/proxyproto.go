package proxy

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
)

// headerTimeout bounds the wait for a PROXY header. FTP is server-speaks-first, so the
// header is required (never optional) and the 220 follows it at once.
const headerTimeout = 5 * time.Second

var (
	errUntrustedProxy = errors.New("PROXY header required but peer is not a trusted proxy")
	errNoHeader       = errors.New("PROXY header missing or malformed")
)

// trusted reports whether peer may send PROXY headers on this listener.
func (l *ListenerConfig) trusted(peer netip.Addr) bool {
	for _, p := range l.TrustedProxies {
		if p.Contains(peer) {
			return true
		}
	}
	return false
}

// readProxyHeader reads the PROXY v1/v2 header a trusted proxy must send first and makes its
// source the session's client address: the one limits, logs, the PORT check and the data-peer
// check use. A peer outside trusted_proxies, a missing, malformed or slow header: the
// connection is closed without a reply.
func (s *session) readProxyHeader() error {
	if !s.lc.trusted(s.clientAddr.Addr()) {
		return fmt.Errorf("%w: %s", errUntrustedProxy, s.clientAddr)
	}
	h, err := proxyproto.ReadHeaderTimeout(s.raw, s.cr, headerTimeout)
	if err != nil {
		return fmt.Errorf("%w: %v", errNoHeader, err)
	}
	if _, err := h.TLVs(); err != nil { // go-proxyproto's Read leaves the TLV list unchecked
		return fmt.Errorf("%w: %v", errNoHeader, err)
	}
	if h.Version == 2 && h.Command == proxyproto.LOCAL {
		// The proxy's own connection, a health check (HAProxy "check send-proxy-v2"): the
		// PROXY spec says to use the real endpoints, which the session already has.
		s.healthCheck = true
		s.log.Debug("PROXY v2 LOCAL: health check")
		return nil
	}
	src, dst, ok := h.TCPAddrs()
	if !ok || h.Command != proxyproto.PROXY {
		return fmt.Errorf("%w: not a TCP PROXY header", errNoHeader)
	}
	client := addrPortOf(src)
	if a := client.Addr(); !a.IsValid() || a.IsUnspecified() || a.IsMulticast() || client.Port() == 0 {
		return fmt.Errorf("%w: source %s is not a client address", errNoHeader, client)
	}
	peer := s.clientAddr // the trusted proxy that sent the header
	s.clientAddr = client
	s.header = &headerAddrs{via: peer, dst: addrPortOf(dst)}
	return nil
}

// headerAddrs is what an accepted PROXY header said besides the client's address: the
// address the client connected to, and the trusted proxy that sent it. Few sessions have one,
// so it is not part of every session.
type headerAddrs struct {
	via netip.AddrPort // the proxy that sent the header
	dst netip.AddrPort // what the client connected to
}

// bufferedConn reads through the session's bufio.Reader first, so bytes already buffered
// (after a PROXY header, before an implicit TLS handshake) are not lost. Once that reader is
// drained it is dropped and reads go to the connection: a TLS session would otherwise keep
// the pre-TLS buffer for its whole life.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) {
	if c.r != nil {
		if c.r.Buffered() > 0 {
			return c.r.Read(p)
		}
		c.r = nil
	}
	return c.Conn.Read(p)
}

// proxyHeader builds the PROXY header (version v) a backend asked for on its control
// connection: the real client address and the address it connected to; v2 also carries the
// HOST/SNI name (authority) and, when the client used TLS, its version.
func (s *session) proxyHeader(v byte) (*proxyproto.Header, error) {
	dst := s.localAddr
	if h := s.header; h != nil && h.dst.IsValid() {
		dst = h.dst
	}
	h := proxyproto.HeaderProxyFromAddrs(v, net.TCPAddrFromAddrPort(s.clientAddr), net.TCPAddrFromAddrPort(dst))
	if v == 2 {
		var tlvs []proxyproto.TLV
		host := s.host
		if host == "" {
			host = s.sni
		}
		if host != "" {
			tlvs = append(tlvs, proxyproto.TLV{Type: proxyproto.PP2_TYPE_AUTHORITY, Value: []byte(host)})
		}
		if tc, ok := s.client.(*tls.Conn); ok {
			ssl := tlvparse.PP2SSL{Client: tlvparse.PP2_BITFIELD_CLIENT_SSL, Verify: 1, TLV: []proxyproto.TLV{
				{Type: proxyproto.PP2_SUBTYPE_SSL_VERSION, Value: []byte(tls.VersionName(tc.ConnectionState().Version))},
			}}
			t, err := ssl.Marshal()
			if err == nil {
				tlvs = append(tlvs, t)
			}
		}
		if err := h.SetTLVs(tlvs); err != nil {
			return nil, fmt.Errorf("PROXY v2 TLVs: %w", err)
		}
	}
	return h, nil
}
