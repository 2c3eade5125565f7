package proxy

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ftpsproxy/ftpsproxy/internal/sockopt"
)

// keepAliveOpts reads SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL and TCP_KEEPCNT.
func keepAliveOpts(t *testing.T, sc syscall.Conn) [4]int {
	t.Helper()
	return [4]int{
		sockopt.Must(t, sc, unix.SOL_SOCKET, unix.SO_KEEPALIVE),
		sockopt.Must(t, sc, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE),
		sockopt.Must(t, sc, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL),
		sockopt.Must(t, sc, unix.IPPROTO_TCP, unix.TCP_KEEPCNT),
	}
}

// acceptOne dials ln with d and returns the accepted connection.
func acceptOne(t *testing.T, ln net.Listener, d *net.Dialer) *net.TCPConn {
	t.Helper()
	c, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	a, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a.(*net.TCPConn)
}

// TestControlKeepAlive: a control connection accepted on a listener the Server binds has the
// keep-alive Go gives an accepted connection by default (on, 15 s idle, 15 s interval, 9
// probes), from a TCP client and from a Multipath TCP one alike, and so does one accepted
// on a plain Go listener (the reference). The listening socket carries the settings itself
// (Linux copies them to each accepted connection), so no connection costs setsockopt calls
// for them.
func TestControlKeepAlive(t *testing.T) {
	want := [4]int{1, ctrlKeepAliveIdle, ctrlKeepAliveInterval, ctrlKeepAliveCount}

	var plain net.ListenConfig
	ref, err := plain.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	if got := keepAliveOpts(t, acceptOne(t, ref, &net.Dialer{})); got != want {
		t.Fatalf("Go's default on an accepted connection is %v, not %v: the constants no longer match it", got, want)
	}

	s := &Server{}
	ln, err := s.bind(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if got := keepAliveOpts(t, ln.(*net.TCPListener)); got != want {
		t.Errorf("listening socket keep-alive %v; want %v", got, want)
	}
	mp := &net.Dialer{}
	mp.SetMultipathTCP(true)
	for name, d := range map[string]*net.Dialer{"tcp": {}, "mptcp": mp} {
		c := acceptOne(t, ln, d)
		if got := keepAliveOpts(t, c); got != want {
			t.Errorf("%s client: accepted control connection keep-alive %v; want %v", name, got, want)
		}
		// Still a working connection.
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("220 x\r\n")); err != nil {
			t.Fatal(err)
		}
	}
}
