package proxy

import (
	"errors"
	"os"
	"sync"
	"time"
)

// connWait lets a goroutine wait in a read of one connection and still be woken by another
// goroutine. Each session has two: the owner waits in a read of the backend (bw), woken by
// the client reader, a drain or the end of the session (and during a transfer by its data
// leg and its pump); the client reader waits in a read of the client (cw). The idle sweep
// (Server.sweepIdle) wakes both when they have waited long enough that they give their
// goroutines up (idle.go). The owner's wait is in an accept while it waits for the client's
// passive data connection (acceptClientData): bw is on the data port then, and wakes the
// same way.
//
// The wait is a Peek of the connection's buffered reader: it consumes nothing, so a wake (the
// read deadline moved into the past) loses no byte, and crypto/tls keeps a partial record
// across a timeout. A reply or a line is read only after the Peek saw its first byte, with
// the wait no longer parked, so a wake never cuts one in two.
type connWait struct {
	mu      sync.Mutex
	conn    readDeadliner // nil until setConn
	parked  bool          // a goroutine is in, or about to enter, the Peek
	woken   bool          // wake ended this park
	swept   bool          // the idle sweep found this park in place (sweep)
	bySweep bool          // the idle sweep ended this park
	stopped bool          // the session is ending: every read fails at once from now on
	early   bool          // the last park kept a deadline a little before its own (armLocked)
	set     time.Time     // the read deadline last set: park need not set it again (a per-line call)
}

// readDeadliner is what a connWait waits on: a connection, or a passive data port (leaseWait).
type readDeadliner interface {
	SetReadDeadline(time.Time) error
}

// longAgo is the read deadline that ends a wait at once.
var longAgo = time.Unix(1, 0)

// setConn makes c the connection waited on; from now on only the connWait sets its read
// deadline (the session's end aside, which stops it first).
func (w *connWait) setConn(c readDeadliner) {
	w.mu.Lock()
	w.conn = c
	w.set = longAgo // not what setDeadlineLocked is asked for: it sets the deadline first
	if w.stopped {
		c.SetReadDeadline(longAgo)
	} else {
		w.setDeadlineLocked(time.Time{})
	}
	w.mu.Unlock()
}

// park sets the read deadline of the wait that follows (zero: none; see armLocked) and marks
// it wakeable. Whatever the waiter must not miss is checked after park and before the read:
// an event that comes later is followed by its wake, which then finds the wait parked.
func (w *connWait) park(deadline time.Time) {
	w.mu.Lock()
	w.early = w.armLocked(deadline)
	w.parked, w.woken, w.swept, w.bySweep = true, false, false, false
	w.mu.Unlock()
}

// endedEarly reports whether the last park kept a deadline before its own: a timeout of that
// wait is not yet the waiter's.
func (w *connWait) endedEarly() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.early
}

// unpark ends the wait; woken reports whether wake or sweep ended it, bySweep whether it was
// sweep.
func (w *connWait) unpark() (woken, bySweep bool) {
	w.mu.Lock()
	woken, bySweep = w.woken, w.bySweep
	w.parked = false
	w.mu.Unlock()
	return woken, bySweep
}

// setDeadline sets the read deadline for reading the rest of a reply or line, outside any
// park (see armLocked).
func (w *connWait) setDeadline(deadline time.Time) {
	w.mu.Lock()
	w.armLocked(deadline)
	w.mu.Unlock()
}

// armLocked sets the read deadline to deadline, or keeps the one in force when that is still
// ahead, not after deadline and within a 64th of the wait before it: a session parks and
// reads again and again with deadlines microseconds apart (the idle timeout from now), and
// each move of the deadline is a runtime timer's. A wait may so end up to a 64th of its
// length before its deadline: next parks again when that happens (kept reports it), and a
// reply or line being read has at least 63/64 of its time. No deadline in force (zero) and
// a stopped wait's (longAgo) are never ahead, so neither is kept.
func (w *connWait) armLocked(deadline time.Time) (kept bool) {
	if !deadline.IsZero() && w.set.Before(deadline) {
		if now := time.Now(); w.set.After(now) && deadline.Sub(w.set) <= deadline.Sub(now)/64 {
			return true
		}
	}
	w.setDeadlineLocked(deadline)
	return false
}

func (w *connWait) setDeadlineLocked(deadline time.Time) {
	if !w.stopped && w.conn != nil && !deadline.Equal(w.set) {
		w.conn.SetReadDeadline(deadline)
		w.set = deadline
	}
}

// wake ends a parked wait; it does nothing when no goroutine is parked (it is not reading,
// or it will check for the event before it parks again). Any goroutine may call it.
func (w *connWait) wake() {
	w.mu.Lock()
	w.wakeLocked()
	w.mu.Unlock()
}

func (w *connWait) wakeLocked() {
	if w.parked && !w.woken && !w.stopped && w.conn != nil {
		w.conn.SetReadDeadline(longAgo)
		w.set, w.woken = longAgo, true
	}
}

// sweep wakes a wait that was already parked at the previous sweep: one parked for at least
// a sweep's interval.
func (w *connWait) sweep() {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case !w.parked || w.woken:
	case !w.swept:
		w.swept = true
	default:
		w.wakeLocked()
		w.bySweep = w.woken
	}
}

// stop makes every read of the connection fail at once, parked or not: the session is
// ending, and a reply or line cut in two no longer matters.
func (w *connWait) stop() {
	w.mu.Lock()
	w.stopped = true
	if w.conn != nil {
		w.conn.SetReadDeadline(longAgo)
		w.set = longAgo
	}
	w.mu.Unlock()
}

// isTimeout reports a read that ended at its deadline (or at a wake).
func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}
