package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
	"golang.org/x/sys/unix"

	"github.com/ftpsproxy/ftpsproxy/internal/dnstest"
	"github.com/ftpsproxy/ftpsproxy/internal/peers"
)

// The multi-instance edge: three namespaces joined by two veth pairs.
//
//	client 198.51.100.2, .3 ── edge: HAProxy 198.51.100.1:21, ftpsproxy A 198.51.100.11,
//	                                 ftpsproxy B 198.51.100.12, Redis 127.0.0.1 ── farm 203.0.113.2, .3
//
// Control connections go through HAProxy (send-proxy-v2); each instance announces its own
// address in 227 replies, so data connections go to it directly, past HAProxy.
const (
	clClient   = "198.51.100.2"
	clClient2  = "198.51.100.3" // the address the ban test uses
	clVIP      = "198.51.100.1"
	clInstA    = "198.51.100.11"
	clInstB    = "198.51.100.12"
	clEdgeBack = "203.0.113.1"
	clFarm1    = "203.0.113.2"
	clFarm2    = "203.0.113.3"
	clFTPPort  = 2121
	clVIPPort  = 21
)

// clHashClients are the addresses of the user_hash test, one per user name: each fails two
// logins (one through each instance), below the ban limits.
func clHashClients() []string {
	var out []string
	for i := range 12 {
		out = append(out, fmt.Sprintf("198.51.100.%d", 20+i))
	}
	return out
}

type clusterLayout struct{ client, edge, farm string }

// setupClusterNS builds the namespaces (named cl<pid>-…); t.Cleanup deletes them.
func setupClusterNS(t *testing.T) clusterLayout {
	t.Helper()
	p := fmt.Sprintf("cl%d-", os.Getpid())
	l := clusterLayout{client: p + "client", edge: p + "edge", farm: p + "farm"}
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	for _, ns := range []string{l.client, l.edge, l.farm} {
		exec.Command("ip", "netns", "del", ns).Run()
		ip("netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		ip("-n", ns, "link", "set", "lo", "up")
	}
	ip("-n", l.edge, "link", "add", "to-client", "type", "veth", "peer", "name", "eth0", "netns", l.client)
	ip("-n", l.edge, "link", "add", "to-farm", "type", "veth", "peer", "name", "eth0", "netns", l.farm)
	for _, a := range append([]string{clClient, clClient2}, clHashClients()...) {
		ip("-n", l.client, "addr", "add", a+"/24", "dev", "eth0")
	}
	for _, a := range []string{clVIP, clInstA, clInstB} {
		ip("-n", l.edge, "addr", "add", a+"/24", "dev", "to-client")
	}
	ip("-n", l.edge, "addr", "add", clEdgeBack+"/24", "dev", "to-farm")
	for _, a := range []string{clFarm1, clFarm2} {
		ip("-n", l.farm, "addr", "add", a+"/24", "dev", "eth0")
	}
	ip("-n", l.client, "link", "set", "eth0", "up")
	ip("-n", l.farm, "link", "set", "eth0", "up")
	ip("-n", l.edge, "link", "set", "to-client", "up")
	ip("-n", l.edge, "link", "set", "to-farm", "up")
	return l
}

// setns moves the calling thread into the network namespace at path (/run/netns/NAME or
// /proc/self/task/TID/ns/net).
func setns(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
}

// inNetNS runs fn on a thread moved into namespace ns: sockets fn makes belong to ns (and
// may then be used from any thread).
func inNetNS(ns string, fn func()) error {
	runtime.LockOSThread()
	orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", syscall.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if err := setns("/run/netns/" + ns); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays locked (Go ends it with its goroutine), and the test fails.
		return fmt.Errorf("back to the test's namespace: %w", err)
	}
	runtime.UnlockOSThread()
	return nil
}

// nsDialer dials from inside namespace ns, from local address src when set.
func nsDialer(ns, src string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		d := net.Dialer{Timeout: 5 * time.Second}
		if src != "" {
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
		}
		if nerr := inNetNS(ns, func() { c, err = d.DialContext(ctx, network, addr) }); nerr != nil {
			if c != nil {
				c.Close()
			}
			return nil, nerr
		}
		return c, err
	}
}

// clDNS serves the farm's names from port 53 of the edge namespace, which the proxies'
// resolver asks: "ip netns exec" mounts /etc/netns/NS/resolv.conf as their /etc/resolv.conf.
func clDNS(t *testing.T, ns string) *dnstest.Server {
	t.Helper()
	dir := filepath.Join("/etc/netns", ns)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte("nameserver 127.0.0.53\noptions timeout:1 attempts:2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var pc net.PacketConn
	var ln net.Listener
	var err error
	if nerr := inNetNS(ns, func() {
		if pc, err = net.ListenPacket("udp", "127.0.0.53:53"); err == nil {
			ln, err = net.Listen("tcp", "127.0.0.53:53")
		}
	}); nerr != nil || err != nil {
		t.Fatalf("DNS server in %s: %v %v", ns, nerr, err)
	}
	return dnstest.Serve(t, pc, ln)
}

// clSession logs in through the VIP from the client namespace, downloads name, checks its
// sha256 against want, and quits. It returns the host the data connection went to: the
// instance that served the session (its own address, past HAProxy).
func clSession(ns, name, want string) (string, error) {
	dial := nsDialer(ns, clClient)
	var dataHost string
	vip := net.JoinHostPort(clVIP, strconv.Itoa(clVIPPort))
	c, err := ftp.Dial(vip, ftp.DialWithTimeout(10*time.Second),
		ftp.DialWithDisabledEPSV(true), ftp.DialWithTrustPasvIP(true),
		ftp.DialWithDialFunc(func(network, addr string) (net.Conn, error) {
			if addr != vip {
				dataHost, _, _ = net.SplitHostPort(addr)
			}
			return dial(context.Background(), network, addr)
		}))
	if err != nil {
		return "", err
	}
	defer c.Quit()
	if err := c.Login(peers.User, peers.Password); err != nil {
		return "", err
	}
	r, err := c.Retr(name)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	_, err = io.Copy(h, r)
	if cerr := r.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return "", fmt.Errorf("sha256 %s, want %s", got, want)
	}
	return dataHost, nil
}

// clControl is a raw control connection through the VIP from src in the client namespace.
type clControl struct {
	c net.Conn
	r *bufio.Reader
}

func clDialControl(t *testing.T, ns, src string) *clControl {
	t.Helper()
	c, err := nsDialer(ns, src)(context.Background(), "tcp", net.JoinHostPort(clVIP, strconv.Itoa(clVIPPort)))
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { c.Close() })
	return &clControl{c: c, r: bufio.NewReader(c)}
}

// reply reads one reply (its last line).
func (cc *clControl) reply() (string, error) {
	for {
		line, err := cc.r.ReadString('\n')
		if err != nil {
			return line, err
		}
		if len(line) >= 4 && line[3] == ' ' {
			return strings.TrimSpace(line), nil
		}
	}
}

func (cc *clControl) cmd(s string) (string, error) {
	if _, err := fmt.Fprintf(cc.c, "%s\r\n", s); err != nil {
		return "", err
	}
	return cc.reply()
}

// clInstance is one ftpsproxy of the edge.
type clInstance struct {
	name, addr string
	admin      string // admin listener in the edge namespace
	p          *nsProxy
}

// clProxyConfig: the farm is one backend entry written with a host name, each of its
// addresses a backend of max_sessions 4.
func clProxyConfig(inst, addr, admin, redisURL string, ports [2]int, farm string) string {
	return fmt.Sprintf(`[[listener]]
address = "%[2]s:%[7]d"
proxy_protocol = "on"
trusted_proxies = ["%[8]s"]

[data]
public_address = "%[2]s"
port_range = "%[4]d-%[5]d"
connect_timeout = "5s"

[limits]
max_sessions_per_ip = 0
logins_per_minute = 2
login_burst = 1
attempts_per_minute = 0
ban_time = "1m"

[[pool]]
name = "farm"
policy = "user_hash"
health_interval = "1s"
resolve_interval = "500ms"

[[pool.backend]]
address = "%[3]s"
max_sessions = 4

[admin]
address = "%[6]s"

[cluster]
redis_url = "%[9]s"
instance = "%[1]s"
`, inst, addr, farm, ports[0], ports[1], admin, clFTPPort, clVIP, redisURL)
}

// clHAProxy runs HAProxy in the edge namespace: the VIP balances round robin over the two
// instances with send-proxy-v2, checks each one's /healthz (admin listener: 503 while it
// drains) every 200 ms, and serves its stats as CSV.
func clHAProxy(t *testing.T, ns string, stats int) {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global
  maxconn 2000
defaults
  mode tcp
  timeout connect 2s
  timeout client 60s
  timeout server 60s
frontend ftp
  bind %[1]s:%[2]d
  default_backend edge
backend edge
  balance roundrobin
  option httpchk GET /healthz
  server a %[3]s:%[5]d send-proxy-v2 source %[1]s check addr 127.0.0.1 port 9121 inter 200ms fall 2 rise 1
  server b %[4]s:%[5]d send-proxy-v2 source %[1]s check addr 127.0.0.1 port 9122 inter 200ms fall 2 rise 1
listen stats
  mode http
  bind 127.0.0.1:%[6]d
  stats enable
  stats uri /stats
`, clVIP, clVIPPort, clInstA, clInstB, clFTPPort, stats)
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd, err := nsCommand(ctx, ns, nil, "haproxy", "-db", "-f", path)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		if t.Failed() {
			t.Logf("haproxy log:\n%s", tail(logs.String(), 50))
		}
	})
}

// clHTTP gets url from inside the edge namespace.
func clHTTP(ns, url string) (string, error) {
	tr := &http.Transport{DialContext: nsDialer(ns, "")}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	resp, err := cl.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return string(b), err
}

// haproxyStatus returns the status (UP, DOWN, …) HAProxy's stats give server srv of backend
// edge.
func haproxyStatus(t *testing.T, ns string, stats int, srv string) string {
	t.Helper()
	out, err := clHTTP(ns, fmt.Sprintf("http://127.0.0.1:%d/stats;csv", stats))
	if err != nil {
		return "unknown: " + err.Error()
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(line, ",")
		if len(f) > 17 && f[0] == "edge" && f[1] == srv {
			return f[17]
		}
	}
	return "missing"
}

type clSessionInfo struct {
	User    string `json:"user"`
	Backend string `json:"backend"`
	Client  string `json:"client"`
}

// clSessions lists the sessions of the instance whose admin listener is admin.
func clSessions(t *testing.T, ns, admin string) []clSessionInfo {
	t.Helper()
	out, err := clHTTP(ns, "http://"+admin+"/api/v1/sessions")
	if err != nil {
		t.Fatal(err)
	}
	var ss []clSessionInfo
	if err := json.Unmarshal([]byte(out), &ss); err != nil {
		t.Fatalf("sessions: %v: %s", err, out)
	}
	return ss
}

// TestClusterEdge: two ftpsproxy instances behind HAProxy (send-proxy-v2) share bans and
// max_sessions through Redis; clients reach the data ports of the instance that serves them
// directly. 200 sessions spread over both; user_hash picks the same backend through either;
// 8 sessions fill two backends of max_sessions 4 across both instances and the 9th is
// refused; a ban made through the VIP refuses the address on both; one instance killed mid
// run loses its own sessions, and once HAProxy marks it down every new session succeeds on
// the other.
func TestClusterEdge(t *testing.T) {
	for _, bin := range []string{"haproxy", "ip"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is needed (scripts/install-test-peers.sh): %v", bin, err)
		}
	}
	l := setupClusterNS(t)
	fport := peers.FreePort(t)
	farm1 := peers.StartVsftpd(t, peers.Options{Addr: net.JoinHostPort(clFarm1, strconv.Itoa(fport)), NetNS: l.farm})
	farm2 := peers.StartVsftpd(t, peers.Options{Addr: net.JoinHostPort(clFarm2, strconv.Itoa(fport)), NetNS: l.farm})
	data := make([]byte, 256<<10)
	rand.Read(data)
	want := sum(data)
	farm1.WriteFile(t, "f.bin", data)
	farm2.WriteFile(t, "f.bin", data)
	// The edge namespace is this test's own: its fixed ports cannot collide with anything.
	rd := peers.StartRedis(t, "127.0.0.1:6390", l.edge)
	dnsSrv := clDNS(t, l.edge)
	dnsSrv.Set(t, "farm.cluster.test", "A "+clFarm1, "A "+clFarm2)
	farm := "farm.cluster.test:" + strconv.Itoa(fport)
	insts := []*clInstance{
		{name: "edge-1", addr: clInstA, admin: "127.0.0.1:9121"},
		{name: "edge-2", addr: clInstB, admin: "127.0.0.1:9122"},
	}
	for i, in := range insts {
		ports := [2]int{30000 + 100*i, 30099 + 100*i} // each instance its own passive range
		in.p = startNSProxy(t, l.edge, clProxyConfig(in.name, in.addr, in.admin, rd.URL, ports, farm), 1)
	}
	const stats = 9000
	clHAProxy(t, l.edge, stats)
	waitUntil(t, "HAProxy sees both instances up", 10*time.Second, func() bool {
		return haproxyStatus(t, l.edge, stats, "a") == "UP" && haproxyStatus(t, l.edge, stats, "b") == "UP"
	})

	t.Run("200 sessions", func(t *testing.T) { clSpread(t, l, want) })
	t.Run("user_hash", func(t *testing.T) { clUserHash(t, l, insts) })
	t.Run("max_sessions", func(t *testing.T) { clMaxSessions(t, l, insts) })
	t.Run("ban", func(t *testing.T) { clBan(t, l, insts) })
	t.Run("DNS", func(t *testing.T) { clDNSChange(t, l, insts, dnsSrv, farm2.Addr, want) })
	t.Run("Redis outage", func(t *testing.T) { clRedisOutage(t, l, insts, rd, want) })
	t.Run("instance killed", func(t *testing.T) { clKill(t, l, insts, stats, want) })
}

// waitUntil polls cond every 50 ms until within has passed.
func waitUntil(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// clSpread runs 200 sessions, 4 at a time (two backends of max_sessions 4 hold 8, and a
// slot is given back a moment after the client has its 221), each
// with a sha256-checked download over a data connection to the serving instance.
func clSpread(t *testing.T, l clusterLayout, want string) {
	var next atomic.Int32
	var mu sync.Mutex
	by := map[string]int{}
	var errs []error
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for next.Add(1) <= 200 {
				host, err := clSession(l.client, "f.bin", want)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					by[host]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d of 200 sessions failed, first: %v", len(errs), errs[0])
	}
	if by[clInstA]+by[clInstB] != 200 || by[clInstA] < 50 || by[clInstB] < 50 {
		t.Fatalf("sessions by data address: %v; want 200 spread over %s and %s", by, clInstA, clInstB)
	}
	t.Logf("sessions by instance: %v", by)
}

// clUserHash: for 12 user names, a failed login through each instance (two connections in a
// row: HAProxy's round robin sends one to each) reaches the same backend, as both
// instances' logs say. Each user comes from its own address, so no address nears a ban;
// four connections at a time (vsftpd holds a 530 for a second).
func clUserHash(t *testing.T, l clusterLayout, insts []*clInstance) {
	users := clHashClients()
	for i := 0; i < len(users); i += 2 {
		var wg sync.WaitGroup
		for _, j := range []int{i, i, i + 1, i + 1} {
			cc := clDialControl(t, l.client, users[j])
			if r, err := cc.reply(); err != nil || !strings.HasPrefix(r, "220") {
				t.Fatalf("greeting %q %v", r, err)
			}
			if r, err := cc.cmd(fmt.Sprintf("USER hashuser%d", j)); err != nil || !strings.HasPrefix(r, "331") {
				t.Fatalf("USER: %q %v", r, err)
			}
			wg.Go(func() {
				defer cc.c.Close()
				if r, err := cc.cmd("PASS wrong"); !strings.HasPrefix(r, "530") {
					t.Errorf("user %d: PASS answered %q %v", j, r, err)
				}
			})
		}
		wg.Wait()
	}
	backends := map[string]bool{}
	for j := range users {
		seen := map[string]string{}
		re := regexp.MustCompile(`msg="login failed".* user=hashuser` + strconv.Itoa(j) + ` .*backend=(\S+)`)
		for _, in := range insts {
			if m := re.FindStringSubmatch(in.p.logs.String()); m != nil {
				seen[in.name] = m[1]
			}
		}
		if len(seen) != 2 || seen["edge-1"] != seen["edge-2"] {
			t.Fatalf("hashuser%d: backends by instance %v; want the same through both", j, seen)
		}
		backends[seen["edge-1"]] = true
	}
	if len(backends) != 2 {
		t.Fatalf("12 users all hashed to %v: the test proves nothing", backends)
	}
	clWaitIdle(t, l, insts)
}

// clWaitIdle waits until neither instance has a session.
func clWaitIdle(t *testing.T, l clusterLayout, insts []*clInstance) {
	t.Helper()
	waitUntil(t, "sessions to end", 10*time.Second, func() bool {
		return len(clSessions(t, l.edge, insts[0].admin))+len(clSessions(t, l.edge, insts[1].admin)) == 0
	})
}

// clMaxSessions: two backends of max_sessions 4: 8 sessions through both instances, and
// the 9th is refused (each instance alone would admit 8).
func clMaxSessions(t *testing.T, l clusterLayout, insts []*clInstance) {
	clWaitIdle(t, l, insts)
	login := func() (*clControl, string) {
		cc := clDialControl(t, l.client, clClient)
		r, err := cc.reply()
		if err == nil && strings.HasPrefix(r, "220") {
			if r, err = cc.cmd("USER " + peers.User); err == nil && strings.HasPrefix(r, "331") {
				r, err = cc.cmd("PASS " + peers.Password)
			}
		}
		if err != nil {
			r = err.Error()
		}
		return cc, r
	}
	var open []*clControl
	defer func() {
		for _, cc := range open {
			cc.c.Close()
		}
		clWaitIdle(t, l, insts)
	}()
	for i := range 8 {
		cc, r := login()
		open = append(open, cc)
		if !strings.HasPrefix(r, "230") {
			t.Fatalf("session %d of 8: %q", i+1, r)
		}
	}
	per := []int{len(clSessions(t, l.edge, insts[0].admin)), len(clSessions(t, l.edge, insts[1].admin))}
	if per[0] == 0 || per[1] == 0 || per[0]+per[1] != 8 {
		t.Fatalf("sessions per instance %v; want 8 on both", per)
	}
	for range 2 { // one attempt per instance
		cc, r := login()
		open = append(open, cc)
		if !strings.HasPrefix(r, "421") {
			t.Fatalf("a 9th session across the instances: %q, want 421", r)
		}
	}
}

// clBan: failed logins from one address through the VIP (so through both instances) ban it;
// the next connections are refused at connect by both instances.
func clBan(t *testing.T, l clusterLayout, insts []*clInstance) {
	banned := false
	for i := 0; i < 8 && !banned; i++ {
		cc := clDialControl(t, l.client, clClient2)
		r, err := cc.reply()
		if err == nil && strings.HasPrefix(r, "220") {
			if r, err = cc.cmd("USER " + peers.User); err == nil && strings.HasPrefix(r, "331") {
				r, _ = cc.cmd("PASS wrong-password")
			}
		}
		banned = strings.HasPrefix(r, "421 Too many login attempts")
		cc.c.Close()
	}
	if !banned {
		t.Fatal("8 failed logins did not ban the address")
	}
	for range 4 { // round robin: two per instance
		cc := clDialControl(t, l.client, clClient2)
		if r, err := cc.reply(); !strings.HasPrefix(r, "421 Too many login attempts") {
			t.Fatalf("a banned address got %q %v at connect", r, err)
		}
	}
	refused := regexp.MustCompile(`msg="banned address refused".* client=` + regexp.QuoteMeta(clClient2) + `:.* at=connect`)
	for _, in := range insts {
		if !refused.MatchString(in.p.logs.String()) {
			t.Fatalf("%s never refused the banned address at connect:\n%s", in.name, tail(in.p.logs.String(), 40))
		}
	}
}

// clKill: a session on instance A; A is killed while a client loop runs. A's session ends;
// once HAProxy marks A down, every session started succeeds, on B.
func clKill(t *testing.T, l clusterLayout, insts []*clInstance, stats int, want string) {
	// A session known to be on A: its 227 names A's address.
	var onA *clControl
	for try := 0; onA == nil && try < 6; try++ {
		cc := clDialControl(t, l.client, clClient)
		cc.reply()
		cc.cmd("USER " + peers.User)
		cc.cmd("PASS " + peers.Password)
		r, _ := cc.cmd("PASV")
		if strings.Contains(r, strings.ReplaceAll(clInstA, ".", ",")) {
			onA = cc
		} else {
			cc.c.Close()
		}
	}
	if onA == nil {
		t.Fatal("no session landed on instance A")
	}
	type result struct {
		start time.Time
		host  string
		err   error
	}
	var mu sync.Mutex
	var results []result
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			start := time.Now()
			host, err := clSession(l.client, "f.bin", want)
			mu.Lock()
			results = append(results, result{start, host, err})
			mu.Unlock()
		}
	}()
	time.Sleep(500 * time.Millisecond)
	insts[0].p.cmd.Process.Kill()
	if r, err := onA.cmd("NOOP"); err == nil {
		t.Fatalf("the session on the killed instance goes on: %q", r)
	}
	waitUntil(t, "HAProxy marks A down", 10*time.Second, func() bool { return haproxyStatus(t, l.edge, stats, "a") == "DOWN" })
	down := time.Now()
	waitUntil(t, "20 sessions after A is down", 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, r := range results {
			if r.start.After(down) {
				n++
			}
		}
		return n >= 20
	})
	close(stop)
	<-done
	failedBefore := 0
	for _, r := range results {
		switch {
		case !r.start.After(down) && r.err != nil:
			failedBefore++
		case r.start.After(down) && (r.err != nil || r.host != clInstB):
			t.Fatalf("a session started after HAProxy marked A down: host %s, err %v", r.host, r.err)
		}
	}
	t.Logf("%d sessions in all, %d failed before A was marked down", len(results), failedBefore)
}

// clDNSChange: the farm's name loses farm1's address. Both instances stop giving farm1
// sessions (its running ones would finish: shown removed), every new session goes to farm2;
// then the DNS server fails and the last good answer stays in use, the failures counted.
func clDNSChange(t *testing.T, l clusterLayout, insts []*clInstance, dnsSrv *dnstest.Server, farm2, want string) {
	dnsSrv.Set(t, "farm.cluster.test", "A "+clFarm2)
	for _, in := range insts {
		waitUntil(t, in.name+" drops farm1", 10*time.Second, func() bool {
			out, err := clHTTP(l.edge, "http://"+in.admin+"/api/v1/backends")
			return err == nil && !strings.Contains(out, clFarm1) && strings.Contains(out, farm2)
		})
	}
	logins := func(backend string) []int {
		re := regexp.MustCompile(`msg="login ok".* backend=` + regexp.QuoteMeta(backend) + ` `)
		return []int{len(re.FindAllString(insts[0].p.logs.String(), -1)), len(re.FindAllString(insts[1].p.logs.String(), -1))}
	}
	farm1 := net.JoinHostPort(clFarm1, farm2[strings.LastIndex(farm2, ":")+1:])
	before1, before2 := logins(farm1), logins(farm2)
	check := func(n int) {
		t.Helper()
		for range n {
			if _, err := clSession(l.client, "f.bin", want); err != nil {
				t.Fatal(err)
			}
		}
	}
	check(6)
	after1, after2 := logins(farm1), logins(farm2)
	if !slices.Equal(after1, before1) || after2[0] <= before2[0] || after2[1] <= before2[1] {
		t.Fatalf("logins per instance on farm1 %v → %v, on farm2 %v → %v: want new sessions on farm2 only, through both", before1, after1, before2, after2)
	}
	for _, in := range insts {
		if !strings.Contains(in.p.logs.String(), "backends changed by DNS") {
			t.Fatalf("%s: the DNS change is not logged", in.name)
		}
	}
	dnsSrv.Fail("farm.cluster.test")
	for _, in := range insts {
		waitUntil(t, in.name+" counts failed lookups", 10*time.Second, func() bool {
			out, _ := clHTTP(l.edge, "http://"+in.admin+"/metrics")
			m := regexp.MustCompile(`(?m)^ftpsproxy_dns_lookup_failures_total (\d+)`).FindStringSubmatch(out)
			return m != nil && m[1] != "0"
		})
	}
	check(4)
}

// clMetric returns the value of series name (no labels) on the instance's /metrics.
func clMetric(t *testing.T, ns string, in *clInstance, name string) string {
	t.Helper()
	out, err := clHTTP(ns, "http://"+in.admin+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)`).FindStringSubmatch(out)
	if m == nil {
		return "missing"
	}
	return m[1]
}

// clRedisOutage: with Redis killed, sessions go on (local limits), each instance says so on
// its status page and in ftpsproxy_cluster_up; Redis back, both use it again.
func clRedisOutage(t *testing.T, l clusterLayout, insts []*clInstance, rd *peers.Redis, want string) {
	rd.Stop()
	for range 4 {
		if _, err := clSession(l.client, "f.bin", want); err != nil {
			t.Fatalf("session while Redis is down: %v", err)
		}
	}
	for _, in := range insts {
		waitUntil(t, in.name+" reports Redis down", 5*time.Second, func() bool { return clMetric(t, l.edge, in, "ftpsproxy_cluster_up") == "0" })
		page, err := clHTTP(l.edge, "http://"+in.admin+"/")
		if err != nil || !strings.Contains(page, "local only") || !strings.Contains(page, "Redis unreachable since") {
			t.Fatalf("%s status page during the outage (%v):\n%s", in.name, err, tail(page, 40))
		}
		if n := strings.Count(in.p.logs.String(), "Redis unreachable"); n != 1 {
			t.Fatalf("%s logged the outage %d times, want once", in.name, n)
		}
	}
	rd.Start(t)
	for _, in := range insts {
		waitUntil(t, in.name+" back on Redis", 5*time.Second, func() bool { return clMetric(t, l.edge, in, "ftpsproxy_cluster_up") == "1" })
		if clMetric(t, l.edge, in, "ftpsproxy_cluster_outages_total") != "1" {
			t.Fatalf("%s: outages counted %s, want 1", in.name, clMetric(t, l.edge, in, "ftpsproxy_cluster_outages_total"))
		}
	}
	for range 2 {
		if _, err := clSession(l.client, "f.bin", want); err != nil {
			t.Fatalf("session after Redis returned: %v", err)
		}
	}
}
