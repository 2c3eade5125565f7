package proxy_test

// The hostile-input corpus: several hundred exact byte sequences sent through a real proxy
// to a recording fake backend. Every case checks the exact reply (or a clean close) and the
// exact list of lines the backend received, so nothing smuggled, answered locally or refused
// can reach a backend unnoticed.
//
//	go test -count=1 -run Hostile ./proxy/            (prints "hostile: N cases, F failures")
//	go test -count=1 -run 'Hostile/port-syntax' ./proxy/

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/proxy"
	proxyproto "github.com/pires/go-proxyproto"
)

// The proxy's own reply texts (proxy/replies.go, SPEC §4), as a client sees them.
const (
	hGreeting     = "220 FTP proxy ready"
	hUserOK       = "331 Please specify the password."
	hNeedLogin    = "530 Please login with USER and PASS"
	hLoginBad     = "530 Login incorrect."
	hUserFirst    = "503 Login with USER first."
	hLoggedIn     = "503 Already logged in."
	hUnknown      = "500 Syntax error, command unrecognized."
	hTooLong      = "500 Command line too long."
	hBareLF       = "500 Command line not terminated by CRLF."
	hBadChar      = "500 Illegal character in command."
	hNoop         = "200 NOOP ok."
	hSyst         = "215 UNIX Type: L8"
	hGoodbye      = "221 Goodbye."
	hUTF8         = "200 Always in UTF8 mode."
	hOptsBad      = "501 Option not understood."
	hClnt         = "200 Noted."
	hHostOK       = "220 Host accepted."
	hHostLate     = "503 HOST must come before USER."
	hHostBad      = "501 Bad host name."
	hReinNo       = "502 REIN not supported by the proxy."
	hAuthNone     = "502 TLS is not offered on this listener."
	hAuthMech     = "504 Unsupported security mechanism; use AUTH TLS."
	hAuthTwice    = "503 TLS already active."
	hPbszEarly    = "503 PBSZ before AUTH."
	hProtEarly    = "503 PROT before PBSZ."
	hPbszBad      = "501 PBSZ needs a decimal number."
	hPbszOK       = "200 PBSZ=0"
	hProtC        = "200 Protection level set to C."
	hProtP        = "200 Protection level set to P."
	hProtLevel    = "536 Protection level not supported; use PROT C or PROT P."
	hProtUnknown  = "504 Unknown protection level."
	hProtRequired = "534 PROT C refused: this listener requires protected data."
	hTLSRequired  = "534 TLS required: use AUTH TLS first."
	hDataTLS      = "521 Data connections must be protected: use PROT P."
	hAdat         = "503 ADAT not supported without a security mechanism."
	hProtected    = "537 Protected commands are not supported."
	hCCC          = "533 Clear control channel refused."
	hPasvV6       = "501 PASV carries IPv4 only: use EPSV."
	hEpsvProto    = "522 Network protocol not supported, use (1)"
	hEpsvProto6   = "522 Network protocol not supported, use (2)"
	hEprtProto    = "522 Network protocol not supported, use (1,2)"
	hEpsvAll      = "200 EPSV ALL ok."
	hEpsvAllOnly  = "503 Only EPSV is allowed after EPSV ALL."
	hPortOK       = "200 PORT command successful."
	hPortBad      = "501 Syntax error in PORT/EPRT argument."
	hPortRefused  = "501 Data connection refused: only to your own address and a port of 1024 or above."
	hNeedData     = "425 Use PORT, PASV or EPSV first."
	hCantOpen     = "425 Can't open data connection."
	hDataTLSFail  = "425 Can't open data connection: TLS handshake failed."
	hAborted      = "426 Connection closed; transfer aborted."
	hProt150      = "150 Opening protected data connection."
	hHelp         = "raw:214-The following commands are recognized before login:\r\n USER PASS AUTH PBSZ PROT FEAT OPTS SYST NOOP HELP HOST CLNT QUIT\r\n214 Help OK.\r\n"
	hFeatPlain    = "raw:211-Features:\r\n EPRT\r\n EPSV\r\n HOST\r\n UTF8\r\n211 End\r\n"
	hFeatTLS      = "raw:211-Features:\r\n AUTH TLS\r\n PBSZ\r\n PROT\r\n EPRT\r\n EPSV\r\n HOST\r\n UTF8\r\n211 End\r\n"
	h421NoBackend = "421 Service not available, closing control connection\r\n"

	hPass   = "pw"
	hMarker = "ZQX" // part of every payload that must never reach a backend
)

// ---------------------------------------------------------------------------------------
// The recording fake backend.

// recHook lets a case script a hostile backend. It runs first for every line (verb "" at
// connect, before the greeting) and reports whether it handled the line.
type recHook func(s *recSess, verb, arg string) bool

// recBackend is a fake FTP server that logs anyone in, answers every command with a fixed,
// recognisable reply, serves passive data connections, and records every line it receives.
type recBackend struct {
	ln   net.Listener
	addr string
	hook recHook

	mu       sync.Mutex
	sessions []*recSess
}

type recSess struct {
	b    *recBackend
	c    net.Conn
	r    *bufio.Reader
	done chan struct{} // closed when the control connection has ended

	mu    sync.Mutex
	lines []string // every line received, with its terminator
	user  string

	pasv net.Listener
	rnfr bool
	quit bool // set by a hook to end the session after it returns
}

func startRecBackend(t testing.TB, listen string, hook recHook) *recBackend {
	t.Helper()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	b := &recBackend{ln: ln, addr: ln.Addr().String(), hook: hook}
	t.Cleanup(func() {
		ln.Close()
		b.mu.Lock()
		for _, s := range b.sessions {
			s.c.Close()
		}
		ss := append([]*recSess(nil), b.sessions...)
		b.mu.Unlock()
		for _, s := range ss {
			<-s.done
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s := &recSess{b: b, c: c, r: bufio.NewReaderSize(c, 1<<16), done: make(chan struct{})}
			b.mu.Lock()
			b.sessions = append(b.sessions, s)
			b.mu.Unlock()
			go s.run()
		}
	}()
	return b
}

// find returns the latest session that sent USER user.
func (b *recBackend) find(user string) *recSess {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := len(b.sessions) - 1; i >= 0; i-- {
		s := b.sessions[i]
		s.mu.Lock()
		u := s.user
		s.mu.Unlock()
		if u == user {
			return s
		}
	}
	return nil
}

func (b *recBackend) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.sessions)
}

// allLines returns every line every session received.
func (b *recBackend) allLines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, s := range b.sessions {
		out = append(out, s.snapshot()...)
	}
	return out
}

func (s *recSess) snapshot() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lines...)
}

// readLine reads and records one more control line (for hooks that wait for a command).
func (s *recSess) readLine() string {
	line, _ := s.r.ReadString('\n')
	if line != "" {
		s.mu.Lock()
		s.lines = append(s.lines, line)
		s.mu.Unlock()
	}
	return line
}

func (s *recSess) reply(line string) { io.WriteString(s.c, line+"\r\n") }
func (s *recSess) raw(b string)      { io.WriteString(s.c, b) }

func (s *recSess) run() {
	defer close(s.done)
	defer s.c.Close()
	defer func() {
		if s.pasv != nil {
			s.pasv.Close()
		}
	}()
	if s.b.hook == nil || !s.b.hook(s, "", "") {
		s.reply("220 rec ready")
	}
	if s.quit {
		return
	}
	for {
		line, err := s.r.ReadString('\n')
		if line != "" {
			s.mu.Lock()
			s.lines = append(s.lines, line)
			s.mu.Unlock()
		}
		if err != nil {
			return
		}
		body := strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		verb, arg, _ := strings.Cut(body, " ")
		verb = strings.ToUpper(verb)
		if verb == "USER" {
			s.mu.Lock()
			s.user = arg
			s.mu.Unlock()
		}
		if s.b.hook != nil && s.b.hook(s, verb, arg) {
			if s.quit {
				return
			}
			continue
		}
		if !s.handle(verb, arg) {
			return
		}
	}
}

func (s *recSess) handle(verb, arg string) bool {
	wasRnfr := s.rnfr
	s.rnfr = false
	switch verb {
	case "USER":
		s.reply("331 rec password")
	case "PASS":
		if strings.HasPrefix(arg, "bad") {
			s.reply("530 rec denied")
		} else {
			s.reply("230 rec welcome")
		}
	case "QUIT":
		s.reply("221 rec bye")
		return false
	case "PASV", "EPSV":
		s.openPasv(verb)
	case "RETR", "LIST", "NLST", "MLSD":
		s.download(verb, arg)
	case "STOR", "APPE", "STOU":
		s.upload()
	case "RNFR":
		s.rnfr = true
		s.reply("350 rec rnfr")
	case "RNTO":
		if wasRnfr {
			s.reply("250 rec renamed")
		} else {
			s.reply("503 rec RNFR first")
		}
	default:
		s.reply(recReply(verb, arg))
	}
	return true
}

// recReply is the fake backend's answer to a command that needs no data connection.
func recReply(verb, arg string) string {
	switch verb {
	case "NOOP":
		return "200 rec NOOP"
	case "PWD", "XPWD":
		return `257 "/" rec`
	case "CWD", "XCWD", "CDUP", "XCUP":
		return "250 rec cwd"
	case "MKD", "XMKD":
		return `257 "` + arg + `" rec created`
	case "DELE", "RMD", "XRMD":
		return "250 rec deleted"
	case "TYPE", "MODE", "STRU", "ALLO", "ACCT", "SMNT", "LANG", "OPTS", "PORT", "EPRT":
		return "200 rec " + verb
	case "REST":
		return "350 rec rest"
	case "SITE":
		if rest, ok := strings.CutPrefix(arg, "ECHO "); ok {
			return "200 echo " + rest
		}
		return "200 rec SITE"
	case "ABOR":
		return "226 rec abor"
	case "SIZE":
		return "213 0"
	case "MDTM":
		return "213 20200101000000"
	case "STAT":
		return "211 rec stat"
	case "HELP":
		return "214 rec help"
	case "SYST":
		return "215 UNIX rec"
	case "MLST":
		return "250 rec mlst"
	case "FEAT":
		return "211-rec\r\n MDTM\r\n SIZE\r\n AUTH TLS\r\n EPSV\r\n HOST\r\n211 End"
	}
	return "502 rec not implemented"
}

func recPayload(verb, arg string) string { return "rec-" + strings.ToLower(verb) + ":" + arg + "\r\n" }

func (s *recSess) openPasv(verb string) {
	if s.pasv != nil {
		s.pasv.Close()
		s.pasv = nil
	}
	host, _, _ := net.SplitHostPort(s.c.LocalAddr().String())
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		s.reply("425 rec listen failed")
		return
	}
	s.pasv = ln
	port := ln.Addr().(*net.TCPAddr).Port
	if verb == "EPSV" {
		s.reply(fmt.Sprintf("229 Entering Extended Passive Mode (|||%d|)", port))
		return
	}
	ip := ln.Addr().(*net.TCPAddr).IP.To4()
	if ip == nil {
		s.reply("425 rec no IPv4")
		return
	}
	s.reply(fmt.Sprintf("227 Entering Passive Mode (%d,%d,%d,%d,%d,%d).", ip[0], ip[1], ip[2], ip[3], port>>8, port&0xff))
}

func (s *recSess) acceptData() net.Conn {
	ln := s.pasv
	s.pasv = nil
	if ln == nil {
		s.reply("425 rec no data connection")
		return nil
	}
	defer ln.Close()
	s.reply("150 rec opening")
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
	dc, err := ln.Accept()
	if err != nil {
		s.reply("425 rec accept failed")
		return nil
	}
	return dc
}

func (s *recSess) download(verb, arg string) {
	dc := s.acceptData()
	if dc == nil {
		return
	}
	io.WriteString(dc, recPayload(verb, arg))
	dc.Close()
	s.reply("226 rec done")
}

func (s *recSess) upload() {
	dc := s.acceptData()
	if dc == nil {
		return
	}
	dc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _ := io.Copy(io.Discard, dc)
	dc.Close()
	s.reply(fmt.Sprintf("226 rec stored %d", n))
}

// ---------------------------------------------------------------------------------------
// The client side.

// hcl is a control connection that writes exact bytes and reads exact replies.
type hcl struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func hDial(t *testing.T, addr string) *hcl {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return &hcl{t: t, c: c, r: bufio.NewReader(c)}
}

func (h *hcl) send(s string) {
	h.t.Helper()
	if _, err := io.WriteString(h.c, s); err != nil {
		h.t.Fatalf("write %q: %v", hq(s), err)
	}
}

// readReply reads one whole reply: its exact bytes and its first line without terminator.
func (h *hcl) readReply() (raw, first string, err error) {
	line, err := h.r.ReadString('\n')
	raw = line
	if err != nil {
		return raw, "", err
	}
	first = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if len(first) >= 4 && first[3] == '-' {
		end := first[:3] + " "
		for {
			l, err := h.r.ReadString('\n')
			raw += l
			if err != nil {
				return raw, first, err
			}
			if strings.HasPrefix(l, end) {
				break
			}
		}
	}
	return raw, first, nil
}

// want reads one reply and checks it: "raw:<bytes>" is the whole reply byte for byte,
// "<text>*" a prefix of its first line, anything else its exact first line (a one-line reply
// must then be exactly that line and CRLF). It returns the first line.
func (h *hcl) want(w string) string {
	h.t.Helper()
	raw, first, err := h.readReply()
	if err != nil {
		h.t.Fatalf("want %q: got %q, %v", hq(w), hq(raw), err)
	}
	ok := true
	switch {
	case strings.HasPrefix(w, "raw:"):
		ok = raw == w[4:]
	case strings.HasSuffix(w, "*"):
		ok = strings.HasPrefix(first, w[:len(w)-1]) && strings.HasSuffix(raw, "\r\n")
	default:
		ok = first == w && strings.HasSuffix(raw, "\r\n")
		if len(first) < 4 || first[3] != '-' {
			ok = ok && raw == w+"\r\n"
		}
	}
	if !ok {
		h.t.Fatalf("want %q, got %q", hq(w), hq(raw))
	}
	return first
}

// expectClose reads until the proxy closes and checks the bytes it sent meanwhile.
func (h *hcl) expectClose(final string) {
	h.t.Helper()
	h.c.SetReadDeadline(time.Now().Add(3 * time.Second))
	rest, err := io.ReadAll(h.r)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		h.t.Fatalf("want %q then close: got %q, %v", hq(final), hq(string(rest)), err)
	}
	if string(rest) != final {
		h.t.Fatalf("want exactly %q then close, got %q", hq(final), hq(string(rest)))
	}
}

// expectTLSClose checks that the proxy closed the connection without sending a plaintext
// reply: nothing, or TLS alert records only.
func (h *hcl) expectTLSClose(within time.Duration) {
	h.t.Helper()
	start := time.Now()
	h.c.SetReadDeadline(time.Now().Add(within + 3*time.Second))
	rest, err := io.ReadAll(h.r)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		h.t.Fatalf("not closed: got %q, %v", hq(string(rest)), err)
	}
	for b := rest; len(b) > 0; {
		if len(b) < 5 || b[0] != 0x15 {
			h.t.Fatalf("bytes other than TLS alerts before the close: %q", hq(string(rest)))
		}
		n := 5 + int(binary.BigEndian.Uint16(b[3:5]))
		if n > len(b) {
			h.t.Fatalf("truncated record before the close: %q", hq(string(rest)))
		}
		b = b[n:]
	}
	if d := time.Since(start); d > within {
		h.t.Fatalf("closed after %v, want within %v", d, within)
	}
}

func (h *hcl) startTLS(cc *tls.Config) {
	h.t.Helper()
	if h.r.Buffered() > 0 {
		h.t.Fatalf("bytes after 234 before the handshake")
	}
	tc := tls.Client(h.c, cc)
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		h.t.Fatalf("TLS handshake: %v", err)
	}
	h.c = tc
	h.r = bufio.NewReader(tc)
}

// hq makes bytes readable in failure messages.
func hq(s string) string {
	if len(s) > 200 {
		return s[:120] + fmt.Sprintf("…(%d bytes)…", len(s)-180) + s[len(s)-60:]
	}
	return s
}

// ---------------------------------------------------------------------------------------
// Environments and cases.

type henv struct {
	name string
	p    *testProxy
	be   *recBackend
	cc   *tls.Config // trusts the proxy's certificate, for TLS listeners
}

func (e *henv) addr() string { return e.p.addr }

type hstep struct {
	pause  time.Duration // before sending
	send   string        // exact bytes; {U} is the case's user name
	urgent []byte        // sent as TCP urgent data after send
	want   []string      // replies, see hcl.want
}

type hcase struct {
	cat, name string
	env       string                   // shared environment
	mkEnv     func(t *testing.T) *henv // or a private one
	user      string                   // default: a unique ASCII name
	login     bool                     // log in before the steps
	selfLogin bool                     // the steps log in
	steps     []hstep
	closes    bool   // after the steps the proxy closes the connection ...
	final     string // ... after sending exactly these bytes
	relayed   []string
	run       func(x *hx) // custom body: replaces steps, closes and relayed
}

// hx is one running case.
type hx struct {
	t        *testing.T
	env      *henv
	user     string
	cl       *hcl
	loggedIn bool
}

func (x *hx) login() {
	x.t.Helper()
	x.cl.send("USER " + x.user + "\r\n")
	x.cl.want(hUserOK)
	x.cl.send("PASS " + hPass + "\r\n")
	x.cl.want("230 rec welcome")
	x.loggedIn = true
}

func (x *hx) do(send string, want ...string) string {
	x.t.Helper()
	x.cl.send(strings.ReplaceAll(send, "{U}", x.user))
	last := ""
	for _, w := range want {
		last = x.cl.want(strings.ReplaceAll(w, "{U}", x.user))
	}
	return last
}

// sentinel proves the session is alive and in sync, and that the backend has processed
// everything relayed before it.
func (x *hx) sentinel() {
	x.t.Helper()
	x.do("NOOP\r\n", "200 rec NOOP")
}

// backendSaw checks the exact lines the backend received on this case's session: the login,
// then relayed, then the sentinel when the session is alive.
func (x *hx) backendSaw(relayed []string, alive bool) {
	x.t.Helper()
	s := x.env.be.find(x.user)
	if s == nil {
		x.t.Fatalf("no backend session for user %q", hq(x.user))
	}
	want := []string{"USER " + x.user, "PASS " + hPass}
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
		x.t.Fatalf("backend received %q, want %q (each with CRLF)", hqs(got), hqs(want))
	}
}

func hqs(l []string) []string {
	out := make([]string, len(l))
	for i, s := range l {
		out[i] = hq(s)
	}
	return out
}

// backendClosed checks that the backend leg of the case's session was closed.
func (x *hx) backendClosed() {
	x.t.Helper()
	s := x.env.be.find(x.user)
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
func (x *hx) allBackendClosed() {
	x.t.Helper()
	x.env.be.mu.Lock()
	ss := append([]*recSess(nil), x.env.be.sessions...)
	x.env.be.mu.Unlock()
	for _, s := range ss {
		select {
		case <-s.done:
		case <-time.After(3 * time.Second):
			x.t.Fatal("a backend connection is still open after the session ended")
		}
	}
}

func (x *hx) noBackend() {
	x.t.Helper()
	if s := x.env.be.find(x.user); s != nil {
		x.t.Fatalf("a backend session was opened for %q: %q", x.user, hqs(s.snapshot()))
	}
}

func runHCase(t *testing.T, c *hcase, env *henv, user string) {
	x := &hx{t: t, env: env, user: user}
	if c.run != nil {
		c.run(x)
		return
	}
	x.cl = hDial(t, env.addr())
	x.cl.want(hGreeting)
	if c.login {
		x.login()
	}
	for _, st := range c.steps {
		if st.pause > 0 {
			time.Sleep(st.pause)
		}
		if st.send != "" {
			x.cl.send(strings.ReplaceAll(st.send, "{U}", x.user))
		}
		if st.urgent != nil {
			hSendUrgent(t, x.cl.c, st.urgent)
		}
		for _, w := range st.want {
			x.cl.want(strings.ReplaceAll(w, "{U}", x.user))
		}
	}
	if c.selfLogin {
		x.loggedIn = true
	}
	if c.closes {
		x.cl.expectClose(c.final)
		if x.loggedIn {
			x.backendSaw(c.relayed, false)
			x.backendClosed()
		} else {
			if len(c.relayed) > 0 {
				t.Fatal("bad case: relayed lines without a login")
			}
			x.noBackend()
		}
		return
	}
	if !x.loggedIn {
		x.noBackend()
		x.login()
	}
	x.sentinel()
	x.backendSaw(c.relayed, true)
}

func hSendUrgent(t *testing.T, c net.Conn, b []byte) {
	t.Helper()
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	raw.Write(func(fd uintptr) bool {
		serr = syscall.Sendto(int(fd), b, syscall.MSG_OOB, nil)
		return true
	})
	if serr != nil {
		t.Fatal(serr)
	}
}

// s is shorthand for a step.
func hs(send string, want ...string) hstep { return hstep{send: send, want: want} }

// ---------------------------------------------------------------------------------------
// The corpus.

// hVerbs is every verb of RFC 959, 2228, 2389, 2428, 3659, 4217 and 7151, plus the X-forms.
var hVerbs = []string{
	"USER", "PASS", "ACCT", "CWD", "CDUP", "SMNT", "QUIT", "REIN", "PORT", "PASV", "TYPE", "STRU",
	"MODE", "RETR", "STOR", "STOU", "APPE", "ALLO", "REST", "RNFR", "RNTO", "ABOR", "DELE", "RMD",
	"MKD", "PWD", "LIST", "NLST", "SITE", "SYST", "STAT", "HELP", "NOOP", "FEAT", "OPTS", "AUTH",
	"ADAT", "PBSZ", "PROT", "CCC", "MIC", "CONF", "ENC", "EPRT", "EPSV", "LPRT", "LPSV", "MDTM",
	"SIZE", "MLST", "MLSD", "HOST", "CLNT", "LANG", "XPWD", "XMKD", "XRMD", "XCWD", "XCUP",
}

// hInjections are the framing attacks applied to every verb. Each must be refused with its
// 500 and never reach the backend.
var hInjections = []struct {
	name  string
	line  func(verb string) string
	wants []string
}{
	{"cr-in-arg", func(v string) string { return v + " a\r" + hMarker + " x\r\n" }, []string{hBadChar}},
	{"nul-in-arg", func(v string) string { return v + " a\x00" + hMarker + "\r\n" }, []string{hBadChar}},
	{"bare-lf", func(v string) string { return v + " " + hMarker + "\n" }, []string{hBareLF}},
	{"cr-cr-lf", func(v string) string { return v + " " + hMarker + "\r\r\n" }, []string{hBadChar}},
	{"lf-then-crlf", func(v string) string { return v + " " + hMarker + "\n\r\n" }, []string{hBareLF, hUnknown}},
	{"overlong", func(v string) string { return v + " " + strings.Repeat("x", 4100) + hMarker + "\r\n" }, []string{hTooLong}},
}

func hCorpus(ipv6 bool) []hcase {
	var cs []hcase
	add := func(c ...hcase) { cs = append(cs, c...) }
	add(hFramingCases()...)
	add(hTelnetCases()...)
	add(hVerbCases()...)
	add(hInjectionCases()...)
	add(hSmugglingCases()...)
	add(hPortSyntaxCases()...)
	add(hPortTargetCases()...)
	add(hOrderCases()...)
	add(hTLSCases()...)
	add(hProxyProtocolCases()...)
	add(hBackendCases(ipv6)...)
	if ipv6 {
		add(hIPv6Cases()...)
	}
	return cs
}

func hLine(prefix string, total int) string {
	return prefix + strings.Repeat("x", total-len(prefix)-2) + "\r\n"
}

func hFramingCases() []hcase {
	var cs []hcase
	pre := func(name string, steps ...hstep) {
		cs = append(cs, hcase{cat: "framing", name: "pre/" + name, env: "plain", steps: steps})
	}
	post := func(name string, relayed []string, steps ...hstep) {
		cs = append(cs, hcase{cat: "framing", name: "post/" + name, env: "plain", login: true, steps: steps, relayed: relayed})
	}
	pre("bare-lf", hs("NOOP\n", hBareLF))
	pre("bare-lf-user-not-set", hs("USER {U}\nPASS pw\r\n", hBareLF, hUserFirst))
	pre("lone-lf", hs("\n", hBareLF))
	pre("empty", hs("\r\n", hUnknown))
	pre("three-empty", hs("\r\n\r\n\r\n", hUnknown, hUnknown, hUnknown))
	pre("space-only", hs(" \r\n", hUnknown))
	pre("lone-cr-then-crlf", hs("\r\r\n", hBadChar))
	pre("bare-cr-separator", hs("NOOP\rNOOP\r\n", hBadChar))
	pre("nul-only", hs("\x00\r\n", hBadChar))
	pre("nul-after-verb", hs("NOOP\x00\r\n", hBadChar))
	pre("nul-before-verb", hs("\x00NOOP\r\n", hBadChar))
	pre("crlf-split-across-writes", hs("NOOP\r"), hstep{pause: 50 * time.Millisecond, send: "\n", want: []string{hNoop}})
	var slow []hstep
	for _, b := range []byte("SYST\r\n") {
		slow = append(slow, hstep{pause: 5 * time.Millisecond, send: string(b)})
	}
	slow[len(slow)-1].want = []string{hSyst}
	pre("byte-by-byte", slow...)
	for _, n := range []int{4094, 4095, 4096} {
		pre(fmt.Sprintf("len-%d-accepted", n), hs(hLine("NOOP ", n), hNoop))
	}
	for _, n := range []int{4097, 4098, 4100, 8192, 10000, 65536, 1 << 20} {
		pre(fmt.Sprintf("len-%d-refused", n), hs(hLine("NOOP ", n), hTooLong))
	}
	pre("overlong-then-valid", hs(strings.Repeat("x", 5000)+"\r\nNOOP\r\n", hTooLong, hNoop))
	pre("overlong-bare-lf", hs(strings.Repeat("x", 5000)+"\n", hTooLong))
	pre("overlong-user-not-set", hs("USER "+strings.Repeat("u", 4200)+"\r\nPASS pw\r\n", hTooLong, hUserFirst))
	pre("overlong-cr-inside", hs(strings.Repeat("x", 3000)+"\r"+strings.Repeat("y", 3000)+"\r\n", hTooLong))
	pre("non-utf8-verb", hs("\xc3\x28OOP\r\n", hUnknown))
	pre("del-in-verb", hs("NOOP\x7f\r\n", hUnknown))
	cs = append(cs, hcase{cat: "framing", name: "pre/non-utf8-user", env: "plain", user: "h\x80\xfe\xc3\x28-nonutf8"})
	cs = append(cs, hcase{cat: "framing", name: "pre/user-4089-bytes", env: "plain", user: "u" + strings.Repeat("x", 4088)})
	for i, pw := range []string{" lead", "trail ", "a  b", "\x80\xfe", strings.Repeat("p", 4089), "%0d%0aDELE x", "\t"} {
		cs = append(cs, hcase{cat: "framing", name: fmt.Sprintf("pre/password-relayed-%d", i), env: "plain", run: func(x *hx) {
			x.cl = hDial(x.t, x.env.addr())
			x.cl.want(hGreeting)
			x.do("USER {U}\r\nPASS "+pw+"\r\n", hUserOK, "230 rec welcome")
			x.sentinel()
			got := x.env.be.find(x.user).snapshot()
			if len(got) != 3 || got[1] != "PASS "+pw+"\r\n" {
				x.t.Fatalf("backend received %q", hqs(got))
			}
		}})
	}
	cs = append(cs, hcase{cat: "framing", name: "pre/opts-utf8-told-to-backend", env: "plain",
		steps: []hstep{hs("OPTS UTF8 ON\r\n", hUTF8)}, relayed: []string{"OPTS UTF8 ON"}})

	post("bare-lf", nil, hs("PWD\n", hBareLF))
	post("lone-lf", nil, hs("\n", hBareLF))
	post("empty", nil, hs("\r\n", hUnknown))
	post("space-only", nil, hs("  \r\n", hUnknown))
	post("bare-cr-separator", nil, hs("PWD\rCWD /\r\n", hBadChar))
	post("nul-after-verb", nil, hs("PWD\x00\r\n", hBadChar))
	post("crlf-split-across-writes", []string{"PWD"}, hs("PWD\r"), hstep{pause: 50 * time.Millisecond, send: "\n", want: []string{`257 "/" rec`}})
	slow = nil
	for _, b := range []byte("SITE ECHO slow\r\n") {
		slow = append(slow, hstep{pause: 3 * time.Millisecond, send: string(b)})
	}
	slow[len(slow)-1].want = []string{"200 echo slow"}
	post("byte-by-byte", []string{"SITE ECHO slow"}, slow...)
	for _, n := range []int{4094, 4095, 4096} {
		l := hLine("MKD ", n)
		arg := l[4 : len(l)-2]
		post(fmt.Sprintf("len-%d-relayed", n), []string{"MKD " + arg}, hs(l, `257 "`+arg+`" rec created`))
	}
	for _, n := range []int{4097, 4098, 8192, 10000, 65536, 1 << 20} {
		post(fmt.Sprintf("len-%d-refused", n), nil, hs(hLine("MKD ", n), hTooLong))
	}
	post("overlong-then-valid", []string{"SITE ECHO after"}, hs("MKD "+strings.Repeat("x", 5000)+"\r\nSITE ECHO after\r\n", hTooLong, "200 echo after"))
	post("overlong-command-at-boundary", nil, hs("MKD "+strings.Repeat("x", 4092)+"DELE "+hMarker+"\r\n", hTooLong))
	// A line refused for its bare LF does not swallow the CRLF line after it: that one is a
	// command of its own (and the LF line's payload never reaches the backend).
	post("bare-lf-line-then-crlf-line", []string{"DELE b"}, hs("MKD "+hMarker+"\nDELE b\r\n", hBareLF, "250 rec deleted"))
	post("lf-at-4096-then-crlf-line", []string{"DELE b"}, hs("MKD "+strings.Repeat("x", 4091)+"\nDELE b\r\n", hBareLF, "250 rec deleted"))
	post("lf-at-4097-then-crlf-line", []string{"DELE b"}, hs("MKD "+strings.Repeat("x", 4092)+"\nDELE b\r\n", hTooLong, "250 rec deleted"))
	for i, arg := range []string{"\xc3\x28", "\x80\x81\xfe", "\xed\xa0\x80", "a\xe2\x80\xa8b", "a\xc2\x85b", "a\x0bb\x0cc", "a\x1b[2Jb", "a\tb", "a\x01\x02\x7fb"} {
		post(fmt.Sprintf("arg-bytes-relayed-%d", i), []string{"MKD " + arg}, hs("MKD "+arg+"\r\n", `257 "`+arg+`" rec created`))
	}
	post("non-utf8-verb", nil, hs("\xc3\xa9TR x\r\n", hUnknown))
	return cs
}

func hTelnetCases() []hcase {
	var cs []hcase
	post := func(name string, relayed []string, steps ...hstep) {
		cs = append(cs, hcase{cat: "telnet", name: "post/" + name, env: "plain", login: true, steps: steps, relayed: relayed})
	}
	pre := func(name string, selfLogin bool, steps ...hstep) {
		cs = append(cs, hcase{cat: "telnet", name: "pre/" + name, env: "plain", steps: steps, selfLogin: selfLogin})
	}
	post("ip-synch-noop", []string{"NOOP"}, hs("\xff\xf4\xff\xf2NOOP\r\n", "200 rec NOOP"))
	post("ip-synch-abor-idle", []string{"ABOR"}, hs("\xff\xf4\xff\xf2ABOR\r\n", "226 rec abor"))
	post("ip-only-abor", []string{"ABOR"}, hs("\xff\xf4ABOR\r\n", "226 rec abor"))
	for _, neg := range []string{"\xff\xfb\x01", "\xff\xfc\x01", "\xff\xfd\x03", "\xff\xfe\x03"} {
		post(fmt.Sprintf("negotiation-%x", neg[1]), []string{"PWD"}, hs(neg+"PWD\r\n", `257 "/" rec`))
	}
	post("iac-at-line-end", []string{"PWD"}, hs("PWD\xff\r\n", `257 "/" rec`))
	post("iac-will-at-line-end", []string{"PWD"}, hs("PWD\xff\xfb\r\n", `257 "/" rec`))
	post("iac-nop-inside-verb", []string{"PWD"}, hs("P\xff\xf1WD\r\n", `257 "/" rec`))
	post("iac-ip-inside-arg", []string{"MKD ab"}, hs("MKD a\xff\xf4b\r\n", `257 "ab" rec created`))
	post("doubled-iac-in-verb", nil, hs("PWD\xff\xff\r\n", hUnknown))
	post("iac-ip-alone", nil, hs("\xff\xf4\r\n", hUnknown))
	post("iac-alone", nil, hs("\xff\r\n", hUnknown))
	post("iac-plain-byte", nil, hs("\xffZZPWD\r\n", hUnknown))
	post("iac-nul", nil, hs("\xff\x00PWD\r\n", hBadChar))
	post("iac-cr-inside", nil, hs("PWD\xff\r"+hMarker+"\r\n", hBadChar))
	post("subnegotiation", nil, hs("\xff\xfa\x18\x01\xff\xf0PWD\r\n", hUnknown))
	post("synch-out-of-band", []string{"NOOP"}, hstep{send: "\xff\xf4\xff", urgent: []byte{0xf2}}, hs("NOOP\r\n", "200 rec NOOP"))
	post("ip-synch-many", []string{"PWD"}, hs(strings.Repeat("\xff\xf4\xff\xf2", 500)+"PWD\r\n", `257 "/" rec`))
	// A doubled IAC in an argument is one 0xFF data byte. RFC 854 wants it doubled again on the
	// way out; SPEC does not say. Either form is accepted, anything else is not.
	cs = append(cs, hcase{cat: "telnet", name: "post/doubled-iac-in-arg", env: "plain", run: func(x *hx) {
		x.cl = hDial(x.t, x.env.addr())
		x.cl.want(hGreeting)
		x.login()
		first := x.do("MKD a\xff\xffb\r\n", "257 *")
		x.sentinel()
		got := x.env.be.find(x.user).snapshot()
		if len(got) != 4 || (got[2] != "MKD a\xffb\r\n" && got[2] != "MKD a\xff\xffb\r\n") {
			x.t.Fatalf("backend received %q", got)
		}
		if first != `257 "a`+strings.TrimPrefix(strings.TrimSuffix(got[2], "\r\n"), "MKD a")+`" rec created` {
			x.t.Fatalf("reply %q not relayed as sent", first)
		}
	}})
	pre("ip-synch-noop", false, hs("\xff\xf4\xff\xf2NOOP\r\n", hNoop))
	pre("ip-before-user", true, hs("\xff\xf4USER {U}\r\n", hUserOK), hs("PASS pw\r\n", "230 rec welcome"))
	pre("nop-inside-user", true, hs("US\xff\xf1ER {U}\r\n", hUserOK), hs("PASS pw\r\n", "230 rec welcome"))
	pre("ip-after-user-name", true, hs("USER {U}\xff\xf4\r\n", hUserOK), hs("PASS pw\r\n", "230 rec welcome"))
	pre("will-before-syst", false, hs("\xff\xfb\x18SYST\r\n", hSyst))
	pre("iac-cr-in-user", false, hs("USER {U}\xff\r"+hMarker+"\r\n", hBadChar), hs("PASS pw\r\n", hUserFirst))
	return cs
}

func hVerbCases() []hcase {
	var cs []hcase
	pre := func(name string, steps ...hstep) {
		cs = append(cs, hcase{cat: "verbs", name: "pre/" + name, env: "plain", steps: steps})
	}
	post := func(name string, relayed []string, steps ...hstep) {
		cs = append(cs, hcase{cat: "verbs", name: "post/" + name, env: "plain", login: true, steps: steps, relayed: relayed})
	}
	pre("unknown", hs("XYZZ\r\n", hNeedLogin))
	pre("unknown-with-arg", hs("XYZZ "+hMarker+"\r\n", hNeedLogin))
	pre("lowercase-noop", hs("noop\r\n", hNoop))
	pre("mixed-case-syst", hs("SySt\r\n", hSyst))
	pre("lowercase-feat", hs("feat\r\n", hFeatPlain))
	pre("help", hs("HELP\r\n", hHelp))
	pre("clnt", hs("CLNT hostile/1.0\r\n", hClnt))
	pre("opts-other", hs("OPTS MLST type;\r\n", hOptsBad))
	pre("rein", hs("REIN\r\n", hReinNo))
	pre("user-empty", hs("USER\r\n", "501 USER needs a user name."))
	pre("pass-before-user", hs("PASS pw\r\n", hUserFirst))
	cs = append(cs, hcase{cat: "verbs", name: "pre/lowercase-login", env: "plain", selfLogin: true,
		steps: []hstep{hs("user {U}\r\n", hUserOK), hs("pass pw\r\n", "230 rec welcome")}})
	cs = append(cs, hcase{cat: "verbs", name: "pre/lowercase-quit", env: "plain", steps: []hstep{hs("quit\r\n")}, closes: true, final: hGoodbye + "\r\n"})
	for _, v := range []string{"NOOPS", "ABCDEFGHIJ", strings.Repeat("A", 100), "USERX {U}", "A", "AB", "NO OP", "123", "1234", "220 hi", "N0OP", "NOOP;", "NO-P", "PW/", " NOOP", "\tNOOP", "NOOP\tx", "\xef\xbc\xae\xef\xbc\xaf\xef\xbc\xaf\xef\xbc\xb0"} {
		pre("malformed-verb-"+strconv.Quote(v), hs(v+"\r\n", hUnknown))
	}
	pre("http-request", hs("GET / HTTP/1.1\r\nHost: x\r\n\r\n", hNeedLogin, hUnknown, hUnknown))
	pre("smtp-helo", hs("HELO x\r\n", hNeedLogin))
	for _, v := range []string{"RETR x", "STOR x", "STOU", "APPE x", "LIST", "NLST", "MLSD", "MLST", "PWD", "XPWD", "CWD /", "CDUP", "DELE x",
		"MKD x", "RMD x", "SITE CHMOD 777 x", "PASV", "EPSV", "PORT 127,0,0,1,4,1", "EPRT |1|127.0.0.1|1025|", "REST 0", "RNFR a", "RNTO b",
		"TYPE I", "MODE S", "STRU F", "ALLO 1", "SIZE x", "MDTM x", "STAT", "ABOR", "ACCT x", "SMNT x", "LANG en", "LPRT 4,4,127,0,0,1,2,4,1"} {
		pre("needs-login-"+v, hs(v+"\r\n", hNeedLogin))
	}

	post("unknown", []string{"XYZZ"}, hs("XYZZ\r\n", "502 rec not implemented"))
	post("unknown-with-args", []string{"XYZZ a b"}, hs("XYZZ a b\r\n", "502 rec not implemented"))
	post("four-letter-unknown", []string{"PWDX"}, hs("PWDX\r\n", "502 rec not implemented"))
	post("lowercase", []string{"PWD"}, hs("pwd\r\n", `257 "/" rec`))
	post("mixed-case", []string{"MKD Dir"}, hs("mKd Dir\r\n", `257 "Dir" rec created`))
	post("lowercase-site", []string{"SITE echo x"}, hs("site echo x\r\n", "200 rec SITE"))
	post("trailing-space", []string{"PWD"}, hs("PWD \r\n", `257 "/" rec`))
	post("double-space-kept", []string{"SITE  ECHO x"}, hs("SITE  ECHO x\r\n", "200 rec SITE"))
	for _, v := range []string{"ABCDE", "A", "AB", "421 go away", "200 OK", " PWD", "\tPWD", "PWD\tx", "PW/", "N0OP", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2"} {
		post("malformed-verb-"+strconv.Quote(v), nil, hs(v+"\r\n", hUnknown))
	}
	post("user-again", nil, hs("USER other\r\n", hLoggedIn))
	post("pass-again", nil, hs("PASS other\r\n", hLoggedIn))
	post("rein", nil, hs("REIN\r\n", hReinNo))
	post("adat", nil, hs("ADAT x\r\n", hAdat))
	for _, v := range []string{"MIC", "CONF", "ENC"} {
		post("protected-"+v, nil, hs(v+" "+hMarker+"\r\n", hProtected))
	}
	post("ccc", nil, hs("CCC\r\n", hCCC))
	post("auth-plain-listener", nil, hs("AUTH TLS\r\n", hAuthNone))
	post("pbsz", nil, hs("PBSZ 0\r\n", hPbszEarly))
	post("prot", nil, hs("PROT P\r\n", hProtEarly))
	post("host-late", nil, hs("HOST example.com\r\n", hHostLate))
	post("lprt", nil, hs("LPRT 4,4,127,0,0,1,2,4,1\r\n", "502 LPRT not supported: use EPSV or EPRT."))
	post("lpsv", nil, hs("LPSV\r\n", "502 LPSV not supported: use EPSV or EPRT."))
	post("feat-rewritten", []string{"FEAT"}, hs("FEAT\r\n", "raw:211-Features:\r\n EPRT\r\n EPSV\r\n MDTM\r\n SIZE\r\n211 End\r\n"))
	post("help-relayed", []string{"HELP"}, hs("HELP\r\n", "214 rec help"))
	post("syst-relayed", []string{"SYST"}, hs("SYST\r\n", "215 UNIX rec"))
	post("opts-relayed", []string{"OPTS UTF8 ON"}, hs("OPTS UTF8 ON\r\n", "200 rec OPTS"))
	cs = append(cs, hcase{cat: "verbs", name: "post/quit", env: "plain", login: true, steps: []hstep{hs("QUIT\r\n")},
		closes: true, final: "221 rec bye\r\n", relayed: []string{"QUIT"}})
	return cs
}

func hInjectionCases() []hcase {
	var cs []hcase
	for _, inj := range hInjections {
		for _, v := range hVerbs {
			for _, post := range []bool{false, true} {
				phase := "pre"
				if post {
					phase = "post"
				}
				cs = append(cs, hcase{cat: "injection", name: phase + "/" + inj.name + "/" + v, env: "plain", login: post,
					steps: []hstep{{send: inj.line(v), want: inj.wants}}})
			}
		}
	}
	return cs
}

func hSmugglingCases() []hcase {
	var cs []hcase
	post := func(name string, relayed []string, steps ...hstep) {
		cs = append(cs, hcase{cat: "smuggling", name: "post/" + name, env: "plain", login: true, steps: steps, relayed: relayed})
	}
	post("percent-encoded-crlf", []string{"MKD a%0d%0aDELE b"}, hs("MKD a%0d%0aDELE b\r\n", `257 "a%0d%0aDELE b" rec created`))
	post("unicode-line-separator", []string{"MKD a\xe2\x80\xa8DELE b"}, hs("MKD a\xe2\x80\xa8DELE b\r\n", "257 *"))
	post("nel", []string{"MKD a\xc2\x85DELE b"}, hs("MKD a\xc2\x85DELE b\r\n", "257 *"))
	post("two-verbs-one-line", []string{"PWD DELE b"}, hs("PWD DELE b\r\n", `257 "/" rec`))
	post("cr-then-command", nil, hs("MKD a\rDELE "+hMarker+"\r\n", hBadChar))
	post("nul-then-command", nil, hs("MKD a\x00\r\nDELE "+hMarker+"\x00\r\n", hBadChar, hBadChar))
	var echo20 string
	var want20, rel20 []string
	for i := range 20 {
		echo20 += fmt.Sprintf("SITE ECHO %d\r\n", i)
		want20 = append(want20, fmt.Sprintf("200 echo %d", i))
		rel20 = append(rel20, fmt.Sprintf("SITE ECHO %d", i))
	}
	post("pipelined-20-in-order", rel20, hstep{send: echo20, want: want20})
	var echo60 string
	var want60, rel60 []string
	for i := range 60 {
		echo60 += fmt.Sprintf("SITE ECHO p%d\r\n", i)
		want60 = append(want60, fmt.Sprintf("200 echo p%d", i))
		rel60 = append(rel60, fmt.Sprintf("SITE ECHO p%d", i))
	}
	post("pipelined-60-past-the-queue", rel60, hstep{send: echo60, want: want60})
	post("pipelined-local-and-relayed", []string{"SITE ECHO 1", "SITE ECHO 2", "SITE ECHO 3"},
		hs("PBSZ 0\r\nSITE ECHO 1\r\nAUTH TLS\r\nSITE ECHO 2\r\nPASV\r\nSITE ECHO 3\r\n",
			hPbszEarly, "200 echo 1", hAuthNone, "200 echo 2", "227 Entering Passive Mode (127,0,0,1,*", "200 echo 3"))
	post("pipelined-with-bad-lines", []string{"SITE ECHO 1", "SITE ECHO 2"},
		hs("SITE ECHO 1\r\nBAD\x00\r\nSITE ECHO 2\r\n\r\nSITE ECHO "+hMarker+"\n SITE ECHO "+hMarker+"\r\n",
			"200 echo 1", hBadChar, "200 echo 2", hUnknown, hBareLF, hUnknown))
	post("pipelined-user-pass-after-login", nil, hs("USER x\r\nPASS y\r\n", hLoggedIn, hLoggedIn))
	cs = append(cs, hcase{cat: "smuggling", name: "post/pipelined-after-quit", env: "plain", login: true,
		steps:  []hstep{hs("SITE ECHO 1\r\nQUIT\r\nDELE "+hMarker+"\r\n", "200 echo 1")},
		closes: true, final: "221 rec bye\r\n", relayed: []string{"SITE ECHO 1", "QUIT"}})
	cs = append(cs, hcase{cat: "smuggling", name: "pre/pipelined-login-and-commands", env: "plain", selfLogin: true,
		steps:   []hstep{hs("USER {U}\r\nPASS pw\r\nPWD\r\nCWD /\r\nSITE ECHO p\r\n", hUserOK, "230 rec welcome", `257 "/" rec`, "250 rec cwd", "200 echo p")},
		relayed: []string{"PWD", "CWD /", "SITE ECHO p"}})
	cs = append(cs, hcase{cat: "smuggling", name: "pre/pipelined-local-commands", env: "plain",
		steps: []hstep{hs("AUTH TLS\r\nPBSZ 0\r\nPROT P\r\nHOST a.example\r\nFEAT\r\nSYST\r\nCLNT x\r\nOPTS UTF8 ON\r\nHELP\r\nNOOP\r\n",
			hAuthNone, hPbszEarly, hProtEarly, hHostOK, hFeatPlain, hSyst, hClnt, hUTF8, hHelp, hNoop)},
		relayed: []string{"OPTS UTF8 ON"}})
	cs = append(cs, hcase{cat: "smuggling", name: "pre/pipelined-failed-login", env: "plain", run: func(x *hx) {
		x.cl = hDial(x.t, x.env.addr())
		x.cl.want(hGreeting)
		x.do("USER {U}\r\nPASS bad\r\nPWD\r\nDELE "+hMarker+"\r\n", hUserOK, hLoginBad, hNeedLogin, hNeedLogin)
		first := x.env.be.find(x.user)
		if first == nil {
			x.t.Fatal("no backend session for the failed login")
		}
		select {
		case <-first.done:
		case <-time.After(3 * time.Second):
			x.t.Fatal("backend leg of a failed login still open")
		}
		if got := first.snapshot(); len(got) != 2 || got[0] != "USER "+x.user+"\r\n" || got[1] != "PASS bad\r\n" {
			x.t.Fatalf("failed login: backend received %q", got)
		}
		x.login()
		x.sentinel()
		x.backendSaw(nil, true)
	}})
	cs = append(cs, hcase{cat: "smuggling", name: "post/pipelined-during-transfer", env: "plain", run: func(x *hx) {
		x.cl = hDial(x.t, x.env.addr())
		x.cl.want(hGreeting)
		x.login()
		dc := hPasvConn(x)
		x.do("RETR f\r\nSITE ECHO during\r\n", "150 rec opening")
		got, _ := io.ReadAll(dc)
		x.cl.want("226 rec done")
		x.cl.want("200 echo during")
		if string(got) != recPayload("RETR", "f") {
			x.t.Fatalf("data %q", got)
		}
		x.sentinel()
		x.backendSaw([]string{"PASV", "RETR f", "SITE ECHO during"}, true)
	}})
	return cs
}

// hPasvConn sends PASV and connects to the announced port.
func hPasvConn(x *hx) net.Conn {
	x.t.Helper()
	line := x.do("PASV\r\n", "227 Entering Passive Mode (*")
	port, err := h227Port(line)
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

func h227Port(line string) (int, error) {
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

func hPortSyntaxCases() []hcase {
	var cs []hcase
	add := func(cmd, want string) {
		cs = append(cs, hcase{cat: "port-syntax", name: strconv.Quote(cmd), env: "plain", login: true, steps: []hstep{hs(cmd+"\r\n", want)}})
	}
	for _, a := range []string{"127,0,0,1,256,1", "127,0,0,256,4,1", "256,0,0,1,4,1", "-1,0,0,1,4,1", "127,0,0,1,-4,1", "127,0,0,1,+4,1",
		"127,0,0,1,4", "127,0,0,1", "127", "", ",", ",,,,,", "127,0,0,1,4,1,5", "127,0,0,1,0,0", "127.0.0.1,4,1", "0x7f,0,0,1,4,1",
		"127,0,0,1,4,1;", "127,,0,1,4,1", "1270,0,0,1,4,1", "0127,0,0,1,4,1", "127,0,0,1,0004,1", "127, 0,0,1,4,1", "127,0,0,1,4,1 x",
		"999999999999999999999,0,0,1,4,1", "127,0,0,1,65535", "127,0,0,1,4,1,", "\xd9\xa1\xd9\xa2\xd9\xa7,0,0,1,4,1", "127,0,0,1,4,1|",
		"127,0,0,1,4,1\x01", "a,b,c,d,e,f"} {
		add("PORT "+a, hPortBad)
	}
	add("PORT 127,0,0,1,04,01", hPortOK) // leading zeros within three digits
	add("PORT  127,0,0,1,4,1", hPortOK)  // surrounding spaces are trimmed
	for _, a := range []string{"|1|127.0.0.1|0|", "|1|127.0.0.1|65536|", "|1|127.0.0.1|70000|", "|1|127.0.0.1|-1|", "|1|127.0.0.1|+1025|",
		"|1|127.0.0.1|", "|1|127.0.0.1|1025", "|1|127.0.0.1|1025||", "|1|127.0.0.1|1025|x", "|2|127.0.0.1|1025|", "|1|::1|1025|",
		"|123456|127.0.0.1|1025|", "|a|127.0.0.1|1025|", "||127.0.0.1|1025|", "|1||1025|", "|1|127.0.0.1||", "|1|127.0.0.1|abc|",
		"|1|127.0.0.1%lo|1025|", "|2|fe80::1%eth0|1025|", "|1|127.0.0.1|001025x|", "\x7f1\x7f127.0.0.1\x7f1025\x7f", ".1.127.0.0.1.1025.",
		"|1|127.0.0.1|1025|1|", "|1|127.000.000.001|1025|", "|1|0x7f.0.0.1|1025|", "|1|2130706433|1025|", "|1| 127.0.0.1|1025|",
		"|1|127.0.0.1|99999999999999999999|", "", "|", "||||", "|1|1.2.3.4.5|1025|"} {
		add("EPRT "+a, hPortBad)
	}
	for _, a := range []string{"|3|127.0.0.1|1025|", "|0|127.0.0.1|1025|", "|99999|x|1|", "|4|127.0.0.1|1025|"} {
		add("EPRT "+a, hEprtProto)
	}
	add("EPRT !1!127.0.0.1!1025!", hPortOK)        // any delimiter in 33..126
	add("EPRT |2|::ffff:127.0.0.1|1025|", hPortOK) // IPv4-mapped: the client's own address
	for _, a := range []string{"2", "3", "x", "1 2", "-1", "ALL x"} {
		add("EPSV "+a, hEpsvProto)
	}
	add("EPSV 1", "229 Entering Extended Passive Mode (|||*")
	add("EPSV all", hEpsvAll)
	add("PASV junk", "227 Entering Passive Mode (127,0,0,1,*")
	return cs
}

func hPortTargetCases() []hcase {
	var cs []hcase
	// refused checks a PORT/EPRT target is refused, that a following LIST has nothing to use,
	// and that nothing was dialled (the trap, when there is one, saw no connection).
	refused := func(name string, trapAddr string, cmd func(trap *net.TCPAddr) string) {
		cs = append(cs, hcase{cat: "port-target", name: name, env: "plain", run: func(x *hx) {
			var trap *net.TCPListener
			var ta *net.TCPAddr
			if trapAddr != "" {
				ln, err := net.Listen("tcp", trapAddr)
				if err != nil {
					x.t.Fatalf("cannot listen on %s: %v", trapAddr, err)
				}
				defer ln.Close()
				trap = ln.(*net.TCPListener)
				ta = ln.Addr().(*net.TCPAddr)
			}
			x.cl = hDial(x.t, x.env.addr())
			x.cl.want(hGreeting)
			x.login()
			x.do(cmd(ta)+"\r\n", hPortRefused)
			x.do("LIST\r\n", hNeedData)
			x.do("RETR x\r\n", hNeedData)
			x.sentinel()
			x.backendSaw(nil, true)
			if trap != nil {
				trap.SetDeadline(time.Now().Add(100 * time.Millisecond))
				if c, err := trap.Accept(); err == nil {
					c.Close()
					x.t.Fatal("the refused target was dialled")
				}
			}
		}})
	}
	portArg := func(ip string, port int) string {
		return strings.ReplaceAll(ip, ".", ",") + fmt.Sprintf(",%d,%d", port>>8, port&0xff)
	}
	trapPort := func(ip string) func(*net.TCPAddr) string {
		return func(a *net.TCPAddr) string { return "PORT " + portArg(ip, a.Port) }
	}
	trapEprt := func(f string) func(*net.TCPAddr) string {
		return func(a *net.TCPAddr) string { return fmt.Sprintf(f, a.Port) }
	}
	fixed := func(c string) func(*net.TCPAddr) string { return func(*net.TCPAddr) string { return c } }
	refused("port-127.0.0.2-other-loopback-host", "127.0.0.2:0", trapPort("127.0.0.2"))
	refused("eprt-127.0.0.2", "127.0.0.2:0", trapEprt("EPRT |1|127.0.0.2|%d|"))
	refused("eprt-mapped-127.0.0.2", "127.0.0.2:0", trapEprt("EPRT |2|::ffff:127.0.0.2|%d|"))
	refused("port-127.255.255.254", "", fixed("PORT 127,255,255,254,20,0"))
	for _, ip := range []string{"10.1.2.3", "8.8.8.8", "0.0.0.0", "255.255.255.255", "224.0.0.1", "169.254.169.254", "192.168.0.1"} {
		refused("port-foreign-"+ip, "", fixed("PORT "+portArg(ip, 5000)))
		refused("eprt-foreign-"+ip, "", fixed("EPRT |1|"+ip+"|5000|"))
	}
	refused("eprt-v6-loopback", "", fixed("EPRT |2|::1|5000|"))
	refused("eprt-v6-foreign", "", fixed("EPRT |2|2001:db8::1|5000|"))
	for _, p := range []int{1, 21, 22, 25, 80, 443, 1023} {
		refused(fmt.Sprintf("port-privileged-%d", p), "", fixed("PORT "+portArg("127.0.0.1", p)))
		refused(fmt.Sprintf("eprt-privileged-%d", p), "", fixed(fmt.Sprintf("EPRT |1|127.0.0.1|%d|", p)))
	}
	if os.Geteuid() == 0 {
		refused("port-privileged-1023-trap", "127.0.0.1:1023", trapPort("127.0.0.1"))
	}
	// The control case: a target that is allowed is dialled and used (so the trap can catch).
	cs = append(cs, hcase{cat: "port-target", name: "own-address-is-dialled", env: "plain", run: func(x *hx) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			x.t.Fatal(err)
		}
		defer ln.Close()
		x.cl = hDial(x.t, x.env.addr())
		x.cl.want(hGreeting)
		x.login()
		x.do("PORT "+portArg("127.0.0.1", ln.Addr().(*net.TCPAddr).Port)+"\r\n", hPortOK)
		x.do("NLST\r\n", "150 rec opening")
		ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
		dc, err := ln.Accept()
		if err != nil {
			x.t.Fatal("the allowed target was not dialled")
		}
		got, _ := io.ReadAll(dc)
		dc.Close()
		x.cl.want("226 rec done")
		if string(got) != recPayload("NLST", "") {
			x.t.Fatalf("data %q", got)
		}
		x.sentinel()
		x.backendSaw([]string{"PASV", "NLST"}, true)
	}})
	for _, p := range []string{"PORT 127,0,0,1,4,0", "EPRT |1|127.0.0.1|1024|"} {
		cs = append(cs, hcase{cat: "port-target", name: "boundary-1024-" + p[:4], env: "plain", login: true, steps: []hstep{hs(p+"\r\n", hPortOK)}})
	}
	// The proxy's own listener is on the client's own address here (both on 127.0.0.1), so SPEC
	// allows it. The transfer must still end with a final reply and leave the session usable.
	cs = append(cs, hcase{cat: "port-target", name: "proxy-own-listener", env: "plain", run: func(x *hx) {
		_, ps, _ := net.SplitHostPort(x.env.addr())
		pp, _ := strconv.Atoi(ps)
		x.cl = hDial(x.t, x.env.addr())
		x.cl.want(hGreeting)
		x.login()
		// A client on the proxy's own host must not make it dial its own listener (or
		// passive ports): refused like any other bounce, and nothing is dialled.
		x.do("PORT "+portArg("127.0.0.1", pp)+"\r\n", hPortRefused)
		x.sentinel()
	}})
	return cs
}

func hOrderCases() []hcase {
	var cs []hcase
	post := func(name string, relayed []string, steps ...hstep) {
		cs = append(cs, hcase{cat: "order", name: "post/" + name, env: "plain", login: true, steps: steps, relayed: relayed})
	}
	pre := func(name string, steps ...hstep) {
		cs = append(cs, hcase{cat: "order", name: "pre/" + name, env: "plain", steps: steps})
	}
	pre("pass-without-user", hs("PASS pw\r\n", hUserFirst))
	pre("pass-twice-without-user", hs("PASS a\r\nPASS b\r\n", hUserFirst, hUserFirst))
	pre("host-after-user", hs("USER {U}\r\n", hUserOK), hs("HOST a.example\r\n", hHostLate))
	for _, h := range []string{"", "a b", "[::1]:21", "a_b", "a.example:21", strings.Repeat("a", 254), "a\x01b", "[1.2.3]", "ex@mple"} {
		pre("host-bad-"+strconv.Quote(h), hs("HOST "+h+"\r\n", hHostBad))
	}
	for _, h := range []string{"[::1]", "127.0.0.1", "FTP.Example.COM", "a-b.c"} {
		pre("host-ok-"+h, hs("HOST "+h+"\r\n", hHostOK))
	}
	pre("prot-before-pbsz", hs("PROT P\r\n", hProtEarly))
	pre("pbsz-before-auth", hs("PBSZ 0\r\n", hPbszEarly))
	pre("pbsz-then-prot-no-tls", hs("PBSZ 0\r\nPROT P\r\n", hPbszEarly, hProtEarly))
	pre("ccc", hs("CCC\r\n", hCCC))
	pre("adat", hs("ADAT x\r\n", hAdat))
	pre("mic", hs("MIC "+hMarker+"\r\n", hProtected))
	for _, v := range []string{"RETR x", "STOR x", "APPE x", "STOU", "LIST", "NLST", "MLSD"} {
		post("no-data-setup-"+v, nil, hs(v+"\r\n", hNeedData))
	}
	post("rest-then-non-transfer", []string{"REST 100", "PWD"}, hs("REST 100\r\n", "350 rec rest"), hs("PWD\r\n", `257 "/" rec`))
	post("rnto-without-rnfr", []string{"RNTO x"}, hs("RNTO x\r\n", "503 rec RNFR first"))
	post("rnfr-rnto", []string{"RNFR a", "RNTO b"}, hs("RNFR a\r\n", "350 rec rnfr"), hs("RNTO b\r\n", "250 rec renamed"))
	post("rnfr-pwd-rnto", []string{"RNFR a", "PWD", "RNTO b"}, hs("RNFR a\r\nPWD\r\nRNTO b\r\n", "350 rec rnfr", `257 "/" rec`, "503 rec RNFR first"))
	post("abor-without-transfer", []string{"ABOR"}, hs("ABOR\r\n", "226 rec abor"))
	cs = append(cs, hcase{cat: "order", name: "post/pasv-then-port-to-nothing", env: "plain", run: func(x *hx) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			x.t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close() // nothing listens there now
		x.cl = hDial(x.t, x.env.addr())
		x.cl.want(hGreeting)
		x.login()
		x.do("PASV\r\n", "227 *")
		x.do(fmt.Sprintf("PORT 127,0,0,1,%d,%d\r\n", port>>8, port&0xff), hPortOK)
		x.do("LIST\r\n", hCantOpen)
		x.do("LIST\r\n", hNeedData) // the PORT target is used once
		x.sentinel()
		x.backendSaw(nil, true)
	}})
	post("epsv-all-then-others", nil, hs("EPSV ALL\r\n", hEpsvAll), hs("PASV\r\n", hEpsvAllOnly), hs("PORT 127,0,0,1,4,1\r\n", hEpsvAllOnly),
		hs("EPRT |1|127.0.0.1|1025|\r\n", hEpsvAllOnly), hs("LPSV\r\n", hEpsvAllOnly), hs("EPSV\r\n", "229 *"))
	post("pasv-twice", nil, hs("PASV\r\nPASV\r\nEPSV\r\n", "227 *", "227 *", "229 *"))
	return cs
}

func hTLSCases() []hcase {
	var cs []hcase
	add := func(name, env string, run func(x *hx)) {
		cs = append(cs, hcase{cat: "tls", name: name, env: env, run: run})
	}
	greet := func(x *hx) {
		x.cl = hDial(x.t, x.env.addr())
		x.cl.want(hGreeting)
	}
	upgrade := func(x *hx) {
		greet(x)
		x.do("AUTH TLS\r\n", "234 AUTH TLS successful.")
		x.cl.startTLS(x.env.cc)
	}
	handshake := 500 * time.Millisecond
	add("pipelined-after-auth", "explicit", func(x *hx) {
		greet(x)
		x.cl.send("AUTH TLS\r\nUSER " + hMarker + "\r\n")
		x.cl.expectClose("")
	})
	add("plaintext-after-234", "explicit", func(x *hx) {
		greet(x)
		x.do("AUTH TLS\r\n", "234 AUTH TLS successful.")
		x.cl.send("USER " + hMarker + "\r\nPASS x\r\n")
		x.cl.expectTLSClose(handshake + time.Second)
	})
	for i, g := range []string{"\x16\x03\x01\x00\x05hello", "\x80\x2e\x01\x00\x02\x00\x15\x00\x00\x00\x10", "GET / HTTP/1.1\r\n\r\n",
		"\x16\x03\x03\xff\xff" + strings.Repeat("A", 100), "\x15\x03\x03\x00\x02\x02\x28", "\x17\x03\x03\x00\x05hello", strings.Repeat("\x00", 64)} {
		add(fmt.Sprintf("garbage-after-234-%d", i), "explicit", func(x *hx) {
			greet(x)
			x.do("AUTH TLS\r\n", "234 AUTH TLS successful.")
			x.cl.send(g)
			x.cl.expectTLSClose(handshake + time.Second)
		})
	}
	add("stalled-handshake", "explicit", func(x *hx) {
		greet(x)
		x.do("AUTH TLS\r\n", "234 AUTH TLS successful.")
		x.cl.send("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03") // a ClientHello that never completes
		x.cl.expectTLSClose(handshake + time.Second)
	})
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		add("old-tls-version-"+tls.VersionName(v), "explicit", func(x *hx) {
			greet(x)
			x.do("AUTH TLS\r\n", "234 AUTH TLS successful.")
			cc := x.env.cc.Clone()
			cc.MinVersion, cc.MaxVersion = v, v
			tc := tls.Client(x.cl.c, cc)
			tc.SetDeadline(time.Now().Add(5 * time.Second))
			if err := tc.Handshake(); err == nil {
				x.t.Fatalf("%s handshake accepted", tls.VersionName(v))
			}
			x.noBackend()
		})
	}
	add("client-hello-on-plain-control", "explicit", func(x *hx) {
		greet(x)
		tc := tls.Client(x.cl.c, x.env.cc)
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err == nil {
			x.t.Fatal("handshake without AUTH accepted")
		}
	})
	add("client-hello-bytes-on-plain-control", "explicit", func(x *hx) {
		greet(x)
		x.cl.send("\x16\x03\x01\x00\xa0\x01\x00\x00\x9c\x03\x03")
		x.cl.expectClose("")
	})
	for _, m := range []string{"TLS", "SSL", "TLS-C", "TLS-P", "tls", " TLS "} {
		add("auth-"+strconv.Quote(m), "explicit", func(x *hx) {
			greet(x)
			mech := strings.ToUpper(strings.TrimSpace(m))
			x.do("AUTH "+m+"\r\n", "234 AUTH "+mech+" successful.")
			x.cl.startTLS(x.env.cc)
			x.login()
			x.sentinel()
			x.backendSaw(nil, true)
		})
	}
	for _, m := range []string{"GSSAPI", "KERBEROS_V4", "", "TLS " + hMarker, "TLS\x01", "X509"} {
		add("auth-mechanism-"+strconv.Quote(m), "explicit", func(x *hx) {
			greet(x)
			x.do("AUTH "+m+"\r\n", hAuthMech)
			x.do("NOOP\r\n", hNoop)
		})
	}
	add("double-auth", "explicit", func(x *hx) {
		upgrade(x)
		x.do("AUTH TLS\r\nAUTH SSL\r\n", hAuthTwice, hAuthTwice)
		x.login()
		x.do("AUTH TLS\r\n", hAuthTwice)
		x.sentinel()
		x.backendSaw(nil, true)
	})
	add("auth-resets-user", "explicit", func(x *hx) {
		greet(x)
		x.do("USER {U}\r\n", hUserOK)
		x.do("AUTH TLS\r\n", "234 AUTH TLS successful.")
		x.cl.startTLS(x.env.cc)
		x.do("PASS pw\r\n", hUserFirst)
		x.noBackend()
	})
	add("pbsz-prot-order", "explicit", func(x *hx) {
		greet(x)
		x.do("PROT P\r\nPBSZ 0\r\n", hProtEarly, hPbszEarly)
		x.do("AUTH TLS\r\n", "234 AUTH TLS successful.")
		x.cl.startTLS(x.env.cc)
		x.do("PROT P\r\n", hProtEarly)
		for _, a := range []string{"", "abc", "-1", "99999999999", "1 2", "0x0"} {
			x.do("PBSZ "+a+"\r\n", hPbszBad)
		}
		x.do("PROT P\r\n", hProtEarly)
		x.do("PBSZ 1024\r\n", hPbszOK)
		x.do("PBSZ 0\r\n", hPbszOK)
		x.do("PROT S\r\nPROT E\r\nPROT X\r\nPROT\r\n", hProtLevel, hProtLevel, hProtUnknown, hProtUnknown)
		x.do("PROT c\r\n", hProtC)
		x.do("PROT P\r\n", hProtP)
		x.do("CCC\r\nADAT x\r\nMIC x\r\nCONF x\r\nENC x\r\n", hCCC, hAdat, hProtected, hProtected, hProtected)
		x.login()
		x.do("PBSZ 0\r\nPROT C\r\nPROT P\r\nCCC\r\nMIC "+hMarker+"\r\n", hPbszOK, hProtC, hProtP, hCCC, hProtected)
		x.sentinel()
		x.backendSaw(nil, true)
	})
	add("pre-login-feat-offers-tls", "explicit", func(x *hx) {
		greet(x)
		x.do("FEAT\r\n", hFeatTLS)
	})
	add("post-login-feat-offers-tls", "explicit", func(x *hx) {
		upgrade(x)
		x.login()
		x.do("FEAT\r\n", "raw:211-Features:\r\n AUTH TLS\r\n PBSZ\r\n PROT\r\n EPRT\r\n EPSV\r\n MDTM\r\n SIZE\r\n211 End\r\n")
		x.sentinel()
		x.backendSaw([]string{"FEAT"}, true)
	})
	add("prot-p-plaintext-data", "explicit", func(x *hx) {
		upgrade(x)
		x.do("PBSZ 0\r\nPROT P\r\n", hPbszOK, hProtP)
		x.login()
		dc := hPasvConn(x)
		x.do("RETR f\r\n", hProt150)
		io.WriteString(dc, "this is not TLS\r\n")
		x.cl.want(hDataTLSFail)
		x.sentinel()
		x.backendSaw(nil, true)
	})
	add("prot-p-silent-data", "explicit", func(x *hx) {
		upgrade(x)
		x.do("PBSZ 0\r\nPROT P\r\n", hPbszOK, hProtP)
		x.login()
		hPasvConn(x)
		start := time.Now()
		x.do("LIST\r\n", hProt150, hDataTLSFail)
		if d := time.Since(start); d > handshake+2*time.Second {
			x.t.Fatalf("stalled data handshake held the session %v", d)
		}
		x.sentinel()
		x.backendSaw(nil, true)
	})
	add("required-user-before-auth", "required", func(x *hx) {
		greet(x)
		x.do("USER {U}\r\n", hTLSRequired)
		x.do("PASS pw\r\n", hUserFirst)
		x.noBackend()
		x.do("AUTH TLS\r\n", "234 AUTH TLS successful.")
		x.cl.startTLS(x.env.cc)
		x.login()
		x.do("LIST\r\nRETR x\r\nSTOR x\r\n", hDataTLS, hDataTLS, hDataTLS)
		x.do("PBSZ 0\r\nPROT C\r\nLIST\r\n", hPbszOK, hProtRequired, hDataTLS)
		x.sentinel()
		x.backendSaw(nil, true)
	})
	add("required-pipelined-user-pass", "required", func(x *hx) {
		greet(x)
		x.do("USER {U}\r\nPASS pw\r\nPWD\r\n", hTLSRequired, hUserFirst, hNeedLogin)
		x.noBackend()
	})
	add("implicit-plaintext-first", "implicit", func(x *hx) {
		x.cl = hDial(x.t, x.env.addr())
		x.cl.send("USER " + hMarker + "\r\nPASS x\r\n")
		x.cl.expectTLSClose(handshake + time.Second)
	})
	add("implicit-http", "implicit", func(x *hx) {
		x.cl = hDial(x.t, x.env.addr())
		x.cl.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		x.cl.expectTLSClose(handshake + time.Second)
	})
	add("implicit-silent", "implicit", func(x *hx) {
		x.cl = hDial(x.t, x.env.addr())
		x.cl.expectTLSClose(handshake + time.Second)
	})
	add("implicit-ok-then-auth", "implicit", func(x *hx) {
		x.cl = hDial(x.t, x.env.addr())
		tc := tls.Client(x.cl.c, x.env.cc)
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			x.t.Fatal(err)
		}
		x.cl.c, x.cl.r = tc, bufio.NewReader(tc)
		x.cl.want(hGreeting)
		x.do("AUTH TLS\r\n", hAuthTwice)
		x.login()
		x.sentinel()
		x.backendSaw(nil, true)
	})
	return cs
}

// hPP formats a PROXY v2 header by hand, so it can be made wrong on purpose.
func hPP(verCmd, fam byte, length int, body []byte) string {
	b := append([]byte{}, "\r\n\r\n\x00\r\nQUIT\n"...)
	b = append(b, verCmd, fam, byte(length>>8), byte(length))
	return string(append(b, body...))
}

func hPPv4Body(tlv []byte) []byte {
	b := []byte{198, 51, 100, 7, 127, 0, 0, 1, 0x9c, 0x40, 0, 21}
	return append(b, tlv...)
}

func hProxyProtocolCases() []hcase {
	var cs []hcase
	// silent: the proxy must close without a greeting and without contacting a backend.
	silent := func(name, env, header string, closeWrite bool) {
		cs = append(cs, hcase{cat: "proxy-protocol", name: name, env: env, run: func(x *hx) {
			x.cl = hDial(x.t, x.env.addr())
			before := x.env.be.count()
			x.cl.send(header)
			if closeWrite {
				x.cl.c.(*net.TCPConn).CloseWrite()
			}
			x.cl.expectClose("")
			if x.env.be.count() != before {
				x.t.Fatal("a backend was contacted")
			}
		}})
	}
	v1 := "PROXY TCP4 198.51.100.7 127.0.0.1 40000 21\r\n"
	v2, _ := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.IPv4(198, 51, 100, 7), Port: 40000}, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 21}).Format()
	silent("untrusted-v1", "pp-untrusted", v1+"USER "+hMarker+"\r\n", false)
	silent("untrusted-v2", "pp-untrusted", string(v2)+"USER "+hMarker+"\r\n", false)
	silent("untrusted-no-header", "pp-untrusted", "USER "+hMarker+"\r\n", false)
	silent("no-header", "pp", "USER "+hMarker+"\r\n", false)
	silent("no-header-tls", "pp", "\x16\x03\x01\x00\x05hello", false)
	for i, h := range []string{
		"PROXY TCP5 198.51.100.7 127.0.0.1 40000 21\r\n",
		"PROXY TCP4 198.51.100.7 127.0.0.1 40000\r\n",
		"PROXY TCP4 198.51.100.7 127.0.0.1 40000 21 9\r\n",
		"PROXY TCP4 ::1 ::1 40000 21\r\n",
		"PROXY TCP6 198.51.100.7 127.0.0.1 40000 21\r\n",
		"PROXY TCP4 198.51.100.7 127.0.0.1 -1 21\r\n",
		"PROXY TCP4 198.51.100.7 127.0.0.1 65536 21\r\n",
		"PROXY TCP4 198.51.100.7 127.0.0.1 40000 0x15\r\n",
		"PROXY TCP4 256.51.100.7 127.0.0.1 40000 21\r\n",
		"PROXY TCP4 198.51.100 127.0.0.1 40000 21\r\n",
		"PROXY tcp4 198.51.100.7 127.0.0.1 40000 21\r\n",
		"PROXY  TCP4 198.51.100.7 127.0.0.1 40000 21\r\n",
		"PROXY TCP4 198.51.100.7 127.0.0.1 40000 21\n",
		"PROXY TCP4 198.51.100.7 127.0.0.1 40000 21\r\r\n",
		"PROXY TCP4 198.51.100.7\x00 127.0.0.1 40000 21\r\n",
		"PROXYX TCP4 198.51.100.7 127.0.0.1 40000 21\r\n",
		"PROXY\r\n",
		"PROXY TCP4 " + strings.Repeat("1", 200) + "\r\n",
		"PROXY TCP4 198.51.100.7 127.0.0.1 40000 21" + strings.Repeat(" ", 80) + "\r\n",
	} {
		silent(fmt.Sprintf("v1-bad-%d", i), "pp", h+"USER "+hMarker+"\r\n", false)
	}
	silent("v1-truncated", "pp", "PROXY TCP4 198.51.100.7 ", true)
	silent("v1-signature-only", "pp", "PROXY", true)
	silent("v2-signature-only", "pp", "\r\n\r\n\x00\r\nQUIT\n", true)
	silent("v2-truncated-address", "pp", hPP(0x21, 0x11, 12, []byte{198, 51, 100}), true)
	silent("v2-length-beyond-data", "pp", hPP(0x21, 0x11, 0xffff, hPPv4Body(nil)), true)
	silent("v2-length-too-short-for-tcp4", "pp", hPP(0x21, 0x11, 4, []byte{198, 51, 100, 7})+"USER x\r\n", false)
	silent("v2-version-1", "pp", hPP(0x11, 0x11, 12, hPPv4Body(nil))+"USER x\r\n", false)
	silent("v2-version-3", "pp", hPP(0x31, 0x11, 12, hPPv4Body(nil))+"USER x\r\n", false)
	silent("v2-bad-command", "pp", hPP(0x2f, 0x11, 12, hPPv4Body(nil))+"USER x\r\n", false)
	silent("v2-bad-family", "pp", hPP(0x21, 0x13, 12, hPPv4Body(nil))+"USER x\r\n", false)
	silent("v2-unspec", "pp", hPP(0x21, 0x00, 0, nil)+"USER x\r\n", false)
	silent("v2-udp", "pp", hPP(0x21, 0x12, 12, hPPv4Body(nil))+"USER x\r\n", false)
	silent("v2-unix", "pp", hPP(0x21, 0x31, 216, make([]byte, 216))+"USER x\r\n", false)
	silent("v2-oversized", "pp", hPP(0x21, 0x11, 0xffff, append(hPPv4Body(nil), make([]byte, 0xffff-12)...))+"USER x\r\n", false)
	// Bad TLVs: a header whose TLV vector does not parse is malformed, and a malformed header
	// is refused (SPEC §3 proxy_protocol; readProxyHeader's contract).
	silent("v2-tlv-length-past-end", "pp", hPP(0x21, 0x11, 12+3+2, hPPv4Body([]byte{0x02, 0x00, 0x40, 'a', 'b'}))+"USER x\r\n", false)
	silent("v2-tlv-truncated-header", "pp", hPP(0x21, 0x11, 12+2, hPPv4Body([]byte{0x02, 0x00}))+"USER x\r\n", false)
	silent("v2-tlv-one-byte", "pp", hPP(0x21, 0x11, 12+1, hPPv4Body([]byte{0x20}))+"USER x\r\n", false)
	// go-proxyproto drops a header that does not arrive in one read.
	cs = append(cs, hcase{cat: "proxy-protocol", name: "v1-split", env: "pp", run: func(x *hx) {
		x.cl = hDial(x.t, x.env.addr())
		x.cl.send("PROXY TCP4 198.51.")
		time.Sleep(100 * time.Millisecond)
		x.cl.send("100.7 127.0.0.1 40000 21\r\nUSER " + hMarker + "\r\n")
		x.cl.expectClose("")
	}})
	// Accepted headers: the greeting follows, pipelined bytes are kept, and the header's source
	// is the client address for the PORT check.
	ok := func(name, header string, body func(x *hx)) {
		cs = append(cs, hcase{cat: "proxy-protocol", name: name, env: "pp", run: func(x *hx) {
			x.cl = hDial(x.t, x.env.addr())
			x.cl.send(strings.ReplaceAll(header, "{U}", x.user))
			x.cl.want(hGreeting)
			body(x)
		}})
	}
	ok("v1-then-pipelined-user", v1+"USER {U}\r\n", func(x *hx) {
		x.cl.send("USER " + x.user + "\r\n")
		x.cl.want(hUserOK)
		x.cl.want(hUserOK)
		x.do("PASS pw\r\n", "230 rec welcome")
		x.do("PORT 127,0,0,1,200,10\r\n", hPortRefused)
		x.do("PORT 198,51,100,7,200,10\r\n", hPortOK)
		x.do("EPRT |1|198.51.100.7|5000|\r\n", hPortOK)
		x.sentinel()
		x.backendSaw(nil, true)
	})
	ok("v2-valid-tlv", hPP(0x21, 0x11, 12+3+5, hPPv4Body([]byte{0x02, 0x00, 0x05, 'a', '.', 'e', 'x', 'y'})), func(x *hx) {
		x.login()
		x.do("PASV\r\n", "227 Entering Passive Mode (127,0,0,1,*")
		x.sentinel()
		x.backendSaw(nil, true)
	})
	ok("v1-twice", v1+v1, func(x *hx) {
		x.cl.want(hUnknown)
		x.do("NOOP\r\n", hNoop)
	})
	ok("v2-then-v1-as-command", string(v2)+v1, func(x *hx) {
		x.cl.want(hUnknown)
		x.do("NOOP\r\n", hNoop)
	})
	return cs
}

// hostileEnv starts a proxy in front of one recording backend scripted by hook.
func hostileEnv(hook recHook, listen string, opts ...proxyOpt) func(t *testing.T) *henv {
	return func(t *testing.T) *henv {
		be := startRecBackend(t, listen, hook)
		opts = append([]proxyOpt{func(c *proxy.Config, _ *balancer.PoolConfig) {
			c.Limits.BackendTimeout = time.Second
			c.Data.ConnectTimeout = 2 * time.Second
		}}, opts...)
		p := startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)}, opts...)
		return &henv{name: "hostile", p: p, be: be}
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

// endless writes chunk until the proxy goes away.
func endless(s *recSess, first, chunk string) {
	s.raw(first)
	s.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, err := io.WriteString(s.c, chunk); err != nil {
			return
		}
	}
}

func hBackendCases(ipv6 bool) []hcase {
	var cs []hcase
	// lost: the backend's answer to PWD ends the session with exactly one 421 line.
	lost := func(name string, hook recHook, final string) {
		cs = append(cs, hcase{cat: "backend", name: name, mkEnv: hostileEnv(hook, "127.0.0.1:0"), login: true,
			steps: []hstep{hs("PWD\r\n")}, closes: true, final: final, relayed: []string{"PWD"}})
	}
	// relayed: the backend's answer to PWD reaches the client byte for byte, and the session
	// goes on.
	relayed := func(name string, rawReply string) {
		cs = append(cs, hcase{cat: "backend", name: name, mkEnv: hostileEnv(onVerb("PWD", rawReply, false), "127.0.0.1:0"), login: true,
			steps: []hstep{hs("PWD\r\n", "raw:"+rawReply)}, relayed: []string{"PWD"}})
	}
	lost("overlong-reply-line-8193", onVerb("PWD", "257 "+strings.Repeat("x", 8193-6)+"\r\n", false), h421NoBackend)
	lost("overlong-reply-line-100k", onVerb("PWD", "257 "+strings.Repeat("x", 100000)+"\r\n", false), h421NoBackend)
	lost("overlong-line-in-multiline", onVerb("PWD", "257-a\r\n"+strings.Repeat("x", 9000)+"\r\n257 b\r\n", false), h421NoBackend)
	relayed("reply-line-8192-exactly", "257 "+strings.Repeat("x", 8192-6)+"\r\n")
	lost("endless-multiline", func(s *recSess, v, _ string) bool {
		if v != "PWD" {
			return false
		}
		endless(s, "257-start\r\n", strings.Repeat(" more lines of an endless reply\r\n", 2000))
		s.quit = true
		return true
	}, h421NoBackend)
	lost("endless-line-no-lf", func(s *recSess, v, _ string) bool {
		if v != "PWD" {
			return false
		}
		endless(s, "257 ", strings.Repeat("x", 65536))
		s.quit = true
		return true
	}, h421NoBackend)
	lost("multiline-over-1mib", onVerb("PWD", "257-start\r\n"+strings.Repeat(" 0123456789012345678901234567890123456789\r\n", 26000)+"257 end\r\n", false), h421NoBackend)
	relayed("multiline-just-under-1mib", "211-start\r\n"+strings.Repeat(" 0123456789012345678901234567890123456789\r\n", 24000)+"211 end\r\n")
	for _, r := range []string{"abc\r\n", "99 x\r\n", "2000 x\r\n", "20\r\n", "\r\n", "200x\r\n", "-200 x\r\n", "2 0 x\r\n", "099 x\r\n", "\x00\x00\x00 x\r\n", "２００ x\r\n"} {
		lost("malformed-code-"+strconv.Quote(r), onVerb("PWD", r, false), h421NoBackend)
	}
	for _, r := range []string{"631 protected\r\n", "632-conf\r\n632 end\r\n", "633 enc\r\n", "600 x\r\n", "699 x\r\n"} {
		lost("6xx-"+strconv.Quote(r), onVerb("PWD", r, false), h421NoBackend)
	}
	lost("421-relayed", onVerb("PWD", "421 backend going away\r\n", true), "421 backend going away\r\n")
	// SPEC §4: "exactly one `421 <text>` line, never inside a multi-line reply". A line that
	// starts "421-" opens a multi-line reply that never ends, so the one line must be "421 ...".
	for _, r := range []string{"421-backend\r\n going\r\n421 away\r\n", "421-backend\r\n"} {
		cs = append(cs, hcase{cat: "backend", name: "421-multiline-as-one-line-" + strconv.Quote(r), mkEnv: hostileEnv(onVerb("PWD", r, true), "127.0.0.1:0"), run: func(x *hx) {
			x.cl = hDial(x.t, x.env.addr())
			x.cl.want(hGreeting)
			x.login()
			x.cl.send("PWD\r\n")
			x.cl.c.SetReadDeadline(time.Now().Add(3 * time.Second))
			rest, err := io.ReadAll(x.cl.r)
			if err != nil && !errors.Is(err, syscall.ECONNRESET) {
				x.t.Fatalf("not closed: %q %v", rest, err)
			}
			line, ok := strings.CutSuffix(string(rest), "\r\n")
			if !ok || !strings.HasPrefix(line, "421 ") || strings.ContainsAny(line, "\r\n") {
				x.t.Fatalf("got %q, want exactly one \"421 <text>\" line then close", rest)
			}
			x.backendSaw([]string{"PWD"}, false)
		}})
	}
	lost("closes-mid-multiline", onVerb("PWD", "257-partial\r\n more\r\n", true), h421NoBackend)
	lost("closes-mid-line", onVerb("PWD", "25", true), h421NoBackend)
	lost("closes-without-reply", onVerb("PWD", "", true), h421NoBackend)
	relayed("bare-lf-reply-kept", "257 \"/\" lf\n")
	relayed("nul-in-reply-text-kept", "257 \"/\x00\" nul\r\n")
	relayed("multiline-with-inner-421", "211-status\r\n421 not the end\r\n211 end\r\n")
	relayed("multiline-other-code-inside", "211-a\r\n212 b\r\n211 c\r\n")
	relayed("code-only-line", "200\r\n")
	cs = append(cs, hcase{cat: "backend", name: "1xx-flood-then-final", mkEnv: hostileEnv(onVerb("PWD", strings.Repeat("150 flood\r\n", 10000)+"257 done\r\n", false), "127.0.0.1:0"),
		login: true, steps: []hstep{{send: "PWD\r\n", want: append(hRepeat("150 flood", 10000), "257 done")}}, relayed: []string{"PWD"}})
	cs = append(cs, hcase{cat: "backend", name: "slow-drip-reply", mkEnv: hostileEnv(func(s *recSess, v, _ string) bool {
		if v != "PWD" {
			return false
		}
		for _, b := range []byte("257 \"/\" slow\r\n") {
			s.raw(string(b))
			time.Sleep(5 * time.Millisecond)
		}
		return true
	}, "127.0.0.1:0"), login: true, steps: []hstep{hs("PWD\r\n", `257 "/" slow`)}, relayed: []string{"PWD"}})
	cs = append(cs, hcase{cat: "backend", name: "unsolicited-reply-dropped", mkEnv: hostileEnv(onVerb("CWD", "250 ok\r\n200 stray "+hMarker+"\r\n", false), "127.0.0.1:0"),
		login: true, steps: []hstep{hs("CWD /\r\n", "250 ok"), {pause: 200 * time.Millisecond, send: "PWD\r\n", want: []string{`257 "/" rec`}}},
		relayed: []string{"CWD /", "PWD"}})
	cs = append(cs, hcase{cat: "backend", name: "unsolicited-421", mkEnv: hostileEnv(onVerb("CWD", "250 ok\r\n421 stray shutdown\r\n", true), "127.0.0.1:0"),
		login: true, steps: []hstep{hs("CWD /\r\n", "250 ok")}, closes: true, final: "421 stray shutdown\r\n", relayed: []string{"CWD /"}})
	cs = append(cs, hcase{cat: "backend", name: "unsolicited-6xx", mkEnv: hostileEnv(onVerb("CWD", "250 ok\r\n631 stray\r\n", false), "127.0.0.1:0"),
		login: true, steps: []hstep{hs("CWD /\r\n", "250 ok")}, closes: true, final: h421NoBackend, relayed: []string{"CWD /"}})
	cs = append(cs, hcase{cat: "backend", name: "endless-1xx-after-command", mkEnv: hostileEnv(func(s *recSess, v, _ string) bool {
		if v != "STAT" {
			return false
		}
		endless(s, "", strings.Repeat("150 flood\r\n", 1000))
		s.quit = true
		return true
	}, "127.0.0.1:0"), run: func(x *hx) {
		x.cl = hDial(x.t, x.env.addr())
		x.cl.want(hGreeting)
		x.login()
		x.cl.send("STAT\r\n")
		for range 5000 {
			x.cl.want("150 flood")
		}
		x.cl.c.Close()
		x.backendClosed()
	}})

	// Login-phase hostility: the client only ever sees the one 421 line.
	loginFails := func(name string, hook recHook, final string) {
		cs = append(cs, hcase{cat: "backend", name: name, mkEnv: hostileEnv(hook, "127.0.0.1:0"), run: func(x *hx) {
			x.cl = hDial(x.t, x.env.addr())
			x.cl.want(hGreeting)
			x.do("USER {U}\r\n", hUserOK)
			start := time.Now()
			x.cl.send("PASS " + hPass + "\r\n")
			x.cl.expectClose(final)
			if d := time.Since(start); d > 4*time.Second {
				x.t.Fatalf("421 took %v", d)
			}
			x.allBackendClosed()
		}})
	}
	greeting := func(raw string) recHook {
		return func(s *recSess, v, _ string) bool {
			if v != "" {
				return false
			}
			s.raw(raw)
			return true
		}
	}
	loginFails("greeting-overlong", greeting("220 "+strings.Repeat("x", 9000)+"\r\n"), h421NoBackend)
	loginFails("greeting-6xx", greeting("631 hello\r\n"), h421NoBackend)
	loginFails("greeting-garbage", greeting("SSH-2.0-OpenSSH_9.6\r\n"), h421NoBackend)
	loginFails("greeting-421", greeting("421 too busy\r\n"), h421NoBackend)
	loginFails("greeting-530", greeting("530 go away\r\n"), h421NoBackend)
	loginFails("greeting-none", greeting(""), h421NoBackend)
	loginFails("greeting-endless-120", func(s *recSess, v, _ string) bool {
		if v != "" {
			return false
		}
		go func() {
			for range 200 {
				if _, err := io.WriteString(s.c, "120 ready soon\r\n"); err != nil {
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
		return true
	}, h421NoBackend)
	loginFails("greeting-endless-multiline", func(s *recSess, v, _ string) bool {
		if v != "" {
			return false
		}
		go endless(s, "220-hello\r\n", strings.Repeat(" and more\r\n", 1000))
		return true
	}, h421NoBackend)
	loginFails("user-6xx", onVerb("USER", "631 who\r\n", false), h421NoBackend)
	loginFails("pass-6xx", onVerb("PASS", "632 what\r\n", false), h421NoBackend)
	loginFails("user-421", onVerb("USER", "421 not now\r\n", true), "421 not now\r\n")
	loginFails("pass-421", onVerb("PASS", "421 not now either\r\n", true), "421 not now either\r\n")
	loginFails("pass-closes", onVerb("PASS", "", true), h421NoBackend)
	loginFails("pass-endless-1xx", func(s *recSess, v, _ string) bool {
		if v != "PASS" {
			return false
		}
		for range 300 {
			if _, err := io.WriteString(s.c, "150 wait\r\n"); err != nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		s.quit = true
		return true
	}, h421NoBackend)
	cs = append(cs, hcase{cat: "backend", name: "extra-line-before-user-reply", mkEnv: hostileEnv(onVerb("USER", "200 extra\r\n331 pass\r\n", false), "127.0.0.1:0"),
		run: func(x *hx) {
			x.cl = hDial(x.t, x.env.addr())
			x.cl.want(hGreeting)
			x.do("USER {U}\r\nPASS pw\r\n", hUserOK, hLoginBad)
			x.do("NOOP\r\n", hNoop)
		}})

	// Transfer-phase hostility. xfer runs PASV + RETR against a backend whose answer to its
	// own PASV is scripted.
	xfer := func(name string, hook recHook, listen string, want []string, final string, closes bool, relayed []string) {
		cs = append(cs, hcase{cat: "backend", name: name, mkEnv: hostileEnv(hook, listen), run: func(x *hx) {
			x.cl = hDial(x.t, x.env.addr())
			x.cl.want(hGreeting)
			x.login()
			dc := hPasvConn(x)
			x.do("RETR f\r\n", want...)
			if closes {
				x.cl.expectClose(final)
				x.backendSaw(relayed, false)
				x.backendClosed()
			} else {
				x.sentinel()
				x.backendSaw(relayed, true)
			}
			dc.SetReadDeadline(time.Now().Add(3 * time.Second))
			if _, err := io.ReadAll(dc); err != nil {
				x.t.Fatalf("client data connection not closed: %v", err)
			}
		}})
	}
	pasvReply := func(r string) recHook { return onVerb("PASV", r, false) }
	for _, r := range []string{"227 garbage\r\n", "227 Entering Passive Mode (127,0,0,1,0,0).\r\n", "227 Entering Passive Mode (127,0,0,1,300,1).\r\n",
		"227 Entering Passive Mode (127,0,0,1,1).\r\n", "227 Entering Passive Mode (127,0,0,1,-1,5).\r\n", "227 Entering Passive Mode (127,0,0,1,255,255,1).\r\n",
		"227 Entering Passive Mode (1270,0,0,1,4,1).\r\n", "227\r\n", "227-multi\r\n227 (garbage)\r\n", "227 Entering Passive Mode (127,0,0,1,4,\x001).\r\n",
		"227 Entering Passive Mode (127,0,0,1,1,1).\r\n", "229 Entering Extended Passive Mode (|||6446|)\r\n", "500 no passive\r\n", "200 sure\r\n"} {
		xfer("pasv-reply-"+strconv.Quote(r), pasvReply(r), "127.0.0.1:0", []string{hCantOpen}, "", false, []string{"PASV"})
	}
	xfer("pasv-reply-421", pasvReply("421 leaving\r\n"), "127.0.0.1:0", nil, "421 leaving\r\n", true, []string{"PASV"})
	xfer("pasv-reply-6xx", pasvReply("631 x\r\n"), "127.0.0.1:0", nil, h421NoBackend, true, []string{"PASV"})
	xfer("pasv-no-reply-close", onVerb("PASV", "", true), "127.0.0.1:0", nil, h421NoBackend, true, []string{"PASV"})
	// A backend that stops answering must not hold a session whose client has gone: when the
	// client leaves, both legs are closed and the data port is returned (SPEC §4 "421 is one
	// policy": the session's end closes the client connection and its backend leg).
	silentThenVanish := func(name, verb string, body func(x *hx)) {
		cs = append(cs, hcase{cat: "backend", name: name, mkEnv: hostileEnv(onVerb(verb, "", false), "127.0.0.1:0"), run: func(x *hx) {
			x.cl = hDial(x.t, x.env.addr())
			x.cl.want(hGreeting)
			x.login()
			body(x)
			time.Sleep(100 * time.Millisecond)
			x.cl.c.(*net.TCPConn).SetLinger(0)
			x.cl.c.Close()
			x.backendClosed()
			waitFor(x.t, 3*time.Second, func() bool { return x.env.p.srv.Sessions() == 0 && x.env.p.srv.Allocator().InUse() == 0 })
		}})
	}
	silentThenVanish("silent-on-pwd-client-vanishes", "PWD", func(x *hx) { x.cl.send("PWD\r\n") })
	silentThenVanish("silent-on-pasv-client-vanishes", "PASV", func(x *hx) {
		dc := hPasvConn(x)
		x.cl.send("RETR f\r\n")
		time.Sleep(100 * time.Millisecond)
		dc.Close()
	})
	silentThenVanish("silent-on-retr-client-vanishes", "RETR", func(x *hx) {
		dc := hPasvConn(x)
		x.cl.send("RETR f\r\n")
		time.Sleep(100 * time.Millisecond)
		dc.Close()
	})
	xfer("150-then-close", onVerb("RETR", "150 here it comes\r\n", true), "127.0.0.1:0",
		[]string{"150 here it comes", hAborted}, h421NoBackend, true, []string{"PASV", "RETR f"})
	xfer("150-then-6xx", onVerb("RETR", "150 here it comes\r\n631 x\r\n", false), "127.0.0.1:0",
		[]string{"150 here it comes", hAborted}, h421NoBackend, true, []string{"PASV", "RETR f"})
	// SPEC §5: "A backend lost during a transfer: the client gets 426, then the 421 policy".
	// A backend that sends 421 mid-transfer is going away with the transfer unfinished.
	xfer("150-then-421", onVerb("RETR", "150 here it comes\r\n421 going down\r\n", true), "127.0.0.1:0",
		[]string{"150 here it comes", hAborted}, "421 going down\r\n", true, []string{"PASV", "RETR f"})
	xfer("retr-reply-421", onVerb("RETR", "421 no\r\n", true), "127.0.0.1:0", nil, "421 no\r\n", true, []string{"PASV", "RETR f"})
	xfer("retr-1xx-flood", func(s *recSess, v, arg string) bool {
		if v != "RETR" {
			return false
		}
		dc := s.acceptData()
		s.raw(strings.Repeat("150 more\r\n", 1000))
		io.WriteString(dc, "data")
		dc.Close()
		s.reply("226 rec done")
		return true
	}, "127.0.0.1:0", append([]string{"150 rec opening"}, append(hRepeat("150 more", 1000), "226 rec done")...), "", false, []string{"PASV", "RETR f"})
	if ipv6 {
		for _, r := range []string{"229 (|||0|)\r\n", "229 (|||70000|)\r\n", "229 garbage\r\n", "229 (|||abc|)\r\n", "229 (||||)\r\n",
			"229 (|1|::1|5000|)\r\n", "229 (|||-1|)\r\n", "229 Entering Extended Passive Mode (|||1|)\r\n", "227 (127,0,0,1,4,1)\r\n"} {
			xfer("epsv-reply-"+strconv.Quote(r), onVerb("EPSV", r, false), "[::1]:0", []string{hCantOpen}, "", false, []string{"EPSV"})
		}
	}
	hDataCases(&cs)
	// FEAT from a hostile backend: only the proxy's rewrite reaches the client.
	cs = append(cs, hcase{cat: "backend", name: "feat-rewritten", mkEnv: hostileEnv(onVerb("FEAT",
		"211-Features\r\n AUTH TLS\r\n AUTH SSL\r\n PBSZ\r\n PROT\r\n CCC\r\n EPSV\r\n EPRT\r\n HOST\r\n SSCN\r\n LPSV\r\n MLST type*;size*;\r\n  UTF8  \r\n\r\n211 End\r\n", false), "127.0.0.1:0"),
		login: true, relayed: []string{"FEAT"},
		steps: []hstep{hs("FEAT\r\n", "raw:211-Features:\r\n EPRT\r\n EPSV\r\n MLST type*;size*;\r\n UTF8\r\n211 End\r\n")}})
	cs = append(cs, hcase{cat: "backend", name: "feat-refused", mkEnv: hostileEnv(onVerb("FEAT", "500 what\r\n", false), "127.0.0.1:0"),
		login: true, relayed: []string{"FEAT"}, steps: []hstep{hs("FEAT\r\n", hFeatPlain)}})
	return cs
}

// hDataCases covers SPEC §5 on the data channel.
func hDataCases(cs *[]hcase) {
	add := func(name string, mkEnv func(*testing.T) *henv, run func(x *hx)) {
		*cs = append(*cs, hcase{cat: "data", name: name, env: "plain", mkEnv: mkEnv, run: run})
	}
	start := func(x *hx) {
		x.cl = hDial(x.t, x.env.addr())
		x.cl.want(hGreeting)
		x.login()
	}
	// A connection from another address is refused and counted; the proxy keeps waiting for
	// the client until connect_timeout, then 425; the backend is never asked for anything.
	add("foreign-peer-then-timeout", nil, func(x *hx) {
		start(x)
		line := x.do("PASV\r\n", "227 *")
		port, _ := h227Port(line)
		before := x.env.p.srv.Foreign.Load()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 5 * time.Second}
		bad, err := d.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			x.t.Fatal(err)
		}
		defer bad.Close()
		t0 := time.Now()
		x.do("RETR f\r\n", hCantOpen)
		if el := time.Since(t0); el < 1500*time.Millisecond || el > 5*time.Second {
			x.t.Fatalf("425 after %v, want after connect_timeout (2s)", el)
		}
		bad.SetReadDeadline(time.Now().Add(time.Second))
		if n, err := bad.Read(make([]byte, 1)); err == nil {
			x.t.Fatalf("the foreign peer read %d bytes", n)
		}
		if got := x.env.p.srv.Foreign.Load() - before; got != 1 {
			x.t.Fatalf("foreign connections counted: %d, want 1", got)
		}
		x.sentinel()
		x.backendSaw(nil, true)
	})
	// A passive port takes one connection: of two made before RETR, one carries the data and
	// the other is closed without a byte.
	add("passive-port-accepts-once", nil, func(x *hx) {
		start(x)
		line := x.do("PASV\r\n", "227 *")
		port, _ := h227Port(line)
		var dcs [2]net.Conn
		for i := range dcs {
			c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 5*time.Second)
			if err != nil {
				x.t.Fatal(err)
			}
			defer c.Close()
			dcs[i] = c
		}
		x.do("RETR once\r\n", "150 rec opening")
		var got [2]string
		var wg sync.WaitGroup
		for i, c := range dcs {
			wg.Go(func() {
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				b, _ := io.ReadAll(c)
				got[i] = string(b)
			})
		}
		wg.Wait()
		x.cl.want("226 rec done")
		want := recPayload("RETR", "once")
		if !(got[0] == want && got[1] == "" || got[0] == "" && got[1] == want) {
			x.t.Fatalf("data on the two connections: %q", got)
		}
		if c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second); err == nil {
			c.SetReadDeadline(time.Now().Add(time.Second))
			n, _ := c.Read(make([]byte, 1))
			c.Close()
			if n > 0 {
				x.t.Fatal("a used passive port still serves data")
			}
		}
		x.sentinel()
		x.backendSaw([]string{"PASV", "RETR once"}, true)
	})
	// SPEC §5: the backend's final reply reaches the client only after the data relay toward
	// the client has finished, even when the backend sends 226 before its data.
	early := hostileEnv(func(s *recSess, v, arg string) bool {
		if v != "RETR" {
			return false
		}
		dc := s.acceptData()
		if dc == nil {
			return true
		}
		s.raw("226 rec done early\r\n")
		for range 5 {
			io.WriteString(dc, strings.Repeat("d", 1000))
			time.Sleep(100 * time.Millisecond)
		}
		dc.Close()
		return true
	}, "127.0.0.1:0")
	add("226-before-data", early, func(x *hx) {
		start(x)
		dc := hPasvConn(x)
		x.do("RETR f\r\n", "150 rec opening", "226 rec done early")
		dc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		got, err := io.ReadAll(dc)
		if err != nil || len(got) != 5000 {
			x.t.Fatalf("226 arrived before the data was complete: %d bytes then %v", len(got), err)
		}
		x.sentinel()
		x.backendSaw([]string{"PASV", "RETR f"}, true)
	})
	// SPEC §5: ABOR (with or without Telnet IP/Synch) tears down both data legs and relays the
	// backend's 426/226 in order. The backend receives a plain re-serialised ABOR.
	abor := hostileEnv(func(s *recSess, v, arg string) bool {
		if v != "RETR" {
			return false
		}
		dc := s.acceptData()
		if dc == nil {
			return true
		}
		io.WriteString(dc, strings.Repeat("a", 64<<10))
		s.readLine() // waits for the ABOR
		dc.Close()
		s.raw("426 rec transfer aborted\r\n226 rec abor ok\r\n")
		return true
	}, "127.0.0.1:0")
	for _, pre := range []string{"", "\xff\xf4\xff\xf2", "urgent"} {
		name := "abor-mid-transfer-" + map[string]string{"": "plain", "\xff\xf4\xff\xf2": "iac-ip-dm", "urgent": "iac-ip-synch-oob"}[pre]
		add(name, abor, func(x *hx) {
			start(x)
			dc := hPasvConn(x)
			x.do("RETR big\r\n", "150 rec opening")
			if _, err := io.ReadFull(dc, make([]byte, 1000)); err != nil {
				x.t.Fatal(err)
			}
			switch pre {
			case "urgent":
				x.cl.send("\xff\xf4\xff")
				hSendUrgent(x.t, x.cl.c, []byte{0xf2})
			default:
				x.cl.send(pre)
			}
			x.do("ABOR\r\n", "426 rec transfer aborted", "226 rec abor ok")
			dc.SetReadDeadline(time.Now().Add(3 * time.Second))
			if _, err := io.Copy(io.Discard, dc); err != nil && !errors.Is(err, syscall.ECONNRESET) {
				x.t.Fatalf("client data leg not torn down: %v", err)
			}
			x.sentinel()
			x.backendSaw([]string{"PASV", "RETR big", "ABOR"}, true)
		})
	}
	// A backend that asks for an account: 332 is relayed, only ACCT is taken meanwhile.
	acct := hostileEnv(func(s *recSess, v, arg string) bool {
		switch v {
		case "PASS":
			s.reply("332 rec need account")
		case "ACCT":
			s.reply("230 rec account ok")
		default:
			return false
		}
		return true
	}, "127.0.0.1:0")
	*cs = append(*cs, hcase{cat: "order", name: "pre/332-then-acct", mkEnv: acct, run: func(x *hx) {
		x.cl = hDial(x.t, x.env.addr())
		x.cl.want(hGreeting)
		x.do("USER {U}\r\nPASS pw\r\n", hUserOK, "332 rec need account")
		x.do("PWD\r\nDELE "+hMarker+"\r\n", "503 ACCT expected.", "503 ACCT expected.")
		x.do("ACCT a\x00"+hMarker+"\r\n", hBadChar)
		x.do("ACCT acc 1\r\n", "230 rec account ok")
		x.sentinel()
		x.backendSaw([]string{"ACCT acc 1"}, true)
	}})
}

func hRepeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func hIPv6Cases() []hcase {
	var cs []hcase
	post := func(name string, steps ...hstep) {
		cs = append(cs, hcase{cat: "ipv6", name: name, env: "v6", login: true, steps: steps})
	}
	post("pasv-refused", hs("PASV\r\n", hPasvV6))
	post("epsv", hs("EPSV\r\n", "229 Entering Extended Passive Mode (|||*"))
	post("epsv-2", hs("EPSV 2\r\n", "229 Entering Extended Passive Mode (|||*"))
	post("epsv-1", hs("EPSV 1\r\n", hEpsvProto6))
	post("eprt-own", hs("EPRT |2|::1|5000|\r\n", hPortOK))
	post("eprt-v4", hs("EPRT |1|127.0.0.1|5000|\r\n", hPortRefused))
	post("eprt-other-v6", hs("EPRT |2|::2|5000|\r\n", hPortRefused))
	post("eprt-privileged", hs("EPRT |2|::1|21|\r\n", hPortRefused))
	post("port-v4", hs("PORT 127,0,0,1,20,0\r\n", hPortRefused))
	post("eprt-zone", hs("EPRT |2|::1%lo|5000|\r\n", hPortBad))
	cs = append(cs, hcase{cat: "ipv6", name: "transfer", env: "v6", run: func(x *hx) {
		x.cl = hDial(x.t, x.env.addr())
		x.cl.want(hGreeting)
		x.login()
		line := x.do("EPSV\r\n", "229 *")
		port := line[strings.Index(line, "|||")+3 : strings.LastIndex(line, "|")]
		dc, err := net.Dial("tcp", net.JoinHostPort("::1", port))
		if err != nil {
			x.t.Fatal(err)
		}
		defer dc.Close()
		x.do("RETR v6\r\n", "150 rec opening")
		got, _ := io.ReadAll(dc)
		x.cl.want("226 rec done")
		if string(got) != recPayload("RETR", "v6") {
			x.t.Fatalf("data %q", got)
		}
		x.sentinel()
		x.backendSaw([]string{"EPSV", "RETR v6"}, true)
	}})
	return cs
}

// ---------------------------------------------------------------------------------------

func hIPv6() bool {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// TestHostileCorpus runs every case of the corpus, each in its own client session, and
// prints a one-line summary.
func TestHostileCorpus(t *testing.T) {
	ipv6 := hIPv6()
	short := func(c *proxy.Config, _ *balancer.PoolConfig) {
		c.Limits.TLSHandshake = 500 * time.Millisecond
		c.Limits.BackendTimeout = 2 * time.Second
		c.Data.ConnectTimeout = 2 * time.Second
		// The default shared range of the harness (below the ephemeral ports) is kept.
	}
	envs := map[string]*henv{}
	var backends []*recBackend
	mk := func(name, listen string, opts ...proxyOpt) *henv {
		be := startRecBackend(t, listen, nil)
		backends = append(backends, be)
		e := &henv{name: name, be: be}
		opts = append([]proxyOpt{short}, opts...)
		e.p = startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)}, opts...)
		envs[name] = e
		return e
	}
	mk("plain", "127.0.0.1:0")
	for _, mode := range []proxy.TLSMode{proxy.TLSExplicit, proxy.TLSRequired, proxy.TLSImplicit} {
		opt, cc := withTLS(t, mode, false)
		mk(mode.String(), "127.0.0.1:0", opt).cc = cc
	}
	mk("pp", "127.0.0.1:0", withProxyProtocol("127.0.0.1/32"))
	mk("pp-untrusted", "127.0.0.1:0", withProxyProtocol("10.0.0.0/8"))
	if ipv6 {
		mk("v6", "[::1]:0", func(c *proxy.Config, _ *balancer.PoolConfig) { c.Listeners[0].Address = "[::1]:0" })
	}

	cases := hCorpus(ipv6)
	byCat := map[string][2]int{}
	seen := map[string]bool{}
	failures, total := 0, 0
	start := time.Now()
	for i := range cases {
		c := &cases[i]
		name := c.cat + "/" + c.name
		if seen[name] {
			t.Fatalf("duplicate case name %q", name)
		}
		seen[name] = true
		user := c.user
		if user == "" {
			user = fmt.Sprintf("h%04d", i)
		}
		ran := false
		ok := t.Run(name, func(t *testing.T) {
			ran = true
			env := envs[c.env]
			if c.mkEnv != nil {
				env = c.mkEnv(t)
				backends = append(backends, env.be)
			}
			if env == nil {
				t.Fatalf("no environment %q", c.env)
			}
			runHCase(t, c, env, user)
		})
		if !ran {
			continue // filtered out by -run
		}
		total++
		n := byCat[c.cat]
		n[0]++
		if !ok {
			n[1]++
			failures++
		}
		byCat[c.cat] = n
	}

	// Nothing smuggled ever reached any backend, and every line a backend received was one
	// CRLF-terminated command with no other CR, LF or NUL.
	for _, be := range backends {
		for _, l := range be.allLines() {
			body, ok := strings.CutSuffix(l, "\r\n")
			if strings.Contains(l, hMarker) || !ok || strings.ContainsAny(body, "\r\n\x00") {
				t.Errorf("backend received %q", hq(l))
			}
		}
	}
	// The proxies are still serving.
	for _, name := range []string{"plain", "pp"} {
		e := envs[name]
		c, err := net.DialTimeout("tcp", e.addr(), 5*time.Second)
		if err != nil {
			t.Fatalf("%s proxy gone: %v", name, err)
		}
		if name == "pp" {
			io.WriteString(c, "PROXY TCP4 198.51.100.9 127.0.0.1 40000 21\r\n")
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if line != hGreeting+"\r\n" {
			t.Errorf("%s proxy greets %q after the corpus", name, line)
		}
	}

	var cats []string
	for c := range byCat {
		cats = append(cats, c)
	}
	sort.Strings(cats)
	var parts []string
	for _, c := range cats {
		parts = append(parts, fmt.Sprintf("%s=%d", c, byCat[c][0]))
	}
	fmt.Printf("hostile: %d cases, %d failures (%s) in %v\n", total, failures, strings.Join(parts, " "), time.Since(start).Round(time.Millisecond))
	for _, c := range cats {
		if byCat[c][1] > 0 {
			fmt.Printf("hostile: %s: %d of %d failed\n", c, byCat[c][1], byCat[c][0])
		}
	}
}
