package proxy

import (
	"sync"
	"syscall"
	"time"

	"github.com/ftpsproxy/ftpsproxy/internal/idlepoll"
)

// idleSweepEvery is how often Server.sweepIdleReaders looks for client readers parked since
// its previous look: a client silent for one to two of these gives its reader goroutine up.
var idleSweepEvery = 250 * time.Millisecond

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
	sc, ok := s.raw.(syscall.Conn)
	p := idlepoll.Default()
	if !ok || p == nil {
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

// sweepIdleReaders wakes, once a interval, the client readers that have been parked since
// the previous sweep, until the server stops for good.
func (s *Server) sweepIdleReaders() {
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
		}
		s.mu.Unlock()
	}
}
