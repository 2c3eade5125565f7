package admin

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/nat"
	"github.com/ftpsproxy/ftpsproxy/proxy"
)

// demoSource returns a fake source of two real pools, in a state worth looking at.
func demoSource(t testing.TB) *fakeSource {
	t.Helper()
	web := newPool(t, "default", "least_conn",
		balancer.BackendConfig{Address: "10.0.0.11:21", MaxSessions: 50, Weight: 2},
		balancer.BackendConfig{Address: "10.0.0.12:21", MaxSessions: 50, Weight: 2},
		balancer.BackendConfig{Address: "10.0.0.13:21", MaxSessions: 4},
	)
	legacy := newPool(t, "legacy", "user_hash",
		balancer.BackendConfig{Address: "ftp1.example.net:21"},
		balancer.BackendConfig{Address: "[2001:db8::21]:2121", Weight: 3},
	)
	// load gives b total sessions so far, active of them still running.
	load := func(b *balancer.Backend, total, active int) {
		for range total - active {
			b.Acquire()
			b.Release()
		}
		for range active {
			if !b.Acquire() {
				t.Fatalf("backend %s full", b)
			}
		}
	}
	load(web.Backends[0], 1342, 17)
	load(web.Backends[1], 977, 0)
	load(web.Backends[2], 260, 4) // at max_sessions: FULL
	load(legacy.Backends[0], 58, 3)
	setHealth(t, web, web.Backends[1], false)
	setHealth(t, legacy, legacy.Backends[1], false)
	return &fakeSource{
		pools: []*balancer.Pool{web, legacy},
		listeners: []ListenerInfo{
			{Name: "ftp", Address: "0.0.0.0:21", TLS: "explicit", Pool: "default"},
			{Name: "ftps", Address: "0.0.0.0:990", TLS: "implicit", Pool: "default"},
			{Name: "legacy", Address: "[::]:2121", TLS: "none", Pool: "legacy"},
		},
		inUse:     12,
		portRange: nat.PortRange{First: 50000, Last: 50199},
		sessions:  24,
	}
}

func startServer(t testing.TB, src Source, m *Metrics) *Server {
	t.Helper()
	s := NewServer("127.0.0.1:0", src, m, nil)
	s.Version = "1.2.3-test"
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return s
}

func get(t testing.TB, url string) (int, http.Header, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func TestServerRoutes(t *testing.T) {
	pool := newPool(t, "default", "round_robin",
		balancer.BackendConfig{Address: "10.0.0.11:21", MaxSessions: 10},
		balancer.BackendConfig{Address: "10.0.0.12:21"})
	other := newPool(t, "other", "", balancer.BackendConfig{Address: "10.0.1.1:21"})
	src := &fakeSource{
		pools:     []*balancer.Pool{pool, other},
		listeners: []ListenerInfo{{Name: "main", Address: "127.0.0.1:2121", TLS: "explicit", Pool: "default"}},
		portRange: nat.PortRange{First: 50000, Last: 50009},
		inUse:     3,
		sessions:  1,
	}
	m := NewMetrics()
	s := startServer(t, src, m)
	base := "http://" + s.Addr().String()
	m.SessionStarted("main")
	m.Closed421(proxy.CauseTooMany)
	pool.Backends[0].Acquire()

	// /metrics: strict exposition, ours plus the Go/process metrics.
	code, h, body := get(t, base+"/metrics")
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("/metrics: %d %q", code, h.Get("Content-Type"))
	}
	e, err := parseExposition(body)
	if err != nil {
		t.Fatalf("/metrics exposition: %v", err)
	}
	for k, v := range map[string]float64{
		key("ftpsproxy_backend_up", "pool", "default", "backend", "10.0.0.11:21"):              1,
		key("ftpsproxy_backend_active_sessions", "pool", "default", "backend", "10.0.0.11:21"): 1,
		key("ftpsproxy_backend_max_sessions", "pool", "default", "backend", "10.0.0.11:21"):    10,
		key("ftpsproxy_sessions_active", "listener", "main"):                                   1,
		key("ftpsproxy_closed_421_total", "cause", "too_many"):                                 1,
		"ftpsproxy_data_ports_in_use":                                                          3,
		"ftpsproxy_data_ports_range_size":                                                      10,
	} {
		if got, ok := e.values[k]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, v)
		}
	}
	if _, ok := e.values["go_goroutines"]; !ok {
		t.Error("process metrics missing")
	}

	// /healthz is 200 while at least one pool can serve; /healthz/{pool} answers per pool.
	expectHealth := func(path string, wantCode int, wantBody string) {
		t.Helper()
		code, _, body := get(t, base+path)
		if code != wantCode || strings.TrimSpace(body) != wantBody {
			t.Errorf("%s = %d %q, want %d %q", path, code, body, wantCode, wantBody)
		}
	}
	const defaultDown = `pool "default": no healthy backend`
	expectHealth("/healthz", 200, "ok")
	expectHealth("/healthz/default", 200, "ok")
	expectHealth("/healthz/other", 200, "ok")
	expectHealth("/healthz/nosuchpool", 404, `unknown pool "nosuchpool"`)
	setHealth(t, pool, pool.Backends[0], false)
	expectHealth("/healthz", 200, "ok") // one backend of each pool is still up
	expectHealth("/healthz/default", 200, "ok")
	setHealth(t, pool, pool.Backends[1], false)
	expectHealth("/healthz", 200, "ok; degraded: "+defaultDown) // pool "other" still serves
	expectHealth("/healthz/default", 503, defaultDown)
	expectHealth("/healthz/other", 200, "ok")
	setHealth(t, other, other.Backends[0], false)
	expectHealth("/healthz", 503, defaultDown+`; pool "other": no healthy backend`)
	expectHealth("/healthz/other", 503, `pool "other": no healthy backend`)
	setHealth(t, other, other.Backends[0], true)
	setHealth(t, pool, pool.Backends[1], true)
	expectHealth("/healthz", 200, "ok")
	src.draining.Store(true)
	expectHealth("/healthz", 503, "draining")
	expectHealth("/healthz/default", 503, "draining")
	if _, _, page := get(t, base+"/"); !strings.Contains(page, ">DRAINING<") {
		t.Error("status page does not say DRAINING")
	}
	src.draining.Store(false)
	expectHealth("/healthz", 200, "ok")
	// A reload that drops a pool makes its health 404.
	src.setPools(pool)
	expectHealth("/healthz/other", 404, `unknown pool "other"`)
	src.setPools(pool, other)

	// The status page names every backend with its state.
	code, h, body = get(t, base+"/")
	if code != 200 || h.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("/: %d %q", code, h.Get("Content-Type"))
	}
	if h.Get("Content-Security-Policy") == "" || h.Get("X-Content-Type-Options") != "nosniff" {
		t.Error("status page lacks its security headers")
	}
	for _, s := range []string{"10.0.0.11:21", "10.0.0.12:21", "10.0.1.1:21", "UP", "DOWN", "round_robin",
		"1.2.3-test", "127.0.0.1:2121", "explicit", "3 / 10", "too_many"} {
		if !strings.Contains(body, s) {
			t.Errorf("status page lacks %q", s)
		}
	}
	rows := backendRows(t, body)
	for addr, want := range map[string]string{"10.0.0.11:21": "DOWN", "10.0.0.12:21": "UP", "10.0.1.1:21": "UP"} {
		if rows[addr] != want {
			t.Errorf("row of %s: state %q, want %q", addr, rows[addr], want)
		}
	}
	if _, _, body := get(t, base+"/?refresh=5"); !strings.Contains(body, `http-equiv="refresh" content="5"`) {
		t.Error("?refresh=5 gave no meta refresh")
	}
	if _, _, body := get(t, base+"/?refresh=0"); strings.Contains(body, `http-equiv="refresh"`) {
		t.Error("?refresh=0 gave a meta refresh")
	}

	// Only GET and HEAD, only these paths.
	if code, _, _ := get(t, base+"/nope"); code != 404 {
		t.Errorf("/nope: %d, want 404", code)
	}
	resp, err := http.Post(base+"/", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Errorf("POST /: %d, want 405", resp.StatusCode)
	}
	resp, err = http.Head(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("HEAD /healthz: %d", resp.StatusCode)
	}
}

// backendRows maps each backend row of a status page (tr[data-backend]) to the text of its
// status badge, checking it agrees with the row's data-state.
func backendRows(t testing.TB, page string) map[string]string {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	rows := make(map[string]string)
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "tr" && attr(n, "data-backend") != "" {
			badge := ""
			var find func(*html.Node)
			find = func(c *html.Node) {
				if c.Type == html.ElementNode && c.Data == "span" && strings.HasPrefix(attr(c, "class"), "badge ") && badge == "" {
					badge = text(c)
				}
				for k := c.FirstChild; k != nil; k = k.NextSibling {
					find(k)
				}
			}
			find(n)
			if badge != attr(n, "data-state") {
				t.Errorf("row %s: badge %q but data-state %q", attr(n, "data-backend"), badge, attr(n, "data-state"))
			}
			rows[attr(n, "data-backend")] = badge
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	return rows
}

func attr(n *html.Node, name string) string {
	for _, a := range n.Attr {
		if a.Key == name {
			return a.Val
		}
	}
	return ""
}

func text(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return strings.TrimSpace(b.String())
}

func TestServerStartErrors(t *testing.T) {
	src := demoSource(t)
	s := startServer(t, src, nil)
	if err := s.Start(); err == nil {
		t.Error("second Start succeeded")
	}
	s2 := NewServer(s.Addr().String(), src, nil, nil)
	if err := s2.Start(); err == nil {
		t.Error("bind to a used address succeeded")
	}
	if s2.Addr() != nil {
		t.Error("Addr of an unbound server is not nil")
	}
	s3 := NewServer("127.0.0.1:0", src, nil, nil)
	if err := s3.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown before Start: %v", err)
	}
}

func TestStatusPageEscapes(t *testing.T) {
	src := demoSource(t)
	src.listeners = append(src.listeners, ListenerInfo{Name: "<script>alert(1)</script>", Address: "x", TLS: "none", Pool: "default"})
	s := startServer(t, src, nil)
	_, _, body := get(t, "http://"+s.Addr().String()+"/")
	if strings.Contains(body, "<script>") {
		t.Error("listener name not escaped")
	}
}

func TestFormatDuration(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "0s"},
		{1500 * time.Millisecond, "1s"},
		{61 * time.Second, "1m 1s"},
		{3*time.Hour + 4*time.Minute + 5*time.Second, "3h 4m 5s"},
		{50*time.Hour + 7*time.Minute, "2d 2h 7m"},
	} {
		if got := formatDuration(tc.d); got != tc.want {
			t.Errorf("formatDuration(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}
