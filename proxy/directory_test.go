package proxy_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/directory"
	"github.com/ftpsproxy/ftpsproxy/internal/testpki"
	"github.com/ftpsproxy/ftpsproxy/proxy"
	"github.com/ftpsproxy/ftpsproxy/tlsterm"
	"github.com/jlaffaye/ftp"
)

// markedBackend is an in-process backend serving who.bin, random bytes that identify it.
type markedBackend struct {
	backend
	sum string
}

func startMarked(t *testing.T) markedBackend {
	t.Helper()
	b := startBackend(t, nil)
	data := make([]byte, 64*1024)
	rand.Read(data)
	if err := os.WriteFile(filepath.Join(b.root, "who.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return markedBackend{backend: b, sum: sha(data)}
}

// withPools adds pools named by the map to the proxy's config (besides "default").
func withPools(t *testing.T, pools map[string][]string) proxyOpt {
	return func(c *proxy.Config, _ *balancer.PoolConfig) {
		for name, addrs := range pools {
			pc := balancer.PoolConfig{Name: name, Policy: "round_robin"}
			for _, a := range addrs {
				pc.Backends = append(pc.Backends, plainBackend(a))
			}
			p, err := balancer.NewPool(pc)
			if err != nil {
				t.Fatal(err)
			}
			c.Pools = append(c.Pools, p)
		}
	}
}

func withDirectory(t *testing.T, dc directory.Config) (proxyOpt, *directory.Directory) {
	t.Helper()
	d, err := directory.New(dc, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go d.Watch(ctx)
	return func(c *proxy.Config, _ *balancer.PoolConfig) { c.Directory = d }, d
}

// fetchAs logs in through addr as user/pass and returns the sha256 of who.bin.
func fetchAs(t *testing.T, addr, user, pass string) (string, error) {
	t.Helper()
	c, err := ftp.Dial(addr, ftp.DialWithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Quit()
	if err := c.Login(user, pass); err != nil {
		return "", err
	}
	r, err := c.Retr("who.bin")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return sha(b), nil
}

func mustFetch(t *testing.T, addr, user, pass string) string {
	t.Helper()
	s, err := fetchAs(t, addr, user, pass)
	if err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	return s
}

func writeCSV(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path+".new", []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
}

// TestDirectoryFileRoutes sends three users to three backends by the file (a pool name, a
// backend address, a backend user), others to the listener's pool, and follows an edit of
// the file for the next login.
func TestDirectoryFileRoutes(t *testing.T) {
	b0, b1, b2, b3 := startMarked(t), startMarked(t), startMarked(t), startMarked(t)
	csv := filepath.Join(t.TempDir(), "users.csv")
	writeCSV(t, csv, "# customers\nalice,pool-a,"+demoUser+"\nbob,"+b2.addr+","+demoUser+"\n"+demoUser+","+b3.addr+"\n")
	dirOpt, _ := withDirectory(t, directory.Config{File: csv, PollInterval: 20 * time.Millisecond})
	p := startProxy(t, []balancer.BackendConfig{plainBackend(b0.addr)},
		withPools(t, map[string][]string{"pool-a": {b1.addr}, "pool-b": {b2.addr, b3.addr}}), dirOpt)

	if got := mustFetch(t, p.addr, "alice", demoPass); got != b1.sum {
		t.Fatal("alice not on pool-a's backend")
	}
	for range 3 { // pool-b has two backends: the address pins bob to b2
		if got := mustFetch(t, p.addr, "bob", demoPass); got != b2.sum {
			t.Fatal("bob not on the backend his line names")
		}
	}
	if got := mustFetch(t, p.addr, demoUser, demoPass); got != b3.sum {
		t.Fatal("demo not on b3")
	}
	if _, err := fetchAs(t, p.addr, "carol", demoPass); err == nil || !strings.Contains(err.Error(), "530") {
		t.Fatalf("carol (not in the file, unknown to the backend): %v", err)
	}
	logs := p.logs.String()
	for _, want := range []string{"by=directory backend_user=demo", "by=listener"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q", want)
		}
	}

	// Moving alice: the next login follows the file.
	writeCSV(t, csv, "alice,"+b0.addr+","+demoUser+"\n")
	deadline := time.Now().Add(5 * time.Second)
	for mustFetch(t, p.addr, "alice", demoPass) != b0.sum {
		if time.Now().After(deadline) {
			t.Fatal("alice not moved within 5s of the edit")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestDirectoryTargetNotInConfig(t *testing.T) {
	b := startMarked(t)
	csv := filepath.Join(t.TempDir(), "users.csv")
	writeCSV(t, csv, "zed,gone-pool\nyan,10.255.0.1:21\n")
	dirOpt, _ := withDirectory(t, directory.Config{File: csv})
	p := startProxy(t, []balancer.BackendConfig{plainBackend(b.addr)}, dirOpt)
	for _, u := range []string{"zed", "yan"} {
		rc := dialRaw(t, p.addr)
		rc.cmd("USER "+u, 331)
		if line := rc.cmd("PASS x", 421); line != proxy.Line421(proxy.CauseNoBackend) {
			t.Fatalf("%s: %q", u, line)
		}
	}
	if !strings.Contains(p.logs.String(), "directory target is not in the config") {
		t.Fatal("refusal not logged")
	}
}

// TestDirectoryUserDomain routes user@domain by a [[route]] host glob and by a domain line
// of the file, logs in to the backend as the local part (or the line's backend user), and
// answers hostile names with 530 without dialling.
func TestDirectoryUserDomain(t *testing.T) {
	shop, other := startMarked(t), startMarked(t)
	trap, dials := countingBackend(t) // a login the proxy refuses must never reach it
	csv := filepath.Join(t.TempDir(), "users.csv")
	writeCSV(t, csv, "other.example,pool-other,"+demoUser+"\n")
	dirOpt, _ := withDirectory(t, directory.Config{File: csv, DomainSeparator: "@"})
	p := startProxy(t, []balancer.BackendConfig{plainBackend(trap)},
		withPools(t, map[string][]string{"pool-shop": {shop.addr}, "pool-other": {other.addr}}), dirOpt,
		func(c *proxy.Config, _ *balancer.PoolConfig) {
			c.Routes = []proxy.Route{{Host: "*.shop.example", Pool: "pool-shop"}, {Host: "shop.example", Pool: "pool-shop"}}
		})
	if got := mustFetch(t, p.addr, demoUser+"@Shop.Example", demoPass); got != shop.sum {
		t.Fatal("demo@shop.example not on the shop backend")
	}
	if got := mustFetch(t, p.addr, "anyone@other.example", demoPass); got != other.sum {
		t.Fatal("anyone@other.example not on the other backend")
	}
	for _, name := range []string{"@@", demoUser + "@", "@shop.example", demoUser + "@@shop.example",
		demoUser + "@nomatch.example", demoUser + "@shop_example", strings.Repeat("a", 4000) + "@shop.example",
		strings.Repeat("b", 4080)} {
		rc := dialRaw(t, p.addr)
		rc.cmd("USER "+name, 331)
		rc.cmd("PASS "+demoPass, 530)
		rc.cmd("QUIT", 221)
	}
	if n := dials.Load(); n != 0 {
		t.Fatalf("%d dials for refused names", n)
	}
	if !strings.Contains(p.logs.String(), "by=route route=route[1]") {
		t.Error("route choice not logged")
	}
}

// lookupServer is a lookup service whose behaviour the test switches.
type lookupServer struct {
	calls atomic.Int64
	mode  atomic.Value // answer, 404, slow, 500, garbage
	to    string       // backend address answered
}

func (l *lookupServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	l.calls.Add(1)
	var q struct{ User, Listener, Host string }
	json.NewDecoder(r.Body).Decode(&q)
	switch l.mode.Load().(string) {
	case "404":
		http.NotFound(w, r)
	case "slow":
		select {
		case <-time.After(3 * time.Second):
		case <-r.Context().Done():
		}
	case "500":
		w.WriteHeader(500)
	case "garbage":
		io.WriteString(w, "{{{")
	default:
		json.NewEncoder(w).Encode(map[string]string{"backend": l.to, "backend_user": demoUser})
	}
}

func TestDirectoryURL(t *testing.T) {
	dflt, viaURL := startMarked(t), startMarked(t)
	svc := &lookupServer{to: viaURL.addr}
	svc.mode.Store("answer")
	ts := httptest.NewServer(svc)
	defer ts.Close()
	for _, onErr := range []directory.OnError{directory.OnErrorRefuse, directory.OnErrorRoutes} {
		t.Run(onErr.String(), func(t *testing.T) {
			dirOpt, _ := withDirectory(t, directory.Config{URL: ts.URL, Timeout: 300 * time.Millisecond, CacheTTL: time.Hour, OnError: onErr})
			p := startProxy(t, []balancer.BackendConfig{plainBackend(dflt.addr)},
				withPools(t, map[string][]string{"pool-url": {viaURL.addr}}), dirOpt)
			svc.mode.Store("answer")
			svc.calls.Store(0)
			for range 3 {
				if got := mustFetch(t, p.addr, "urluser", demoPass); got != viaURL.sum {
					t.Fatal("urluser not where the service said")
				}
			}
			if n := svc.calls.Load(); n != 1 {
				t.Fatalf("%d service calls for 3 logins within the TTL", n)
			}
			svc.mode.Store("404")
			if got := mustFetch(t, p.addr, demoUser, demoPass); got != dflt.sum {
				t.Fatal("404: not on the listener's pool")
			}
			for _, mode := range []string{"slow", "500", "garbage"} {
				svc.mode.Store(mode)
				user := demoUser + "x" + mode // not cached
				rc := dialRaw(t, p.addr)
				rc.cmd("USER "+user, 331)
				if onErr == directory.OnErrorRefuse {
					if line := rc.cmd("PASS x", 421); line != proxy.Line421(proxy.CauseNoBackend) {
						t.Fatalf("%s: %q", mode, line)
					}
				} else {
					rc.cmd("PASS x", 530) // on to the listener's pool, whose backend does not know the user
				}
			}
			if !strings.Contains(p.logs.String(), "directory lookup failed") {
				t.Fatal("lookup failure not logged")
			}
			if !strings.Contains(p.logs.String(), "by=url backend_user=demo") {
				t.Fatal("by=url not logged")
			}
		})
	}
}

// authServer is an authentication service: bob with bobPass is allowed and mapped to the
// backend account; anything else is denied; down makes it fail.
type authServer struct {
	calls atomic.Int64
	down  atomic.Bool
	pool  string
	tls   atomic.Bool  // what the last request said about the client's TLS
	cert  atomic.Value // string: the last request's client_cert_subject
}

const bobPass = "hunter2-bob"

func (a *authServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.calls.Add(1)
	if a.down.Load() {
		w.WriteHeader(503)
		return
	}
	var q directory.AuthRequest
	if err := json.NewDecoder(r.Body).Decode(&q); err != nil {
		w.WriteHeader(400)
		return
	}
	a.tls.Store(q.TLS)
	a.cert.Store(q.ClientCertSubject)
	switch {
	case q.User == "bob" && q.Password == bobPass:
		json.NewEncoder(w).Encode(map[string]any{"allow": true, "backend_user": demoUser, "backend_password": demoPass, "pool": a.pool})
	case q.User == "eve":
		w.WriteHeader(403)
	default:
		io.WriteString(w, `{"allow": false}`)
	}
}

func TestDirectoryAuth(t *testing.T) {
	dflt, mapped := startMarked(t), startMarked(t)
	svc := &authServer{pool: "pool-mapped"}
	ts := httptest.NewTLSServer(svc)
	defer ts.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o644)
	dirOpt, _ := withDirectory(t, directory.Config{AuthURL: ts.URL, CAFile: ca, Timeout: 500 * time.Millisecond})
	p := startProxy(t, []balancer.BackendConfig{plainBackend(dflt.addr)},
		withPools(t, map[string][]string{"pool-mapped": {mapped.addr}}), dirOpt)

	if got := mustFetch(t, p.addr, "bob", bobPass); got != mapped.sum {
		t.Fatal("bob not mapped to pool-mapped")
	}
	if svc.tls.Load() {
		t.Fatal("plain login reported as TLS")
	}
	// A denial is a 530 like a wrong password, and the session may try again.
	rc := dialRaw(t, p.addr)
	rc.cmd("USER bob", 331)
	if line := rc.cmd("PASS wrong", 530); line != "530 Login incorrect." {
		t.Fatalf("deny: %q", line)
	}
	rc.cmd("USER eve", 331)
	rc.cmd("PASS x", 530)
	rc.cmd("USER bob", 331)
	rc.cmd("PASS "+bobPass, 230)
	rc.cmd("QUIT", 221)
	// The real backend password is not enough: the service decides.
	if _, err := fetchAs(t, p.addr, demoUser, demoPass); err == nil || !strings.Contains(err.Error(), "530") {
		t.Fatalf("demo without the service's allow: %v", err)
	}
	// Down: 421, never let through.
	svc.down.Store(true)
	rc = dialRaw(t, p.addr)
	rc.cmd("USER bob", 331)
	if line := rc.cmd("PASS "+bobPass, 421); line != proxy.Line421(proxy.CauseNoBackend) {
		t.Fatalf("down: %q", line)
	}
	logs := p.logs.String()
	for _, secret := range []string{bobPass, demoPass} {
		if strings.Contains(logs, secret) {
			t.Fatalf("password %q in the log", secret)
		}
	}
	for _, want := range []string{"authentication service failed", "denied by the authentication service", "by=auth auth=allow backend_user=demo"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q", want)
		}
	}
}

// TestDirectoryAuthTLS: the authentication service is told that the client logged in over
// TLS, and the subject of its verified client certificate.
func TestDirectoryAuthTLS(t *testing.T) {
	mapped := startMarked(t)
	svc := &authServer{pool: "pool-mapped"}
	ts := httptest.NewServer(svc)
	defer ts.Close()
	dirOpt, _ := withDirectory(t, directory.Config{AuthURL: ts.URL})

	ca := testpki.NewCA(t, "server CA")
	dir := t.TempDir()
	ca.Server(t, 0, "ftp.example").WritePEM(t, dir, "ftp")
	clients := testpki.NewCA(t, "client CA")
	srv, err := tlsterm.NewServer(tlsterm.ServerOptions{CertDir: dir, ClientAuth: tlsterm.ClientAuthOptional, ClientCAFile: clients.WriteCA(t, dir, "clients.ca")})
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, []balancer.BackendConfig{plainBackend(mapped.addr)},
		withPools(t, map[string][]string{"pool-mapped": {mapped.addr}}), dirOpt, withServerTLS(srv, tlsterm.CertUserOff))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.PEM)
	for _, tc := range []struct {
		name, subject string
		leaf          *testpki.Leaf
	}{{"no certificate", "", nil}, {"certificate", "CN=bob,O=ftpsproxy tests", clients.Client(t, "bob")}} {
		t.Run(tc.name, func(t *testing.T) {
			cc := &tls.Config{RootCAs: roots, ServerName: "ftp.example"}
			if tc.leaf != nil {
				cc.Certificates = []tls.Certificate{tc.leaf.TLS(t)}
			}
			rc, _ := authTLS(t, p.addr, cc)
			rc.cmd("USER bob", 331)
			rc.cmd("PASS "+bobPass, 230)
			if !svc.tls.Load() {
				t.Fatal("TLS login reported as plain")
			}
			if got := svc.cert.Load().(string); got != tc.subject {
				t.Fatalf("client_cert_subject %q, want %q", got, tc.subject)
			}
		})
	}
}
