package e2e

import (
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/internal/peers"
)

// dirFarm is one vsftpd, one pure-ftpd and one ProFTPD, each serving its own random
// data.bin, behind pools pool-v, pool-pure and pool-pro.
type dirFarm struct {
	vs, pure, pro          *peers.Server
	vsSum, pureSum, proSum string
}

func startDirFarm(t *testing.T) *dirFarm {
	t.Helper()
	f := &dirFarm{
		vs:   peers.StartVsftpd(t, peers.Options{}),
		pure: peers.StartPureFTPd(t, peers.Options{}),
		pro:  peers.StartProFTPD(t, peers.Options{}),
	}
	for _, s := range []struct {
		srv *peers.Server
		sum *string
	}{{f.vs, &f.vsSum}, {f.pure, &f.pureSum}, {f.pro, &f.proSum}} {
		data := make([]byte, 300*1024)
		rand.Read(data)
		s.srv.WriteFile(t, "data.bin", data)
		*s.sum = sum(data)
	}
	return f
}

// config is a proxy in front of the farm with a [directory] section (and extra TOML, e.g.
// routes, before it); the listener's pool is pool-v.
func (f *dirFarm) config(t *testing.T, admin, extra, directory string) string {
	return fmt.Sprintf(`
[[listener]]
address = %q
tls = "none"
pool = "pool-v"

[data]
port_range = %q
connect_timeout = "10s"

[[pool]]
name = "pool-v"
health_interval = "0s"
[[pool.backend]]
address = %q

[[pool]]
name = "pool-pure"
health_interval = "0s"
[[pool.backend]]
address = %q

[[pool]]
name = "pool-pro"
health_interval = "0s"
[[pool.backend]]
address = %q

[limits]
max_sessions_per_ip = 500
logins_per_minute = 0
attempts_per_minute = 0

[log]
level = "debug"

[admin]
address = %q
%s
[directory]
%s
`, freeAddr(t), freeRange(t, 60), f.vs.Addr, f.pure.Addr, f.pro.Addr, admin, extra, directory)
}

// fetchData downloads data.bin through addr as user/pass with a real client (curl, lftp or
// ftplib) and returns its sha256.
func fetchData(t *testing.T, client, addr, user, pass string) (string, error) {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "data.bin")
	var out string
	var err error
	switch client {
	case "curl":
		out, err = peers.Curl(ctx(t), "--max-time", "60", "--user", user+":"+pass, "-o", dst, "ftp://"+addr+"/data.bin")
	case "lftp":
		out, err = peers.Lftp(ctx(t), fmt.Sprintf("set ftp:ssl-allow no\nopen -u %q,%q ftp://%s\nget data.bin -o %s\n", user, pass, addr, dst))
	case "ftplib":
		host, port, _ := net.SplitHostPort(addr)
		out, err = peers.Python(ctx(t), `import ftplib, sys
f = ftplib.FTP()
f.connect(sys.argv[1], int(sys.argv[2]), timeout=30)
f.login(sys.argv[3], sys.argv[4])
with open(sys.argv[5], "wb") as o:
    f.retrbinary("RETR data.bin", o.write)
f.quit()
`, host, port, user, pass, dst)
	default:
		t.Fatalf("unknown client %s", client)
	}
	if err != nil {
		return "", fmt.Errorf("%s as %s: %w\n%s", client, user, err, out)
	}
	return fileSum(t, dst), nil
}

func mustFetchData(t *testing.T, client, addr, user, pass string) string {
	t.Helper()
	s, err := fetchData(t, client, addr, user, pass)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// loginReply logs in over a raw connection and returns the proxy's reply to PASS.
func loginReply(t *testing.T, addr, user, pass string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	tp := textproto.NewConn(c)
	if _, _, err := tp.ReadResponse(220); err != nil {
		t.Fatal(err)
	}
	tp.PrintfLine("USER %s", user)
	if _, _, err := tp.ReadResponse(331); err != nil {
		t.Fatalf("USER: %v", err)
	}
	tp.PrintfLine("PASS %s", pass)
	line, err := tp.ReadLine()
	if err != nil {
		t.Fatalf("PASS: %v", err)
	}
	return line
}

// metric returns the value of one series on the admin server's /metrics (0 when absent).
func metric(t *testing.T, admin, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

func writeAtomic(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path+".new", []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
}

const noBackend421 = "421 Service not available, closing control connection"

// TestDirectoryFile routes three users by the file to three different servers, with three
// clients, each logging in to its server as the test account; then follows edits of the file
// (poll and SIGHUP) and keeps the directory in force when an edit is bad.
func TestDirectoryFile(t *testing.T) {
	f := startDirFarm(t)
	csv := filepath.Join(t.TempDir(), "users.csv")
	u := peers.User
	writeAtomic(t, csv, fmt.Sprintf("# user,target,backend_user\nalice,pool-v,%s\nbob,%s,%s\n\ncarol,pool-pro,%s\n", u, f.pure.Addr, u, u))
	admin := freeAddr(t)
	p := startProxy(t, f.config(t, admin, "", fmt.Sprintf("file = %q\n", csv)))

	if got := mustFetchData(t, "curl", p.addr, "alice", peers.Password); got != f.vsSum {
		t.Fatal("alice (curl) not on vsftpd")
	}
	if got := mustFetchData(t, "lftp", p.addr, "bob", peers.Password); got != f.pureSum {
		t.Fatal("bob (lftp) not on pure-ftpd")
	}
	if got := mustFetchData(t, "ftplib", p.addr, "carol", peers.Password); got != f.proSum {
		t.Fatal("carol (ftplib) not on ProFTPD")
	}
	waitLog(t, p, "by=directory backend_user="+u)

	// Edited while running: alice moves to ProFTPD for her next login (mtime poll, 2 s).
	writeAtomic(t, csv, fmt.Sprintf("alice,pool-pro,%s\nbob,%s,%s\ncarol,pool-pro,%s\n", u, f.pure.Addr, u, u))
	waitFor(t, 10*time.Second, func() bool { return mustFetchData(t, "curl", p.addr, "alice", peers.Password) == f.proSum })

	// A bad edit is refused with file and line, and the directory in force stays.
	writeAtomic(t, csv, fmt.Sprintf("alice,pool-pure,%s\nbob\n", u))
	waitFor(t, 10*time.Second, func() bool { return strings.Contains(p.logs.String(), "directory reload refused") })
	waitLog(t, p, csv+":2:")
	if got := mustFetchData(t, "curl", p.addr, "alice", peers.Password); got != f.proSum {
		t.Fatal("a refused file moved alice")
	}

	// SIGHUP re-reads it at once; a target outside the config is refused the same way.
	writeAtomic(t, csv, fmt.Sprintf("alice,pool-pure,%s\nbob,10.9.9.9:21\n", u))
	p.signal(syscall.SIGHUP)
	waitFor(t, 10*time.Second, func() bool { return strings.Count(p.logs.String(), "config reloaded") == 1 })
	waitLog(t, p, `:2: target \"10.9.9.9:21\" is not a pool or backend of the config`)
	writeAtomic(t, csv, fmt.Sprintf("alice,pool-pure,%s\n", u))
	p.signal(syscall.SIGHUP)
	waitFor(t, 10*time.Second, func() bool { return strings.Count(p.logs.String(), "config reloaded") == 2 })
	if got := mustFetchData(t, "lftp", p.addr, "alice", peers.Password); got != f.pureSum {
		t.Fatal("SIGHUP did not move alice to pure-ftpd")
	}
	if n := metric(t, admin, `ftpsproxy_directory_lookups_total{source="file",result="found"}`); n < 6 {
		t.Fatalf("file lookups found = %v", n)
	}
}

// lookupSvc is a lookup service for the proxy: urlu is on ProFTPD as the test account, the
// test account itself is unknown (404), and the users slow, err500 and garbage get a slow
// answer, a 500 and garbage. It counts calls per user.
type lookupSvc struct {
	pro   string
	calls map[string]*atomic.Int64
}

func (l *lookupSvc) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var q struct {
		User string `json:"user"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&q); err != nil || r.Method != http.MethodPost {
		w.WriteHeader(400)
		return
	}
	if c := l.calls[q.User]; c != nil {
		c.Add(1)
	}
	switch q.User {
	case "urlu":
		json.NewEncoder(w).Encode(map[string]string{"backend": l.pro, "backend_user": peers.User})
	case "slow":
		select {
		case <-time.After(3 * time.Second):
		case <-r.Context().Done():
		}
	case "err500":
		w.WriteHeader(500)
	case "garbage":
		io.WriteString(w, "<html>")
	case "elsewhere":
		io.WriteString(w, `{"backend": "192.0.2.1:21"}`)
	default:
		http.NotFound(w, r)
	}
}

func TestDirectoryURL(t *testing.T) {
	f := startDirFarm(t)
	svc := &lookupSvc{pro: f.pro.Addr, calls: map[string]*atomic.Int64{}}
	for _, u := range []string{"urlu", peers.User, "slow"} {
		svc.calls[u] = &atomic.Int64{}
	}
	ts := httptest.NewServer(svc)
	defer ts.Close()
	admin := freeAddr(t)
	p := startProxy(t, f.config(t, admin, "", fmt.Sprintf("url = %q\ntimeout = \"500ms\"\ncache_ttl = \"1h\"\n", ts.URL+"/lookup")))

	for _, client := range []string{"curl", "lftp", "ftplib"} {
		if got := mustFetchData(t, client, p.addr, "urlu", peers.Password); got != f.proSum {
			t.Fatalf("urlu (%s) not on ProFTPD", client)
		}
	}
	if n := svc.calls["urlu"].Load(); n != 1 {
		t.Fatalf("%d lookups for 3 logins of urlu within the TTL, want 1", n)
	}
	// 404: on to the listener's pool; cached too.
	for range 2 {
		if got := mustFetchData(t, "curl", p.addr, peers.User, peers.Password); got != f.vsSum {
			t.Fatal("unknown user not on the listener's pool")
		}
	}
	if n := svc.calls[peers.User].Load(); n != 1 {
		t.Fatalf("%d lookups for 2 logins of an unknown user, want 1 (negative cache)", n)
	}
	// Slow, 500, garbage: refused (on_error = refuse is the default); an answer naming a
	// backend outside the config: refused too. Failures are not cached.
	for _, user := range []string{"slow", "err500", "garbage", "elsewhere", "slow"} {
		start := time.Now()
		if line := loginReply(t, p.addr, user, "x"); line != noBackend421 {
			t.Fatalf("%s: %q", user, line)
		}
		if user == "slow" && time.Since(start) > 2500*time.Millisecond {
			t.Fatalf("slow lookup not cut at the 500ms timeout: %v", time.Since(start))
		}
	}
	if n := svc.calls["slow"].Load(); n != 2 {
		t.Fatalf("%d lookups for 2 logins of a failing user, want 2 (failures not cached)", n)
	}
	for _, want := range []string{"directory lookup failed; login refused", "by=url backend_user=" + peers.User, "directory target is not in the config"} {
		waitLog(t, p, want)
	}
	if n := metric(t, admin, `ftpsproxy_directory_lookups_total{source="url",result="error"}`); n != 4 {
		t.Errorf("url errors = %v, want 4", n)
	}
	if n := metric(t, admin, `ftpsproxy_directory_cache_hits_total`); n != 3 {
		t.Errorf("cache hits = %v, want 3", n)
	}
}

// TestDirectoryOnErrorRoutes: with on_error = "routes" a failing lookup service sends the
// login on to [[route]] and the listener's pool.
func TestDirectoryOnErrorRoutes(t *testing.T) {
	f := startDirFarm(t)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(500) }))
	defer ts.Close()
	p := startProxy(t, f.config(t, freeAddr(t), "[[route]]\nuser = \"ftp*\"\npool = \"pool-pure\"\n",
		fmt.Sprintf("url = %q\non_error = \"routes\"\n", ts.URL)))
	if got := mustFetchData(t, "ftplib", p.addr, peers.User, peers.Password); got != f.pureSum {
		t.Fatal("not routed by [[route]] after a failed lookup")
	}
	waitLog(t, p, "by=route route=route[0]")
}

// TestDirectoryUserDomain routes user@domain by a [[route]] host glob and by the file, logs in
// as the local part or the line's backend user, and refuses hostile names without a dial.
func TestDirectoryUserDomain(t *testing.T) {
	f := startDirFarm(t)
	csv := filepath.Join(t.TempDir(), "users.csv")
	writeAtomic(t, csv, fmt.Sprintf("other.example,pool-pro\nboss@other.example,pool-v,%s\n", peers.User))
	p := startProxy(t, f.config(t, freeAddr(t), "[[route]]\nhost = \"shop.example\"\npool = \"pool-pure\"\n",
		fmt.Sprintf("file = %q\ndomain_separator = \"@\"\n", csv)))
	if got := mustFetchData(t, "curl", p.addr, peers.User+"@shop.example", peers.Password); got != f.pureSum {
		t.Fatal("user@shop.example not on pure-ftpd")
	}
	if got := mustFetchData(t, "lftp", p.addr, peers.User+"@other.example", peers.Password); got != f.proSum {
		t.Fatal("user@other.example not on ProFTPD")
	}
	if got := mustFetchData(t, "ftplib", p.addr, "boss@other.example", peers.Password); got != f.vsSum {
		t.Fatal("boss@other.example not on vsftpd as the backend user")
	}
	hostile := []string{"@@", peers.User + "@", "@shop.example", peers.User + "@nomatch.example",
		strings.Repeat("a", 4000) + "@shop.example", peers.User + "@shop.example:21"}
	for _, name := range hostile {
		if line := loginReply(t, p.addr, name, peers.Password); line != "530 Login incorrect." {
			t.Fatalf("%.40q: %q", name, line)
		}
	}
	// Never a dial: every backend chosen belongs to one of the three good logins.
	waitFor(t, 5*time.Second, func() bool { return strings.Count(p.logs.String(), `msg="login refused by the proxy"`) == len(hostile) })
	for _, line := range strings.Split(p.logs.String(), "\n") {
		if strings.Contains(line, `msg="backend chosen"`) && !strings.Contains(line, "@other.example ") &&
			!strings.Contains(line, "user="+peers.User+"@shop.example ") {
			t.Fatalf("a refused name reached a backend: %.300s", line)
		}
	}
	noPassword(t, p)
}

// authSvc is the authentication service: customer bob with bobSecret is mapped to the test
// account on ProFTPD; anyone else is denied.
type authSvc struct {
	down  atomic.Bool
	calls atomic.Int64
}

const bobSecret = "bob-S3cret-pw"

func (a *authSvc) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.calls.Add(1)
	if a.down.Load() {
		// Hang past the proxy's timeout: a slow service is as good as a dead one.
		select {
		case <-time.After(3 * time.Second):
		case <-r.Context().Done():
		}
		return
	}
	var q struct {
		User     string `json:"user"`
		Password string `json:"password"`
		ClientIP string `json:"client_ip"`
		TLS      bool   `json:"tls"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&q); err != nil {
		w.WriteHeader(400)
		return
	}
	switch {
	case q.User == "bob" && q.Password == bobSecret && q.ClientIP == "127.0.0.1":
		json.NewEncoder(w).Encode(map[string]any{"allow": true, "backend_user": peers.User, "backend_password": peers.Password, "pool": "pool-pro"})
	case q.User == "mallory":
		w.WriteHeader(http.StatusUnauthorized)
	default:
		io.WriteString(w, `{"allow": false}`)
	}
}

func TestDirectoryAuth(t *testing.T) {
	f := startDirFarm(t)
	svc := &authSvc{}
	ts := httptest.NewTLSServer(svc)
	defer ts.Close()
	ca := filepath.Join(t.TempDir(), "auth-ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	admin := freeAddr(t)
	p := startProxy(t, f.config(t, admin, "", fmt.Sprintf("auth_url = %q\nca_file = %q\ntimeout = \"1s\"\n", ts.URL+"/ftp-auth", ca)))

	// Credential mapping: the backend sees the test account, the customer never knew it.
	for _, client := range []string{"curl", "lftp", "ftplib"} {
		if got := mustFetchData(t, client, p.addr, "bob", bobSecret); got != f.proSum {
			t.Fatalf("bob (%s) not on ProFTPD", client)
		}
	}
	// Denials look like a wrong password.
	for _, c := range []struct{ user, pass string }{{"bob", "wrong"}, {"mallory", "x"}, {peers.User, peers.Password}} {
		if line := loginReply(t, p.addr, c.user, c.pass); line != "530 Login incorrect." {
			t.Fatalf("%s: %q", c.user, line)
		}
	}
	if _, err := fetchData(t, "curl", p.addr, "bob", "wrong"); err == nil || !strings.Contains(err.Error(), "530") {
		t.Fatalf("curl with a denied login: %v", err)
	}
	// Down (slow past the timeout): 421, never let through.
	svc.down.Store(true)
	if line := loginReply(t, p.addr, "bob", bobSecret); line != noBackend421 {
		t.Fatalf("service down: %q", line)
	}
	for _, want := range []string{"by=auth auth=allow backend_user=" + peers.User, "denied by the authentication service", "authentication service failed"} {
		waitLog(t, p, want)
	}
	if strings.Contains(p.logs.String(), bobSecret) {
		t.Fatal("the customer's password is in the log")
	}
	noPassword(t, p)
	for series, want := range map[string]float64{
		`ftpsproxy_directory_lookups_total{source="auth",result="allow"}`: 3,
		`ftpsproxy_directory_lookups_total{source="auth",result="deny"}`:  4,
		`ftpsproxy_directory_lookups_total{source="auth",result="error"}`: 1,
		`ftpsproxy_logins_total{outcome="failed"}`:                        4,
		`ftpsproxy_logins_total{outcome="ok"}`:                            3,
	} {
		if got := metric(t, admin, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
}

// TestDirectoryBadFileAtStart: a directory file that does not load stops the start with the
// file and line, exit status 1.
func TestDirectoryBadFileAtStart(t *testing.T) {
	dir := t.TempDir()
	csv := filepath.Join(dir, "users.csv")
	writeAtomic(t, csv, "alice,web\nbob,nowhere\n")
	cfg := filepath.Join(dir, "ftpsproxy.toml")
	toml := fmt.Sprintf("[[listener]]\naddress = %q\n[[pool]]\nname = \"web\"\n[[pool.backend]]\naddress = \"127.0.0.1:1\"\n[directory]\nfile = \"users.csv\"\n", freeAddr(t))
	if err := os.WriteFile(cfg, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(binary, "-config", cfg).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("exit: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), csv+`:2: target \"nowhere\" is not a pool or backend of the config`) {
		t.Fatalf("output does not name the file and line:\n%s", out)
	}
}
