package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/tlsterm"
)

// Backend failures while choosing a backend. errBackendFull means every candidate was at its
// max_sessions.
var (
	errBackendFull = errors.New("every backend is full")
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
	s.log.Debug("backend chosen", append(ch.logAttrs(s.user), "backend", b.String())...)

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
	s.bAddr = addrPortOf(conn.RemoteAddr())
	s.bLocal = addrPortOf(conn.LocalAddr())
	s.log = s.log.With("backend", b.String())
	s.log.Info("login ok", ch.logAttrs(s.user)...)
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

// backendFailed turns an error on the backend leg during login into the 421 policy.
func (s *session) backendFailed(err error) error {
	var e *endError
	if errors.As(err, &e) {
		return err
	}
	s.log.Warn("backend failed during login", "err", err)
	return end421(CauseBackend, err)
}

// connectBackend walks the pool's ordering until a backend accepts the connection and greets
// with 220. Failures are reported to the pool (passive health) and the next one is tried.
func (s *session) connectBackend(pool *balancer.Pool) (net.Conn, *balancer.Backend, error) {
	order := pool.Order(balancer.Client{Addr: s.clientAddr.Addr(), User: s.user})
	if len(order) == 0 {
		if pool.AllFull() {
			return nil, nil, errBackendFull
		}
		return nil, nil, fmt.Errorf("pool %s: %w", pool.Name, balancer.ErrNoBackend)
	}
	full := 0
	var errs []error
	for _, b := range order {
		if !b.Acquire() {
			full++
			continue
		}
		conn, err := s.dialBackend(b)
		if err != nil {
			b.Release()
			if pool.Report(b, false) {
				s.log.Warn("backend down", "pool", pool.Name, "backend", b.String(), "err", err)
			}
			s.log.Warn("backend failed, trying next", "backend", b.String(), "err", err)
			errs = append(errs, err)
			continue
		}
		pool.Report(b, true)
		return conn, b, nil
	}
	if full == len(order) {
		return nil, nil, errBackendFull
	}
	return nil, nil, fmt.Errorf("pool %s: %w: %w", pool.Name, balancer.ErrNoBackend, errors.Join(errs...))
}

// dialBackend connects to b and reads its greeting, with TLS as the backend wants it, all
// within the backend timeout.
func (s *session) dialBackend(b *balancer.Backend) (net.Conn, error) {
	timeout := orDefault(s.cfg.Limits.BackendTimeout, DefaultBackendTimeout)
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", b.Config.Address)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", b.Config.Address, err)
	}
	dl, _ := ctx.Deadline()
	conn.SetDeadline(dl)
	if pp := b.Config.ProxyProtocol; pp != balancer.ProxyOff {
		if err := s.sendProxyHeader(conn, pp); err != nil {
			conn.Close()
			return nil, err
		}
	}
	s.bTLS = nil
	if b.Config.TLS != balancer.TLSNone {
		s.bTLS = tlsterm.ForSession(b.Config.TLSConfig)
	}
	if b.Config.TLS == balancer.TLSImplicit {
		tc, err := s.backendTLS(ctx, conn)
		if err != nil {
			conn.Close()
			return nil, err
		}
		conn = tc
	}
	s.br = bufio.NewReaderSize(conn, readBufSize)
	if err := readGreeting(s.br); err != nil {
		conn.Close()
		return nil, fmt.Errorf("greeting from %s: %w", b.Config.Address, err)
	}
	if b.Config.TLS == balancer.TLSExplicit {
		rep, err := s.backendExchange(conn, "AUTH TLS")
		if err == nil && rep.Code != 234 {
			err = fmt.Errorf("AUTH TLS refused: %q", firstLine(rep.Raw))
		}
		if err == nil && s.br.Buffered() > 0 {
			err = errors.New("bytes after 234 before the TLS handshake")
		}
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("backend %s: %w", b.Config.Address, err)
		}
		tc, err := s.backendTLS(ctx, conn)
		if err != nil {
			conn.Close()
			return nil, err
		}
		conn = tc
		s.br = bufio.NewReaderSize(conn, readBufSize)
	}
	conn.SetDeadline(dl)
	return conn, nil
}

// readGreeting reads a backend's greeting: any 120 "ready in n minutes", then a 220.
func readGreeting(r *bufio.Reader) error {
	for {
		rep, err := ReadReply(r)
		if err != nil {
			return err
		}
		if rep.Preliminary() {
			continue
		}
		if rep.Code != 220 {
			return fmt.Errorf("%q", firstLine(rep.Raw))
		}
		return nil
	}
}

// protectBackend sends PBSZ 0 and PROT P to a TLS backend after login, so its data
// connections are protected too. Reading these replies also collects the TLS 1.3 session
// ticket before the first data handshake needs it.
func (s *session) protectBackend(conn net.Conn) error {
	for _, line := range []string{"PBSZ 0", "PROT P"} {
		rep, err := s.backendExchange(conn, line)
		if err != nil {
			return err
		}
		if rep.Code/100 != 2 {
			return fmt.Errorf("backend refused %s: %q", line, firstLine(rep.Raw))
		}
	}
	return nil
}

// backendExchange sends one command on the backend control connection during login and reads
// its final reply, under the backend timeout.
func (s *session) backendExchange(conn net.Conn, line string) (Reply, error) {
	conn.SetDeadline(time.Now().Add(orDefault(s.cfg.Limits.BackendTimeout, DefaultBackendTimeout)))
	if _, err := conn.Write([]byte(line + "\r\n")); err != nil {
		return Reply{}, fmt.Errorf("write to backend: %w", err)
	}
	for {
		rep, err := ReadReply(s.br)
		if err != nil {
			return Reply{}, fmt.Errorf("read from backend: %w", err)
		}
		if rep.Code >= 600 {
			return Reply{}, fmt.Errorf("%w: protected reply %d", ErrBadReply, rep.Code)
		}
		if !rep.Preliminary() {
			return rep, nil
		}
	}
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
