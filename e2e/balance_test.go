package e2e

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/internal/peers"
	"net/textproto"
)

// farm is three real backends (two vsftpd, one pure-ftpd), each serving a marker file that
// names it.
type farm struct {
	names   []string
	servers []*peers.Server
}

func startFarm(t *testing.T) *farm {
	t.Helper()
	f := &farm{names: []string{"v1", "v2", "p1"}}
	for i, start := range []func(testing.TB, peers.Options) *peers.Server{peers.StartVsftpd, peers.StartVsftpd, peers.StartPureFTPd} {
		s := start(t, peers.Options{PasvPorts: peers.FreePortRange(t, 100)})
		s.WriteFile(t, "marker", []byte(f.names[i]))
		f.servers = append(f.servers, s)
	}
	return f
}

// session logs in through addr from source IP src (empty: default), after an optional RFC
// 7151 HOST, reads the marker over EPSV, and returns the backend's name and the open control
// connection (close it to end the session).
func session(addr, src, host string) (string, *rawSess, error) {
	d := net.Dialer{Timeout: 20 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return "", nil, err
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	tp := textproto.NewConn(c)
	fail := func(err error) (string, *rawSess, error) { c.Close(); return "", nil, err }
	if _, _, err := tp.ReadResponse(220); err != nil {
		return fail(err)
	}
	step := func(cmd string, code int) (string, error) {
		if err := tp.PrintfLine("%s", cmd); err != nil {
			return "", err
		}
		_, msg, err := tp.ReadResponse(code)
		return msg, err
	}
	if host != "" {
		if _, err := step("HOST "+host, 220); err != nil {
			return fail(err)
		}
	}
	if _, err := step("USER "+peers.User, 331); err != nil {
		return fail(err)
	}
	if _, err := step("PASS "+peers.Password, 230); err != nil {
		return fail(err)
	}
	msg, err := step("EPSV", 229)
	if err != nil {
		return fail(err)
	}
	port := msg[strings.Index(msg, "|||")+3 : strings.LastIndex(msg, "|")]
	host0, _, _ := net.SplitHostPort(addr)
	dc, err := d.Dial("tcp", net.JoinHostPort(host0, port))
	if err != nil {
		return fail(err)
	}
	defer dc.Close()
	if err := tp.PrintfLine("RETR marker"); err != nil {
		return fail(err)
	}
	if _, _, err := tp.ReadResponse(1); err != nil {
		return fail(err)
	}
	b, _ := io.ReadAll(dc)
	if _, _, err := tp.ReadResponse(226); err != nil {
		return fail(err)
	}
	c.SetDeadline(time.Time{})
	return string(b), &rawSess{c: c, tp: tp}, nil
}

// rawSess is an open logged-in session.
type rawSess struct {
	c  net.Conn
	tp *textproto.Conn
}

func (r *rawSess) Close() error { return r.c.Close() }

// noop checks the session still answers.
func (r *rawSess) noop() error {
	r.c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := r.tp.PrintfLine("NOOP"); err != nil {
		return err
	}
	_, _, err := r.tp.ReadResponse(200)
	return err
}

func balanceConfig(t *testing.T, f *farm, admin string) (string, map[string]string) {
	t.Helper()
	listeners := map[string]string{}
	var b strings.Builder
	policies := []string{"round_robin", "least_conn", "random", "ip_hash", "user_hash"}
	for _, pol := range policies {
		listeners[pol] = freeAddr(t)
		fmt.Fprintf(&b, "[[listener]]\naddress = %q\npool = %q\nname = %q\n\n", listeners[pol], pol, pol)
	}
	listeners["capped"] = freeAddr(t)
	fmt.Fprintf(&b, "[[listener]]\naddress = %q\npool = \"capped\"\nname = \"capped\"\n\n", listeners["capped"])
	listeners["routed"] = freeAddr(t)
	fmt.Fprintf(&b, "[[listener]]\naddress = %q\npool = \"round_robin\"\nname = \"routed\"\n\n", listeners["routed"])
	fmt.Fprintf(&b, "[data]\nport_range = %q\n\n", freeRange(t, 200))
	for _, pol := range policies {
		fmt.Fprintf(&b, "[[pool]]\nname = %q\npolicy = %q\nhealth_interval = \"200ms\"\nhealth_timeout = \"1s\"\nhealth_rise = 2\nhealth_fall = 2\n", pol, pol)
		for i, s := range f.servers {
			fmt.Fprintf(&b, "[[pool.backend]]\naddress = %q\nweight = %d\n", s.Addr, []int{1, 2, 1}[i])
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "[[pool]]\nname = \"capped\"\npolicy = \"round_robin\"\nhealth_interval = \"0s\"\n")
	fmt.Fprintf(&b, "[[pool.backend]]\naddress = %q\nmax_sessions = 5\n[[pool.backend]]\naddress = %q\nmax_sessions = 3\n\n", f.servers[0].Addr, f.servers[2].Addr)
	// Routes: HOST ftp.p1.test → a pool holding only p1; user ftptest at listener "routed"
	// matches no user route but the host route.
	fmt.Fprintf(&b, "[[pool]]\nname = \"only_p1\"\npolicy = \"round_robin\"\nhealth_interval = \"0s\"\n[[pool.backend]]\naddress = %q\n\n", f.servers[2].Addr)
	fmt.Fprintf(&b, "[[pool]]\nname = \"only_v2\"\npolicy = \"round_robin\"\nhealth_interval = \"0s\"\n[[pool.backend]]\naddress = %q\n\n", f.servers[1].Addr)
	b.WriteString("[[route]]\nhost = \"ftp.p1.test\"\npool = \"only_p1\"\n\n")
	b.WriteString("[[route]]\nuser = \"ftptes?\"\nhost = \"ftp.v2.test\"\npool = \"only_v2\"\n\n")
	fmt.Fprintf(&b, "[limits]\nmax_sessions_per_ip = 1000\nlogins_per_minute = 0\nattempts_per_minute = 0\n\n[admin]\naddress = %q\n", admin)
	return b.String(), listeners
}

// distribution runs n sessions (conc at a time) and counts the backends that served them.
// hold keeps every session open until all have run.
func distribution(t *testing.T, addr string, n, conc int, src func(i int) string, hold bool) map[string]int {
	t.Helper()
	var mu sync.Mutex
	counts := map[string]int{}
	var open []*rawSess
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	var firstErr error
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			name, c, err := session(addr, src(i), "")
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			counts[name]++
			if hold {
				open = append(open, c)
			} else {
				c.Close()
			}
		}()
	}
	wg.Wait()
	for _, c := range open {
		c.Close()
	}
	if firstErr != nil {
		t.Fatalf("session failed: %v (counts so far %v)", firstErr, counts)
	}
	return counts
}

func near(got, want int, tol float64) bool {
	return math.Abs(float64(got-want)) <= tol*float64(want)
}

func noSrc(int) string { return "" }

// TestBalancing: 300 sessions per policy over three real backends weighted 1:2:1, each
// backend's share checked against the policy; max_sessions; hash stability; routes by HOST
// and user; a backend killed and restarted; all killed → 421 at once; /healthz follows.
func TestBalancing(t *testing.T) {
	f := startFarm(t)
	adminAddr := freeAddr(t)
	cfg, ls := balanceConfig(t, f, adminAddr)
	p := startProxy(t, cfg)

	t.Run("round_robin", func(t *testing.T) {
		got := distribution(t, ls["round_robin"], 300, 1, noSrc, false)
		if got["v1"] != 75 || got["v2"] != 150 || got["p1"] != 75 {
			t.Fatalf("weighted round robin over 300: %v, want 75/150/75", got)
		}
	})
	t.Run("random", func(t *testing.T) {
		got := distribution(t, ls["random"], 300, 8, noSrc, false)
		if !near(got["v1"], 75, 0.35) || !near(got["v2"], 150, 0.25) || !near(got["p1"], 75, 0.35) {
			t.Fatalf("weighted random over 300: %v, want about 75/150/75", got)
		}
	})
	t.Run("least_conn", func(t *testing.T) {
		// 40 sessions held open: least active per weight gives 10/20/10.
		got := distribution(t, ls["least_conn"], 40, 1, noSrc, true)
		if got["v1"] != 10 || got["v2"] != 20 || got["p1"] != 10 {
			t.Fatalf("least_conn with 40 held sessions: %v, want 10/20/10", got)
		}
	})
	t.Run("ip_hash", func(t *testing.T) {
		src := func(i int) string { return fmt.Sprintf("127.0.0.%d", 2+i%60) }
		got := distribution(t, ls["ip_hash"], 300, 8, src, false)
		if !near(got["v1"], 75, 0.6) || !near(got["v2"], 150, 0.4) || !near(got["p1"], 75, 0.6) {
			t.Fatalf("ip_hash over 60 addresses: %v, want roughly 75/150/75", got)
		}
		// Stable: each address lands where it did before.
		first := map[string]string{}
		for i := range 60 {
			name, c, err := session(ls["ip_hash"], src(i), "")
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
			first[src(i)] = name
		}
		for i := range 60 {
			name, c, err := session(ls["ip_hash"], src(i), "")
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
			if name != first[src(i)] {
				t.Fatalf("%s moved from %s to %s", src(i), first[src(i)], name)
			}
		}
	})
	t.Run("user_hash", func(t *testing.T) {
		got := distribution(t, ls["user_hash"], 300, 8, noSrc, false)
		if len(got) != 1 {
			t.Fatalf("one user spread over %v", got)
		}
	})
	t.Run("max_sessions", func(t *testing.T) {
		// Backends capped at 5 and 3: 8 sessions fit, the 9th gets the 421.
		var open []*rawSess
		got := map[string]int{}
		for range 8 {
			name, c, err := session(ls["capped"], "", "")
			if err != nil {
				t.Fatal(err)
			}
			got[name]++
			open = append(open, c)
		}
		defer func() {
			for _, c := range open {
				c.Close()
			}
		}()
		if got["v1"] != 5 || got["p1"] != 3 {
			t.Fatalf("capped pool: %v, want v1=5 p1=3", got)
		}
		if _, _, err := session(ls["capped"], "", ""); err == nil || !is421(err, "Too many connections, try again later") {
			t.Fatalf("9th session on a full pool: %v", err)
		}
	})
	t.Run("routes", func(t *testing.T) {
		for range 5 {
			name, c, err := session(ls["routed"], "", "ftp.p1.test")
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
			if name != "p1" {
				t.Fatalf("HOST ftp.p1.test went to %s", name)
			}
			name, c, err = session(ls["routed"], "", "ftp.v2.test")
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
			if name != "v2" {
				t.Fatalf("user ftptest + HOST ftp.v2.test went to %s", name)
			}
		}
	})
	t.Run("health", func(t *testing.T) {
		addr := ls["round_robin"]
		// A session held on p1 is undisturbed by v2 being killed.
		var held *rawSess
		for held == nil {
			name, c, err := session(addr, "", "")
			if err != nil {
				t.Fatal(err)
			}
			if name == "p1" {
				held = c
			} else {
				c.Close()
			}
		}
		defer held.Close()
		killed := time.Now()
		f.servers[1].Stop()
		waitLog(t, p, `msg="backend down" pool=round_robin backend=`+f.servers[1].Addr)
		if d := time.Since(killed); d > 5*time.Second { // interval × fall = 400 ms, plus probe time and load
			t.Fatalf("marked down after %v", d)
		}
		got := distribution(t, addr, 30, 1, noSrc, false)
		if got["v2"] != 0 || got["v1"]+got["p1"] != 30 {
			t.Fatalf("sessions after v2 died: %v", got)
		}
		if err := held.noop(); err != nil {
			t.Fatalf("a session on another backend was disturbed: %v", err)
		}
		// Restart v2 on its address: back after rise checks.
		s := peers.StartVsftpd(t, peers.Options{Addr: f.servers[1].Addr, PasvPorts: peers.FreePortRange(t, 100)})
		s.WriteFile(t, "marker", []byte("v2"))
		f.servers[1] = s
		waitLog(t, p, `msg="backend up" pool=round_robin backend=`+s.Addr)
		got = distribution(t, addr, 40, 1, noSrc, false)
		if got["v2"] == 0 {
			t.Fatalf("v2 gets nothing after it came back: %v", got)
		}
		if code := healthz(t, adminAddr, ""); code != 200 {
			t.Fatalf("/healthz %d with every pool up", code)
		}
		// Kill all: the pool's /healthz/round_robin goes 503 and new sessions get the 421 at
		// once. The proxy's own /healthz stays 200: the capped pool has checks off, so it can
		// still serve as far as the proxy knows (SPEC §8: 200 while one pool can serve).
		for _, s := range f.servers {
			s.Stop()
		}
		waitFor(t, 5*time.Second, func() bool { return healthz(t, adminAddr, "round_robin") == 503 })
		if code := healthz(t, adminAddr, ""); code != 200 {
			t.Fatalf("/healthz %d while the capped pool can serve", code)
		}
		start := time.Now()
		_, _, err := session(addr, "", "")
		if err == nil || !is421(err, "Service not available, closing control connection") {
			t.Fatalf("with every backend down: %v", err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("the 421 took %v", d)
		}
		s = peers.StartPureFTPd(t, peers.Options{Addr: f.servers[2].Addr, PasvPorts: peers.FreePortRange(t, 100)})
		s.WriteFile(t, "marker", []byte("p1"))
		waitFor(t, 5*time.Second, func() bool { return healthz(t, adminAddr, "round_robin") == 200 })
	})
}

// healthz returns the status of the admin's /healthz, or of /healthz/{pool} when pool is set.
func healthz(t *testing.T, addr, pool string) int {
	t.Helper()
	url := "http://" + addr + "/healthz"
	if pool != "" {
		url += "/" + pool
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func waitFor(t *testing.T, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// is421 reports whether err is the proxy's 421 reply with text.
func is421(err error, text string) bool {
	var te *textproto.Error
	return errors.As(err, &te) && te.Code == 421 && te.Msg == text
}
