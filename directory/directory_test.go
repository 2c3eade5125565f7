package directory

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	// Write a temp file and rename it over the old one, as operators are told to.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func knownTargets(ts ...string) func(string) bool {
	return func(s string) bool {
		for _, t := range ts {
			if s == t {
				return true
			}
		}
		return false
	}
}

// logBuffer collects a Directory's log.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestFileLoadReloadWatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.csv")
	writeFile(t, path, "alice,web\nbob,eu,b1\n")
	logs := &logBuffer{}
	d, err := New(Config{File: path, PollInterval: 20 * time.Millisecond}, knownTargets("web", "eu"), slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	lookup := func(user string) (Answer, bool) {
		t.Helper()
		a, found, err := d.Lookup(context.Background(), Query{User: user})
		if err != nil {
			t.Fatal(err)
		}
		return a, found
	}
	if a, ok := lookup("bob"); !ok || a.Target != "eu" || a.BackendUser != "b1" || a.Source != "file" {
		t.Fatalf("bob: %+v %v", a, ok)
	}

	// SIGHUP with a bad file: refused, the old table stays.
	writeFile(t, path, "alice,eu\nbob\n")
	if err := d.Reload(knownTargets("web", "eu")); err == nil || !strings.Contains(err.Error(), path+":2:") {
		t.Fatalf("reload of a bad file: %v", err)
	}
	if a, _ := lookup("alice"); a.Target != "web" {
		t.Fatalf("alice moved by a refused file: %+v", a)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Watch(ctx)
	// An edit is picked up by the poll.
	writeFile(t, path, "alice,eu\ncarol,web\n")
	waitFor(t, func() bool { a, _ := lookup("alice"); return a.Target == "eu" })
	if _, ok := lookup("bob"); ok {
		t.Fatal("bob still there after the edit")
	}
	// A bad edit is logged and the directory in force stays.
	writeFile(t, path, "alice,web\ncarol,nowhere\n")
	waitFor(t, func() bool { return strings.Contains(logs.String(), "directory reload refused") })
	if !strings.Contains(logs.String(), path+`:2: target \"nowhere\"`) {
		t.Fatalf("log does not say which line: %s", logs.String())
	}
	if a, _ := lookup("alice"); a.Target != "eu" {
		t.Fatalf("alice moved by a refused edit: %+v", a)
	}
	// Fixing it is picked up again.
	writeFile(t, path, "alice,web\n")
	waitFor(t, func() bool { a, _ := lookup("alice"); return a.Target == "web" })
}

func TestNewRefusesBadFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.csv")
	writeFile(t, path, "# x\nalice,web,,\n")
	if _, err := New(Config{File: path}, nil, nil); err == nil || !strings.Contains(err.Error(), path+":2:") {
		t.Fatalf("err = %v", err)
	}
	if _, err := New(Config{File: filepath.Join(t.TempDir(), "missing.csv")}, nil, nil); err == nil {
		t.Fatal("missing file accepted")
	}
	if _, err := New(Config{URL: "ftp://x"}, nil, nil); err == nil {
		t.Fatal("ftp:// URL accepted")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDomainLookup(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.csv")
	writeFile(t, path, "shop.example,shops\nboss@shop.example,vip,root\n")
	d, err := New(Config{File: path, DomainSeparator: "@"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ user, domain, target, bu string }{
		{"alice@shop.example", "shop.example", "shops", ""},
		{"boss@shop.example", "shop.example", "vip", "root"},
	} {
		a, found, err := d.Lookup(context.Background(), Query{User: tt.user, Domain: tt.domain})
		if err != nil || !found || a.Target != tt.target || a.BackendUser != tt.bu {
			t.Errorf("%s: %+v %v %v", tt.user, a, found, err)
		}
	}
	if _, found, _ := d.Lookup(context.Background(), Query{User: "x@other.example", Domain: "other.example"}); found {
		t.Error("unknown domain found")
	}
}

// lookupService is a scripted lookup service that counts its calls.
type lookupService struct {
	calls atomic.Int64
	mode  atomic.Value // string: answer, 404, slow, 500, garbage, huge, both
	last  atomic.Value // lookupRequest
}

func (s *lookupService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.calls.Add(1)
	var q lookupRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&q); err != nil || r.Method != http.MethodPost {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	s.last.Store(q)
	switch s.mode.Load().(string) {
	case "404":
		http.NotFound(w, r)
	case "slow":
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
		}
	case "500":
		http.Error(w, "oops", http.StatusInternalServerError)
	case "garbage":
		io.WriteString(w, "<html>not json")
	case "huge":
		io.WriteString(w, `{"pool":"web","x":"`+strings.Repeat("x", 70000)+`"}`)
	case "both":
		io.WriteString(w, `{"pool":"web","backend":"10.0.0.1:21"}`)
	case "bad user":
		io.WriteString(w, `{"pool":"web","backend_user":"a\r\nDELE x"}`)
	default:
		json.NewEncoder(w).Encode(map[string]string{"pool": "pool-" + q.User, "backend_user": "b-" + q.User})
	}
}

func startLookup(t *testing.T, cfg Config) (*lookupService, *Directory) {
	t.Helper()
	svc := &lookupService{}
	svc.mode.Store("answer")
	ts := httptest.NewServer(svc)
	t.Cleanup(ts.Close)
	cfg.URL = ts.URL + "/lookup"
	d, err := New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return svc, d
}

func TestLookupService(t *testing.T) {
	svc, d := startLookup(t, Config{Timeout: 300 * time.Millisecond, CacheTTL: time.Hour})
	ctx := context.Background()
	q := Query{User: "alice", ClientIP: netip.MustParseAddr("192.0.2.7"), Listener: "main", SNI: "ftp.example", Host: "ftp.example"}
	a, found, err := d.Lookup(ctx, q)
	if err != nil || !found || a.Target != "pool-alice" || a.Kind != KindPool || a.BackendUser != "b-alice" || a.Source != "url" || a.Cached {
		t.Fatalf("first: %+v %v %v", a, found, err)
	}
	if got := svc.last.Load().(lookupRequest); got != (lookupRequest{User: "alice", ClientIP: "192.0.2.7", Listener: "main", SNI: "ftp.example", Host: "ftp.example"}) {
		t.Fatalf("request %+v", got)
	}
	a, found, err = d.Lookup(ctx, q)
	if err != nil || !found || a.Target != "pool-alice" || !a.Cached {
		t.Fatalf("second: %+v %v %v", a, found, err)
	}

	cases := []struct {
		mode      string
		wantFound bool
		wantErr   bool
	}{
		{"404", false, false},
		{"slow", false, true},
		{"500", false, true},
		{"garbage", false, true},
		{"huge", false, true},
		{"both", false, true},
		{"bad user", false, true},
	}
	for _, c := range cases {
		t.Run(c.mode, func(t *testing.T) {
			svc.mode.Store(c.mode)
			before := svc.calls.Load()
			start := time.Now()
			_, found, err := d.Lookup(ctx, Query{User: "u-" + c.mode})
			if found != c.wantFound || (err != nil) != c.wantErr {
				t.Fatalf("found %v err %v", found, err)
			}
			if err != nil && !errors.Is(err, ErrLookup) {
				t.Fatalf("err %v does not wrap ErrLookup", err)
			}
			if c.mode == "slow" && time.Since(start) > 1500*time.Millisecond {
				t.Fatalf("slow service not cut at the timeout: %v", time.Since(start))
			}
			// A 404 is cached (negative cache); a failure is not, so the next login asks again.
			d.Lookup(ctx, Query{User: "u-" + c.mode})
			want := before + 2
			if c.mode == "404" {
				want = before + 1
			}
			if got := svc.calls.Load(); got != want {
				t.Fatalf("%d calls, want %d", got-before, want-before)
			}
		})
	}
}

// TestLookupCallsOncePerTTL counts the service's calls: concurrent and repeated logins of one
// user make one call per TTL, found or not.
func TestLookupCallsOncePerTTL(t *testing.T) {
	svc, d := startLookup(t, Config{CacheTTL: 300 * time.Millisecond})
	svc.mode.Store("answer")
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				for _, u := range []string{"alice", "bob", "carol"} {
					if _, found, err := d.Lookup(ctx, Query{User: u}); err != nil || !found {
						t.Errorf("%s: %v %v", u, found, err)
					}
				}
			}
		}()
	}
	wg.Wait()
	if n := svc.calls.Load(); n != 3 {
		t.Fatalf("%d calls for 3 users within one TTL, want 3", n)
	}
	time.Sleep(350 * time.Millisecond)
	d.Lookup(ctx, Query{User: "alice"})
	if n := svc.calls.Load(); n != 4 {
		t.Fatalf("%d calls after the TTL, want 4", n)
	}
	svc.mode.Store("404")
	for i := 0; i < 10; i++ {
		d.Lookup(ctx, Query{User: "nobody"})
	}
	if n := svc.calls.Load(); n != 5 {
		t.Fatalf("%d calls with a negative answer, want 5", n)
	}
}

func TestCacheBounded(t *testing.T) {
	svc, d := startLookup(t, Config{MaxCache: 100, CacheTTL: time.Hour})
	svc.mode.Store("404")
	for i := 0; i < 1000; i++ {
		d.Lookup(context.Background(), Query{User: "flood" + string(rune('a'+i%26)) + strings.Repeat("x", i/26)})
	}
	d.cache.mu.Lock()
	n := len(d.cache.m)
	d.cache.mu.Unlock()
	if n > 100 {
		t.Fatalf("cache holds %d entries, max 100", n)
	}
}

// authService is a scripted authentication service.
type authService struct {
	calls atomic.Int64
	last  atomic.Value // AuthRequest
	reply atomic.Pointer[func(w http.ResponseWriter, r AuthRequest)]
}

func (s *authService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.calls.Add(1)
	var q AuthRequest
	if err := json.NewDecoder(r.Body).Decode(&q); err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	s.last.Store(q)
	(*s.reply.Load())(w, q)
}

func TestAuthenticate(t *testing.T) {
	svc := &authService{}
	ts := httptest.NewTLSServer(svc)
	defer ts.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := New(Config{AuthURL: ts.URL + "/auth", CAFile: ca, Timeout: 300 * time.Millisecond}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	json200 := func(body string) func(http.ResponseWriter, AuthRequest) {
		return func(w http.ResponseWriter, _ AuthRequest) { io.WriteString(w, body) }
	}
	status := func(code int, body string) func(http.ResponseWriter, AuthRequest) {
		return func(w http.ResponseWriter, _ AuthRequest) { w.WriteHeader(code); io.WriteString(w, body) }
	}
	tests := []struct {
		name    string
		reply   func(http.ResponseWriter, AuthRequest)
		want    AuthAnswer
		wantErr bool
	}{
		{"allow", json200(`{"allow":true}`), AuthAnswer{Allow: true}, false},
		{"map", json200(`{"allow":true,"backend_user":"ftptest","backend_password":"p\"w","backend":"10.0.0.1:21"}`),
			AuthAnswer{Allow: true, BackendUser: "ftptest", BackendPassword: `p"w`, Target: "10.0.0.1:21", Kind: KindBackend}, false},
		{"pool", json200(`{"allow":true,"pool":"eu"}`), AuthAnswer{Allow: true, Target: "eu", Kind: KindPool}, false},
		{"deny", json200(`{"allow":false}`), AuthAnswer{}, false},
		{"deny 202", status(202, `{"allow":false}`), AuthAnswer{}, false},
		{"401", status(401, ``), AuthAnswer{}, false},
		{"403", status(403, `{"allow":true}`), AuthAnswer{}, false},
		{"500", status(500, `{"allow":true}`), AuthAnswer{}, true},
		{"302", func(w http.ResponseWriter, _ AuthRequest) { w.Header().Set("Location", "/x"); w.WriteHeader(302) }, AuthAnswer{}, true},
		{"no allow", json200(`{"pool":"eu"}`), AuthAnswer{}, true},
		{"garbage", json200(`allow`), AuthAnswer{}, true},
		{"CRLF password", json200(`{"allow":true,"backend_password":"x\r\nDELE y"}`), AuthAnswer{}, true},
		{"slow", func(w http.ResponseWriter, _ AuthRequest) {
			time.Sleep(time.Second)
			io.WriteString(w, `{"allow":true}`)
		}, AuthAnswer{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc.reply.Store(&tt.reply)
			req := AuthRequest{User: "bob", Password: "secret", ClientIP: "192.0.2.1", TLS: true, ClientCertSubject: "CN=bob"}
			got, err := d.Authenticate(context.Background(), req)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("got %+v %v, want %+v err %v", got, err, tt.want, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrAuth) {
				t.Fatalf("err %v does not wrap ErrAuth", err)
			}
			if last := svc.last.Load().(AuthRequest); last != req {
				t.Fatalf("service saw %+v", last)
			}
		})
	}
	// Without the CA file the service's certificate is not trusted: an error, never an allow.
	d2, _ := New(Config{AuthURL: ts.URL + "/auth"}, nil, nil)
	allow := json200(`{"allow":true}`)
	svc.reply.Store(&allow)
	if _, err := d2.Authenticate(context.Background(), AuthRequest{User: "bob"}); !errors.Is(err, ErrAuth) {
		t.Fatalf("untrusted certificate: %v", err)
	}
}
