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
func (s *session) serveLoggedIn() error {
	s.startReaders()
	for {
		if err := s.serveNext(); err != nil {
			return err
		}
	}
}

// startReaders starts the two reader goroutines of the logged-in phase.
func (s *session) startReaders() {
	s.cmdc = make(chan clientEvent)
	s.repc = make(chan replyEvent)
	s.readers.Add(2)
	go s.readClient()
	go s.readBackend()
}

// readClient feeds parsed client lines to the owner until the connection ends.
func (s *session) readClient() {
	defer s.readers.Done()
	for {
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
		case <-s.ctx.Done():
			return
		}
		if err != nil && lineErrorReply(err) == "" {
			return
		}
	}
}

// readBackend feeds framed backend replies to the owner until the connection ends.
func (s *session) readBackend() {
	defer s.readers.Done()
	for {
		rep, err := ReadReply(s.br)
		if err == nil && rep.Code >= 600 {
			err = fmt.Errorf("%w: protected reply %d is not relayed", ErrBadReply, rep.Code)
		}
		select {
		case s.repc <- replyEvent{rep: rep, err: err}:
		case <-s.ctx.Done():
			return
		}
		if err != nil {
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
	idle := s.idleTimer()
	for {
		if done, err := s.woken(s.waitIdle(idle.C, s.ctx.Done())); done {
			return err
		}
	}
}

func (s *session) handleQueued() error {
	ev := s.queue[0]
	s.queue = s.queue[1:]
	return s.handle(ev)
}

// woken acts on what ended waitIdle; done is false after an unsolicited backend reply that
// did not end the session.
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
	}
	return true, end421(CauseShutdown, s.ctx.Err())
}

// What ended waitIdle.
const (
	waitCommand = iota // s.waited holds it
	waitReply          // s.waitedReply holds it
	waitTimeout
	waitDrain
	waitDone
)

// waitIdle is the wait of an idle session. It is kept apart and small, like every frame
// under it, and leaves what it received in the session rather than on its stack: an idle
// session's stack is sized by these frames (see serve).
func (s *session) waitIdle(idle <-chan time.Time, done <-chan struct{}) int {
	select {
	case s.waited = <-s.cmdc:
		return waitCommand
	case s.waitedReply = <-s.repc:
		return waitReply
	case <-idle:
		return waitTimeout
	case <-s.srv.drain:
		return waitDrain
	case <-done:
		return waitDone
	}
}

var errIdle = errors.New("idle timeout")

// idleTimer returns the session's timer set to the idle timeout. One timer serves every wait
// of the owner (there is one at a time), so a command costs no timer allocation; since Go
// 1.23 Reset also discards an expiry nobody received.
func (s *session) idleTimer() *time.Timer {
	d := orDefault(s.cfg.Limits.IdleTimeout, DefaultIdleTimeout)
	if s.idle == nil {
		s.idle = time.NewTimer(d)
	} else {
		s.idle.Reset(d)
	}
	return s.idle
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
	s.bconn.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := io.WriteString(s.bconn, line+"\r\n"); err != nil {
		return s.backendLost(fmt.Errorf("write to backend: %w", err))
	}
	return nil
}

// awaitReply waits for the next backend reply. Client commands that arrive meanwhile are
// queued, in order, for after the command in flight; a client that goes away ends the wait.
// A backend silent for the idle timeout is treated as lost.
func (s *session) awaitReply() (Reply, error) {
	timer := s.idleTimer()
	for {
		select {
		case ev := <-s.repc:
			if ev.err != nil {
				return Reply{}, s.backendLost(ev.err)
			}
			return ev.rep, nil
		case ev := <-s.clientLines():
			if ev.connEnded() {
				return Reply{}, ev.err
			}
			s.queue = append(s.queue, ev)
		case <-timer.C:
			return Reply{}, s.backendLost(errors.New("no reply from the backend within the idle timeout"))
		case <-s.ctx.Done():
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
