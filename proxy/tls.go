package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/ftpsproxy/ftpsproxy/tlsterm"
)

func (s *session) handshakeTimeout() time.Duration {
	return orDefault(s.cfg.Limits.TLSHandshake, DefaultTLSHandshake)
}

// upgradeClient runs the TLS handshake on the control connection (implicit listeners at
// connect, explicit ones after 234). A failed handshake ends the session without a reply:
// there is no channel left to send one on.
func (s *session) upgradeClient() error {
	tc := tls.Server(&bufferedConn{Conn: s.raw, r: s.cr}, s.bind.Control())
	err := s.controlHandshake(tc)
	s.srv.obs.TLSHandshake("client", err)
	if err != nil {
		return s.clientTLSFailed("control", err)
	}
	st := tc.ConnectionState()
	s.noteClientCert(st)
	s.client = tc
	s.cr = bufio.NewReaderSize(tc, clientBufSize)
	s.tlsOn = true
	s.sni = strings.ToLower(st.ServerName)
	s.log.Debug("client TLS established", "tls_version", tls.VersionName(st.Version), "sni", s.sni)
	return nil
}

// controlHandshake runs tc's server handshake over the control connection on a goroutine of
// its own that ends with it. A handshake (certificate signing, key exchange) takes stack that
// an idle session would keep for hours, until collections shrink it: the session's owner
// goroutine only waits here. The control connection's deadline bounds it and the session's
// end ends it (interrupt closes the connection or moves its deadline): no context, whose
// cancellation crypto/tls would watch with one more goroutine per handshake. The deadline is
// left in place: every read before login sets its own, and the next write arms a new one.
func (s *session) controlHandshake(tc *tls.Conn) error {
	s.raw.SetDeadline(time.Now().Add(s.handshakeTimeout()))
	s.clientWrite = 0
	if err := s.ctx.Err(); err != nil { // ended before the deadline above replaced interrupt's
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- tc.Handshake() }()
	return <-errc
}

// errPipelined ends a session whose client sent bytes after AUTH TLS before the handshake:
// those bytes would be taken as plaintext commands injected ahead of the TLS layer.
var errPipelined = errors.New("bytes pipelined after AUTH TLS")

// auth answers AUTH (RFC 4217 §4).
func (s *session) auth(arg string) error {
	switch {
	case !s.lc.TLS.Enabled():
		return s.writeLine(replyAuthNone)
	case s.tlsOn:
		return s.writeLine(replyAuthTwice)
	case s.loggedIn:
		return s.writeLine(replyAuthLate)
	}
	mech := strings.ToUpper(strings.TrimSpace(arg))
	if mech != "TLS" && mech != "SSL" && mech != "TLS-C" && mech != "TLS-P" {
		return s.writeLine(replyAuthMech)
	}
	if s.cr.Buffered() > 0 {
		return errPipelined
	}
	if err := s.writeLine(replyAuthOK(mech)); err != nil {
		return err
	}
	if err := s.upgradeClient(); err != nil {
		return err
	}
	// RFC 4217 §4: a new AUTH resets the login state.
	s.user = ""
	return nil
}

// pbsz answers PBSZ: only 0 makes sense on a stream protocol; the reply says so.
func (s *session) pbsz(arg string) string {
	if !s.tlsOn {
		return replyPbszEarly
	}
	arg = strings.TrimSpace(arg)
	if arg == "" || strings.Trim(arg, "0123456789") != "" || len(arg) > 10 {
		return replyPbszBad
	}
	s.pbszOK = true
	return replyPbszOK
}

// protCmd answers PROT.
func (s *session) protCmd(arg string) string {
	if !s.pbszOK {
		return replyProtEarly
	}
	switch strings.ToUpper(strings.TrimSpace(arg)) {
	case "C":
		if s.lc.TLS.RequiresAUTH() {
			return replyProtRequired
		}
		s.prot = 'C'
		return replyProtC
	case "P":
		s.prot = 'P'
		return replyProtP
	case "S", "E":
		return replyProtLevel
	}
	return replyProtUnknown
}

// clientDataTLS runs the server-side handshake on a protected client data connection and
// enforces data_session_reuse.
func (s *session) clientDataTLS(c net.Conn, upload bool) (net.Conn, error) {
	tc := tls.Server(c, s.bind.Data(upload, s.cfg.RequireDataReuse))
	ctx, cancel := context.WithTimeout(s.ctx, s.handshakeTimeout())
	defer cancel()
	err := tc.HandshakeContext(ctx)
	s.srv.obs.TLSHandshake("client", err)
	if err != nil {
		tc.Close()
		return nil, s.clientTLSFailed("data", err)
	}
	if s.cfg.RequireDataReuse && !s.bind.Resumed(tc) {
		tc.Close()
		return nil, tlsterm.ErrNotResumed
	}
	return tc, nil
}

// backendTLS starts the client-side handshake toward a backend on c (control or data).
func (s *session) backendTLS(ctx context.Context, c net.Conn) (*tls.Conn, error) {
	return s.backendDialer().handshake(ctx, c)
}

// errStrayTLS ends a session whose client starts a TLS handshake on a port that is not
// implicit TLS (an implicit-FTPS client pointed at an explicit port): no FTP reply can reach
// such a client, and its ClientHello is not a command.
var errStrayTLS = errors.New("TLS handshake on a plain FTP control connection")

// refuseStrayTLS looks at the first byte a client sends, without consuming it.
func (s *session) refuseStrayTLS() error {
	if s.tlsOn {
		return nil
	}
	s.raw.SetReadDeadline(s.deadline)
	b, err := s.cr.Peek(1)
	if err == nil && b[0] == 0x16 { // TLS handshake record
		s.srv.limitLog.Warn(s.log, "client sent a TLS handshake on a plain control connection; is it configured for implicit FTPS?")
		return errStrayTLS
	}
	// Errors (timeout, drain, close) surface again, mapped, at the first readCommand.
	return nil
}

// clientTLSFailed logs (rate-limited: any client can cause it) a failed client handshake on
// the control or a data connection with its cause in words, and returns the error saying it.
func (s *session) clientTLSFailed(conn string, err error) error {
	reason := tlsterm.FailureWords(tlsterm.FailureReason(err))
	s.srv.limitLog.Warn(s.log, "client TLS handshake failed", "conn", conn, "reason", reason, "err", err)
	return fmt.Errorf("client %s TLS handshake failed (%s): %w", conn, reason, err)
}
