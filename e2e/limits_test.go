package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/internal/peers"
	"github.com/jlaffaye/ftp"
)

func limitsConfig(t *testing.T, backend string, limits string) string {
	return fmt.Sprintf(`
[[listener]]
address = %q

[data]
port_range = %q

[[pool]]
name = "farm"
health_interval = "0s"

[[pool.backend]]
address = %q

[limits]
%s
`, freeAddr(t), freeRange(t, 40), backend, limits)
}

func dialFrom(addr, src string) (*ftp.ServerConn, error) {
	d := ftp.DialWithDialer(netDialer(src))
	return ftp.Dial(addr, d, ftp.DialWithTimeout(10*time.Second))
}

// TestLimitsRealBackend: per-IP and global session caps, and login rate limits per address
// and per user, with a Go client and vsftpd.
func TestLimitsRealBackend(t *testing.T) {
	s := peers.StartVsftpd(t, peers.Options{})
	t.Run("per ip", func(t *testing.T) {
		p := startProxy(t, limitsConfig(t, s.Addr, "max_sessions_per_ip = 3\nlogins_per_minute = 0"))
		var open []*ftp.ServerConn
		defer func() {
			for _, c := range open {
				c.Quit()
			}
		}()
		for range 3 {
			c, err := dialFrom(p.addr, "127.0.0.1")
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Login(peers.User, peers.Password); err != nil {
				t.Fatal(err)
			}
			open = append(open, c)
		}
		if _, err := dialFrom(p.addr, "127.0.0.1"); !is421(err, "Too many connections, try again later") {
			t.Fatalf("4th session from one address: %v", err)
		}
		c, err := dialFrom(p.addr, "127.0.0.9")
		if err != nil {
			t.Fatalf("another address refused: %v", err)
		}
		c.Quit()
	})
	t.Run("global", func(t *testing.T) {
		p := startProxy(t, limitsConfig(t, s.Addr, "max_sessions = 2\nmax_sessions_per_ip = 2\nlogins_per_minute = 0"))
		// startProxy's readiness probe is a session too, until the proxy sees it close.
		time.Sleep(300 * time.Millisecond)
		a, err := dialFrom(p.addr, "127.0.0.2")
		if err != nil {
			t.Fatal(err)
		}
		defer a.Quit()
		b, err := dialFrom(p.addr, "127.0.0.3")
		if err != nil {
			t.Fatal(err)
		}
		defer b.Quit()
		if _, err := dialFrom(p.addr, "127.0.0.4"); !is421(err, "Too many connections, try again later") {
			t.Fatalf("3rd session overall: %v", err)
		}
	})
	t.Run("login rate per address", func(t *testing.T) {
		p := startProxy(t, limitsConfig(t, s.Addr, "logins_per_minute = 2\nlogin_burst = 5"))
		c, err := dialFrom(p.addr, "127.0.0.5")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Quit()
		var last error
		attempts := 0
		for range 20 {
			attempts++
			last = c.Login(peers.User, "wrong")
			if is421(last, "Too many login attempts, try again later") {
				break
			}
		}
		if !is421(last, "Too many login attempts, try again later") || attempts != 6 {
			t.Fatalf("after %d wrong passwords: %v (want the 421 at attempt 6)", attempts, last)
		}
		// Another address logs in fine meanwhile.
		d, err := dialFrom(p.addr, "127.0.0.6")
		if err != nil {
			t.Fatal(err)
		}
		defer d.Quit()
		if err := d.Login(peers.User, peers.Password); err != nil {
			t.Fatalf("second address: %v", err)
		}
	})
	t.Run("login rate per user", func(t *testing.T) {
		p := startProxy(t, limitsConfig(t, s.Addr, "logins_per_minute = 2\nlogin_burst = 3"))
		// The same user attacked from many addresses: each address stays under its own
		// burst (2 tries), but the user's bucket (twice the burst: 6) runs out.
		limited := 0
		for i := range 8 {
			c, err := dialFrom(p.addr, fmt.Sprintf("127.0.1.%d", 10+i))
			if err != nil {
				t.Fatal(err)
			}
			for range 2 {
				if err := c.Login("attacked", "wrong"); is421(err, "Too many login attempts, try again later") {
					limited++
					break
				}
			}
			c.Quit()
		}
		if limited == 0 {
			t.Fatal("16 attempts on one user from 8 addresses were never slowed")
		}
	})
}
