package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/ftpsproxy/ftpsproxy/tlsterm"
)

// maxHeldReplyBytes bounds the backend reply bytes held while the data still flows toward
// the client (a final reply must not overtake the data). One reply is bounded by the framer
// (maxReplyBytes); a backend that keeps sending replies during a transfer ends the session
// once this many bytes wait.
const maxHeldReplyBytes = 64 << 10

// transfer is one data transfer (RETR, STOR, STOU, APPE, LIST, NLST, MLSD), from the client's
// data connection to its transfer-log record. The session's owner goroutine drives it: run
// waits for the next event and calls the one method for it (clientDataConnected,
// backendDataConnected, pumpFinished, backendReply, abort and clientGone through
// clientEvent, tick and checkProgress for the deadlines). Every wait has a deadline: the
// legs' connect and handshake timeouts, data_timeout while bytes should move, data_timeout
// again for the backend's final reply once they stopped, abortReplyTimeout (or data_timeout
// when shorter) for ABOR.
type transfer struct {
	s         *session
	cmd       Command
	up        bool
	protected bool // PROT P: the proxy sent its own 150
	start     time.Time

	client     net.Conn // the client's data connection (TLS over clientTCP when protected)
	clientTCP  net.Conn
	backend    net.Conn // the backend's, once connected (TLS over backendTCP when that leg is)
	backendTCP net.Conn
	leg        chan legResult     // the backend data connection being made; nil once settled
	legResult  legResult          // what wait took from leg
	cancelLeg  context.CancelFunc // stops the leg's accept or handshake
	pumpc      chan pumpResult    // nil until the pump starts, and once it has finished
	result     pumpResult

	dataDone  bool      // no byte will move any more (pump finished, or never to start)
	counted   bool      // the bytes are in the session's live counts (countLive)
	dataEnded time.Time // when dataDone became true
	moved     uint64    // the data sockets' progress at lastMove
	lastMove  time.Time

	held        [][]byte // backend replies waiting for the data toward the client to end
	heldBytes   int
	gotFinal    bool // the transfer's final reply arrived from the backend
	finalCode   int
	failed      bool // the proxy gave the client its final reply (425/426); the backend's are dropped
	clientFinal bool // the client has the transfer's final reply
	replyCode   int  // the final reply code the client got

	abortSent   bool
	clientAbort bool // the ABOR came from the client
	abortDone   bool // the ABOR's own reply arrived
	abortAt     time.Time
}

// legResult is the backend data connection, or why there is none.
type legResult struct {
	conn net.Conn // TLS over raw when the backend leg is TLS
	raw  net.Conn
	err  error
}

func upload(verb string) bool { return verb == "STOR" || verb == "STOU" || verb == "APPE" }

// transfer runs one data command: the client leg, then the backend leg, then the pump. The
// backend's final reply reaches the client only after the data toward the client has ended.
//
// Under PROT P the proxy sends its own 150 and completes the client's data TLS handshake
// (clients such as ftplib start it only after a 1xx) before the backend is told anything, so
// a refused or failed handshake never starts, truncates or aborts a transfer on the backend.
func (s *session) transfer(cmd Command) error {
	if s.lc.TLS.RequiresAUTH() && s.prot != 'P' {
		return s.writeLine(replyDataTLS)
	}
	if s.pasv == nil && !s.port.IsValid() {
		return s.writeLine(replyNeedData)
	}
	t := &transfer{s: s, cmd: cmd, up: upload(cmd.Verb), protected: s.prot == 'P', start: time.Now()}
	if ok, err := t.clientDataConnected(); !ok || err != nil {
		return err
	}
	if ok, err := t.openBackendLeg(); !ok || err != nil {
		return err
	}
	if ok, err := t.sendCommand(); !ok || err != nil {
		t.closeData()
		return err
	}
	return t.run()
}

// clientDataConnected makes the client's data connection and, under PROT P, sends the
// proxy's own 150 and completes its TLS handshake. ok is false when the transfer ends here
// (the client has its reply).
func (t *transfer) clientDataConnected() (bool, error) {
	s := t.s
	c, err := s.awaitClientData(s.connectTimeout())
	s.clearData()
	var gone *clientGoneError
	if errors.As(err, &gone) {
		s.log.Info("client left before its data connection", "cmd", t.cmd.Verb, "err", gone.err)
		s.leaveBackend(false)
		return false, gone.err
	}
	if err != nil {
		s.log.Warn("client data connection failed", "err", err)
		return false, s.writeLine(replyCantOpen)
	}
	t.client, t.clientTCP = c, c
	if !t.protected {
		return true, nil
	}
	if err := s.writeLine(replyProt150); err != nil {
		c.Close()
		return false, err
	}
	tc, err := s.clientDataTLS(newRecordConn(c), t.up)
	if errors.Is(err, tlsterm.ErrNotResumed) {
		s.log.Warn("client data TLS refused", "err", err)
		return false, s.writeLine(replyReuseRequired)
	}
	if err != nil { // clientDataTLS logged the failed handshake (rate-limited)
		return false, s.writeLine(replyDataTLSFailed)
	}
	t.client = tc
	return true, nil
}

// openBackendLeg prepares the backend's data connection (PASV and dial, or PORT and
// listen); the connection and its TLS handshake complete in the background.
func (t *transfer) openBackendLeg() (bool, error) {
	s := t.s
	conn, accept, err := s.openBackendData(s.connectTimeout())
	if err != nil {
		t.client.Close()
		var e *endError
		if errors.As(err, &e) {
			return false, err
		}
		s.log.Warn("backend data connection failed", "err", err)
		return false, s.writeLine(replyCantOpen)
	}
	t.leg, t.cancelLeg = s.backendDataLeg(conn, accept)
	return true, nil
}

// backendDataLeg completes the backend data connection in the background: conn is the
// dialled connection, or accept takes it; when the backend leg is TLS this is the one place
// that starts its handshake (servers differ on whether they handshake before or after their
// 150, so it runs while the reply is awaited). A dialled plain connection is complete: its
// result is ready without a goroutine or a context. cancel stops the accept or handshake.
// The goroutine wakes the owner (bw) once its result is in the channel.
func (s *session) backendDataLeg(conn net.Conn, accept func(context.Context) (net.Conn, error)) (chan legResult, context.CancelFunc) {
	out := make(chan legResult, 1)
	if conn != nil && s.bTLS == nil {
		out <- legResult{conn: conn, raw: conn}
		return out, func() {}
	}
	ctx, cancel := context.WithCancel(s.ctx)
	go func() {
		out <- s.makeBackendLeg(ctx, conn, accept)
		s.bw.wake()
	}()
	return out, cancel
}

// makeBackendLeg completes the backend data connection: accept when not dialled, then the TLS
// handshake when the backend leg is TLS.
func (s *session) makeBackendLeg(ctx context.Context, raw net.Conn, accept func(context.Context) (net.Conn, error)) legResult {
	var err error
	if raw == nil {
		raw, err = accept(ctx)
	}
	if err != nil || s.bTLS == nil {
		return legResult{conn: raw, raw: raw, err: err}
	}
	tc, err := s.backendTLS(ctx, newRecordConn(raw))
	if err != nil {
		return legResult{err: fmt.Errorf("backend data TLS: %w", err)}
	}
	return legResult{conn: tc, raw: raw}
}

// sendCommand sends the transfer command and waits for the backend's first reply. ok is
// false when the backend refuses the transfer outright (its reply is relayed).
func (t *transfer) sendCommand() (bool, error) {
	s := t.s
	if err := s.sendBackend(t.cmd.String()); err != nil {
		return false, err
	}
	rep, err := s.awaitReply()
	if err != nil {
		return false, err
	}
	if !rep.Preliminary() {
		if rep.Code == 421 {
			return false, backend421(rep.Raw)
		}
		return false, s.writeRaw(rep.Raw)
	}
	if t.protected {
		return true, nil
	}
	return true, s.writeRaw(rep.Raw)
}

// run waits for the transfer's events until the data has ended, the final reply is relayed
// and any ABOR is answered, then records the transfer. The owner waits as it does between
// commands, in a read of the backend (wait), and reads the backend's replies itself; the
// backend data leg, the pump and the client reader wake it when they have something for it,
// and the read's deadline is the next look at the transfer's deadlines (tick).
func (t *transfer) run() error {
	s := t.s
	defer t.closeData()
	every := t.checkEvery()
	t.lastMove = time.Now()
	nextTick := t.lastMove.Add(every)
	for !t.over() {
		var err error
		switch t.wait(nextTick) {
		case xferLeg:
			r := t.legResult
			t.legResult = legResult{}
			err = t.backendDataConnected(r)
		case xferPump:
			err = t.pumpFinished()
		case xferReply:
			ev := s.waitedReply
			s.waitedReply = replyEvent{}
			err = t.backendReply(ev)
		case xferLine:
			ev := s.waited
			s.waited = clientEvent{}
			err = t.clientEvent(ev)
		case xferDone:
			err = end421(CauseShutdown, s.ctx.Err()) // the deferred closeData ends the data legs
		}
		if err != nil {
			return err
		}
		if now := time.Now(); !now.Before(nextTick) {
			if err := t.tick(now); err != nil {
				return err
			}
			nextTick = now.Add(every)
		}
	}
	t.record()
	return nil
}

// What ended a transfer's wait.
const (
	xferLeg   = iota // the backend data connection is made or failed: t.legResult
	xferPump         // the pump finished: t.result
	xferReply        // s.waitedReply holds a backend reply, or the backend's read error
	xferLine         // s.waited holds a client line
	xferTick         // the deadline: time to look at the transfer's deadlines
	xferDone         // the session is ending
)

// wait is the owner's wait during a transfer, like next between commands: parked in a read
// of the backend until deadline, woken by the events that come through channels (the data
// leg, the pump, a client line) or the end of the session, which it checks after parking. A
// reply is taken once it is whole in the read buffer: a backend that stops in the middle of
// one holds nothing up (the client leaving, ABOR, the transfer's deadlines), and its partial
// reply stays buffered. Only a partial reply that fills the buffer is read on in place,
// within the idle timeout, as between commands.
func (t *transfer) wait(deadline time.Time) int {
	s := t.s
	need := 1 // the bytes to wait for: one, or one more than the partial reply buffered
	for {
		s.bw.park(deadline)
		if what, ok := t.pending(); ok {
			s.bw.unpark()
			return what
		}
		_, err := s.br.Peek(need)
		woken, _ := s.bw.unpark()
		switch {
		case err == nil:
			if b, _ := s.br.Peek(s.br.Buffered()); !replyReady(b) && len(b) < s.br.Size() {
				need = len(b) + 1
				continue
			}
			s.waitedReply = s.readReply()
			if s.waitedReply.err != nil && s.ctx.Err() != nil {
				return xferDone // bw.stop cut the reply: not the backend's fault
			}
			return xferReply
		case !isTimeout(err):
			s.waitedReply = replyEvent{err: err}
			return xferReply
		case s.ctx.Err() != nil: // bw.stop
			return xferDone
		case !woken:
			if s.bw.endedEarly() {
				continue // at the deadline in force, a little before this wait's (armLocked)
			}
			return xferTick
		}
		if what, ok := t.pending(); ok { // what woke the wait, most likely
			return what
		}
	}
}

// pending takes the first transfer event that needs no read.
func (t *transfer) pending() (int, bool) {
	s := t.s
	select {
	case t.legResult = <-t.leg:
		return xferLeg, true
	case t.result = <-t.pumpc:
		return xferPump, true
	case s.waited = <-s.clientLines():
		return xferLine, true
	default:
	}
	if s.ctx.Err() != nil {
		return xferDone, true
	}
	return 0, false
}

func (t *transfer) over() bool {
	return t.dataDone && t.gotFinal && (!t.abortSent || t.abortDone)
}

// checkEvery is how often run looks at the data sockets' progress and its deadlines.
func (t *transfer) checkEvery() time.Duration {
	return min(max(t.s.dataTimeout()/5, 10*time.Millisecond), time.Second)
}

// backendDataConnected starts the pump once the backend's data connection is made, or fails
// the transfer toward the client when it could not be made.
func (t *transfer) backendDataConnected(r legResult) error {
	t.leg = nil
	if r.err != nil {
		t.s.log.Warn("backend data connection failed", "err", r.err)
		if t.gotFinal { // the backend's own final reply says how the transfer ended
			t.client.Close()
			t.endData()
			return t.flush()
		}
		return t.fail(replyCantOpen, "backend data connection failed")
	}
	t.backend, t.backendTCP = r.conn, r.raw
	t.s.stats.transfers++
	t.pumpc = make(chan pumpResult, 1)
	t.lastMove = time.Now()
	go pump(t.client, t.backend, t.up, t.pumpc, t.s.bw.wake)
	return nil
}

// pumpFinished acts on the pump's result, which wait took into t.result, and releases the
// replies held back. A data connection that broke before the backend's final reply fails
// the transfer toward the client at once, instead of waiting for a reply that some servers
// never send.
func (t *transfer) pumpFinished() error {
	t.pumpc = nil
	t.endData()
	if err := t.result.err; err != nil && !t.abortSent && !t.gotFinal {
		t.s.log.Warn("data connection failed during the transfer", "err", err)
		return t.fail(replyAborted, "data connection failed")
	}
	return t.flush()
}

// endData marks that no byte will move any more.
func (t *transfer) endData() {
	if !t.dataDone {
		t.dataDone, t.dataEnded = true, time.Now()
	}
}

// backendReply takes one backend reply during the transfer: the transfer's final reply, the
// answer to ABOR, or anything else the backend sends meanwhile.
func (t *transfer) backendReply(ev replyEvent) error {
	if ev.err != nil {
		return t.endSession(t.s.backendLost(ev.err))
	}
	rep := ev.rep
	if rep.Code == 421 {
		return t.endSession(backend421(rep.Raw))
	}
	final := !rep.Preliminary()
	switch {
	case t.abortSent && rep.Code == 225: // "no transfer to abort": the transfer is over too
		if !t.gotFinal && t.clientAbort {
			// The client's transfer was running: it expects the transfer's reply before ABOR's.
			t.held = append(t.held, []byte(replyAborted+"\r\n"))
		}
		t.gotFinal, t.abortDone = true, true
	case final && t.gotFinal && t.abortSent:
		t.abortDone = true
	case final && !t.gotFinal:
		t.gotFinal, t.finalCode = true, rep.Code
		if t.leg != nil && rep.Code >= 400 { // the backend gave up before its data connection was made
			t.closeLeg()
			t.client.Close()
			t.endData()
		}
	}
	switch {
	case t.failed:
		t.s.log.Debug("backend reply after a failed transfer dropped", "code", rep.Code)
		return nil
	case t.dataDone:
		if err := t.flush(); err != nil { // flush also sets clientFinal
			return err
		}
		return t.toClient(rep.Raw)
	}
	return t.hold(rep.Raw)
}

// hold keeps a reply until the data toward the client has ended, within maxHeldReplyBytes.
func (t *transfer) hold(raw []byte) error {
	if t.heldBytes+len(raw) > maxHeldReplyBytes {
		err := fmt.Errorf("backend replies held during a transfer over %d bytes", maxHeldReplyBytes)
		t.s.log.Warn("backend flooded replies during a transfer", "err", err)
		return t.endSession(end421(CauseBackend, err))
	}
	t.held = append(t.held, raw)
	t.heldBytes += len(raw)
	return nil
}

// flush writes the held replies to the client.
func (t *transfer) flush() error {
	for _, raw := range t.held {
		if err := t.toClient(raw); err != nil {
			return err
		}
	}
	t.held, t.heldBytes = nil, 0
	t.clientFinal = t.gotFinal
	return nil
}

// clientEvent takes a client line during the transfer: ABOR acts at once, anything else is
// queued for after it, and a client that left ends the session.
func (t *transfer) clientEvent(ev clientEvent) error {
	s := t.s
	if ev.connEnded() {
		return t.clientGone(ev.err)
	}
	if ev.err == nil && ev.cmd.Verb == "ABOR" && !t.abortSent {
		s.stats.commands++
		s.log.Info("transfer aborted by client", "cmd", t.cmd.Verb)
		t.clientAbort = true
		return t.abort()
	}
	s.queue = append(s.queue, ev)
	return nil
}

// abort closes both data legs and sends ABOR to the backend.
func (t *transfer) abort() error {
	t.closeData()
	t.endData()
	if err := t.s.sendBackend("ABOR"); err != nil {
		return t.endSession(err)
	}
	t.abortSent, t.abortAt = true, time.Now()
	return nil
}

// fail gives the client the transfer's final reply itself (425 when the data connection was
// never made, 426 when it broke or stalled) and aborts the transfer on the backend. The
// backend's replies to the transfer and to ABOR are then awaited, but not relayed.
func (t *transfer) fail(reply, why string) error {
	t.failed, t.clientFinal = true, true
	t.held, t.heldBytes = nil, 0
	t.replyCode = replyCodeOf(reply)
	if err := t.toClient([]byte(reply + "\r\n")); err != nil {
		return err
	}
	t.s.log.Info("transfer failed; aborting it on the backend", "cmd", t.cmd.Verb, "why", why)
	if t.abortSent {
		return nil
	}
	return t.abort()
}

// tick enforces the transfer's deadlines: data_timeout without a byte moving on either data
// connection, data_timeout for the final reply once the data ended, abortReplyTimeout (or
// data_timeout when shorter) for the answer to ABOR.
func (t *transfer) tick(now time.Time) error {
	s := t.s
	switch {
	case t.abortSent && !t.abortDone:
		if now.Sub(t.abortAt) < min(abortReplyTimeout, s.dataTimeout()) {
			return nil
		}
		if t.failed {
			err := errors.New("no reply to ABOR from the backend")
			s.log.Warn("transfer stalled", "err", err)
			return t.endSession(end421(CauseBackend, err))
		}
		s.log.Warn("backend sent no reply to ABOR")
		t.abortDone = true
		if !t.gotFinal {
			t.gotFinal = true
			t.held = append(t.held, []byte(replyAbortOK+"\r\n"))
		}
		return t.flush()
	case t.pumpc != nil:
		return t.checkProgress(now)
	case t.dataDone && !t.gotFinal && now.Sub(t.dataEnded) >= s.dataTimeout():
		err := fmt.Errorf("no final reply from the backend within %s after the data ended", s.dataTimeout())
		s.log.Warn("transfer stalled", "err", err)
		return t.endSession(end421(CauseBackend, err))
	}
	return nil
}

// checkProgress fails the transfer when no byte has moved on its data sockets for
// data_timeout.
func (t *transfer) checkProgress(now time.Time) error {
	moved, ok := progress(t.clientTCP, t.backendTCP)
	if !ok || moved != t.moved {
		t.moved, t.lastMove = moved, now
		return nil
	}
	if now.Sub(t.lastMove) < t.s.dataTimeout() {
		return nil
	}
	t.s.log.Warn("transfer stalled: no data moved", "data_timeout", t.s.dataTimeout().String(), "cmd", t.cmd.Verb)
	t.closeData()
	t.endData()
	return t.fail(replyAborted, "data_timeout")
}

// toClient writes a reply to the client; a client that cannot be written to has gone.
func (t *transfer) toClient(raw []byte) error {
	t.countLive()
	if err := t.s.writeRaw(raw); err != nil {
		return t.clientGone(err)
	}
	return nil
}

// clientGone ends the session at once when the client's control connection ends during a
// transfer: the data legs are closed, and the backend gets ABOR then QUIT, so its session
// and the backend slot are freed now, not when the transfer would have ended.
func (t *transfer) clientGone(err error) error {
	s := t.s
	s.log.Info("client left during a transfer", "cmd", t.cmd.Verb, "err", err)
	t.closeData()
	s.leaveBackend(true)
	return err
}

// endSession closes the data legs and ends the session with err. A client still waiting for
// its transfer's final reply gets 426 before the 421.
func (t *transfer) endSession(err error) error {
	t.closeData()
	if !t.clientFinal {
		t.s.writeLine(replyAborted)
	}
	return err
}

// closeData closes both data connections and waits for the goroutines that use them.
func (t *transfer) closeData() {
	if t.client != nil {
		t.client.Close()
	}
	if t.backend != nil {
		t.backend.Close()
	}
	t.closeLeg()
	if t.pumpc != nil {
		t.result = <-t.pumpc
		t.pumpc = nil
	}
}

// closeLeg stops a backend data connection still being made and closes it if it was.
func (t *transfer) closeLeg() {
	if t.leg == nil {
		return
	}
	t.cancelLeg()
	if r := <-t.leg; r.conn != nil {
		r.conn.Close()
	}
	t.leg = nil
}

// countLive adds the transfer's bytes to the session's live counts (SessionList) once the data
// has ended, before the client hears how the transfer ended: a client that has its final
// reply finds the transfer counted.
func (t *transfer) countLive() {
	if t.counted || !t.dataDone {
		return
	}
	t.counted = true
	if t.up {
		t.s.live.bytesIn.Add(t.result.primary)
	} else {
		t.s.live.bytesOut.Add(t.result.primary)
	}
}

// record reports the finished transfer to the observer and the log.
func (t *transfer) record() {
	s := t.s
	t.countLive()
	if t.up {
		s.stats.bytesIn += t.result.primary
	} else {
		s.stats.bytesOut += t.result.primary
	}
	code := t.finalCode
	if t.failed {
		code = t.replyCode
	}
	rec := TransferRecord{
		Start: t.start, Duration: time.Since(t.start), Client: s.clientAddr.Addr(), User: s.user,
		Listener: s.lc.name(), Pool: s.pool, Backend: s.backend.String(), Command: t.cmd.Verb, Path: t.cmd.Arg,
		Bytes: t.result.primary, Upload: t.up, ASCII: s.ascii, TLS: t.protected,
		Complete:  !t.failed && code/100 == 2 && t.result.err == nil && !t.abortSent,
		Aborted:   t.clientAbort,
		ReplyCode: code, SessionID: s.id,
	}
	s.srv.obs.Transfer(rec)
	logRecord(s.ctx, s.log, slog.LevelInfo, "transfer", "cmd", t.cmd.Verb, "path", t.cmd.Arg, "bytes", t.result.primary,
		"duration", rec.Duration.Round(time.Millisecond), "reply", code, "complete", rec.Complete,
		"aborted", t.clientAbort, "err", errString(t.result.err))
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
