package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/nat"
	"github.com/ftpsproxy/ftpsproxy/tlsterm"
)

// session is one client connection and its backend leg. It is owned by one goroutine at a
// time: the one running Run, or, after a spell of idleness with no goroutine at all, the one
// the idle hand-over started (ownerAway). The reader goroutines only feed it through
// channels (and wake it, connWait). What only some sessions need (a PROXY header's addresses)
// hangs off a pointer, and what the connections know is asked of them: an idle session is
// mostly this struct, which stays within the 1,024-byte allocation class (TestSessionSize).
type session struct {
	srv  *Server
	cfg  *Config         // snapshot taken at connect: a reload does not move a running session
	lc   *ListenerConfig // this listener's settings in cfg
	id   string
	log  *slog.Logger // a sessionHandler's, or discarding (a refused client)
	ctx  *sessionCtx
	done func() // ends ctx and interrupts the session's waits

	raw        net.Conn // the accepted TCP connection, closed on cancellation
	client     net.Conn // raw, or the TLS connection over it
	cr         *bufio.Reader
	clientAddr netip.AddrPort // the client's real address (from the PROXY header when one was accepted)
	localAddr  netip.AddrPort // our end of the client control connection
	header     *headerAddrs   // what a PROXY header said besides the client address, or nil
	deadline   time.Time      // login deadline

	// TLS toward the client (RFC 4217).
	bind   *tlsterm.Binding
	tlsOn  bool
	pbszOK bool
	prot   byte // 'C', 'P', or 0 before any PROT
	sni    string
	// clientCert is the client's verified certificate on the control connection, or nil.
	clientCert  *x509.Certificate
	certSubject string // its subject, for the log

	// Login state.
	user     string
	host     string
	utf8     bool
	loggedIn bool
	ascii    bool // TYPE A in force (for the transfer log)

	// Backend leg, set once logged in.
	backend *balancer.Backend
	pool    string // the pool backend was chosen from, for TransferRecord
	bconn   net.Conn
	br      *bufio.Reader
	bTLS    *tls.Config // this session's TLS config toward the backend (own session cache)

	// The write deadlines of the client and backend control connections (see arm).
	clientWrite, backendWrite writeDeadline

	// Post-login event loop (relay.go).
	cmdc  chan clientEvent // from the client reader
	bw    connWait         // the owner's wait in a backend read, and its wake
	cw    connWait         // the client reader's wait, woken by the idle sweep
	idle  idleReader       // the client reader's hand-over to the poller while idle
	owner ownerAway        // the owner's, likewise
	sweep sweepSlot        // its place in the idle sweep's books (sweep.go)
	queue []clientEvent
	// waited and waitedReply are what next received (kept off its stack).
	waited      clientEvent
	waitedReply replyEvent
	readers     sync.WaitGroup // the client reader

	stats sessionStats
	live  sessionLive // what the admin API may read (sessions.go)
	rnfr  string      // the path of an RNFR the backend accepted, until the RNTO

	// Client data leg.
	pasv    *nat.Lease
	port    netip.AddrPort // PORT/EPRT target
	epsvAll bool

	// The flags below sit together after epsvAll: spread between wider fields, each took
	// eight bytes, and the struct a larger allocation class.
	started  bool // "session start" was logged
	counted  bool // reported to the Observer as a session (health checks are not)
	admitted bool // counted against the session limits (Server.admit)
	// clientStuck: a write to the client's control connection failed (see teardown).
	clientStuck bool
	// healthCheck marks a connection a trusted proxy opened with a PROXY v2 LOCAL header: it
	// is greeted like a client but logged at debug only and counted apart.
	healthCheck bool
}

type sessionStats struct {
	commands  int
	bytesIn   int64 // client to backend
	bytesOut  int64 // backend to client
	transfers int
}

type clientEvent struct {
	cmd Command
	err error // a per-line error (500 reply) or, with io.EOF and others, the end of the connection
}

type replyEvent struct {
	rep Reply
	err error
}

func newSession(srv *Server, l *listener, c net.Conn) *session {
	id := strconv.FormatUint(srv.nextID.Add(1), 36)
	s := &session{
		srv:    srv,
		cfg:    srv.cfg.Load(),
		id:     id,
		raw:    c,
		client: c,
		cr:     bufio.NewReaderSize(c, clientBufSize),
	}
	// done ends the session's context and interrupts its waits. Both exist before the
	// server's books hold the session (track), where Server.interruptAll may call done.
	s.ctx = &sessionCtx{}
	s.done = func() {
		s.ctx.cancel()
		s.interrupt()
	}
	s.live.since = time.Now()
	s.live.active.Store(s.live.since.UnixNano())
	s.lc = s.cfg.listener(l.address)
	if s.lc == nil {
		s.lc = l.last // removed by a reload a moment ago
	}
	s.clientAddr = addrPortOf(c.RemoteAddr())
	s.localAddr = addrPortOf(c.LocalAddr())
	s.initLog(srv.log)
	return s
}

func addrPortOf(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// Run serves the session until it ends, and then closes both legs before it returns; or
// until its owner goes away while the session is idle (away is true, see goAway), and then
// the goroutine that takes the session on finishes it. Its parts are functions of their own
// so that Run's frame, under every wait of an idle session, stays small (see serve).
func (s *session) Run() (away bool) {
	s.begin()
	return s.finish(s.serve())
}

// begin starts the session. The server's end reaches every session it holds through
// Server.interruptAll, which calls done (see sessionCtx); a session tracked after that sees
// the server's context ended here.
func (s *session) begin() {
	s.live.setCancel(s.done)
	if s.srv.hardCtx.Err() != nil {
		s.done()
	}
	s.log.Debug("connection accepted", "listener", s.lc.Address)
}

// finish ends the session with err, unless err is errAway: the owner only left its
// goroutine, and away is true.
func (s *session) finish(err error) (away bool) {
	if err == errAway {
		return true
	}
	s.end(s.srv.hardCtx, err)
	return false
}

// end sends the session's last line, if any, closes both legs and logs the end.
func (s *session) end(parent context.Context, err error) {
	line, cause := finalLine(err)
	if cause == CauseNone && s.ctx.Err() != nil && parent.Err() != nil {
		line, cause = Line421(CauseShutdown), CauseShutdown
	}
	if s.live.closing.Load() {
		line, cause = Line421(CauseAdmin), CauseAdmin
		err = errors.Join(errors.New("closed by an administrator"), err)
	}
	if line != "" {
		s.client.SetWriteDeadline(time.Now().Add(2 * time.Second))
		s.clientWrite = 0
		if _, err := io.WriteString(s.client, line+"\r\n"); err != nil {
			s.clientStuck = true
		}
		s.audit(slog.LevelInfo, "session closed with 421", "cause", cause.String())
		if !s.healthCheck {
			s.srv.obs.Closed421(cause)
		}
	}
	s.teardown()
	s.logEnd(s.live.since, err)
}

// teardown closes both legs, waits for the reader goroutines, and returns resources.
func (s *session) teardown() {
	s.endIdle()
	// A TLS client gets close_notify, which crypto/tls sends in Close, unless a write to it
	// failed: Close then waits up to 5 s for close_notify to a client that stopped reading,
	// so the write side is shut first and that write fails at once. (Shutting it first every
	// time cost a system call per session and lost close_notify.)
	if tc, ok := s.raw.(*net.TCPConn); ok && (!s.tlsOn || s.clientStuck) {
		tc.CloseWrite()
	}
	s.client.Close()
	if s.client != s.raw { // closing it again would only make an error to drop
		s.raw.Close()
	}
	if s.bconn != nil {
		s.bconn.Close()
	}
	s.done() // unblocks the readers' sends
	s.readers.Wait()
	if s.pasv != nil {
		s.pasv.Release()
		s.pasv = nil
	}
	if s.backend != nil {
		s.backend.Release()
	}
	if s.admitted {
		s.srv.leave(s.clientAddr.Addr())
	}
}

var errQuit = errors.New("client quit")

// serve runs the phases of the session: greeting, login, then the logged-in phase. Each
// phase is a function of its own: an idle session waits under serve's frame, and a goroutine
// stack only shrinks to a size four times what is in use (8 KiB instead of 4 KiB per idle
// session if the frames under the wait pass about 1.2 KiB).
func (s *session) serve() error {
	if err := s.accept(); err != nil {
		return err
	}
	if err := s.greetAndLogin(); err != nil {
		return err
	}
	return s.serveLoggedIn()
}

// accept checks a new connection before anything is sent: PROXY header, allow/deny lists,
// bans, session limits (a session admitted here leaves in teardown).
func (s *session) accept() error {
	if s.lc.ProxyProtocol {
		if err := s.readProxyHeader(); err != nil {
			s.srv.limitLog.Warn(s.log, "connection refused", "err", err)
			return err
		}
	}
	if err := s.checkListenerAccess(); err != nil {
		return err
	}
	if s.healthCheck {
		s.srv.obs.HealthCheck(s.lc.name())
	} else {
		s.srv.obs.SessionStarted(s.lc.name())
		s.counted = true
	}
	if err := s.refuseBanned("connect"); err != nil {
		return err
	}
	if !s.srv.admit(s.clientAddr.Addr(), s.cfg.Limits) {
		return end421(CauseTooMany, errors.New("session limit reached"))
	}
	s.admitted = true
	return nil
}

// greetAndLogin is the greeting (after the TLS handshake of an implicit listener) and the
// pre-login phase.
func (s *session) greetAndLogin() error {
	lim := s.cfg.Limits
	select {
	case <-s.srv.drain:
		return end421(CauseShutdown, nil)
	default:
	}

	s.deadline = time.Now().Add(orDefault(lim.LoginTimeout, DefaultLoginTimeout))
	if s.lc.TLS.Enabled() {
		s.bind = s.cfg.TLS.NewBinding()
	}
	if s.lc.TLS.Implicit() {
		if err := s.upgradeClient(); err != nil {
			return err
		}
	}
	banner := s.lc.Banner
	if banner == "" {
		banner = DefaultBanner
	}
	if err := s.writeLine(replyGreeting(banner)); err != nil {
		return err
	}

	// A shutdown interrupts a blocked pre-login read; readCommand then answers with the 421.
	stop := context.AfterFunc(s.srv.drainCtx, func() { s.raw.SetReadDeadline(time.Now()) })
	err := s.refuseStrayTLS()
	if err == nil {
		err = s.preLogin()
	}
	if !stop() && err == nil {
		return end421(CauseShutdown, nil) // the drain raced the end of login
	}
	return err
}

// writeLine sends one reply line to the client. Only the owner goroutine writes.
func (s *session) writeLine(line string) error {
	return s.writeRaw([]byte(line + "\r\n"))
}

func (s *session) writeRaw(b []byte) error {
	s.clientWrite.arm(s.client)
	if _, err := s.client.Write(b); err != nil {
		s.clientStuck = true
		return fmt.Errorf("write to client: %w", err)
	}
	return nil
}

// readCommand reads and parses one client line before login, synchronously, under the login
// deadline. Line errors are answered here; ok is false for them.
func (s *session) readCommand() (Command, bool, error) {
	s.client.SetReadDeadline(s.deadline)
	if err := s.ctx.Err(); err != nil {
		// Ended meanwhile (CloseSession): the deadline just set replaced the one that was to
		// interrupt this read.
		return Command{}, false, end421(CauseShutdown, err)
	}
	line, err := ReadLine(s.cr, MaxLine)
	if err != nil {
		if reply := lineErrorReply(err); reply != "" {
			return Command{}, false, s.writeLine(reply)
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			if s.srv.drainCtx.Err() != nil {
				return Command{}, false, end421(CauseShutdown, nil)
			}
			return Command{}, false, end421(CauseTimeout, errors.New("login timeout"))
		}
		return Command{}, false, fmt.Errorf("read from client: %w", err)
	}
	cmd, err := ParseCommand(StripTelnet(line))
	if err != nil {
		return Command{}, false, s.writeLine(lineErrorReply(err))
	}
	s.stats.commands++
	s.logCommand(cmd)
	return cmd, true, nil
}

// lineErrorReply maps a client line error to its 500 reply, or "" for connection errors.
func lineErrorReply(err error) string {
	switch {
	case errors.Is(err, ErrLineTooLong):
		return replyLineTooLong
	case errors.Is(err, ErrBareLF):
		return replyBadLine
	case errors.Is(err, ErrBadChar):
		return replyBadChar
	case errors.Is(err, ErrBadVerb), errors.Is(err, ErrEmptyLine):
		return replyUnknownCmd
	}
	return ""
}

// preLogin answers the commands the proxy handles itself until a login succeeds.
func (s *session) preLogin() error {
	for !s.loggedIn {
		select {
		case <-s.srv.drain:
			return end421(CauseShutdown, nil)
		default:
		}
		cmd, ok, err := s.readCommand()
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if handled, err := s.localCommand(cmd); handled || err != nil {
			if err != nil {
				return err
			}
			continue
		}
		switch cmd.Verb {
		case "USER":
			if s.lc.TLS.RequiresAUTH() && !s.tlsOn {
				err = s.writeLine(replyTLSRequired)
				break
			}
			if cmd.Arg == "" {
				err = s.writeLine(replyUserEmpty)
				break
			}
			if err := s.refuseBanned("USER"); err != nil {
				return err
			}
			s.user = cmd.Arg
			s.live.setUser(s.user)
			s.logStart()
			err = s.writeLine(replyUserOK)
		case "PASS":
			if s.user == "" {
				err = s.writeLine(replyUserFirst)
				break
			}
			if err := s.loginAttempt(); err != nil {
				return err
			}
			err = s.login(cmd.Arg)
		default:
			err = s.writeLine(replyNotLoggedIn)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// localCommand answers the commands the proxy owns in every phase (SPEC §4). It reports
// whether cmd was one of them.
func (s *session) localCommand(cmd Command) (bool, error) {
	var reply string
	switch cmd.Verb {
	case "AUTH":
		return true, s.auth(cmd.Arg)
	case "PBSZ":
		reply = s.pbsz(cmd.Arg)
	case "PROT":
		reply = s.protCmd(cmd.Arg)
	case "ADAT":
		reply = replyAdat
	case "MIC", "CONF", "ENC":
		reply = replyProtected
	case "CCC":
		reply = replyCCC
	case "HOST":
		switch {
		case s.loggedIn || s.user != "":
			reply = replyHostLate
		case !validHost(cmd.Arg):
			reply = replyHostBad
		default:
			s.host = strings.ToLower(cmd.Arg)
			reply = replyHostOK
		}
	case "REIN":
		reply = replyReinNo
	}
	if !s.loggedIn && reply == "" {
		switch cmd.Verb {
		case "FEAT":
			return true, s.writeRaw(feat(s.lc.TLS.Enabled(), nil))
		case "OPTS":
			if strings.EqualFold(strings.TrimSpace(cmd.Arg), "UTF8 ON") || strings.EqualFold(strings.TrimSpace(cmd.Arg), "UTF8") {
				s.utf8 = true
				reply = replyUTF8
			} else {
				reply = replyOptsBad
			}
		case "SYST":
			reply = replySyst
		case "NOOP":
			reply = replyNoop
		case "CLNT":
			reply = replyClnt
		case "HELP":
			return true, s.writeRaw([]byte(replyHelpPreLogin))
		case "QUIT":
			s.writeLine(replyGoodbye)
			return true, errQuit
		}
	}
	if reply == "" {
		return false, nil
	}
	return true, s.writeLine(reply)
}

// validHost accepts an RFC 7151 HOST argument: a DNS name or an IP literal, optionally in
// brackets, with no port.
func validHost(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		_, err := netip.ParseAddr(h[1 : len(h)-1])
		return err == nil
	}
	for _, r := range h {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

// logCommand logs a client command at debug level, PASS redacted. The check first keeps the
// per-command cost nil when debug is off.
func (s *session) logCommand(cmd Command) {
	s.live.setCommand(cmd)
	if s.log.Enabled(s.ctx, slog.LevelDebug) {
		s.log.Debug("command", "cmd", cmd.LogString())
	}
}

// epoch starts the monotonic clock of writeDeadline.
var epoch = time.Now()

// writeDeadline is a control connection's write deadline as the session last set it, in
// nanoseconds after epoch (0: not set by arm, or set since by someone else). Control writes
// are small and frequent (a reply, a command); each must end within writeTimeout.
type writeDeadline int64

// arm makes sure a write to c that starts now has at least writeTimeout/2 and at most
// writeTimeout before c's write deadline. The deadline (a runtime timer) moves only when less
// than half of it is left, not before every reply and command. Code that sets c's write
// deadline itself sets the writeDeadline to 0.
func (d *writeDeadline) arm(c net.Conn) {
	now := time.Since(epoch) // monotonic: a wall-clock step moves neither this nor the deadline
	if time.Duration(*d)-now >= writeTimeout/2 {
		return
	}
	*d = writeDeadline(now + writeTimeout)
	c.SetWriteDeadline(epoch.Add(now + writeTimeout))
}
