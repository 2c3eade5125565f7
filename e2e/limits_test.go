package e2e

import (
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
		for i := range 20 {
			attempts++
			// A new name each time: this is the address's budget, not one user's tarpit.
			last = c.Login(fmt.Sprintf("nobody%d", i), "wrong")
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
}

const tooManyLogins = "421 Too many login attempts, try again later"

// TestLoginLimitsCurl (SPEC §8, issue 15 item 2) with curl through the binary in front of
// vsftpd and the default-sized limits: quick successful sessions are never limited, six
// failures ban an address (new connections from it get the 421 instead of the greeting),
// and 200 failures on one user from 50 addresses only slow those failures: the owner's right
// password works at once, from anywhere.
func TestLoginLimitsCurl(t *testing.T) {
	s := peers.StartVsftpd(t, peers.Options{})
	_, data := randomData(t, s.Root, "f.bin", 256<<10)
	p := startProxy(t, limitsConfig(t, s.Addr, "logins_per_minute = 10\nlogin_burst = 5"))
	url := "ftp://" + p.addr + "/f.bin"
	tmp := t.TempDir()
	// download runs curl from src with the right password and checks the file by sha256.
	download := func(t *testing.T, src string, i int) {
		dst := filepath.Join(tmp, fmt.Sprintf("%s-%d", src, i))
		out, err := peers.Curl(ctx(t), "--interface", src, "--max-time", "30", "--user", peers.User+":"+peers.Password, "-o", dst, url)
		if err != nil {
			t.Fatalf("curl %d from %s: %v\n%s", i, src, err, out)
		}
		if fileSum(t, dst) != sum(data) {
			t.Fatalf("curl %d from %s: download differs", i, src)
		}
	}
	// fail runs curl from src with a wrong password and returns curl's output.
	fail := func(src, user string) string {
		out, err := peers.Curl(ctx(t), "--interface", src, "--max-time", "30", "-v", "--user", user+":wrong", url)
		if err == nil {
			t.Errorf("curl from %s with a wrong password succeeded", src)
		}
		return out
	}
	t.Run("50 quick successful sessions from one address", func(t *testing.T) {
		for i := range 50 {
			download(t, "127.0.0.1", i)
		}
	})
	t.Run("6 failures ban the address", func(t *testing.T) {
		const src = "127.0.2.1"
		var wg sync.WaitGroup
		outs := make([]string, 5)
		for i := range outs { // other names: the address's budget, not a user's tarpit
			wg.Go(func() { outs[i] = fail(src, fmt.Sprintf("guess%d", i)) })
		}
		wg.Wait()
		for i, out := range outs {
			if !strings.Contains(out, "< 530 Login incorrect.") {
				t.Fatalf("failure %d within the budget:\n%s", i+1, out)
			}
		}
		if out := fail(src, "guess5"); !strings.Contains(out, "< "+tooManyLogins) {
			t.Fatalf("6th failure: want the 421\n%s", out)
		}
		// Banned: even the right password gets the 421 in place of the greeting.
		out, err := peers.Curl(ctx(t), "--interface", src, "--max-time", "30", "-v", "--user", peers.User+":"+peers.Password, url)
		if err == nil || !strings.Contains(out, "< "+tooManyLogins) || strings.Contains(out, "< 220") {
			t.Fatalf("banned address: %v\n%s", err, out)
		}
		if !strings.Contains(p.logs.String(), "address banned after failed logins") {
			t.Fatal("the ban was not logged")
		}
		download(t, "127.0.2.2", 0) // another address is not banned
	})
	t.Run("200 failures on one user from 50 addresses", func(t *testing.T) {
		var wg sync.WaitGroup
		var failed, other atomic.Int64
		// Two clients per address, each failing twice in a row on its own connection. They
		// start 20 ms apart: vsftpd listens with a backlog of 32, and a burst of 100 connects
		// would make some wait for SYN retransmits past the proxy's backend_timeout.
		for i := range 100 {
			time.Sleep(20 * time.Millisecond)
			wg.Go(func() {
				c, err := dialFrom(p.addr, fmt.Sprintf("127.0.0.%d", 2+i%50))
				if err != nil {
					t.Errorf("address %d: %v", i, err)
					return
				}
				defer c.Quit()
				for j := range 2 {
					var te *textproto.Error
					if err := c.Login(peers.User, "wrong"); errors.As(err, &te) && te.Code == 530 {
						failed.Add(1)
					} else {
						t.Errorf("address %d, failure %d: %v", i, j+1, err)
						other.Add(1)
						return
					}
				}
			})
		}
		wg.Wait()
		if failed.Load() != 200 {
			t.Fatalf("%d of 200 wrong passwords answered 530 (%d otherwise)", failed.Load(), other.Load())
		}
		// The owner gets in at once, from a fresh address and from an attacking one, well
		// within the tarpit's 4 s that each failure now waits.
		for i, src := range []string{"127.0.0.100", "127.0.0.2"} {
			start := time.Now()
			download(t, src, 100+i)
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("the right password from %s took %v", src, d)
			}
		}
		// The tarpit held the failures: the later ones waited its longest delay for their 530.
		if !strings.Contains(p.logs.String(), "tarpit_s=4\n") {
			t.Fatal("no failure was held for the tarpit's 4 s")
		}
	})
}

// TestPortToAdminRefused (issue 13 item 7): with the admin listener running, PORT and EPRT
// (also as an IPv4-mapped address) to its port are refused with 501, so a following LIST has
// no target and nothing is dialled; the admin server keeps serving.
func TestPortToAdminRefused(t *testing.T) {
	s := peers.StartVsftpd(t, peers.Options{})
	admin := freeAddr(t)
	p := startProxy(t, limitsConfig(t, s.Addr, "logins_per_minute = 0")+fmt.Sprintf("\n[admin]\naddress = %q\n", admin))
	_, ps, _ := net.SplitHostPort(admin)
	port, _ := strconv.Atoi(ps)
	c, err := textproto.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cmd := func(line string, want int) string {
		t.Helper()
		if err := c.PrintfLine("%s", line); err != nil {
			t.Fatal(err)
		}
		_, msg, err := c.ReadResponse(want)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		return msg
	}
	if _, _, err := c.ReadResponse(220); err != nil {
		t.Fatal(err)
	}
	cmd("USER "+peers.User, 331)
	cmd("PASS "+peers.Password, 230)
	for _, line := range []string{
		fmt.Sprintf("PORT 127,0,0,1,%d,%d", port>>8, port&0xff),
		fmt.Sprintf("EPRT |2|::ffff:127.0.0.1|%d|", port),
		fmt.Sprintf("EPRT |1|127.0.0.1|%d|", port),
	} {
		if msg := cmd(line, 501); !strings.Contains(msg, "refused") {
			t.Fatalf("%s: %q", line, msg)
		}
		cmd("LIST", 425)
	}
	cmd("QUIT", 221)
	if code := healthz(t, admin, ""); code != 200 {
		t.Fatalf("admin /healthz: %d", code)
	}
}
