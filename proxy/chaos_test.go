package proxy_test

// Chaos tests: backends that die mid-transfer, clients that vanish, an exhausted data-port
// range, thousands of idle or stalled connections next to real users, and a soak of
// concurrent verified transfers. After each one, goroutines, open file descriptors and data
// ports must be back to their baseline.
//
//	go test -race -count=1 -run Chaos ./proxy/
//	FTPSPROXY_SOAK=1 go test -count=1 -run ChaosSoak -timeout 30m ./proxy/   (500 sessions x 20 transfers)

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/internal/peers"
	"github.com/ftpsproxy/ftpsproxy/nat"
	"github.com/ftpsproxy/ftpsproxy/proxy"
	"github.com/jlaffaye/ftp"
)

// chaosBase is a resource baseline: goroutines and open file descriptors.
type chaosBase struct {
	g, fd int
	fds   map[string]string // fd number -> what it points to
	// alloc, for a baseline taken with a proxy running: the passive sockets it keeps between
	// leases (nat.Allocator.Idle) are held on purpose and are not counted.
	alloc *nat.Allocator
}

// kept is the number of descriptors base's allocator keeps now.
func (base chaosBase) kept() int {
	if base.alloc == nil {
		return 0
	}
	return base.alloc.Idle()
}

// chaosFDSet maps each open fd to its target ("socket:[…]", a path, …).
func chaosFDSet() map[string]string {
	ents, _ := os.ReadDir("/proc/self/fd")
	out := make(map[string]string, len(ents))
	for _, e := range ents {
		target, _ := os.Readlink("/proc/self/fd/" + e.Name())
		out[e.Name()] = target
	}
	return out
}

// chaosNewFDs describes the fds open now that were not open (or pointed elsewhere) at base.
func chaosNewFDs(base chaosBase) string {
	var out []string
	for fd, target := range chaosFDSet() {
		if base.fds[fd] != target {
			out = append(out, fd+"->"+target)
		}
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

func chaosFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

// chaosWarm makes the runtime create what it keeps for the life of the process (network
// poller, timers), so that it does not show up as a leak after the first baseline.
func chaosWarm(t testing.TB) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err == nil {
		s, _ := ln.Accept()
		if s != nil {
			s.Close()
		}
		c.Close()
	}
	ln.Close()
	time.Sleep(10 * time.Millisecond)
}

func chaosSnapshot(t testing.TB) chaosBase {
	chaosWarm(t)
	runtime.GC()
	return chaosBase{g: runtime.NumGoroutine(), fd: chaosFDs(), fds: chaosFDSet()}
}

// chaosSnapshotRunning is chaosSnapshot with p running: the passive sockets p keeps between
// leases are left out of the count, then and at each later look.
func chaosSnapshotRunning(t testing.TB, p *testProxy) chaosBase {
	base := chaosSnapshot(t)
	base.alloc = p.srv.Allocator()
	base.fd -= base.kept()
	return base
}

// chaosSettle polls until goroutines and fds are back to base, and fails with a goroutine
// dump when they are not within limit. It returns the excess seen at the last poll.
func chaosSettle(t testing.TB, base chaosBase, what string, limit time.Duration) (dg, dfd int) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		// Splice pipes sit in a sync.Pool and are closed by a finalizer once the pool drops
		// them (two GCs); they are not a leak.
		runtime.GC()
		runtime.GC()
		g, fd := runtime.NumGoroutine(), chaosFDs()-base.kept()
		dg, dfd = g-base.g, fd-base.fd
		if dg <= 0 && dfd <= 0 {
			return max(dg, 0), max(dfd, 0)
		}
		if time.Now().After(deadline) {
			var b bytes.Buffer
			pprof.Lookup("goroutine").WriteTo(&b, 1)
			t.Errorf("%s: leak after %v: goroutines %d (baseline %d), fds %d (baseline %d)\nnew fds: %s\n%s", what, limit, g, base.g, fd, base.fd, chaosNewFDs(base), b.String())
			return dg, dfd
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// chaosPorts waits for the proxy's data ports and sessions to drain.
func chaosPorts(t testing.TB, p *testProxy, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for p.srv.Allocator().InUse() != 0 || p.srv.Sessions() != 0 {
		if time.Now().After(deadline) {
			t.Errorf("after %v: %d data ports in use, %d sessions", limit, p.srv.Allocator().InUse(), p.srv.Sessions())
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// chaosRaiseNofile raises RLIMIT_NOFILE to at least n (up to the hard limit) and restores it
// when the test ends.
func chaosRaiseNofile(t testing.TB, n uint64) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= n {
		return
	}
	old := lim
	lim.Cur = min(n, lim.Max)
	if lim.Max < n && os.Geteuid() == 0 {
		lim.Cur, lim.Max = n, n
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("setrlimit: %v", err)
	}
	t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
	if lim.Cur < n {
		t.Fatalf("RLIMIT_NOFILE is %d and cannot be raised to %d", lim.Cur, n)
	}
}

// chaosCtl is a minimal control-connection client usable from any goroutine.
type chaosCtl struct {
	c net.Conn
	r *bufio.Reader
}

func chaosDial(addr string) (*chaosCtl, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	cc := &chaosCtl{c: c, r: bufio.NewReader(c)}
	if code, line, err := cc.read(); err != nil || code != 220 {
		c.Close()
		return nil, fmt.Errorf("greeting %q: %v", line, err)
	}
	return cc, nil
}

func (c *chaosCtl) read() (int, string, error) {
	c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := c.r.ReadString('\n')
	if err != nil {
		return 0, line, err
	}
	line = strings.TrimRight(line, "\r\n")
	if len(line) < 4 {
		return 0, line, fmt.Errorf("short reply %q", line)
	}
	code, _ := strconv.Atoi(line[:3])
	if line[3] == '-' {
		for {
			l, err := c.r.ReadString('\n')
			if err != nil {
				return 0, line, err
			}
			if strings.HasPrefix(l, line[:3]+" ") {
				break
			}
		}
	}
	return code, line, nil
}

func (c *chaosCtl) cmd(line string) (int, string, error) {
	c.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c.c, line+"\r\n"); err != nil {
		return 0, "", err
	}
	return c.read()
}

func (c *chaosCtl) login() error {
	if code, l, err := c.cmd("USER " + demoUser); err != nil || code != 331 {
		return fmt.Errorf("USER: %q %v", l, err)
	}
	if code, l, err := c.cmd("PASS " + demoPass); err != nil || code != 230 {
		return fmt.Errorf("PASS: %q %v", l, err)
	}
	return nil
}

// chaosEPSV sends EPSV on rc and connects to the announced port.
func chaosEPSV(t *testing.T, rc *rawConn) net.Conn {
	t.Helper()
	line := rc.cmd("EPSV", 229)
	port := line[strings.Index(line, "|||")+3 : strings.LastIndex(line, "|")]
	dc, err := net.DialTimeout("tcp", "127.0.0.1:"+port, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dc.Close() })
	return dc
}

// chaosRetr downloads a small file over rc.
func chaosRetr(t *testing.T, rc *rawConn, name string) []byte {
	t.Helper()
	dc := chaosEPSV(t, rc)
	rc.cmd("RETR "+name, 150)
	dc.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(dc)
	if err != nil {
		t.Fatal(err)
	}
	dc.Close()
	rc.expect(226)
	return b
}

// TestChaosBackendKilled kills the backend a session is on while a RETR or a STOR runs: the
// client gets 426, then the 421 line, then the close, promptly; later sessions go to the
// other backend of the pool; nothing leaks.
func TestChaosBackendKilled(t *testing.T) {
	big := make([]byte, 32<<20)
	rand.Read(big)
	for _, verb := range []string{"RETR", "STOR"} {
		t.Run(verb, func(t *testing.T) {
			start := time.Now()
			base := chaosSnapshot(t)
			t.Run("run", func(t *testing.T) {
				a, b := startBackend(t, nil), startBackend(t, nil)
				for name, be := range map[string]backend{"a": a, "b": b} {
					os.WriteFile(filepath.Join(be.root, "which"), []byte(name), 0o644)
					os.WriteFile(filepath.Join(be.root, "big"), big, 0o644)
				}
				p := startProxy(t, []balancer.BackendConfig{plainBackend(a.addr), plainBackend(b.addr)})
				rc := dialRaw(t, p.addr)
				rc.login()
				victim, survivor := a, "b"
				if string(chaosRetr(t, rc, "which")) == "b" {
					victim, survivor = b, "a"
				}
				dc := chaosEPSV(t, rc)
				var writer chan error
				if verb == "RETR" {
					rc.cmd("RETR big", 150)
					dc.SetReadDeadline(time.Now().Add(10 * time.Second))
					if _, err := io.ReadFull(dc, make([]byte, 1<<20)); err != nil {
						t.Fatal(err)
					}
				} else {
					rc.cmd("STOR up.bin", 150)
					writer = make(chan error, 1)
					var sent atomic.Int64
					go func() {
						dc.SetWriteDeadline(time.Now().Add(15 * time.Second))
						chunk := big[:1<<20]
						for {
							n, err := dc.Write(chunk)
							sent.Add(int64(n))
							if err != nil {
								writer <- err
								return
							}
						}
					}()
					waitFor(t, 5*time.Second, func() bool { return sent.Load() >= 4<<20 })
				}
				killed := time.Now()
				victim.srv.Stop()
				// Exactly 426, then the 421 line, then the close.
				if code, line := rc.reply(); code != 426 || line != "426 Connection closed; transfer aborted." {
					t.Fatalf("after the backend died: %q, want the 426", line)
				}
				expectFinal(t, rc, proxy.Line421(proxy.CauseBackend))
				if d := time.Since(killed); d > 3*time.Second {
					t.Fatalf("426/421 took %v", d)
				}
				// The client's data connection is closed too.
				if verb == "RETR" {
					dc.SetReadDeadline(time.Now().Add(5 * time.Second))
					if _, err := io.Copy(io.Discard, dc); err != nil && !errors.Is(err, syscall.ECONNRESET) {
						t.Fatalf("client data connection not closed: %v", err)
					}
				} else {
					select {
					case <-writer:
					case <-time.After(5 * time.Second):
						t.Fatal("client data connection still accepts data")
					}
				}
				dc.Close()
				// New sessions go to the survivor.
				for range 4 {
					c := goClient(t, p.addr)
					r, err := c.Retr("which")
					if err != nil {
						t.Fatal(err)
					}
					got, _ := io.ReadAll(r)
					r.Close()
					if string(got) != survivor {
						t.Fatalf("session served by %q, want %q", got, survivor)
					}
					c.Quit()
				}
				chaosPorts(t, p, 5*time.Second)
			})
			dg, dfd := chaosSettle(t, base, "backend killed mid-"+verb, 10*time.Second)
			fmt.Printf("chaos backend killed mid-%s: 426+421 ok, failover ok, leaks goroutines=%d fds=%d ports=0, %v\n", verb, dg, dfd, time.Since(start).Round(time.Millisecond))
		})
	}
}

// TestChaosClientVanishes drops the client's control and data connections (RST) in the middle
// of a download and of an upload: both legs are closed, the passive port is returned and the
// goroutines and fds go back to where they were before the client came.
func TestChaosClientVanishes(t *testing.T) {
	big := make([]byte, 64<<20)
	rand.Read(big)
	for _, verb := range []string{"RETR", "STOR"} {
		t.Run(verb, func(t *testing.T) {
			start := time.Now()
			outer := chaosSnapshot(t)
			t.Run("run", func(t *testing.T) {
				be := startBackend(t, nil)
				os.WriteFile(filepath.Join(be.root, "big"), big, 0o644)
				p := startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)})
				// Warm the backend and proxy (first-use allocations), then take the baseline.
				c := goClient(t, p.addr)
				c.Quit()
				chaosPorts(t, p, 5*time.Second)
				base := chaosSnapshotRunning(t, p)

				for round := range 3 {
					rc := dialRaw(t, p.addr)
					rc.login()
					dc := chaosEPSV(t, rc)
					if verb == "RETR" {
						rc.cmd("RETR big", 150)
						dc.SetReadDeadline(time.Now().Add(10 * time.Second))
						if _, err := io.ReadFull(dc, make([]byte, 1<<20)); err != nil {
							t.Fatal(err)
						}
					} else {
						rc.cmd(fmt.Sprintf("STOR up%d.bin", round), 150)
						dc.SetWriteDeadline(time.Now().Add(10 * time.Second))
						if _, err := dc.Write(big[:4<<20]); err != nil {
							t.Fatal(err)
						}
					}
					for _, c := range []net.Conn{rc.c, dc} {
						c.(*net.TCPConn).SetLinger(0)
						c.Close()
					}
					chaosPorts(t, p, 5*time.Second)
				}
				chaosSettle(t, base, "client vanished mid-"+verb+" (proxy and backend running)", 10*time.Second)
			})
			dg, dfd := chaosSettle(t, outer, "client vanished mid-"+verb+" (after teardown)", 10*time.Second)
			fmt.Printf("chaos client vanished mid-%s x3: both legs closed, ports=0, leaks goroutines=%d fds=%d, %v\n", verb, dg, dfd, time.Since(start).Round(time.Millisecond))
		})
	}
}

// TestChaosPortsExhausted: with a range of 10 passive ports and 15 sessions asking at once,
// 10 get a 227 and 5 a prompt 425 and go on; once the sessions quit, the range recovers fully.
func TestChaosPortsExhausted(t *testing.T) {
	start := time.Now()
	outer := chaosSnapshot(t)
	t.Run("run", func(t *testing.T) {
		be := startBackend(t, nil)
		os.WriteFile(filepath.Join(be.root, "f"), []byte("ok"), 0o644)
		r := peers.FreePortRange(t, 10) // below the ephemeral ports: no stray connection takes one
		pr := nat.PortRange{First: uint16(r[0]), Last: uint16(r[1])}
		p := startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)}, func(c *proxy.Config, _ *balancer.PoolConfig) {
			c.Data.PortRange = pr
		})
		// round opens n sessions, has them all send PASV at once, and returns the 227 lines.
		round := func(n int) (lines []string, refused int, ctls []*chaosCtl) {
			ctls = make([]*chaosCtl, n)
			for i := range ctls {
				c, err := chaosDial(p.addr)
				if err != nil {
					t.Fatal(err)
				}
				if err := c.login(); err != nil {
					t.Fatal(err)
				}
				ctls[i] = c
			}
			type res struct {
				code int
				line string
				d    time.Duration
				err  error
			}
			out := make([]res, n)
			var wg sync.WaitGroup
			for i, c := range ctls {
				wg.Go(func() {
					t0 := time.Now()
					code, line, err := c.cmd("PASV")
					out[i] = res{code, line, time.Since(t0), err}
				})
			}
			wg.Wait()
			lines = make([]string, n)
			for i, r := range out {
				switch {
				case r.err != nil:
					t.Errorf("PASV: %v", r.err)
				case r.code == 227:
					lines[i] = r.line
				case r.line == "425 Can't open data connection.":
					refused++
					if r.d > time.Second {
						t.Errorf("425 took %v", r.d)
					}
				default:
					t.Errorf("PASV: %q", r.line)
				}
			}
			return lines, refused, ctls
		}
		count := func(lines []string) int {
			n := 0
			for _, l := range lines {
				if l != "" {
					n++
				}
			}
			return n
		}
		lines, refused, ctls := round(15)
		if ok := count(lines); ok != 10 || refused != 5 {
			t.Fatalf("15 PASVs on 10 ports: %d x 227, %d x 425", count(lines), refused)
		}
		if n := p.srv.Allocator().InUse(); n != 10 {
			t.Fatalf("ports in use %d, want 10", n)
		}
		for _, c := range ctls { // every session goes on
			if code, l, err := c.cmd("NOOP"); err != nil || code != 200 {
				t.Fatalf("NOOP after PASV: %q %v", l, err)
			}
		}
		for _, c := range ctls {
			if code, l, err := c.cmd("QUIT"); err != nil || code != 221 {
				t.Fatalf("QUIT: %q %v", l, err)
			}
			c.c.Close()
		}
		chaosPorts(t, p, 5*time.Second)

		lines, refused, ctls = round(11)
		if ok := count(lines); ok != 10 || refused != 1 {
			t.Fatalf("after recovery, 11 PASVs on 10 ports: %d x 227, %d x 425", ok, refused)
		}
		// Every one of the 10 reserved ports carries a transfer.
		used := map[int]bool{}
		for i, c := range ctls {
			if lines[i] == "" {
				continue
			}
			port, err := port227(lines[i])
			if err != nil {
				t.Fatal(err)
			}
			if !pr.Contains(uint16(port)) || used[port] {
				t.Fatalf("port %d announced twice or outside %s", port, pr)
			}
			used[port] = true
			dc, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if code, l, err := c.cmd("RETR f"); err != nil || code != 150 {
				t.Fatalf("RETR: %q %v", l, err)
			}
			dc.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, _ := io.ReadAll(dc)
			dc.Close()
			if code, l, err := c.read(); err != nil || code != 226 || string(got) != "ok" {
				t.Fatalf("transfer on port %d: %q %q %v", port, got, l, err)
			}
		}
		for _, c := range ctls {
			c.cmd("QUIT")
			c.c.Close()
		}
		chaosPorts(t, p, 5*time.Second)
	})
	dg, dfd := chaosSettle(t, outer, "ports exhausted", 10*time.Second)
	fmt.Printf("chaos ports exhausted: 15 PASVs on 10 ports -> 10x227 5x425 (<1s), recovered 10/10, leaks goroutines=%d fds=%d, %v\n", dg, dfd, time.Since(start).Round(time.Millisecond))
}

// TestChaosSlowConnections holds 2,000 connections that never send a command, send half a
// line, or start AUTH TLS and stall the handshake, while 50 real users (half of them over TLS)
// log in and move a file each: at least 99% of the real users succeed.
func TestChaosSlowConnections(t *testing.T) {
	const slowN, users = 2000, 50
	chaosRaiseNofile(t, 4*slowN+2048)
	start := time.Now()
	outer := chaosSnapshot(t)
	var okUsers, slowOpen int
	t.Run("run", func(t *testing.T) {
		be := startBackend(t, nil)
		opt, cc := withTLS(t, proxy.TLSExplicit, false)
		p := startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)}, opt, func(c *proxy.Config, _ *balancer.PoolConfig) {
			c.Limits.MaxSessions = 10000
			c.Limits.MaxSessionsPerIP = 10000
			c.Limits.LoginTimeout = 60 * time.Second
			c.Limits.TLSHandshake = 60 * time.Second
		})

		// The slow crowd, opened 64 at a time.
		slow := make([]net.Conn, slowN)
		var mu sync.Mutex
		var openErrs []error
		sem := make(chan struct{}, 64)
		var wg sync.WaitGroup
		for i := range slow {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				c, err := net.DialTimeout("tcp", p.addr, 10*time.Second)
				if err != nil {
					mu.Lock()
					openErrs = append(openErrs, err)
					mu.Unlock()
					return
				}
				slow[i] = c
				c.SetDeadline(time.Now().Add(20 * time.Second))
				switch i % 4 {
				case 0: // connects and never reads or sends anything
				case 1: // reads the greeting, sends half a command
					bufio.NewReader(c).ReadString('\n')
					io.WriteString(c, "USER slo")
				case 2: // AUTH TLS, then a ClientHello that never completes
					r := bufio.NewReader(c)
					r.ReadString('\n')
					io.WriteString(c, "AUTH TLS\r\n")
					r.ReadString('\n')
					c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00})
				case 3: // starts a line one byte at a time, and stops
					io.WriteString(c, "N")
				}
			})
		}
		wg.Wait()
		if len(openErrs) > 0 {
			t.Fatalf("%d slow connections failed to open: %v", len(openErrs), openErrs[0])
		}
		waitFor(t, 10*time.Second, func() bool { return p.srv.Sessions() >= slowN })
		slowOpen = p.srv.Sessions()

		// The real users.
		var ok atomic.Int32
		var errs sync.Map
		for i := range users {
			wg.Go(func() {
				if err := chaosUser(p.addr, be.root, i, i%2 == 1, cc); err != nil {
					errs.Store(i, err)
					return
				}
				ok.Add(1)
			})
		}
		wg.Wait()
		okUsers = int(ok.Load())
		errs.Range(func(k, v any) bool {
			t.Logf("user %v: %v", k, v)
			return true
		})
		if okUsers*100 < 99*users {
			t.Errorf("%d of %d real users succeeded among %d slow connections", okUsers, users, slowN)
		}
		if n := p.srv.Sessions(); n < slowN {
			t.Errorf("only %d sessions left: slow connections were dropped early", n)
		}
		for _, c := range slow {
			if c != nil {
				c.Close()
			}
		}
		chaosPorts(t, p, 10*time.Second)
	})
	dg, dfd := chaosSettle(t, outer, "slow connections", 15*time.Second)
	fmt.Printf("chaos slow connections: %d slow/stalled sessions held, %d/%d real users ok (sha256), leaks goroutines=%d fds=%d, %v\n",
		slowOpen, okUsers, users, dg, dfd, time.Since(start).Round(time.Millisecond))
}

// chaosUser logs in, uploads a random file, downloads it back and checks both copies.
func chaosUser(addr, root string, i int, useTLS bool, cc *tls.Config) error {
	opts := []ftp.DialOption{ftp.DialWithTimeout(15 * time.Second)}
	if useTLS {
		opts = append(opts, ftp.DialWithExplicitTLS(cc))
	}
	c, err := ftp.Dial(addr, opts...)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer c.Quit()
	if err := c.Login(demoUser, demoPass); err != nil {
		return fmt.Errorf("login: %w", err)
	}
	data := make([]byte, 128<<10+i*1000)
	rand.Read(data)
	want := sha256.Sum256(data)
	name := fmt.Sprintf("user%d.bin", i)
	if err := c.Stor(name, bytes.NewReader(data)); err != nil {
		return fmt.Errorf("stor: %w", err)
	}
	onDisk, err := os.ReadFile(filepath.Join(root, name))
	if err != nil || sha256.Sum256(onDisk) != want {
		return fmt.Errorf("upload corrupted (%v)", err)
	}
	r, err := c.Retr(name)
	if err != nil {
		return fmt.Errorf("retr: %w", err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || sha256.Sum256(got) != want {
		return fmt.Errorf("download corrupted (%d bytes, %v)", len(got), err)
	}
	return nil
}

// TestChaosSoak runs many concurrent sessions, each doing several verified round trips
// (upload random data, download it back, compare sha256) through a pool of two backends.
// CI runs 100 sessions x 5 round trips; FTPSPROXY_SOAK=1 asks for 500 x 20:
//
//	FTPSPROXY_SOAK=1 go test -count=1 -run ChaosSoak -timeout 30m ./proxy/
func TestChaosSoak(t *testing.T) {
	sessions, trips, maxSize := 100, 5, 64<<10
	if os.Getenv("FTPSPROXY_SOAK") == "1" {
		sessions, trips = 500, 20
	}
	chaosRaiseNofile(t, uint64(sessions)*12+2048)
	start := time.Now()
	outer := chaosSnapshot(t)
	var okSessions, transfers, mismatches, failures atomic.Int64
	var verified atomic.Int64
	var leakG, leakFD, leakPorts int
	t.Run("run", func(t *testing.T) {
		a, b := startBackend(t, nil), startBackend(t, nil)
		p := startProxy(t, []balancer.BackendConfig{plainBackend(a.addr), plainBackend(b.addr)}, func(c *proxy.Config, pc *balancer.PoolConfig) {
			pc.Policy = "least_conn"
			c.Data.PortRange = freePorts(t) // shared, below the ephemeral ports
		})
		c := goClient(t, p.addr)
		c.Quit()
		chaosPorts(t, p, 5*time.Second)
		base := chaosSnapshotRunning(t, p)

		var wg sync.WaitGroup
		var firstErr sync.Once
		for i := range sessions {
			wg.Go(func() {
				err := chaosSoakSession(p.addr, i, trips, maxSize, &transfers, &verified, &mismatches)
				if err != nil {
					failures.Add(1)
					firstErr.Do(func() { t.Errorf("session %d: %v", i, err) })
					return
				}
				okSessions.Add(1)
			})
		}
		wg.Wait()
		chaosPorts(t, p, 10*time.Second)
		leakPorts = p.srv.Allocator().InUse()
		leakG, leakFD = chaosSettle(t, base, "soak (proxy and backends running)", 15*time.Second)
	})
	dg, dfd := chaosSettle(t, outer, "soak (after teardown)", 15*time.Second)
	if mismatches.Load() != 0 || failures.Load() != 0 {
		t.Errorf("%d mismatches, %d failed sessions", mismatches.Load(), failures.Load())
	}
	fmt.Printf("chaos soak: sessions=%d/%d transfers=%d bytes_verified=%d mismatches=%d failed_sessions=%d leaks: goroutines=%d fds=%d ports=%d (after teardown: goroutines=%d fds=%d), %v\n",
		okSessions.Load(), sessions, transfers.Load(), verified.Load(), mismatches.Load(), failures.Load(),
		leakG, leakFD, leakPorts, dg, dfd, time.Since(start).Round(time.Millisecond))
}

// chaosSoakSession does trips round trips on one session. Each round trip is two transfers
// (STOR then RETR) of the same random bytes, checked by sha256.
func chaosSoakSession(addr string, i, trips, maxSize int, transfers, verified, mismatches *atomic.Int64) error {
	c, err := ftp.Dial(addr, ftp.DialWithTimeout(30*time.Second))
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer c.Quit()
	if err := c.Login(demoUser, demoPass); err != nil {
		return fmt.Errorf("login: %w", err)
	}
	rng := mrand.New(mrand.NewPCG(uint64(i), 7))
	for j := range trips {
		size := 1 + rng.IntN(maxSize)
		if j == 0 {
			size = 0 // an empty file once per session
		}
		data := make([]byte, size)
		rand.Read(data)
		want := sha256.Sum256(data)
		name := fmt.Sprintf("s%d-%d.bin", i, j)
		if err := c.Stor(name, bytes.NewReader(data)); err != nil {
			return fmt.Errorf("stor %s: %w", name, err)
		}
		transfers.Add(1)
		r, err := c.Retr(name)
		if err != nil {
			return fmt.Errorf("retr %s: %w", name, err)
		}
		got, err := io.ReadAll(r)
		if cerr := r.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("retr %s: %w", name, err)
		}
		transfers.Add(1)
		if sha256.Sum256(got) != want {
			mismatches.Add(1)
			continue
		}
		verified.Add(int64(2 * size))
	}
	return nil
}
