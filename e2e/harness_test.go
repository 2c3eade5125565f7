package e2e

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/internal/peers"
)

// binary is the ftpsproxy binary built once for the package.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ftpsproxy-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "ftpsproxy")
	build := exec.Command("go", "build", "-race", "-o", binary, "../cmd/ftpsproxy")
	if os.Getenv("E2E_NO_RACE") != "" {
		build = exec.Command("go", "build", "-o", binary, "../cmd/ftpsproxy")
	}
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building ftpsproxy:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proxyProc is a running ftpsproxy process.
type proxyProc struct {
	t      testing.TB
	cmd    *exec.Cmd
	addr   string // first listener
	cfg    string // config file path
	logs   *syncBuffer
	exited chan struct{}
	code   int
}

// syncBuffer collects a process's output while the test reads it.
type syncBuffer = peers.SyncBuffer

// startProxy writes cfg to a file and runs the binary with it until the test ends. It waits
// until the first listener accepts connections.
func startProxy(t testing.TB, toml string) *proxyProc {
	t.Helper()
	return startProxyArgs(t, toml)
}

// startProxyArgs is startProxy with extra command-line arguments.
func startProxyArgs(t testing.TB, toml string, args ...string) *proxyProc {
	t.Helper()
	return startProxyCmd(t, toml, func(path string) *exec.Cmd {
		return exec.Command(binary, append([]string{"-config", path}, args...)...)
	})
}

// startProxyCmd writes toml to a file and runs the command that command builds for that
// file's path until the test ends; it waits until the config's first listener accepts.
func startProxyCmd(t testing.TB, toml string, command func(cfgPath string) *exec.Cmd) *proxyProc {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "ftpsproxy.toml")
	if err := os.WriteFile(path, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &proxyProc{t: t, cfg: path, logs: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd = command(path)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(15 * time.Second):
			syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.exited
		}
		if t.Failed() {
			t.Logf("ftpsproxy log:\n%s", tail(p.logs.String(), 200))
		}
	})
	p.addr = listenAddrOf(toml)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", p.addr, time.Second)
		if err == nil {
			c.Close()
			return p
		}
		select {
		case <-p.exited:
			t.Fatalf("ftpsproxy exited with %d:\n%s", p.code, p.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("ftpsproxy not listening on %s:\n%s", p.addr, p.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *proxyProc) signal(sig syscall.Signal) { p.cmd.Process.Signal(sig) }

// listenAddrOf finds the first listener address in a config.
func listenAddrOf(toml string) string {
	sc := bufio.NewScanner(strings.NewReader(toml))
	in := false
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "[[listener]]" {
			in = true
			continue
		}
		if in && strings.HasPrefix(l, "address") {
			_, v, _ := strings.Cut(l, "=")
			return strings.Trim(strings.TrimSpace(v), `"`)
		}
	}
	return ""
}

func tail(s string, lines int) string {
	ls := strings.Split(s, "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// freeAddr is a loopback address with a free port.
func freeAddr(t testing.TB) string { return fmt.Sprintf("127.0.0.1:%d", peers.FreePort(t)) }

// freeRange is a free port range for the proxy's passive ports.
func freeRange(t testing.TB, n int) string {
	r := peers.FreePortRange(t, n)
	return fmt.Sprintf("%d-%d", r[0], r[1])
}

// randomData returns size random bytes and writes them to a file in dir.
func randomData(t testing.TB, dir, name string, size int) (string, []byte) {
	t.Helper()
	b := make([]byte, size)
	rand.Read(b)
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, b
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func fileSum(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sum(b)
}

// plainProxyConfig is a proxy with one plain listener in front of one backend.
func plainProxyConfig(t testing.TB, backend, dataMode, extra string) string {
	return fmt.Sprintf(`
[[listener]]
address = %q
tls = "none"

[data]
port_range = %q
connect_timeout = "10s"

[[pool]]
name = "farm"
policy = "round_robin"
health_interval = "0s"

[[pool.backend]]
address = %q
data_mode = %q

[limits]
max_sessions_per_ip = 500
logins_per_minute = 0
attempts_per_minute = 0

[log]
level = "debug"
%s`, freeAddr(t), freeRange(t, 40), backend, dataMode, extra)
}

// netDialer dials from source IP src (empty: any).
func netDialer(src string) net.Dialer {
	d := net.Dialer{Timeout: 10 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	return d
}

// noPassword checks that no log record of the proxy (run at debug level) carries the test
// password, while it did log the sessions' commands.
func noPassword(t *testing.T, p *proxyProc) {
	t.Helper()
	logs := p.logs.String()
	if !strings.Contains(logs, `cmd="PASS ****"`) {
		t.Fatal("no PASS command in the debug log: the check would prove nothing")
	}
	if strings.Contains(logs, peers.Password) {
		t.Fatal("the password appears in the proxy's log")
	}
}
