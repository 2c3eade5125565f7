package e2e

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/internal/peers"
	"github.com/jlaffaye/ftp"
)

// TestCLI checks -version, -check and the exit codes of SPEC §2.
func TestCLI(t *testing.T) {
	run := func(args ...string) (string, int) {
		out, err := exec.Command(binary, args...).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	if out, code := run("-version"); code != 0 || !strings.HasPrefix(out, "ftpsproxy ") {
		t.Fatalf("-version: %d %q", code, out)
	}
	if out, code := run("-config", "../config.example.toml", "-check"); code != 0 || !strings.Contains(out, "OK") {
		t.Fatalf("-check on the example: %d %q", code, out)
	}
	bad := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(bad, []byte("[[listener]]\naddress = \"127.0.0.1:21\"\n[[pool]]\nname = \"p\"\npolicy = \"rr\"\n[[pool.backend]]\nadress = \"x:21\"\n"), 0o644)
	out, code := run("-config", bad, "-check")
	if code != 1 || !strings.Contains(out, `pool[0].policy: unknown value "rr"; must be one of round_robin, least_conn, random, ip_hash, user_hash`) ||
		!strings.Contains(out, "pool[0].backend[0].adress") {
		t.Fatalf("-check on a bad config: %d %q", code, out)
	}
	if _, code := run("-config", bad); code != 1 {
		t.Fatalf("running a bad config exits %d, want 1", code)
	}
	if _, code := run("-nosuchflag"); code != 2 {
		t.Fatalf("bad flag exits %d, want 2", code)
	}
	if _, code := run(); code != 2 {
		t.Fatalf("no -config exits %d, want 2", code)
	}
}

// whichBackend logs in through addr and reads the marker file naming the backend.
func whichBackend(t *testing.T, c *ftp.ServerConn) string {
	t.Helper()
	r, err := c.Retr("marker")
	if err != nil {
		t.Fatalf("RETR marker: %v", err)
	}
	b, _ := io.ReadAll(r)
	if err := r.Close(); err != nil {
		t.Fatalf("RETR marker reply: %v", err)
	}
	return string(b)
}

func login(t *testing.T, addr string) *ftp.ServerConn {
	t.Helper()
	c, err := ftp.Dial(addr, ftp.DialWithTimeout(20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login(peers.User, peers.Password); err != nil {
		t.Fatal(err)
	}
	return c
}

// startDownload starts RETR name on c and reads its first MiB, so the transfer is running
// (and counted) while the test changes something; the caller reads the rest from r.
func startDownload(t *testing.T, c *ftp.ServerConn, name string) (r *ftp.Response, head []byte) {
	t.Helper()
	r, err := c.Retr(name)
	if err != nil {
		t.Fatal(err)
	}
	head = make([]byte, 1<<20)
	if _, err := io.ReadFull(r, head); err != nil {
		t.Fatal(err)
	}
	return r, head
}

func reloadConfig(listen, listen2, portRange, backend string) string {
	s := fmt.Sprintf(`
[[listener]]
address = %q
pool = "farm"
`, listen)
	if listen2 != "" {
		s += fmt.Sprintf("\n[[listener]]\naddress = %q\npool = \"farm\"\n", listen2)
	}
	return s + fmt.Sprintf(`
[data]
port_range = %q

[[pool]]
name = "farm"
policy = "round_robin"
health_interval = "0s"

[[pool.backend]]
address = %q

[limits]
max_sessions_per_ip = 500
logins_per_minute = 0
attempts_per_minute = 0
shutdown_grace = "20s"
`, portRange, backend)
}

// TestReloadAndShutdown: with 50 sessions running, SIGHUP moves new sessions to another
// backend and adds a listener while the running sessions keep theirs; a broken config is
// refused and service continues; SIGTERM drains (idle sessions get the 421) and exits 0.
func TestReloadAndShutdown(t *testing.T) {
	a := peers.StartVsftpd(t, peers.Options{PasvPorts: peers.FreePortRange(t, 120)})
	b := peers.StartPureFTPd(t, peers.Options{})
	a.WriteFile(t, "marker", []byte("a"))
	b.WriteFile(t, "marker", []byte("b"))
	listen, portRange := freeAddr(t), freeRange(t, 100)
	p := startProxy(t, reloadConfig(listen, "", portRange, a.Addr))

	var sessions []*ftp.ServerConn
	for range 50 {
		c := login(t, p.addr)
		sessions = append(sessions, c)
	}
	if w := whichBackend(t, sessions[0]); w != "a" {
		t.Fatalf("before reload: %q", w)
	}
	listen2 := freeAddr(t)
	os.WriteFile(p.cfg, []byte(reloadConfig(listen, listen2, portRange, b.Addr)), 0o644)
	p.signal(syscall.SIGHUP)
	waitLog(t, p, "config reloaded")

	// Running sessions keep their backend and keep working.
	var wg sync.WaitGroup
	errs := make(chan string, len(sessions))
	for _, c := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if w := whichBackend(t, c); w != "a" {
				errs <- w
			}
		}()
	}
	wg.Wait()
	close(errs)
	for w := range errs {
		t.Fatalf("a running session moved to %q", w)
	}
	// New sessions follow the new config, on the old and the added listener.
	for _, addr := range []string{listen, listen2} {
		c := login(t, addr)
		if w := whichBackend(t, c); w != "b" {
			t.Fatalf("new session on %s went to %q", addr, w)
		}
		c.Quit()
	}

	// A broken config is refused; the old one stays in force.
	os.WriteFile(p.cfg, []byte("[[listener]]\naddress = 17\n"), 0o644)
	p.signal(syscall.SIGHUP)
	waitLog(t, p, "reload refused")
	c := login(t, listen2)
	if w := whichBackend(t, c); w != "b" {
		t.Fatalf("after a refused reload: %q", w)
	}

	// SIGTERM: idle sessions get the shutdown 421; the process exits 0.
	p.signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
	if p.code != 0 {
		t.Fatalf("exit code %d after SIGTERM", p.code)
	}
	if err := sessions[0].NoOp(); err == nil || !strings.Contains(err.Error(), "Server shutting down, closing control connection") || !strings.HasPrefix(err.Error(), "421") {
		t.Fatalf("idle session after shutdown: %v", err)
	}
}

// waitLog waits until the proxy's log contains s.
func waitLog(t *testing.T, p *proxyProc, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.logs.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("log never said %q:\n%s", s, tail(p.logs.String(), 50))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
