package proxy_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/nat"
	"github.com/ftpsproxy/ftpsproxy/tlsterm"
)

// xferBackend is a scripted FTP backend for the tests of failing and stalled transfers. It
// logs in anyone, answers PASV, EPSV, PORT, EPRT, TYPE, NOOP and QUIT, offers AUTH TLS when
// it has a certificate, and hands every transfer command to the test's script, which runs
// on its own goroutine so the control connection keeps answering (ABOR) meanwhile.
type xferBackend struct {
	t          testing.TB
	ln         net.Listener
	tls        *tls.Config // AUTH TLS offered when set
	script     func(s *xferTransfer, verb, arg string)
	mu         sync.Mutex
	silentABOR bool        // ABOR goes unanswered; set with silenceABOR
	lines      []string    // every command received, in order, all sessions
	conns      []io.Closer // control and data connections, listeners
	// dataClosed is when a script last began to close a data connection it had sent on
	// (sendData64K): the proxy sees the data end only after it.
	dataClosed time.Time
	wg         sync.WaitGroup
}

// xferSess is one control connection to an xferBackend.
type xferSess struct {
	b         *xferBackend
	wmu       sync.Mutex
	c         net.Conn
	r         *bufio.Reader
	protected bool         // PROT P: data connections are TLS
	pasv      net.Listener // after PASV/EPSV
	port      string       // after PORT/EPRT
	// abortReply is what ABOR gets; default "225 No transfer to ABOR."
	abortReply string
}

func startXferBackend(t testing.TB, withTLS bool, script func(s *xferTransfer, verb, arg string)) *xferBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &xferBackend{t: t, ln: ln, script: script}
	if withTLS {
		cert, _, err := tlsterm.SelfSigned("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		b.tls = &tls.Config{Certificates: []tls.Certificate{*cert}, MaxVersion: tls.VersionTLS12}
	}
	b.wg.Add(1)
	go b.accept()
	t.Cleanup(b.stop)
	return b
}

func (b *xferBackend) addr() string { return b.ln.Addr().String() }

// dataClosedAt returns when a script last began to close a data connection (zero if never).
func (b *xferBackend) dataClosedAt() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dataClosed
}

// awaitSaw waits up to 2 s for the commands received to satisfy done (they arrive after
// the proxy wrote them), and returns them.
func (b *xferBackend) awaitSaw(done func(saw string) bool) string {
	deadline := time.Now().Add(2 * time.Second)
	for !done(b.saw()) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	return b.saw()
}

// silenceABOR makes the backend leave ABOR unanswered from now on.
func (b *xferBackend) silenceABOR() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.silentABOR = true
}

func (b *xferBackend) accept() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.track(c)
		s := &xferSess{b: b, c: c, r: bufio.NewReader(c), abortReply: "225 No transfer to ABOR."}
		b.wg.Add(1)
		go s.serve()
	}
}

// track keeps c to be closed when the test ends (data connections a script holds open too).
func (b *xferBackend) track(c io.Closer) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.conns = append(b.conns, c)
}

func (b *xferBackend) stop() {
	b.ln.Close()
	b.mu.Lock()
	for _, c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// saw returns the commands received so far, joined by ",".
func (b *xferBackend) saw() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.lines, ",")
}

func (s *xferSess) reply(line string) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(s.c, line+"\r\n")
}

func (s *xferSess) serve() {
	defer s.b.wg.Done()
	defer s.c.Close()
	s.reply("220 scripted backend")
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
		verb = strings.ToUpper(verb)
		s.b.mu.Lock()
		s.b.lines = append(s.b.lines, verb)
		s.b.mu.Unlock()
		if !s.handle(verb, arg) {
			return
		}
	}
}

// handle answers one command; it returns false when the session is over.
func (s *xferSess) handle(verb, arg string) bool {
	switch verb {
	case "USER":
		s.reply("331 Password please.")
	case "AUTH":
		s.reply("234 AUTH TLS ok.")
		tc := tls.Server(s.c, s.b.tls)
		s.c, s.r = tc, bufio.NewReader(tc)
	case "PROT":
		s.protected = strings.EqualFold(arg, "P")
		s.reply("200 PROT ok.")
	case "PASS":
		s.reply("230 Logged in.")
	case "PASV", "EPSV":
		s.listen(verb)
	case "PORT", "EPRT":
		ap, err := nat.ParsePORT(arg)
		if verb == "EPRT" {
			ap, err = nat.ParseEPRT(arg)
		}
		if err != nil {
			s.reply("501 Bad address.")
			break
		}
		s.port = ap.String()
		s.reply("200 PORT ok.")
	case "ABOR":
		s.b.mu.Lock()
		silent := s.b.silentABOR
		s.b.mu.Unlock()
		if !silent {
			s.reply(s.abortReply)
		}
	case "QUIT":
		s.reply("221 Bye.")
		return false
	case "RETR", "STOR", "LIST", "NLST":
		// The data connection this transfer uses is taken now: a later PASV must not give
		// the script, still running, another transfer's connection.
		x := &xferTransfer{xferSess: s, pasv: s.pasv, port: s.port}
		s.pasv = nil
		s.b.wg.Add(1)
		go func() {
			defer s.b.wg.Done()
			s.b.script(x, verb, arg)
		}()
	default:
		s.reply("200 Ok.")
	}
	return true
}

func (s *xferSess) listen(verb string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.reply("425 No port.")
		return
	}
	s.pasv = ln
	s.b.track(ln)
	port := ln.Addr().(*net.TCPAddr).Port
	if verb == "EPSV" {
		s.reply(fmt.Sprintf("229 Entering Extended Passive Mode (|||%d|)", port))
		return
	}
	s.reply(fmt.Sprintf("227 Entering Passive Mode (127,0,0,1,%d,%d)", port>>8, port&0xff))
}

// xferTransfer is one transfer command being scripted, with the data connection set up for
// it.
type xferTransfer struct {
	*xferSess
	pasv net.Listener
	port string
}

// rawData makes the data connection (accepts the proxy's, or dials the PORT target) without
// any TLS; it stays open until the test ends unless the script closes it.
func (s *xferTransfer) rawData() net.Conn {
	var c net.Conn
	var err error
	if s.pasv != nil {
		s.pasv.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
		c, err = s.pasv.Accept()
		s.pasv.Close()
	} else {
		c, err = net.DialTimeout("tcp", s.port, 10*time.Second)
	}
	if err != nil {
		s.b.t.Errorf("scripted backend: data connection: %v", err)
		return nil
	}
	s.b.track(c)
	return c
}

// data is rawData with the server's TLS handshake under PROT P.
func (s *xferTransfer) data() net.Conn {
	c := s.rawData()
	if c == nil || !s.protected {
		return c
	}
	tc := tls.Server(c, s.b.tls)
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		s.b.t.Errorf("scripted backend: data TLS: %v", err)
		return nil
	}
	tc.SetDeadline(time.Time{})
	return tc
}

// resetData makes the data connection and resets it at once (RST), as a server does that
// breaks the data TLS handshake.
func (s *xferTransfer) resetData() {
	c := s.rawData()
	if c == nil {
		return
	}
	c.(*net.TCPConn).SetLinger(0)
	c.Close()
}

// serveFile sends payload as a whole transfer: 150, the data, 226.
func (s *xferTransfer) serveFile(payload []byte) {
	s.reply("150 Opening data connection.")
	c := s.data()
	if c == nil {
		s.reply("425 No data connection.")
		return
	}
	c.Write(payload)
	c.Close()
	s.reply("226 Transfer complete.")
}

// sizedPayload returns n deterministic bytes.
func sizedPayload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>11)
	}
	return b
}

// pasvPort returns the port of a 227 or 229 line from the proxy.
func pasvPort(t testing.TB, line string) int {
	t.Helper()
	if i := strings.Index(line, "|||"); i >= 0 {
		p, err := strconv.Atoi(strings.TrimSuffix(line[i+3:strings.LastIndex(line, "|")], "|"))
		if err != nil {
			t.Fatalf("229 %q: %v", line, err)
		}
		return p
	}
	ap, err := nat.Parse227(line[4:])
	if err != nil {
		t.Fatalf("227 %q: %v", line, err)
	}
	return int(ap.Port())
}
