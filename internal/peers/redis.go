package peers

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// RedisBinary is Debian's redis-server (scripts/install-test-peers.sh installs it).
const RedisBinary = "/usr/bin/redis-server"

// Redis is a running redis-server with no persistence, for the cluster tests.
type Redis struct {
	// Addr is "ip:port"; URL is redis://Addr/0.
	Addr, URL string
	// NetNS is the namespace it runs in ("" : the caller's).
	NetNS string
	dir   string
	proc  *process
}

// StartRedis starts redis-server on addr ("ip:port"; port 0 or empty host: 127.0.0.1 and a
// free port) in namespace netns ("" : this one) with --save ” --appendonly no; t.Cleanup
// stops it.
func StartRedis(t testing.TB, addr, netns string) *Redis {
	t.Helper()
	needBinary(t, RedisBinary)
	ip, port, _ := listenAddr(t, addr)
	r := &Redis{Addr: net.JoinHostPort(ip.String(), strconv.Itoa(port)), NetNS: netns, dir: t.TempDir()}
	r.URL = "redis://" + r.Addr + "/0"
	r.Start(t)
	t.Cleanup(r.Stop)
	return r
}

// Start (re)starts the server on its address, as after Stop; it returns once it answers PING.
func (r *Redis) Start(t testing.TB) {
	t.Helper()
	host, port, _ := net.SplitHostPort(r.Addr)
	args := []string{RedisBinary, "--bind", host, "--port", port, "--save", "", "--appendonly", "no",
		"--dir", r.dir, "--protected-mode", "no", "--daemonize", "no"}
	if r.NetNS != "" {
		args = append([]string{"ip", "netns", "exec", r.NetNS}, args...)
	}
	p, err := launch(exec.Command(args[0], args[1:]...), filepath.Join(r.dir, "redis.log"))
	if err != nil {
		t.Fatalf("peers: redis-server: %v", err)
	}
	r.proc = p
	deadline := time.Now().Add(startTimeout)
	for {
		err := r.ping()
		if err == nil {
			return
		}
		if p.exited() || time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(r.dir, "redis.log"))
			r.Stop()
			t.Fatalf("peers: redis-server on %s did not answer: %v\n%s", r.Addr, err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ping sends PING in the inline protocol and expects +PONG.
func (r *Redis) ping() error {
	if r.NetNS != "" {
		return probeRedisNetNS(r.NetNS, r.Addr)
	}
	c, err := net.DialTimeout("tcp", r.Addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// probeRedisNetNS pings a server inside a namespace (bash /dev/tcp, from inside it).
func probeRedisNetNS(ns, addr string) error {
	host, port, _ := net.SplitHostPort(addr)
	out, err := exec.Command("ip", "netns", "exec", ns, "timeout", "2", "bash", "-c",
		`exec 3<>"/dev/tcp/$0/$1" || exit 1; printf 'PING\r\n' >&3; IFS= read -r -t 1 line <&3; printf '%s' "$line"`, host, port).Output()
	if err != nil {
		return err
	}
	if strings.TrimSpace(string(out)) != "+PONG" {
		return fmt.Errorf("PING answered %q", out)
	}
	return nil
}

// Stop kills the server, as a crash would; Start brings it back (empty: no persistence).
func (r *Redis) Stop() {
	if r.proc != nil && !r.proc.exited() {
		syscall.Kill(-r.proc.cmd.Process.Pid, syscall.SIGKILL)
		<-r.proc.done
	}
}

// Pause stops the server process (SIGSTOP): connections stay open and nothing answers, as
// with a hung server. Resume continues it.
func (r *Redis) Pause() { syscall.Kill(-r.proc.cmd.Process.Pid, syscall.SIGSTOP) }

// Resume continues a paused server.
func (r *Redis) Resume() { syscall.Kill(-r.proc.cmd.Process.Pid, syscall.SIGCONT) }
