package proxy_test

// The recording fake backend of the corpus.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

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
