package proxy

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/ftpsproxy/ftpsproxy/internal/idlepoll"
)

// A session silent for a while holds no goroutine: its client reader and its owner give
// their waits up to the idle poller, and with them their read buffers. What is left of an
// idle session is its state, its sockets and crypto/tls's, and two poller watches.
//
// idleSweepEvery is how often Server.sweepIdle (sweep.go) looks for waits parked since its
// previous look (a session silent for one to two of these gives its goroutines up) and for
// sessions away past their idle deadline (which it calls back up to this late).
var idleSweepEvery = 250 * time.Millisecond

// socketOf returns the socket under c (under its TLS layer, if any) for the poller, or nil.
func socketOf(c net.Conn) syscall.Conn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, _ := c.(syscall.Conn)
	return sc
}

// The read buffers of the sessions whose goroutines are away wait here for the next that
// comes back. A buffer goes back only empty: the wait that gave it up had found nothing in it.
var (
	clientReaders  = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, clientBufSize) }}
	backendReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufSize) }}
)

func takeReader(p *sync.Pool, c net.Conn) *bufio.Reader {
	r := p.Get().(*bufio.Reader)
	r.Reset(c)
	return r
}

func giveReader(p *sync.Pool, r *bufio.Reader, size int) {
	if r.Size() == size { // a reader of another size is left to the collector
		r.Reset(nil)
		p.Put(r)
	}
}

// idleReader is a session's hand-over of its client reader to the poller: the reader ends,
// and the poller starts a new one when the client speaks or leaves.
type idleReader struct {
	mu    sync.Mutex
	watch idlepoll.Watch
	armed bool // the reader ended and the watch is armed to start the next one
	ended bool // teardown has begun: no reader starts again
}

// enableIdleHandOver arms the client reader's idle wait (cw) when the poller can take it
// over; without it the reader stays in its read, as it always did.
func (s *session) enableIdleHandOver() {
	if socketOf(s.raw) != nil && idlepoll.Default() != nil {
		s.cw.setConn(s.raw)
	}
}

// handOverIdle ends the client reader after the idle sweep woke it: the poller starts the
// next when the client's socket has bytes or has ended. The reader's Peek timed out, so
// nothing waits above the socket (bufio, crypto/tls): the poller sees everything still to
// come, and the read buffer, empty, is given up. It reports false when the watch could not
// be armed; the reader then reads on.
func (s *session) handOverIdle() bool {
	s.idle.mu.Lock()
	defer s.idle.mu.Unlock()
	if s.idle.ended || s.ctx.Err() != nil {
		return true // the session is ending and needs no reader
	}
	if err := idlepoll.Default().Arm(socketOf(s.raw), &s.idle.watch, s.resumeClient); err != nil {
		s.log.Debug("client reader stays: idle watch failed", "err", err)
		return false
	}
	s.idle.armed = true
	s.srv.sweeps.reader(s, true)
	giveReader(&clientReaders, s.cr, clientBufSize)
	s.cr = nil
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
	s.srv.sweeps.reader(s, false)
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
		idlepoll.Default().Disarm(&s.idle.watch)
		s.idle.armed = false
	}
}

// errAway ends the owner's goroutine, not the session: see goAway.
var errAway = errors.New("owner away while the session is idle")

// ownerAway is a session's owner giving its goroutine up while the session is idle. The
// owner leaves from its idle wait (serveNext) when the sweep wakes it there; the backend's
// socket becoming readable, a client line, a drain, the end of the session or the idle
// deadline passing (seen by the sweep) starts a goroutine that takes the session on from
// there (ownerBack), and that goroutine, not Run's, finishes it.
type ownerAway struct {
	can      bool      // the poller can watch the backend's socket
	leftWith time.Time // the idle deadline the owner left with

	mu    sync.Mutex
	watch idlepoll.Watch
	away  bool
}

// enableOwnerAway lets the owner go away when the poller can watch the backend.
func (s *session) enableOwnerAway() {
	s.owner.can = socketOf(s.bconn) != nil && idlepoll.Default() != nil
}

// goAway arms the owner's return and reports whether the owner may end its goroutine now.
// next calls it from the idle wait, woken by the sweep, after a Peek of the backend found
// nothing above its socket. An event that came before away was set found no owner to wake,
// so they are looked for once more under the lock; one that comes after finds the session
// away and calls it back.
func (s *session) goAway(deadline time.Time) bool {
	o := &s.owner
	if !o.can || !time.Now().Before(deadline) {
		return false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	p := idlepoll.Default()
	if err := p.Arm(socketOf(s.bconn), &o.watch, s.ownerEvent); err != nil {
		s.log.Debug("owner stays: idle watch failed", "err", err)
		return false
	}
	o.away = true
	if len(s.cmdc) > 0 || s.ctx.Err() != nil || s.draining() {
		o.away = false
		p.Disarm(&o.watch)
		return false
	}
	o.leftWith = deadline
	s.srv.sweeps.ownerAway(s, deadline)
	giveReader(&backendReaders, s.br, readBufSize)
	s.br = nil
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
// ended) and from the end of the session (interrupt).
func (s *session) ownerEvent() {
	s.owner.mu.Lock()
	defer s.owner.mu.Unlock()
	if s.owner.away {
		s.ownerBackLocked()
	}
}

// ownerDue is the sweep's, once the owner's idle deadline has passed (sweepSet): an owner
// still away past it comes back to end the session.
func (s *session) ownerDue(now time.Time) {
	s.owner.mu.Lock()
	defer s.owner.mu.Unlock()
	if s.owner.away && !now.Before(s.owner.leftWith) {
		s.ownerBackLocked()
	}
}

func (s *session) ownerBackLocked() {
	s.owner.away = false
	idlepoll.Default().Disarm(&s.owner.watch)
	s.srv.sweeps.ownerBack(s)
	go s.ownerBack()
}

// ownerBack is the owner's goroutine after an away spell: it serves the session on, and
// when the session ends it finishes it where Run would have.
func (s *session) ownerBack() {
	s.br = takeReader(&backendReaders, s.bconn)
	if s.finish(s.relayLoop()) {
		return
	}
	s.srv.endConn(s)
}
