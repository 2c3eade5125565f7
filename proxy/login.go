package proxy

import (
	"errors"
	"log/slog"
	"net"
	"time"

	"github.com/ftpsproxy/ftpsproxy/balancer"
)

// login runs at PASS: choose a backend, connect, relay USER and PASS, and report the outcome.
// A wrong user and a wrong password get the same 530, and the session may try again.
func (s *session) login(pass string) error {
	if refused, err := s.certUserRefused(); refused {
		return err
	}
	ch, err := s.choose(pass)
	if ch == nil {
		return err
	}
	conn, b, err := s.connectChoice(ch)
	if err != nil {
		s.srv.obs.Login("error")
		if errors.Is(err, errBackendFull) {
			return end421(CauseTooMany, err)
		}
		return end421(CauseNoBackend, err)
	}
	if s.log.Enabled(s.ctx, slog.LevelDebug) { // the attributes cost allocations a disabled line need not pay
		s.log.Debug("backend chosen", append(ch.logAttrs(s.user), "backend", b.String())...)
	}

	rep, err := s.backendExchange(conn, "USER "+ch.user)
	if err == nil && rep.Code == 331 {
		rep, err = s.backendExchange(conn, "PASS "+ch.pass)
	}
	if err == nil && rep.Code == 332 {
		// The backend wants an account: relay its reply and the client's ACCT.
		if err = s.writeRaw(rep.Raw); err == nil {
			rep, err = s.relayAcct(conn)
		}
	}
	if err != nil {
		conn.Close()
		b.Release()
		s.srv.obs.Login("error")
		return s.backendFailed(err)
	}
	if rep.Code != 230 && rep.Code != 202 {
		conn.Close()
		b.Release()
		if rep.Code == 421 {
			return backend421(rep.Raw)
		}
		s.srv.obs.Login("failed")
		return s.loginFailed(b.String(), rep.Code)
	}
	return s.loggedInTo(conn, b, ch, rep)
}

// loggedInTo finishes a login the backend accepted: PBSZ/PROT toward a TLS backend, the
// session's backend leg set, the backend's 230 relayed.
func (s *session) loggedInTo(conn net.Conn, b *balancer.Backend, ch *choice, rep Reply) error {
	pool := ch.pool
	if s.bTLS != nil {
		if err := s.protectBackend(conn); err != nil {
			conn.Close()
			b.Release()
			s.srv.obs.Login("error")
			return s.backendFailed(err)
		}
	}
	s.backend, s.bconn, s.pool = b, conn, pool.Name
	logRecord(s.ctx, s.log, slog.LevelInfo, "login ok", ch.logAttrs(s.user)...)
	s.srv.obs.Login("ok")
	s.srv.obs.BackendSession(pool.Name, b.String())
	s.live.setBackend(pool.Name, b.String())
	if err := s.writeRaw(rep.Raw); err != nil {
		return err
	}
	s.loggedIn = true
	s.client.SetReadDeadline(time.Time{})
	conn.SetDeadline(time.Time{})
	if s.utf8 {
		// The client asked for UTF-8 before a backend existed; tell the backend now.
		s.backendExchange(conn, "OPTS UTF8 ON")
		conn.SetDeadline(time.Time{})
	}
	s.backendWrite = 0 // conn's deadlines were set here, not by arm
	return nil
}

// relayAcct forwards the client's ACCT after a 332.
func (s *session) relayAcct(conn net.Conn) (Reply, error) {
	for {
		cmd, ok, err := s.readCommand()
		if err != nil {
			return Reply{}, err
		}
		if !ok {
			continue
		}
		if cmd.Verb != "ACCT" {
			if err := s.writeLine(replyAcctExpected); err != nil {
				return Reply{}, err
			}
			continue
		}
		return s.backendExchange(conn, cmd.String())
	}
}

// backendExchange sends one command on the backend control connection during login and reads
// its final reply, under the backend timeout.
func (s *session) backendExchange(conn net.Conn, line string) (Reply, error) {
	conn.SetDeadline(time.Now().Add(s.cfg.Limits.backendTimeout()))
	return exchange(conn, s.br, line)
}

// firstLine returns the first line of a reply without its terminator.
func firstLine(raw []byte) string {
	for i, b := range raw {
		if b == '\n' {
			raw = raw[:i]
			break
		}
	}
	if n := len(raw); n > 0 && raw[n-1] == '\r' {
		raw = raw[:n-1]
	}
	return string(raw)
}
