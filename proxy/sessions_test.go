package proxy_test

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"

	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/proxy"
)

// sessionByUser waits for the one session of user in p's list and returns it.
func sessionByUser(t *testing.T, p *testProxy, user string) proxy.SessionInfo {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, s := range p.srv.SessionList() {
			if s.User == user {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no session of %q in %+v", user, p.srv.SessionList())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCloseSessionBeforeLogin: a session waiting for PASS is closed with the administrator's
// 421, as the only line, and the snapshot never showed the password.
func TestCloseSessionBeforeLogin(t *testing.T) {
	be := startBackend(t, nil)
	p := startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)})
	rc := dialRaw(t, p.addr)
	rc.cmd("USER someone", 331)
	s := sessionByUser(t, p, "someone")
	if s.Backend != "" || s.Command != "USER someone" || s.Since.IsZero() {
		t.Fatalf("snapshot before login: %+v", s)
	}
	if p.srv.CloseSession("nosuch") {
		t.Fatal("CloseSession of an unknown id reported true")
	}
	if !p.srv.CloseSession(s.ID) {
		t.Fatal("CloseSession reported false for a running session")
	}
	expectFinal(t, rc, "421 Session closed by administrator")
}

// TestCloseSessionDuringTransfer: closing a session in a download cuts the transfer; the
// client gets the administrator's 421 and the backend slot is released.
func TestCloseSessionDuringTransfer(t *testing.T) {
	be := startBackend(t, nil)
	name, _ := bigFile(t, be.root, 8<<20)
	p := startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)})
	c, err := ftp.Dial(p.addr, ftp.DialWithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Quit()
	if err := c.Login(demoUser, demoPass); err != nil {
		t.Fatal(err)
	}
	r, err := c.Retr(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(r, make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	s := sessionByUser(t, p, demoUser)
	if s.Command != "RETR "+name || s.Pool != "default" || s.Backend != be.addr {
		t.Fatalf("snapshot in a transfer: %+v", s)
	}
	p.srv.CloseSession(s.ID)
	io.Copy(io.Discard, r) // the data connection is cut
	err = r.Close()
	if err == nil || !strings.Contains(err.Error(), "Session closed by administrator") {
		t.Fatalf("final reply of the cut transfer: %v", err)
	}
	pool := p.srv.Config().Pools[0]
	deadline := time.Now().Add(5 * time.Second)
	for pool.Backends[0].Active() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the backend slot was not released")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestQuiet: a session that just sent a command keeps the server from being quiet; one that
// has been silent for the period does not.
func TestQuiet(t *testing.T) {
	be := startBackend(t, nil)
	p := startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)})
	if !p.srv.Quiet(time.Hour) {
		t.Fatal("a server without sessions is not quiet")
	}
	rc := dialRaw(t, p.addr)
	rc.cmd("USER someone", 331)
	if p.srv.Quiet(time.Hour) {
		t.Fatal("quiet right after a command")
	}
	time.Sleep(300 * time.Millisecond)
	if !p.srv.Quiet(200 * time.Millisecond) {
		t.Fatal("not quiet after 300 ms without a command")
	}
}
