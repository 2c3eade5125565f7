package proxy

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// maxQueued bounds the client commands held while one is in flight; past it the client reader
// stops (TCP back-pressure) instead of growing memory.
const maxQueued = 16

// serveLoggedIn is the logged-in phase: client commands are parsed, re-serialised and relayed;
// backend replies are framed and relayed byte-exact, except the ones the proxy rewrites.
// ("Relay" in this package always means that: forwarding control-channel commands and
// replies. Data bytes are moved by the pump, pump.go.)
//
// A goroutine reads the client; the owner reads the backend itself, in next (in a transfer's
// wait while one runs), and the client reader wakes it (connWait). A session idle for a
// while gives both goroutines up to the idle poller (idle.go).
func (s *session) serveLoggedIn() error {
	s.cmdc = make(chan clientEvent, 1)
	s.bw.setConn(s.bconn)
	s.enableIdleHandOver()
	s.enableOwnerAway()
	s.readers.Add(1)
	go s.readClient()
	return s.relayLoop()
}

// relayLoop serves client commands until the session ends, or until its owner goes away
// (errAway) from an idle wait; ownerBack runs it again when an event comes.
func (s *session) relayLoop() error {
	for {
		if err := s.serveNext(); err != nil {
			return err
		}
	}
}

// readClient feeds parsed client lines to the owner until the connection ends, or until the
// idle sweep finds it waiting and it hands the wait over to the poller (handOverIdle), which
// starts it again when the client speaks. Each line is in the channel before the owner is
// woken: an owner that checks the channel after parking sees it, is parked when the wake
// comes, or is away and called back.
func (s *session) readClient() {
	defer s.readers.Done()
	if s.cr == nil { // given up by the reader before (handOverIdle)
		s.cr = takeReader(&clientReaders, s.client)
	}
	for {
		s.cw.park(time.Time{})
		_, err := s.cr.Peek(1)
		if woken, _ := s.cw.unpark(); woken { // the idle sweep
			if isTimeout(err) {
				if s.handOverIdle() {
					return
				}
				continue
			}
			s.cw.setDeadline(time.Time{}) // the first byte came before the wake
		}
		line, err := ReadLine(s.cr, MaxLine)
		var ev clientEvent
		switch {
		case err == nil:
			ev.cmd, ev.err = ParseCommand(StripTelnet(line))
		case lineErrorReply(err) != "":
			ev.err = err
		default:
			ev.err = fmt.Errorf("read from client: %w", err)
		}
		select {
		case s.cmdc <- ev:
			s.wakeOwner()
		case <-s.ctx.Done():
			return
		}
		if err != nil && lineErrorReply(err) == "" {
			return
		}
		if ev.err == nil && ev.cmd.Verb == "QUIT" {
			// The session ends at QUIT, once what is queued before it is done: nothing after
			// it is read, and teardown then finds no reader in the client's socket to
			// interrupt and wait for (a wake-up each way per session). A client that leaves
			// while a transfer before its QUIT still runs is seen by the transfer's data
			// legs and deadlines instead.
			return
		}
	}
}

// connEnded reports a client event that ends the session (not a per-line 500).
func (ev clientEvent) connEnded() bool {
	return ev.err != nil && lineErrorReply(ev.err) == ""
}

// clientLines is the channel of client lines to read while a command is in flight: nil once
// maxQueued lines wait, so the client reader blocks (TCP back-pressure) instead of the queue
// growing.
func (s *session) clientLines() <-chan clientEvent {
	if len(s.queue) >= maxQueued {
		return nil
	}
	return s.cmdc
}

// serveNext handles the next client command: a queued one, or one read while nothing is in
// flight. Meanwhile it watches the backend (a 421 ends the session), the idle timeout and a
// shutdown.
func (s *session) serveNext() error {
	if len(s.queue) > 0 {
		return s.handleQueued()
	}
	deadline := s.owner.leftWith // an owner back from away keeps the deadline it left with
	s.owner.leftWith = time.Time{}
	if deadline.IsZero() {
		deadline = time.Now().Add(s.idleTimeout())
	}
	for {
		if done, err := s.woken(s.next(deadline, true, true)); done {
			return err
		}
	}
}

func (s *session) handleQueued() error {
	ev := s.queue[0]
	s.queue = s.queue[1:]
	return s.handle(ev)
}

// woken acts on what ended an idle wait; done is false after an unsolicited backend reply
// that did not end the session.
func (s *session) woken(what int) (done bool, err error) {
	switch what {
	case waitCommand:
		ev := s.waited
		s.waited = clientEvent{}
		return true, s.handle(ev)
	case waitReply:
		rep := s.waitedReply
		s.waitedReply = replyEvent{}
		err := s.unsolicited(rep)
		return err != nil, err
	case waitTimeout:
		return true, end421(CauseTimeout, errIdle)
	case waitDrain:
		return true, end421(CauseShutdown, nil)
	case waitAway:
		return true, errAway
	}
	return true, end421(CauseShutdown, s.ctx.Err())
}

// What ended next.
const (
	waitCommand = iota // s.waited holds it
	waitReply          // s.waitedReply holds it (a reply, or the backend's read error)
	waitTimeout
	waitDrain
	waitAway // the owner's goroutine ends; the session waits in the poller (goAway)
	waitDone
)

// next is the owner's wait outside transfers: for a backend reply, the deadline, the end of
// the session, a client line (when lines is true) and a drain (when drain is true). It
// parks in a read of the backend (connWait) and leaves what it received in the session
// rather than on its stack: an idle session's stack is sized by the frames under this wait
// (see serve).
func (s *session) next(deadline time.Time, lines, drain bool) int {
	for {
		s.bw.park(deadline)
		if what, ok := s.pending(lines, drain); ok {
			s.bw.unpark()
			return what
		}
		_, err := s.br.Peek(1)
		woken, swept := s.bw.unpark()
		switch {
		case err == nil:
			s.waitedReply = s.readReply()
			if s.waitedReply.err != nil && s.ctx.Err() != nil {
				return waitDone // bw.stop cut the reply: not the backend's fault
			}
			return waitReply
		case !isTimeout(err):
			s.waitedReply = replyEvent{err: err}
			return waitReply
		case s.ctx.Err() != nil: // bw.stop
			return waitDone
		case !woken:
			if s.bw.endedEarly() {
				continue // at the deadline in force, a little before this wait's (armLocked)
			}
			return waitTimeout
		case swept && lines && drain && s.goAway(deadline):
			return waitAway
		}
		// Woken: what woke the wait is most likely there to take, without parking again.
		if what, ok := s.pending(lines, drain); ok {
			return what
		}
	}
}

// pending takes the first event that needs no read: a client line, the end of the session,
// a drain.
func (s *session) pending(lines, drain bool) (int, bool) {
	if lines {
		select {
		case s.waited = <-s.cmdc:
			return waitCommand, true
		default:
		}
	}
	if s.ctx.Err() != nil {
		return waitDone, true
	}
	if drain {
		select {
		case <-s.srv.drain:
			return waitDrain, true
		default:
		}
	}
	return 0, false
}

// readReply reads the reply whose first byte is buffered: a backend that began a reply has
// the idle timeout to finish it (at least 63/64 of it, see armLocked).
func (s *session) readReply() replyEvent {
	s.bw.setDeadline(time.Now().Add(s.idleTimeout()))
	rep, err := ReadReply(s.br)
	if err == nil && rep.Code >= 600 {
		err = fmt.Errorf("%w: protected reply %d is not relayed", ErrBadReply, rep.Code)
	}
	return replyEvent{rep: rep, err: err}
}

var errIdle = errors.New("idle timeout")

func (s *session) idleTimeout() time.Duration {
	return orDefault(s.cfg.Limits.IdleTimeout, DefaultIdleTimeout)
}

// unsolicited handles a backend reply that no command is waiting for.
func (s *session) unsolicited(ev replyEvent) error {
	if ev.err != nil {
		return s.backendLost(ev.err)
	}
	if ev.rep.Code == 421 {
		return backend421(ev.rep.Raw)
	}
	s.srv.limitLog.Warn(s.log, "unsolicited reply from backend dropped", "code", ev.rep.Code)
	return nil
}

// backendLost is the 421 policy for a backend control connection that failed.
func (s *session) backendLost(err error) error {
	s.log.Warn("backend control connection lost", "err", err)
	return end421(CauseBackend, err)
}

// handle dispatches one client event.
func (s *session) handle(ev clientEvent) error {
	if ev.err != nil {
		if ev.connEnded() {
			return ev.err
		}
		return s.writeLine(lineErrorReply(ev.err))
	}
	cmd := ev.cmd
	s.stats.commands++
	s.logCommand(cmd)
	if handled, err := s.localCommand(cmd); handled || err != nil {
		return err
	}
	switch cmd.Verb {
	case "USER", "PASS":
		return s.writeLine(replyLoggedIn)
	case "PASV", "EPSV", "PORT", "EPRT", "LPRT", "LPSV", "SPSV", "CPSV", "ESTP", "ESTA":
		return s.dataSetup(cmd)
	case "RETR", "STOR", "STOU", "APPE", "LIST", "NLST", "MLSD":
		return s.transfer(cmd)
	case "FEAT":
		return s.relayFeat(cmd)
	case "TYPE":
		code, err := s.relayCommandCode(cmd)
		if err == nil && code == 200 {
			s.ascii = strings.HasPrefix(strings.ToUpper(cmd.Arg), "A")
		}
		return err
	case "QUIT":
		rep, err := s.roundTrip(cmd.String())
		if err != nil {
			s.writeLine(replyGoodbye)
			return errQuit
		}
		s.writeRaw(rep.Raw)
		return errQuit
	}
	return s.relayCommand(cmd)
}

// sendBackend writes one re-serialised command to the backend.
func (s *session) sendBackend(line string) error {
	s.backendWrite.arm(s.bconn)
	if _, err := io.WriteString(s.bconn, line+"\r\n"); err != nil {
		return s.backendLost(fmt.Errorf("write to backend: %w", err))
	}
	return nil
}

// awaitReply waits for the next backend reply. Client commands that arrive meanwhile are
// queued, in order, for after the command in flight; a client that goes away ends the wait.
// A backend silent for the idle timeout is treated as lost.
func (s *session) awaitReply() (Reply, error) {
	deadline := time.Now().Add(s.idleTimeout())
	for {
		switch s.next(deadline, len(s.queue) < maxQueued, false) {
		case waitReply:
			ev := s.waitedReply
			s.waitedReply = replyEvent{}
			if ev.err != nil {
				return Reply{}, s.backendLost(ev.err)
			}
			return ev.rep, nil
		case waitCommand:
			ev := s.waited
			s.waited = clientEvent{}
			if ev.connEnded() {
				return Reply{}, ev.err
			}
			s.queue = append(s.queue, ev)
		case waitTimeout:
			return Reply{}, s.backendLost(errors.New("no reply from the backend within the idle timeout"))
		default:
			return Reply{}, end421(CauseShutdown, s.ctx.Err())
		}
	}
}

// roundTrip sends a command and returns its final reply, dropping preliminary ones (used for
// the proxy's own commands on the backend leg).
func (s *session) roundTrip(line string) (Reply, error) {
	if err := s.sendBackend(line); err != nil {
		return Reply{}, err
	}
	for {
		rep, err := s.awaitReply()
		if err != nil || !rep.Preliminary() {
			return rep, err
		}
	}
}

// relayCommand forwards a command and relays every reply up to the final one. A backend 421
// ends the session with that line.
func (s *session) relayCommand(cmd Command) error {
	code, err := s.relayCommandCode(cmd)
	if err == nil {
		s.auditFileOp(cmd, code)
	}
	return err
}

// relayCommandCode is relayCommand that also returns the final reply's code.
func (s *session) relayCommandCode(cmd Command) (int, error) {
	if err := s.sendBackend(cmd.String()); err != nil {
		return 0, err
	}
	for {
		rep, err := s.awaitReply()
		if err != nil {
			return 0, err
		}
		if rep.Code == 421 {
			return 0, backend421(rep.Raw)
		}
		if err := s.writeRaw(rep.Raw); err != nil {
			return 0, err
		}
		if !rep.Preliminary() {
			return rep.Code, nil
		}
	}
}

// relayFeat forwards FEAT and rewrites the backend's feature list: the proxy's own features
// (data-channel translation, TLS toward the client) replace the backend's, and features it
// cannot relay are removed.
func (s *session) relayFeat(cmd Command) error {
	rep, err := s.roundTrip(cmd.String())
	if err != nil {
		return err
	}
	if rep.Code == 421 {
		return backend421(rep.Raw)
	}
	if rep.Code != 211 {
		return s.writeRaw(feat(s.lc.TLS.Enabled(), nil))
	}
	return s.writeRaw(feat(s.lc.TLS.Enabled(), rep.Raw))
}
