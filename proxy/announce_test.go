package proxy_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/nat"
	"github.com/ftpsproxy/ftpsproxy/proxy"
	"github.com/jlaffaye/ftp"
)

const (
	announceOffset = 7
	proxyName      = "ftp.proxy.test"
)

// natDialer stands for a port map in front of the proxy (Docker -p, a NodePort): the
// client dials what the proxy announced, and the map forwards announced ports to
// bound = announced - offset on 127.0.0.1. It refuses any address but the expected one,
// so the test fails when a 227 carries the wrong address.
// The client's control connection reports a public remote address: the client checks a
// 227 against its control peer and would replace an address that differs in kind from a
// loopback one.
func natDialer(t *testing.T, src string, control string, announced netip.Addr) func(network, address string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	return func(network, address string) (net.Conn, error) {
		if strings.HasPrefix(address, proxyName+":") {
			c, err := d.Dial(network, control)
			if err != nil {
				return nil, err
			}
			return publicPeer{c}, nil
		}
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return nil, err
		}
		if ap.Addr() != announced {
			t.Errorf("data connection to %s, want address %s", ap, announced)
			return nil, fmt.Errorf("unexpected address %s", ap)
		}
		return d.Dial(network, net.JoinHostPort("127.0.0.1", strconv.Itoa(int(ap.Port())-announceOffset)))
	}
}

// publicPeer is a control connection that reports a public remote address.
type publicPeer struct{ net.Conn }

func (publicPeer) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(198, 51, 100, 250), Port: 21}
}

func TestPassiveAnnounce(t *testing.T) {
	be := startBackend(t, nil)
	var rng nat.PortRange
	p := startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)}, func(c *proxy.Config, _ *balancer.PoolConfig) {
		c.Data.PublicAddress = netip.MustParseAddr("203.0.113.10")
		c.Data.AddressOverrides = []nat.AddressOverride{
			{Net: netip.MustParsePrefix("127.0.0.2/32"), Address: netip.MustParseAddr("198.51.100.77")},
			{Net: netip.MustParsePrefix("127.0.0.0/8"), Address: netip.MustParseAddr("198.51.100.1")},
		}
		c.Data.AnnouncePortOffset = announceOffset
		rng = c.Data.PortRange
	})
	cases := []struct {
		src       string
		announced string
	}{
		{"127.0.0.2", "198.51.100.77"}, // first match wins (127.0.0.0/8 matches too)
		{"127.0.0.3", "198.51.100.1"},
	}
	data := bytes.Repeat([]byte("announce-"), 50000)
	for _, tc := range cases {
		for _, epsv := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s epsv=%v", tc.src, epsv), func(t *testing.T) {
				dial := natDialer(t, tc.src, p.addr, netip.MustParseAddr(tc.announced))
				if epsv {
					// 229 has no address: the client reuses its control peer's (publicPeer),
					// and overrides must not change that.
					dial = natDialer(t, tc.src, p.addr, netip.MustParseAddr("198.51.100.250"))
				}
				_, port, _ := net.SplitHostPort(p.addr)
				c, err := ftp.Dial(proxyName+":"+port, ftp.DialWithTimeout(10*time.Second), ftp.DialWithDialFunc(dial),
					ftp.DialWithDisabledEPSV(!epsv), ftp.DialWithTrustPasvIP(true))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Quit()
				if err := c.Login(demoUser, demoPass); err != nil {
					t.Fatal(err)
				}
				name := "f-" + strings.ReplaceAll(tc.src, ".", "-") + strconv.FormatBool(epsv)
				if err := c.Stor(name, bytes.NewReader(data)); err != nil {
					t.Fatal(err)
				}
				r, err := c.Retr(name)
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(r)
				r.Close()
				if err != nil || sha(got) != sha(data) {
					t.Fatalf("download: %v, sha256 %s want %s", err, sha(got), sha(data))
				}
			})
		}
	}
	t.Run("raw replies", func(t *testing.T) {
		rc := dialRaw(t, p.addr) // from 127.0.0.1: second override
		rc.login()
		ap, err := nat.Parse227(strings.TrimPrefix(rc.cmd("PASV", 227), "227 "))
		if err != nil {
			t.Fatal(err)
		}
		if ap.Addr() != netip.MustParseAddr("198.51.100.1") || !rng.Contains(ap.Port()-announceOffset) {
			t.Fatalf("227 announced %s; want 198.51.100.1 and a port of %v plus %d", ap, rng, announceOffset)
		}
		port, err := nat.Parse229(strings.TrimPrefix(rc.cmd("EPSV", 229), "229 "))
		if err != nil || !rng.Contains(port-announceOffset) {
			t.Fatalf("229 announced port %d (%v); want a port of %v plus %d", port, err, rng, announceOffset)
		}
	})
}
