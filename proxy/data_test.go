package proxy

import (
	"context"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/internal/sockopt"
)

// TestListenDataPlainTCP: the listener for an active-mode backend's data connection is plain
// TCP even where the kernel offers Multipath TCP (Go's listeners default to it), and the
// connection it accepts from the backend's address has no keep-alive.
func TestListenDataPlainTCP(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	lo := netip.MustParseAddr("127.0.0.1")
	ln, err := listenData(ctx, netip.AddrPortFrom(lo, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if p := sockopt.Must(t, ln, syscall.SOL_SOCKET, syscall.SO_PROTOCOL); p != syscall.IPPROTO_TCP {
		t.Errorf("backend data listener protocol %d; want IPPROTO_TCP (%d)", p, syscall.IPPROTO_TCP)
	}
	d, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	c, err := acceptBackend(ctx, ln, lo)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tc := c.(*net.TCPConn)
	if p := sockopt.Must(t, tc, syscall.SOL_SOCKET, syscall.SO_PROTOCOL); p != syscall.IPPROTO_TCP {
		t.Errorf("backend data connection protocol %d; want IPPROTO_TCP (%d)", p, syscall.IPPROTO_TCP)
	}
	if ka := sockopt.Must(t, tc, syscall.SOL_SOCKET, syscall.SO_KEEPALIVE); ka != 0 {
		t.Error("keep-alive is on on a backend data connection")
	}
	if _, err := d.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	if _, err := c.Read(buf); err != nil || buf[0] != 'x' {
		t.Fatalf("read %q, %v", buf, err)
	}
}
