package proxy_test

// The corpus's environments, cases and the runner that plays one case.

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/proxy"
)

// corpusEnv is a proxy in front of one recording backend, shared by the cases that name it.
type corpusEnv struct {
	name    string
	proxy   *testProxy
	backend *recBackend
	cc      *tls.Config // trusts the proxy's certificate, for TLS listeners
}

func (e *corpusEnv) addr() string { return e.proxy.addr }

// corpusStep is one exchange of a case.
type corpusStep struct {
	pause  time.Duration // before sending
	send   string        // exact bytes; {U} is the case's user name
	urgent []byte        // sent as TCP urgent data after send
	want   []string      // replies, see exactClient.expect
}

// corpusCase is one case of the corpus: its steps and what the backend must have received,
// or a custom body.
type corpusCase struct {
	cat, name string
	env       string                        // shared environment
	mkEnv     func(t *testing.T) *corpusEnv // or a private one
	user      string                        // default: a unique ASCII name
	login     bool                          // log in before the steps
	selfLogin bool                          // the steps log in
	steps     []corpusStep
	closes    bool   // after the steps the proxy closes the connection ...
	final     string // ... after sending exactly these bytes
	relayed   []string
	run       func(x *caseRun) // custom body: replaces steps, closes and relayed
}

// caseRun is one running case.
type caseRun struct {
	t        *testing.T
	env      *corpusEnv
	user     string
	client   *exactClient
	loggedIn bool
}

// login logs the case's user in through the proxy.
func (x *caseRun) login() {
	x.t.Helper()
	x.client.send("USER " + x.user + "\r\n")
	x.client.expect(proxy.ReplyUserOK)
	x.client.send("PASS " + corpusPassword + "\r\n")
	x.client.expect("230 rec welcome")
	x.loggedIn = true
}

// exchange sends bytes ({U} is the case's user) and expects the replies; it returns the
// last first line.
func (x *caseRun) exchange(send string, want ...string) string {
	x.t.Helper()
	x.client.send(strings.ReplaceAll(send, "{U}", x.user))
	last := ""
	for _, w := range want {
		last = x.client.expect(strings.ReplaceAll(w, "{U}", x.user))
	}
	return last
}

// sentinel proves the session is alive and in sync, and that the backend has processed
// everything relayed before it.
func (x *caseRun) noopInSync() {
	x.t.Helper()
	x.exchange("NOOP\r\n", "200 rec NOOP")
}

// backendSaw checks the exact lines the backend received on this case's session: the login,
// then relayed, then the sentinel when the session is alive.
func (x *caseRun) backendSaw(relayed []string, alive bool) {
	x.t.Helper()
	s := x.env.backend.find(x.user)
	if s == nil {
		x.t.Fatalf("no backend session for user %q", printable(x.user))
	}
	want := []string{"USER " + x.user, "PASS " + corpusPassword}
	want = append(want, relayed...)
	if alive {
		want = append(want, "NOOP")
	}
	got := s.snapshot()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(want); i++ {
		ok = got[i] == want[i]+"\r\n"
	}
	if !ok {
		x.t.Fatalf("backend received %q, want %q (each with CRLF)", printableAll(got), printableAll(want))
	}
}

func printableAll(l []string) []string {
	out := make([]string, len(l))
	for i, s := range l {
		out[i] = printable(s)
	}
	return out
}

// backendClosed checks that the backend leg of the case's session was closed.
func (x *caseRun) backendClosed() {
	x.t.Helper()
	s := x.env.backend.find(x.user)
	if s == nil {
		x.t.Fatalf("no backend session for user %q", x.user)
	}
	select {
	case <-s.done:
	case <-time.After(3 * time.Second):
		x.t.Fatal("backend leg still open after the client connection closed")
	}
}

// allBackendClosed checks every session of the environment's backend has ended.
func (x *caseRun) allBackendClosed() {
	x.t.Helper()
	x.env.backend.mu.Lock()
	ss := append([]*recSess(nil), x.env.backend.sessions...)
	x.env.backend.mu.Unlock()
	for _, s := range ss {
		select {
		case <-s.done:
		case <-time.After(3 * time.Second):
			x.t.Fatal("a backend connection is still open after the session ended")
		}
	}
}

// noBackendContacted checks that no backend session was opened for the case's user.
func (x *caseRun) noBackendContacted() {
	x.t.Helper()
	if s := x.env.backend.find(x.user); s != nil {
		x.t.Fatalf("a backend session was opened for %q: %q", x.user, printableAll(s.snapshot()))
	}
}

// runCorpusCase plays one case: its custom body, or its steps followed by the checks of the
// close (exact final bytes, backend leg closed) or of a live session (a NOOP in sync, the
// exact lines relayed).
func runCorpusCase(t *testing.T, c *corpusCase, env *corpusEnv, user string) {
	x := &caseRun{t: t, env: env, user: user}
	if c.run != nil {
		c.run(x)
		return
	}
	x.client = dialExact(t, env.addr())
	x.client.expect(greeting)
	if c.login {
		x.login()
	}
	for _, st := range c.steps {
		if st.pause > 0 {
			time.Sleep(st.pause)
		}
		if st.send != "" {
			x.client.send(strings.ReplaceAll(st.send, "{U}", x.user))
		}
		if st.urgent != nil {
			sendUrgent(t, x.client.c, st.urgent)
		}
		for _, w := range st.want {
			x.client.expect(strings.ReplaceAll(w, "{U}", x.user))
		}
	}
	if c.selfLogin {
		x.loggedIn = true
	}
	if c.closes {
		x.client.expectClose(c.final)
		if x.loggedIn {
			x.backendSaw(c.relayed, false)
			x.backendClosed()
		} else {
			if len(c.relayed) > 0 {
				t.Fatal("bad case: relayed lines without a login")
			}
			x.noBackendContacted()
		}
		return
	}
	if !x.loggedIn {
		x.noBackendContacted()
		x.login()
	}
	x.noopInSync()
	x.backendSaw(c.relayed, true)
}

// step is one exchange of a case: send these bytes, expect these replies.
func step(send string, want ...string) corpusStep { return corpusStep{send: send, want: want} }

// hostileEnv starts a proxy in front of one recording backend scripted by hook.
func hostileEnv(hook recHook, listen string, opts ...proxyOpt) func(t *testing.T) *corpusEnv {
	return func(t *testing.T) *corpusEnv {
		be := startRecBackend(t, listen, hook)
		opts = append([]proxyOpt{func(c *proxy.Config, _ *balancer.PoolConfig) {
			c.Limits.BackendTimeout = time.Second
			c.Data.ConnectTimeout = 2 * time.Second
		}}, opts...)
		p := startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)}, opts...)
		return &corpusEnv{name: "hostile", proxy: p, backend: be}
	}
}

// onVerb scripts the backend's answer to one verb with raw bytes; close ends the backend's
// session after writing them.
func onVerb(verb, rawReply string, close bool) recHook {
	return func(s *recSess, v, _ string) bool {
		if v != verb {
			return false
		}
		s.raw(rawReply)
		s.quit = close
		return true
	}
}

// writeEndlessly writes chunk until the proxy goes away.
func writeEndlessly(s *recSess, first, chunk string) {
	s.raw(first)
	s.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, err := io.WriteString(s.c, chunk); err != nil {
			return
		}
	}
}

// pasvConnect sends PASV and connects to the announced port.
func pasvConnect(x *caseRun) net.Conn {
	x.t.Helper()
	line := x.exchange("PASV\r\n", "227 Entering Passive Mode (*")
	port, err := port227(line)
	if err != nil {
		x.t.Fatal(err)
	}
	dc, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 5*time.Second)
	if err != nil {
		x.t.Fatal(err)
	}
	x.t.Cleanup(func() { dc.Close() })
	dc.SetDeadline(time.Now().Add(10 * time.Second))
	return dc
}

// port227 returns the port of a 227 reply's address.
func port227(line string) (int, error) {
	i, j := strings.Index(line, "("), strings.Index(line, ")")
	if i < 0 || j < i {
		return 0, fmt.Errorf("227 %q", line)
	}
	f := strings.Split(line[i+1:j], ",")
	if len(f) != 6 {
		return 0, fmt.Errorf("227 %q", line)
	}
	hi, _ := strconv.Atoi(f[4])
	lo, _ := strconv.Atoi(f[5])
	return hi<<8 | lo, nil
}

// repeated returns n copies of s.
func repeated(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// ipv6Available reports whether ::1 can be listened on here.
func ipv6Available() bool {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		return false
	}
	ln.Close()
	return true
}
