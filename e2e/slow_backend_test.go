package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/internal/peers"
)

// freeze stops a server's master process (SIGSTOP) until the returned func continues it: the
// kernel still completes TCP handshakes into its listen backlog, but nothing greets.
func freeze(t *testing.T, s *peers.Server) (thaw func()) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.Dir, "proftpd.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	thaw = func() { once.Do(func() { syscall.Kill(pid, syscall.SIGCONT) }) }
	t.Cleanup(thaw)
	return thaw
}

// curlGet downloads name from addr with curl into dir and checks it by sha256.
func curlGet(t *testing.T, addr, name, dir, want string) error {
	dst := filepath.Join(dir, "got")
	out, err := peers.Curl(ctx(t), "--user", peers.User+":"+peers.Password, "--max-time", "90",
		"-o", dst, "ftp://"+addr+"/"+name)
	if err != nil {
		return fmt.Errorf("curl via %s: %v\n%s", addr, err, out)
	}
	if got := fileSum(t, dst); got != want {
		return fmt.Errorf("curl via %s: sha256 %s, want %s", addr, got, want)
	}
	return nil
}

// TestFrozenBackendAsDirect: the only backend of a pool, a real ProFTPD, has its master
// stopped for 15 s while 10 curl clients connect through the proxy (and 10 directly, the
// control). The health checks mark it down meanwhile; panic mode still sends new sessions to
// it, a slow greeting is waited for (greeting_timeout 30 s), so all 20 log in and download
// the file intact once it runs again. Then the server is really gone: a new session gets the
// 421 well within backend_timeout.
func TestFrozenBackendAsDirect(t *testing.T) {
	s := peers.StartProFTPD(t, peers.Options{PasvPorts: peers.FreePortRange(t, 60)})
	tmp := t.TempDir()
	src, data := randomData(t, tmp, "payload", 512<<10)
	b, _ := os.ReadFile(src)
	s.WriteFile(t, "payload.bin", b)
	want := sum(data)
	cfg := fmt.Sprintf(`
[[listener]]
address = %q

[data]
port_range = %q

[[pool]]
name = "one"
health_interval = "1s"
health_timeout = "1s"

[[pool.backend]]
address = %q

[limits]
max_sessions_per_ip = 500
logins_per_minute = 0
`, freeAddr(t), freeRange(t, 40), s.Addr)
	p := startProxy(t, cfg)
	if err := curlGet(t, p.addr, "payload.bin", t.TempDir(), want); err != nil {
		t.Fatal(err)
	}

	thaw := freeze(t, s)
	frozen := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 10 {
		for _, addr := range []string{p.addr, s.Addr} {
			dir := t.TempDir()
			wg.Go(func() { errs <- curlGet(t, addr, "payload.bin", dir, want) })
		}
		if i == 4 {
			waitLog(t, p, `msg="backend down" pool=one`)
		}
		time.Sleep(500 * time.Millisecond)
	}
	time.Sleep(time.Until(frozen.Add(15 * time.Second)))
	thaw()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	t.Logf("%d of 10 proxied sessions found the backend down and used panic mode", strings.Count(p.logs.String(), "panic mode"))
	if !strings.Contains(p.logs.String(), "panic mode") {
		t.Error("no session went through panic mode, though the backend was down")
	}
	if t.Failed() {
		return
	}

	waitLog(t, p, `msg="backend up"`)
	s.Stop()
	waitFor(t, 10*time.Second, func() bool { return strings.Count(p.logs.String(), `msg="backend down" pool=one`) == 2 })
	start := time.Now()
	_, _, err := session(p.addr, "", "")
	if err == nil || !is421(err, "Service not available, closing control connection") {
		t.Fatalf("with the backend gone: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second { // backend_timeout is 10 s; a closed port answers at once
		t.Fatalf("the 421 took %v", d)
	}
}
