package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/internal/peers"
	"github.com/jlaffaye/ftp"
)

// memoryCap is the bound issue #13 sets for the whole process under hostile peers.
const memoryCap = 512 << 20

// TestSurvivesHostilePeersUnderMemoryCap: the real binary, in a memory cgroup capped at
// 512 MiB, meets at once every hostile peer of issue #13 that grows memory or the log:
//   - a backend whose greeting to the health probe is endless 1 MiB chunks with no line end;
//   - a backend that answers RETR with 150 and then writes ~1 MB multi-line replies again and
//     again while the transfer is held;
//   - a backend that streams unsolicited "200 stray" lines to a logged-in session;
//   - 100 client addresses failing logins with 4,000-byte user names.
//
// Afterwards the process is alive, the cgroup never reached its cap, no second of log holds
// more than 100 lines, every hostile session ended under the 421 policy, and a fresh client
// logs in to vsftpd through the proxy and downloads a file intact.
//
// The binary is built without the race detector here: its shadow memory would measure the
// detector, not the proxy.
func TestSurvivesHostilePeersUnderMemoryCap(t *testing.T) {
	cg := newMemoryCgroup(t, memoryCap)
	bin := plainBinary(t)

	v := peers.StartVsftpd(t, peers.Options{PasvPorts: peers.FreePortRange(t, 10)})
	want := bytes.Repeat([]byte("bounded and intact\n"), 50_000)
	v.WriteFile(t, "fresh.bin", want)

	listen := map[string]string{"good": freeAddr(t), "held": freeAddr(t), "stray": freeAddr(t), "deny": freeAddr(t)}
	cfg := fmt.Sprintf(`[data]
port_range = %q

[limits]
attempts_per_minute = 0
idle_timeout = "30s"
`, freeRange(t, 40))
	for _, name := range []string{"good", "held", "stray", "deny"} {
		cfg += fmt.Sprintf("\n[[listener]]\naddress = %q\npool = %q\n", listen[name], name)
	}
	cfg += fmt.Sprintf("\n[[pool]]\nname = \"good\"\nhealth_interval = \"0s\"\n[[pool.backend]]\naddress = %q\n", v.Addr)
	// The flooding probe target sits in the good pool's neighbour: its probes run every second
	// for the whole test, and no session is ever sent to it.
	cfg += fmt.Sprintf("\n[[pool]]\nname = \"flood\"\nhealth_interval = \"1s\"\n[[pool.backend]]\naddress = %q\n", startScripted(t, "probe-flood"))
	for _, name := range []string{"held", "stray", "deny"} {
		cfg += fmt.Sprintf("\n[[pool]]\nname = %q\nhealth_interval = \"0s\"\n[[pool.backend]]\naddress = %q\n", name, startScripted(t, name))
	}
	p := startInCgroup(t, bin, cg, cfg) // its first listener is "good"

	var wg sync.WaitGroup
	var mu sync.Mutex
	var problems []string
	fail := func(format string, args ...any) {
		mu.Lock()
		problems = append(problems, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	wg.Add(2)
	go func() { defer wg.Done(); heldFloodSession(listen["held"], fail) }()
	go func() { defer wg.Done(); straySession(listen["stray"], fail) }()
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func(src string) { defer wg.Done(); failLogins(listen["deny"], src, fail) }(fmt.Sprintf("127.0.0.%d", i+2))
	}
	wg.Wait()
	time.Sleep(3 * time.Second) // a few more probes of the flooding backend
	for _, pr := range problems {
		t.Error(pr)
	}

	if !alive(p.cmd.Process.Pid) {
		t.Fatalf("the proxy died under the hostile peers")
	}
	peak, failcnt := cg.peak(t)
	t.Logf("peak memory of the cgroup: %.1f MiB (cap %d MiB), limit hit %d times", float64(peak)/(1<<20), memoryCap>>20, failcnt)
	if peak >= memoryCap || failcnt > 0 {
		t.Errorf("the process reached its memory cap: peak %d bytes, limit hit %d times", peak, failcnt)
	}
	if !strings.Contains(p.logs.String(), "backend down") {
		t.Errorf("the flooding probe target was never marked down")
	}
	busiest, lines := busiestLogSecond(p.logs.String())
	t.Logf("log: busiest second %s with %d lines", busiest, lines)
	if lines > 100 {
		t.Errorf("%d log lines in the second %s, want at most 100", lines, busiest)
	}

	got := fetchWithGoClient(t, listen["good"], "fresh.bin")
	if sha256.Sum256(got) != sha256.Sum256(want) {
		t.Fatalf("fresh download after the floods: %d bytes, sha256 differs from the %d bytes on vsftpd", len(got), len(want))
	}
}

// heldFloodSession logs in through the proxy to the held-flood backend, starts a RETR and
// expects the session to end with a 421 line (the held replies passed their bound).
func heldFloodSession(addr string, fail func(string, ...any)) {
	c, r, err := loginRaw(addr, "", "held", "x")
	if err != nil {
		fail("held: %v", err)
		return
	}
	defer c.Close()
	port, err := epsvPort(c, r)
	if err != nil {
		fail("held: %v", err)
		return
	}
	d, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 5*time.Second)
	if err != nil {
		fail("held: data connection: %v", err)
		return
	}
	defer d.Close()
	fmt.Fprintf(c, "RETR f\r\n")
	if last := lastLine(c, r, 60*time.Second); !strings.HasPrefix(last, "421 ") {
		fail("held: the session ended with %q, want a 421 line", last)
	}
}

// straySession logs in through the proxy to a backend that streams unsolicited replies, and
// holds the session until the backend stops (5 s), then quits.
func straySession(addr string, fail func(string, ...any)) {
	c, r, err := loginRaw(addr, "", "stray", "x")
	if err != nil {
		fail("stray: %v", err)
		return
	}
	defer c.Close()
	lastLine(c, r, 30*time.Second) // the proxy ends the session when the backend goes
}

// failLogins fails logins with 4,000-byte user names from src until the proxy refuses the
// address with the login-limit 421.
func failLogins(addr, src string, fail func(string, ...any)) {
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		fail("logins from %s: %v", src, err)
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	r := bufio.NewReader(c)
	if _, err := readReplyLine(r); err != nil {
		fail("logins from %s: greeting: %v", src, err)
		return
	}
	for i := 0; i < 20; i++ {
		name := strings.Repeat(string(rune('a'+i%26)), 3990) + src
		fmt.Fprintf(c, "USER %s\r\nPASS wrong\r\n", name)
		for _, want := range []string{"331", "530"} {
			line, err := readReplyLine(r)
			if strings.HasPrefix(line, "421 Too many login attempts") {
				return
			}
			if err != nil || !strings.HasPrefix(line, want) {
				fail("logins from %s: attempt %d: %q (%v), want %s", src, i, line, err, want)
				return
			}
		}
	}
	fail("logins from %s: 20 failed logins and no 421", src)
}

// loginRaw logs in through the proxy over a raw control connection from src ("" for any).
func loginRaw(addr, src, user, pass string) (net.Conn, *bufio.Reader, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	c.SetDeadline(time.Now().Add(60 * time.Second))
	r := bufio.NewReader(c)
	for _, step := range []struct{ send, want string }{{"", "220"}, {"USER " + user, "331"}, {"PASS " + pass, "230"}} {
		if step.send != "" {
			fmt.Fprintf(c, "%s\r\n", step.send)
		}
		line, err := readReplyLine(r)
		if err != nil || !strings.HasPrefix(line, step.want) {
			c.Close()
			return nil, nil, fmt.Errorf("login %q: %q (%v), want %s", step.send, line, err, step.want)
		}
	}
	return c, r, nil
}

var epsvReply = regexp.MustCompile(`\(\|\|\|(\d+)\|\)`)

func epsvPort(c net.Conn, r *bufio.Reader) (int, error) {
	fmt.Fprintf(c, "EPSV\r\n")
	line, err := readReplyLine(r)
	m := epsvReply.FindStringSubmatch(line)
	if err != nil || m == nil {
		return 0, fmt.Errorf("EPSV: %q (%v)", line, err)
	}
	return strconv.Atoi(m[1])
}

// readReplyLine returns the last line of the next reply (multi-line replies are skipped to
// their end line).
func readReplyLine(r *bufio.Reader) (string, error) {
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return strings.TrimSpace(line), err
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) >= 4 && line[3] == ' ' && line[0] >= '1' && line[0] <= '5' {
			return line, nil
		}
	}
}

// lastLine reads replies until the connection ends (or limit passes) and returns the last
// complete line.
func lastLine(c net.Conn, r *bufio.Reader, limit time.Duration) string {
	c.SetReadDeadline(time.Now().Add(limit))
	last := ""
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return last
		}
		last = strings.TrimRight(line, "\r\n")
	}
}

var logSecond = regexp.MustCompile(`(?m)^time=(\S+?)\.\d+Z `)

// busiestLogSecond returns the second of the log with the most lines, and their count.
func busiestLogSecond(log string) (string, int) {
	count := map[string]int{}
	best, n := "", 0
	for _, m := range logSecond.FindAllStringSubmatch(log, -1) {
		count[m[1]]++
		if count[m[1]] > n {
			best, n = m[1], count[m[1]]
		}
	}
	return best, n
}

func fetchWithGoClient(t *testing.T, addr, name string) []byte {
	t.Helper()
	c, err := ftp.Dial(addr, ftp.DialWithTimeout(10*time.Second))
	if err != nil {
		t.Fatalf("fresh client: %v", err)
	}
	defer c.Quit()
	if err := c.Login(peers.User, peers.Password); err != nil {
		t.Fatalf("fresh client login: %v", err)
	}
	rc, err := c.Retr(name)
	if err != nil {
		t.Fatalf("fresh client RETR: %v", err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("fresh client read: %v", err)
	}
	return b
}

// startScripted serves a scripted hostile FTP backend on loopback until the test ends.
// Modes: probe-flood (a multi-line 220 whose second line is endless 1 MiB chunks), held
// (RETR: 150, then ~1 MB multi-line replies again and again), stray (after login,
// unsolicited 200 lines for 5 s), deny (every PASS gets 530).
func startScripted(t *testing.T, mode string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serveScripted(c, mode)
		}
	}()
	return ln.Addr().String()
}

func serveScripted(c net.Conn, mode string) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	if mode == "probe-flood" {
		io.WriteString(c, "220-flood\r\n") // a greeting the probe must read to its end
		chunk := bytes.Repeat([]byte("x"), 1<<20)
		for start := time.Now(); time.Since(start) < 20*time.Second; {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
		return
	}
	io.WriteString(c, "220 scripted\r\n")
	r := bufio.NewReader(c)
	var data net.Listener
	defer func() {
		if data != nil {
			data.Close()
		}
	}()
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		verb, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		switch strings.ToUpper(verb) {
		case "USER":
			io.WriteString(c, "331 password\r\n")
		case "PASS":
			if mode == "deny" {
				io.WriteString(c, "530 Login incorrect.\r\n")
				continue
			}
			io.WriteString(c, "230 in\r\n")
			if mode == "stray" {
				strayLines(c)
				return
			}
		case "PASV":
			if data, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
				return
			}
			port := data.Addr().(*net.TCPAddr).Port
			fmt.Fprintf(c, "227 Entering Passive Mode (127,0,0,1,%d,%d)\r\n", port>>8, port&0xff)
		case "RETR":
			io.WriteString(c, "150 here it comes\r\n")
			if data != nil {
				go func(ln net.Listener) { // accept and hold the data connection, silent
					if d, err := ln.Accept(); err == nil {
						defer d.Close()
						io.Copy(io.Discard, d)
					}
				}(data)
			}
			heldReplies(c)
			return
		case "QUIT":
			io.WriteString(c, "221 bye\r\n")
			return
		default:
			io.WriteString(c, "200 ok\r\n")
		}
	}
}

// heldReplies writes ~1 MB multi-line 150 replies until the proxy hangs up (or 30 s pass).
func heldReplies(c net.Conn) {
	var b bytes.Buffer
	body := strings.Repeat("x", 996)
	for i := 0; i < 1000; i++ {
		b.WriteString("150-" + body + "\r\n")
	}
	b.WriteString("150 end\r\n")
	for start := time.Now(); time.Since(start) < 30*time.Second; {
		if _, err := c.Write(b.Bytes()); err != nil {
			return
		}
	}
}

// strayLines writes unsolicited 200 lines for 5 s.
func strayLines(c net.Conn) {
	batch := bytes.Repeat([]byte("200 stray\r\n"), 1000)
	for start := time.Now(); time.Since(start) < 5*time.Second; {
		if _, err := c.Write(batch); err != nil {
			return
		}
	}
}

// memoryCgroup is a memory cgroup made for one test (cgroup v1 or v2, whichever this kernel
// has the memory controller on).
type memoryCgroup struct {
	dir string
	v2  bool
}

func newMemoryCgroup(t *testing.T, limit int64) *memoryCgroup {
	t.Helper()
	cg := &memoryCgroup{}
	switch {
	case fileExists("/sys/fs/cgroup/memory/memory.limit_in_bytes"):
		cg.dir = filepath.Join("/sys/fs/cgroup/memory", fmt.Sprintf("ftpsproxy-e2e-%d", os.Getpid()))
	case strings.Contains(readFile("/sys/fs/cgroup/cgroup.controllers"), "memory"):
		cg.dir, cg.v2 = filepath.Join("/sys/fs/cgroup", fmt.Sprintf("ftpsproxy-e2e-%d", os.Getpid())), true
	default:
		t.Fatalf("no memory cgroup controller (neither /sys/fs/cgroup/memory nor cgroup v2 with memory): the memory-cap test needs one (run as root)")
	}
	if err := os.Mkdir(cg.dir, 0o755); err != nil {
		t.Fatalf("memory cgroup: %v", err)
	}
	t.Cleanup(func() {
		for i := 0; i < 50 && syscall.Rmdir(cg.dir) != nil; i++ { // empty once the process is gone
			time.Sleep(100 * time.Millisecond)
		}
	})
	file := "memory.limit_in_bytes"
	if cg.v2 {
		file = "memory.max"
	}
	if err := os.WriteFile(filepath.Join(cg.dir, file), []byte(strconv.FormatInt(limit, 10)), 0o644); err != nil {
		t.Fatalf("memory cgroup limit: %v", err)
	}
	return cg
}

// peak returns the highest memory use the cgroup saw and how often it hit its limit.
func (cg *memoryCgroup) peak(t *testing.T) (peak, failcnt int64) {
	t.Helper()
	if cg.v2 {
		peak, _ = strconv.ParseInt(strings.TrimSpace(readFile(filepath.Join(cg.dir, "memory.peak"))), 10, 64)
		for _, l := range strings.Split(readFile(filepath.Join(cg.dir, "memory.events")), "\n") {
			if k, v, _ := strings.Cut(l, " "); k == "max" {
				failcnt, _ = strconv.ParseInt(v, 10, 64)
			}
		}
	} else {
		peak, _ = strconv.ParseInt(strings.TrimSpace(readFile(filepath.Join(cg.dir, "memory.max_usage_in_bytes"))), 10, 64)
		failcnt, _ = strconv.ParseInt(strings.TrimSpace(readFile(filepath.Join(cg.dir, "memory.failcnt"))), 10, 64)
	}
	if peak == 0 {
		t.Fatalf("memory cgroup %s reports no peak", cg.dir)
	}
	return peak, failcnt
}

// startInCgroup runs bin with cfg inside cg: a shell joins the cgroup, then execs the proxy.
func startInCgroup(t *testing.T, bin string, cg *memoryCgroup, cfg string) *proxyProc {
	t.Helper()
	return startProxyCmd(t, cfg, func(path string) *exec.Cmd {
		return exec.Command("sh", "-c", `echo $$ > "$1/cgroup.procs" && shift && exec "$@"`, "sh", cg.dir, bin, "-config", path)
	})
}

var (
	plainOnce sync.Once
	plainBin  string
	plainErr  error
)

// plainBinary builds ftpsproxy without the race detector, once per test binary.
func plainBinary(t *testing.T) string {
	t.Helper()
	plainOnce.Do(func() {
		plainBin = filepath.Join(filepath.Dir(binary), "ftpsproxy-norace")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "go", "build", "-o", plainBin, "../cmd/ftpsproxy").CombinedOutput()
		if err != nil {
			plainErr = fmt.Errorf("%v\n%s", err, out)
		}
	})
	if plainErr != nil {
		t.Fatalf("building ftpsproxy without -race: %v", plainErr)
	}
	return plainBin
}

func fileExists(path string) bool { _, err := os.Stat(path); return err == nil }

func readFile(path string) string { b, _ := os.ReadFile(path); return string(b) }
