package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"

	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/internal/demoftp"
	"github.com/ftpsproxy/ftpsproxy/internal/peers"
	"github.com/ftpsproxy/ftpsproxy/nat"
	"github.com/ftpsproxy/ftpsproxy/proxy"
)

const apiToken = "s3cret-token"

// apiRig is a real proxy in front of two in-process FTP servers, with the admin server and
// its API in front of the proxy.
type apiRig struct {
	base  string // http://host:port
	proxy string // the proxy's listener
	reg   *balancer.Registry
	pool  *balancer.Pool
	level *slog.LevelVar
	api   *API
	srv   *proxy.Server
}

func startAPIRig(t *testing.T) *apiRig {
	t.Helper()
	var bcs []balancer.BackendConfig
	for i := range 2 {
		be, err := demoftp.Start(demoftp.Config{Addr: "127.0.0.1:0", Root: t.TempDir(), User: "demo", Password: "secret"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { be.Stop() })
		bc := balancer.BackendConfig{Address: be.Addr(), FixPasvAddress: true}
		if i == 0 {
			bc.Name = "first"
		}
		bcs = append(bcs, bc)
	}
	pool, err := balancer.NewPool(balancer.PoolConfig{Name: "farm", Policy: "round_robin", Backends: bcs})
	if err != nil {
		t.Fatal(err)
	}
	reg := &balancer.Registry{}
	reg.Carry([]*balancer.Pool{pool})
	reg.Commit([]*balancer.Pool{pool})
	pr := peers.FreePortRange(t, 20)
	m := NewMetrics()
	srv := runProxy(t, proxy.Config{
		Listeners: []proxy.ListenerConfig{{Address: "127.0.0.1:0", Pool: "farm"}},
		Data:      proxy.DataConfig{PortRange: nat.PortRange{First: uint16(pr[0]), Last: uint16(pr[1])}, ConnectTimeout: 5 * time.Second},
		Pools:     []*balancer.Pool{pool},
		Limits:    proxy.Limits{IdleTimeout: time.Minute, LoginTimeout: 10 * time.Second, BackendTimeout: 5 * time.Second},
	}, m)
	src := ServerSource(srv)
	src.Registry = reg
	level := &slog.LevelVar{}
	api := &API{Registry: reg, Sessions: srv, Level: level}
	api.SetToken(apiToken)
	as := NewServer("127.0.0.1:0", src, m, nil)
	as.HandleAPI(api)
	if err := as.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { as.Shutdown(context.Background()) })
	return &apiRig{base: "http://" + as.Addr().String(), proxy: srv.Addrs()[0].String(), reg: reg, pool: pool, level: level, api: api, srv: srv}
}

// runProxy starts a real proxy.Server with cfg and obs until the test ends.
func runProxy(t *testing.T, cfg proxy.Config, obs proxy.Observer) *proxy.Server {
	t.Helper()
	srv, err := proxy.New(cfg, nil, obs)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(context.Background()); err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return srv
}

// call sends a request with an optional bearer token and returns the status and body, after
// checking that the body is JSON.
func (r *apiRig) call(t *testing.T, method, path, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, r.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s %s: Content-Type %q, body %q", method, path, ct, b)
	}
	if !json.Valid(b) {
		t.Fatalf("%s %s: body is not JSON: %q", method, path, b)
	}
	if resp.StatusCode >= 400 && !strings.Contains(string(b), `"error":`) {
		t.Fatalf("%s %s: %d without {\"error\"}: %q", method, path, resp.StatusCode, b)
	}
	return resp.StatusCode, string(b)
}

func (r *apiRig) backends(t *testing.T) map[string]BackendJSON {
	t.Helper()
	code, body := r.call(t, "GET", "/api/v1/backends", "", "")
	if code != 200 {
		t.Fatalf("GET backends: %d %s", code, body)
	}
	var list []BackendJSON
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		t.Fatal(err)
	}
	out := map[string]BackendJSON{}
	for _, b := range list {
		out[b.Name] = b
	}
	return out
}

func TestAPIBackends(t *testing.T) {
	r := startAPIRig(t)
	second := r.pool.Backends[1].Config.Address
	bs := r.backends(t)
	if len(bs) != 2 || bs["first"].State != "up" || bs["first"].Pool != "farm" || bs[second].Address != second || bs["first"].Since.IsZero() {
		t.Fatalf("GET backends: %+v", bs)
	}
	// Unauthorised and bad writes change nothing.
	for _, c := range []struct {
		path, token string
		want        int
	}{
		{"/api/v1/backends/farm/first/drain", "", 401},
		{"/api/v1/backends/farm/first/drain", "wrong", 401},
		{"/api/v1/backends/farm/first/explode", apiToken, 404},
		{"/api/v1/backends/farm/nosuch/drain", apiToken, 404},
		{"/api/v1/backends/nosuch/first/drain", apiToken, 404},
	} {
		if code, body := r.call(t, "POST", c.path, c.token, ""); code != c.want {
			t.Errorf("POST %s (token %q): %d %s, want %d", c.path, c.token, code, body, c.want)
		}
	}
	if code, _ := r.call(t, "GET", "/api/v1/backends/farm/first/drain", apiToken, ""); code != 405 {
		t.Errorf("GET on a write endpoint: %d, want 405", code)
	}
	if r.backends(t)["first"].State != "up" {
		t.Fatal("a refused write changed the state")
	}
	// Good writes, by name and by address.
	for _, c := range []struct{ path, state string }{
		{"/api/v1/backends/farm/first/drain", "draining"},
		{"/api/v1/backends/farm/first/disable", "disabled"},
		{"/api/v1/backends/farm/" + second + "/drain", "draining"},
		{"/api/v1/backends/farm/first/enable", "up"},
	} {
		code, body := r.call(t, "POST", c.path, apiToken, "")
		var got BackendJSON
		json.Unmarshal([]byte(body), &got)
		if code != 200 || got.State != c.state {
			t.Fatalf("POST %s: %d %s, want state %s", c.path, code, body, c.state)
		}
	}
	// The second backend is draining: every new session goes to the first.
	for range 4 {
		c := dialLogin(t, r.proxy)
		c.Quit()
	}
	if n := r.pool.Backends[1].Total(); n != 0 {
		t.Fatalf("a draining backend got %d sessions", n)
	}
	// Without a token, writes are off.
	r.api.SetToken("")
	if code, _ := r.call(t, "POST", "/api/v1/backends/farm/first/drain", apiToken, ""); code != 403 {
		t.Fatalf("write without admin.token_file: %d, want 403", code)
	}
	if code, _ := r.call(t, "GET", "/api/v1/nosuch", "", ""); code != 404 {
		t.Fatalf("unknown endpoint: %d", code)
	}
}

func dialLogin(t *testing.T, addr string) *ftp.ServerConn {
	t.Helper()
	c, err := ftp.Dial(addr, ftp.DialWithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login("demo", "secret"); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestAPISessions(t *testing.T) {
	r := startAPIRig(t)
	c := dialLogin(t, r.proxy)
	defer c.Quit()
	if err := c.Stor("up.bin", strings.NewReader(strings.Repeat("x", 1000))); err != nil {
		t.Fatal(err)
	}
	code, body := r.call(t, "GET", "/api/v1/sessions", "", "")
	var list []SessionJSON
	json.Unmarshal([]byte(body), &list)
	if code != 200 || len(list) != 1 {
		t.Fatalf("GET sessions: %d %s", code, body)
	}
	s := list[0]
	if s.User != "demo" || s.Backend == "" || s.Pool != "farm" || s.BytesIn != 1000 || s.Command != "STOR up.bin" || s.Since.IsZero() || s.ID == "" || s.Client == "" {
		t.Fatalf("session: %+v", s)
	}
	if strings.Contains(body, "secret") {
		t.Fatal("the session list carries the password")
	}
	for _, bad := range []struct {
		path, token string
		want        int
	}{
		{"/api/v1/sessions/" + s.ID + "/close", "", 401},
		{"/api/v1/sessions/nosuch/close", apiToken, 404},
	} {
		if code, body := r.call(t, "POST", bad.path, bad.token, ""); code != bad.want {
			t.Errorf("POST %s: %d %s, want %d", bad.path, code, body, bad.want)
		}
	}
	if err := c.NoOp(); err != nil {
		t.Fatalf("a refused close ended the session: %v", err)
	}
	if code, body := r.call(t, "POST", "/api/v1/sessions/"+s.ID+"/close", apiToken, ""); code != 200 {
		t.Fatalf("close: %d %s", code, body)
	}
	err := c.NoOp()
	var te *textproto.Error
	if !errors.As(err, &te) || te.Code != 421 || te.Msg != "Session closed by administrator" {
		t.Fatalf("after close: %v, want the administrator's 421", err)
	}
	waitUntil(t, func() bool {
		_, body := r.call(t, "GET", "/api/v1/sessions", "", "")
		return body == "[]\n"
	})
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAPILogLevel(t *testing.T) {
	r := startAPIRig(t)
	for _, c := range []struct {
		token, body string
		want        int
	}{
		{"", `{"level":"debug"}`, 401},
		{apiToken, `{"level":"loud"}`, 400},
		{apiToken, `{"lvl":"debug"}`, 400},
		{apiToken, `{}`, 400},
		{apiToken, `not json`, 400},
		{apiToken, `{"level":"` + strings.Repeat("d", 5000) + `"}`, 413},
	} {
		if code, body := r.call(t, "PUT", "/api/v1/log/level", c.token, c.body); code != c.want {
			t.Errorf("PUT %q (token %q): %d %s, want %d", c.body, c.token, code, body, c.want)
		}
	}
	if r.level.Level() != slog.LevelInfo {
		t.Fatal("a refused request changed the level")
	}
	if code, body := r.call(t, "PUT", "/api/v1/log/level", apiToken, `{"level":"debug"}`); code != 200 || r.level.Level() != slog.LevelDebug {
		t.Fatalf("PUT debug: %d %s, level %v", code, body, r.level.Level())
	}
	if code, _ := r.call(t, "POST", "/api/v1/log/level", apiToken, `{"level":"info"}`); code != 405 {
		t.Fatalf("POST log/level: %d, want 405", code)
	}
}

// TestStatusShowsAdminState: the status page shows a drained backend, and a backend removed
// by a reload with its sessions left, with the last probe error and since when.
func TestStatusShowsAdminState(t *testing.T) {
	r := startAPIRig(t)
	c := dialLogin(t, r.proxy) // round robin: the first session goes to "first"
	if err := c.Stor("up.bin", strings.NewReader(strings.Repeat("x", 1000))); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	waitUntil(t, func() bool { return r.srv.Sessions() == 0 })
	if code, body := r.call(t, "POST", "/api/v1/backends/farm/first/drain", apiToken, ""); code != 200 {
		t.Fatalf("drain: %d %s", code, body)
	}
	// A reload that keeps only "first"; the other has a session running.
	gone := r.pool.Backends[1]
	if !gone.Acquire() {
		t.Fatal("acquire")
	}
	defer gone.Release()
	probe := balancer.RecordProbes(func(context.Context, *balancer.Backend) error { return errors.New("probe: greeting 0: EOF") })
	probe(context.Background(), r.pool.Backends[0])
	next, err := balancer.NewPool(balancer.PoolConfig{Name: "farm", Policy: "round_robin", Backends: []balancer.BackendConfig{r.pool.Backends[0].Config}})
	if err != nil {
		t.Fatal(err)
	}
	r.reg.Carry([]*balancer.Pool{next})
	cfg := *r.srv.Config()
	cfg.Pools = []*balancer.Pool{next}
	if err := r.srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	r.reg.Commit([]*balancer.Pool{next})

	resp, err := http.Get(r.base + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if n := strings.Count(string(page), `data-backend="`+gone.Config.Address+`"`); n != 1 {
		t.Errorf("the removed backend has %d rows, want 1", n)
	}
	for _, want := range []string{
		`data-admin="draining"`, `<span class="badge full">draining</span>`, "probe: greeting 0: EOF",
		`data-backend="` + gone.Config.Address + `" data-state="UP" data-admin="removed"`, "removed, 1 sessions left", "since ",
		"↑ 1000 B ↓ 0 B", // the STOR of TestAPISessions' kind, through the real proxy
	} {
		if !strings.Contains(string(page), want) {
			t.Errorf("status page lacks %q", want)
		}
	}
	resp, err = http.Get(r.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metricsText, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`ftpsproxy_backend_admin_state{pool="farm",backend="first"} 1`,
		`ftpsproxy_backend_admin_state{pool="farm",backend="` + gone.Config.Address + `"} 3`,
		`ftpsproxy_backend_active_sessions{pool="farm",backend="` + gone.Config.Address + `"} 1`,
	} {
		if !strings.Contains(string(metricsText), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	bs := r.backends(t)
	if bs[gone.Config.Address].State != "removed" || bs[gone.Config.Address].Sessions != 1 || bs["first"].LastError != "probe: greeting 0: EOF" {
		t.Fatalf("API after the reload: %+v", bs)
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 20: "5.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
