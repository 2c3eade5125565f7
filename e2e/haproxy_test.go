package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/internal/peers"
)

// startHAProxy runs HAProxy in TCP mode from a config written for the test: frontend front,
// one server at backend with "send-proxy-v2 check" every 100 ms. It stops at cleanup.
func startHAProxy(t *testing.T, front, backend string) {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Fatal("haproxy is needed (scripts/install-test-peers.sh installs it)")
	}
	cfg := fmt.Sprintf(`global
    maxconn 200
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend ftp
    bind %s
    default_backend ftpsproxy
backend ftpsproxy
    server fp %s send-proxy-v2 check inter 100ms
`, front, backend)
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-db", "-f", path)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("haproxy output:\n%s", out.String())
		}
	})
}

// metricValue scrapes the admin /metrics and returns the value of series (name and labels
// exactly as exposed), or 0 when absent.
func metricValue(t *testing.T, admin, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	io.Copy(io.Discard, resp.Body)
	return 0
}

// TestHAProxyHealthChecks (issue 15 item 3): HAProxy's "check send-proxy-v2" health checks
// arrive with PROXY v2 LOCAL headers; the proxy greets them, logs no WARN line, counts them
// as health checks and not as sessions, while a real client through HAProxy transfers a file
// (sha256) and is counted as one session.
func TestHAProxyHealthChecks(t *testing.T) {
	s := peers.StartVsftpd(t, peers.Options{})
	_, data := randomData(t, s.Root, "f.bin", 512<<10)
	listen, admin, front := freeAddr(t), freeAddr(t), freeAddr(t)
	p := startProxy(t, fmt.Sprintf(`
[[listener]]
address = %q
proxy_protocol = "on"
trusted_proxies = ["127.0.0.1/32"]

[data]
port_range = %q

[[pool]]
name = "farm"
health_interval = "0s"

[[pool.backend]]
address = %q

[limits]
logins_per_minute = 0
attempts_per_minute = 0

[log]
level = "debug"

[admin]
address = %q
`, listen, freeRange(t, 20), s.Addr, admin))
	// startProxy's readiness probe sent no header: refused (and a WARN). Count from here.
	time.Sleep(300 * time.Millisecond)
	from := len(p.logs.String())
	sessions := `ftpsproxy_sessions_total{listener="` + listen + `"}`
	checks := `ftpsproxy_health_checks_total{listener="` + listen + `"}`
	before := metricValue(t, admin, sessions)

	startHAProxy(t, front, listen)
	waitFor(t, 10*time.Second, func() bool { return metricValue(t, admin, checks) >= 10 })
	if got := metricValue(t, admin, sessions); got != before {
		t.Fatalf("health checks counted as sessions: %v, before %v", got, before)
	}

	dst := filepath.Join(t.TempDir(), "down")
	out, err := peers.Curl(ctx(t), "--max-time", "30", "--user", peers.User+":"+peers.Password, "-o", dst, "ftp://"+front+"/f.bin")
	if err != nil {
		t.Fatalf("curl through haproxy: %v\n%s", err, out)
	}
	if fileSum(t, dst) != sum(data) {
		t.Fatal("download through haproxy differs")
	}
	waitFor(t, 5*time.Second, func() bool { return metricValue(t, admin, sessions) == before+1 })
	time.Sleep(300 * time.Millisecond)
	logs := p.logs.String()[from:]
	if strings.Contains(logs, "level=WARN") || strings.Contains(logs, "level=ERROR") {
		t.Fatalf("WARN or ERROR lines while HAProxy checked:\n%s", tail(logs, 40))
	}
	if !strings.Contains(logs, "PROXY v2 LOCAL: health check") || !strings.Contains(logs, `msg="login ok"`) {
		t.Fatalf("no health check or no login in the log:\n%s", tail(logs, 40))
	}
	if !strings.Contains(logs, "level=DEBUG msg=\"session end\"") {
		t.Fatal("the health checks' ends are not in the debug log")
	}
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "health_check=true") && !strings.Contains(l, "level=DEBUG") {
			t.Fatalf("a health check logged above debug: %s", l)
		}
	}
}
