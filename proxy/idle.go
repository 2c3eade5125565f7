package proxy

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/ftpsproxy/ftpsproxy/internal/idlepoll"
)

// idleSweepEvery is how often Server.sweepIdle looks for waits parked since its previous
// look: a session silent for one to two of these gives its goroutines up.
var idleSweepEvery = 250 * time.Millisecond

// socketOf returns the socket under c (under its TLS layer, if any) for the poller, or nil.
func socketOf(c net.Conn) syscall.Conn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, _ := c.(syscall.Conn)
	return sc
}

// idleReader is a session's hand-over of its client reader to the poller. A logged-in
// client that says nothing for a while has no goroutine waiting for it: its reader ends, and
// the poller starts a new one when the client speaks or leaves. An idle FTPS session then
// keeps one goroutine, its owner (waiting in a read of the backend), instead of two: 4 KiB
// of stack fewer (the largest part of an idle session's memory after crypto/tls).
type idleReader struct {
	poller *idlepoll.Poller // nil: no poller on this system, or the client is not a socket
	conn   syscall.Conn

	mu    sync.Mutex
	watch idlepoll.Watch
	armed bool // the reader ended and the watch is armed to start the next one
	ended bool // teardown has begun: no reader starts again
}

// enableIdleHandOver arms the client reader's idle wait (cw) when the poller can take it
// over; without it the reader stays in its read, as it always did.
func (s *session) enableIdleHandOver() {
	sc, p := socketOf(s.raw), idlepoll.Default()
	if sc == nil || p == nil {
		return
	}
	s.idle.poller, s.idle.conn = p, sc
	s.cw.setConn(s.raw)
}

// handOverIdle ends the client reader after the idle sweep woke it: the poller starts the
// next when the client's socket has bytes or has ended. The reader's Peek timed out, so
// nothing waits above the socket (bufio, crypto/tls): the poller sees everything still to
// come. It reports false when the watch could not be armed; the reader then reads on.
func (s *session) handOverIdle() bool {
	s.idle.mu.Lock()
	defer s.idle.mu.Unlock()
	if s.idle.ended || s.ctx.Err() != nil {
		return true // the session is ending and needs no reader
	}
	if err := s.idle.poller.Arm(s.idle.conn, &s.idle.watch, s.resumeClient); err != nil {
		s.log.Debug("client reader stays: idle watch failed", "err", err)
		return false
	}
	s.idle.armed = true
	return true
}

// resumeClient starts a client reader again; the poller calls it when the client's socket
// is readable or ended.
func (s *session) resumeClient() {
	s.idle.mu.Lock()
	defer s.idle.mu.Unlock()
	if !s.idle.armed || s.idle.ended {
		return
	}
	s.idle.armed = false
	s.readers.Add(1)
	go s.readClient()
}

// endIdle is teardown's: no reader starts again, and an armed watch is taken back (before
// teardown waits for the readers, so that wait sees every reader there will be).
func (s *session) endIdle() {
	s.idle.mu.Lock()
	defer s.idle.mu.Unlock()
	s.idle.ended = true
	if s.idle.armed {
		s.idle.poller.Disarm(&s.idle.watch)
		s.idle.armed = false
	}
}

// sweepIdle wakes, once an interval, the client readers and the owners that have been
// parked since the previous sweep, until the server stops for good.
func (s *Server) sweepIdle() {
	tick := time.NewTicker(idleSweepEvery)
	defer tick.Stop()
	for {
		select {
		case <-s.hardCtx.Done():
			return
		case <-tick.C:
		}
		s.mu.Lock()
		for _, sess := range s.sessions {
			sess.cw.sweep()
			sess.bw.sweep()
		}
		s.mu.Unlock()
	}
}

// errAway ends the owner's goroutine, not the session: see goAway.
var errAway = errors.New("owner away while the session is idle")

// ownerAway is a session's owner giving its goroutine up while the session is idle: an idle
// session with neither a reader nor an owner has no goroutine at all, only two poller
// watches and a timer. The owner leaves from its idle wait (serveNext) when the sweep wakes
// it there; the backend's socket becoming readable, the idle deadline, a client line, a
// drain or the end of the session starts a goroutine that takes the session on from there
// (ownerBack), and that goroutine, not Run's, finishes it.
type ownerAway struct {
	poller   *idlepoll.Poller // nil: the owner never goes away
	conn     syscall.Conn     // the backend control connection's socket
	leftWith time.Time        // the idle deadline the owner left with; the owner's own

	mu    sync.Mutex
	watch idlepoll.Watch
	timer *time.Timer // at the idle deadline
	away  bool
}

// enableOwnerAway lets the owner go away when the poller can watch the backend.
func (s *session) enableOwnerAway() {
	sc, p := socketOf(s.bconn), idlepoll.Default()
	if sc == nil || p == nil {
		return
	}
	s.owner.poller, s.owner.conn = p, sc
}

// goAway arms the owner's return and reports whether the owner may end its goroutine now.
// next calls it from the idle wait, woken by the sweep, after a Peek of the backend found
// nothing above its socket. An event that came before away was set found no owner to wake,
// so they are looked for once more under the lock; one that comes after finds the session
// away and calls it back.
func (s *session) goAway(deadline time.Time) bool {
	o := &s.owner
	if o.poller == nil {
		return false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.poller.Arm(o.conn, &o.watch, s.ownerEvent); err != nil {
		s.log.Debug("owner stays: idle watch failed", "err", err)
		return false
	}
	if o.timer == nil {
		o.timer = time.AfterFunc(time.Until(deadline), s.ownerEvent)
	} else {
		o.timer.Reset(time.Until(deadline))
	}
	o.away = true
	if len(s.cmdc) > 0 || s.ctx.Err() != nil || s.draining() {
		o.away = false
		o.poller.Disarm(&o.watch)
		o.timer.Stop()
		return false
	}
	o.leftWith = deadline
	return true
}

func (s *session) draining() bool {
	select {
	case <-s.srv.drain:
		return true
	default:
		return false
	}
}

// wakeOwner tells the owner an event is waiting (a client line, a drain): it is woken from
// its wait, or called back when it is away. Any goroutine may call it.
func (s *session) wakeOwner() {
	s.owner.mu.Lock()
	defer s.owner.mu.Unlock()
	if s.owner.away {
		s.ownerBackLocked()
		return
	}
	s.bw.wake()
}

// ownerEvent is the owner's return from the poller (the backend's socket is readable or
// ended), from the idle deadline's timer, and from the end of the session (interrupt).
func (s *session) ownerEvent() {
	s.owner.mu.Lock()
	defer s.owner.mu.Unlock()
	if s.owner.away {
		s.ownerBackLocked()
	}
}

func (s *session) ownerBackLocked() {
	o := &s.owner
	o.away = false
	o.poller.Disarm(&o.watch)
	o.timer.Stop()
	go s.ownerBack()
}

// ownerBack is the owner's goroutine after an away spell: it serves the session on, and
// when the session ends it finishes it where Run would have.
func (s *session) ownerBack() {
	if s.finish(s.relayLoop()) {
		return
	}
	s.srv.endConn(s)
}
