package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/tlsterm"
)

// errBackendFull means every candidate backend was at its max_sessions.
var errBackendFull = errors.New("every backend is full")

// backendTimeout is the connect deadline toward a backend.
func (l Limits) backendTimeout() time.Duration {
	return orDefault(l.BackendTimeout, DefaultBackendTimeout)
}

// greetingTimeout is the deadline for everything between connect and a ready backend
// control connection: PROXY header, TLS, the 120/220 greeting, AUTH TLS.
func (l Limits) greetingTimeout() time.Duration {
	return orDefault(l.GreetingTimeout, DefaultGreetingTimeout)
}

// backendDialer is the one way to reach a backend: a session at PASS and the health probe both
// connect through it, so the PROXY header, backend TLS, the greeting rules and the reply
// bounds (ReadReply's) hold for both.
type backendDialer struct {
	limits Limits
	// header builds the PROXY header for a backend that wants one (version 1 or 2).
	header func(version byte) (*proxyproto.Header, error)
	tls    *tls.Config // toward the backend, with its own session cache; nil for plain FTP
	obs    Observer
	log    *slog.Logger
}

// dial connects to b and returns its control connection, greeted and, when b wants TLS,
// protected, with the reader to use on it. The connect takes at most Limits.BackendTimeout,
// everything after it at most Limits.GreetingTimeout; ctx's deadline caps both and ctx's end
// aborts the attempt.
func (d *backendDialer) dial(ctx context.Context, b *balancer.Backend) (net.Conn, *bufio.Reader, error) {
	addr := b.Config.Address
	var nd net.Dialer
	raw, err := dialWithin(ctx, &nd, addr, d.limits.backendTimeout())
	if err != nil {
		return nil, nil, fmt.Errorf("connect %s: %w", addr, err)
	}
	raw.SetDeadline(capDeadline(ctx, time.Now().Add(d.limits.greetingTimeout())))
	// The deadline covers the clock (a TLS handshake's own timeout aside, it bounds all of
	// greet); this covers ctx ending first (shutdown, a probe's round).
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	conn, r, err := d.greet(ctx, raw, b)
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("backend %s: %w", addr, err)
	}
	return conn, r, nil
}

// greet takes a connected backend to a ready control connection: PROXY header, implicit TLS,
// greeting, AUTH TLS for explicit TLS. On error the returned conn is the one to close.
func (d *backendDialer) greet(ctx context.Context, conn net.Conn, b *balancer.Backend) (net.Conn, *bufio.Reader, error) {
	if v := b.Config.ProxyProtocol.Number(); v != 0 {
		h, err := d.header(v)
		if err == nil {
			_, err = h.WriteTo(conn)
		}
		if err != nil {
			return conn, nil, fmt.Errorf("PROXY header: %w", err)
		}
	}
	if b.Config.TLS == balancer.TLSImplicit {
		tc, err := d.handshake(ctx, conn)
		if err != nil {
			return conn, nil, err
		}
		conn = tc
	}
	r := bufio.NewReaderSize(conn, readBufSize)
	if err := readGreeting(r); err != nil {
		return conn, nil, fmt.Errorf("greeting: %w", err)
	}
	if b.Config.TLS != balancer.TLSExplicit {
		return conn, r, nil
	}
	rep, err := exchange(conn, r, "AUTH TLS")
	if err == nil && rep.Code != 234 {
		err = fmt.Errorf("AUTH TLS refused: %q", firstLine(rep.Raw))
	}
	if err == nil && r.Buffered() > 0 {
		err = errors.New("bytes after 234 before the TLS handshake")
	}
	if err != nil {
		return conn, nil, err
	}
	tc, err := d.handshake(ctx, conn)
	if err != nil {
		return conn, nil, err
	}
	return tc, bufio.NewReaderSize(tc, readBufSize), nil
}

// handshake runs the client-side TLS handshake toward a backend on c (control or data),
// under the TLS handshake timeout.
func (d *backendDialer) handshake(ctx context.Context, c net.Conn) (*tls.Conn, error) {
	tc := tls.Client(c, d.tls)
	ctx, cancel := context.WithTimeout(ctx, orDefault(d.limits.TLSHandshake, DefaultTLSHandshake))
	defer cancel()
	err := tc.HandshakeContext(ctx)
	d.obs.TLSHandshake("backend", err)
	if err != nil {
		tc.Close()
		return nil, fmt.Errorf("backend TLS handshake with %s: %w", c.RemoteAddr(), err)
	}
	st := tc.ConnectionState()
	d.log.Debug("backend TLS established", "peer", c.RemoteAddr().String(), "tls_version", tls.VersionName(st.Version),
		"resumed", st.DidResume)
	return tc, nil
}

// readGreeting reads a backend's greeting: any 120 "ready in n minutes", then a 220. Each
// reply is bounded by ReadReply; the connection's deadline bounds how long 120s may go on.
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

// exchange sends one command on a backend control connection and reads replies up to the
// final one, under the deadline the caller set.
func exchange(conn net.Conn, r *bufio.Reader, line string) (Reply, error) {
	if _, err := conn.Write([]byte(line + "\r\n")); err != nil {
		return Reply{}, fmt.Errorf("write to backend: %w", err)
	}
	for {
		rep, err := ReadReply(r)
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

// ProbeBackend is the active health probe, for balancer.Pool.Check: it reaches b exactly as a
// session does (PROXY header, TLS, greeting, with the same bounds), then sends QUIT. A backend
// that wants a PROXY header gets a LOCAL one (v2; UNKNOWN in v1), as HAProxy's checks send:
// the connection is the proxy's own. ctx bounds the whole probe.
func (s *Server) ProbeBackend(ctx context.Context, b *balancer.Backend) error {
	d := backendDialer{
		limits: s.cfg.Load().Limits,
		header: func(v byte) (*proxyproto.Header, error) {
			return &proxyproto.Header{Version: v, Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC}, nil
		},
		obs: nopObserver{},
		log: s.log,
	}
	if b.Config.TLS != balancer.TLSNone {
		d.tls = tlsterm.ForSession(b.Config.TLSConfig)
	}
	conn, _, err := d.dial(ctx, b)
	if err != nil {
		return err
	}
	io.WriteString(conn, "QUIT\r\n") // it greeted: that is the check; QUIT is a courtesy
	return conn.Close()
}

// backendDialer returns the dialer for this session's backend connections.
func (s *session) backendDialer() *backendDialer {
	return &backendDialer{limits: s.cfg.Limits, header: s.proxyHeader, tls: s.bTLS, obs: s.srv.obs, log: s.log}
}

// connectBackend walks the pool's candidates until a backend accepts the connection and greets
// with 220. Outcomes are reported to the pool (passive health) and on a failure the next one
// is tried. With no healthy backend, a pool in panic mode offers them all (logged, counted).
func (s *session) connectBackend(pool *balancer.Pool) (net.Conn, *balancer.Backend, error) {
	order, panicking := pool.Candidates(balancer.Client{Addr: s.clientAddr.Addr(), User: s.user})
	if len(order) == 0 {
		if pool.AllFull() {
			return nil, nil, errBackendFull
		}
		return nil, nil, fmt.Errorf("pool %s: %w", pool.Name, balancer.ErrNoBackend)
	}
	if panicking {
		s.log.Warn("no healthy backend: trying every backend of the pool (panic mode)", "pool", pool.Name, "backends", len(order))
		s.srv.obs.PoolPanic(pool.Name)
	}
	full := 0
	var errs []error
	for _, b := range order {
		if !b.Acquire() {
			full++
			continue
		}
		conn, err := s.dialReported(pool, b)
		if err == nil {
			return conn, b, nil
		}
		b.Release()
		if s.ctx.Err() != nil {
			return nil, nil, err // the session is ending: not the backend's fault
		}
		s.log.Warn("backend failed, trying next", "backend", b.String(), "err", err)
		errs = append(errs, err)
	}
	if full == len(order) {
		return nil, nil, errBackendFull
	}
	return nil, nil, fmt.Errorf("pool %s: %w: %w", pool.Name, balancer.ErrNoBackend, errors.Join(errs...))
}

// dialReported dials b for this session and reports the outcome to pool (passive health),
// unless the session itself is ending.
func (s *session) dialReported(pool *balancer.Pool, b *balancer.Backend) (net.Conn, error) {
	start := time.Now()
	conn, err := s.dialBackend(b)
	switch {
	case err == nil:
		if pool.ReportSession(b, start, true) {
			s.log.Info("backend up", "pool", pool.Name, "backend", b.String(), "by", "session")
		}
	case s.ctx.Err() != nil:
	case pool.ReportSession(b, start, false):
		s.log.Warn("backend down", "pool", pool.Name, "backend", b.String(), "by", "session", "err", err)
	}
	return conn, err
}

// dialBackend connects to b for this session, with a TLS config of the session's own when b
// wants TLS, and leaves the reader in s.br.
func (s *session) dialBackend(b *balancer.Backend) (net.Conn, error) {
	s.bTLS = nil
	if b.Config.TLS != balancer.TLSNone {
		s.bTLS = tlsterm.ForSession(b.Config.TLSConfig)
	}
	conn, r, err := s.backendDialer().dial(s.ctx, b)
	if err != nil {
		return nil, err
	}
	s.br = r
	return conn, nil
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

// backendFailed turns an error on the backend leg during login into the 421 policy.
func (s *session) backendFailed(err error) error {
	var e *endError
	if errors.As(err, &e) {
		return err
	}
	s.log.Warn("backend failed during login", "err", err)
	return end421(CauseBackend, err)
}
