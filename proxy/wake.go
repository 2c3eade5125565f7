package proxy

import (
	"errors"
	"net"
	"os"
	"sync"
	"time"
)

// backendWait lets the goroutine that reads the backend's control connection wait in that
// read, and still be woken by the client reader, a drain or the end of the session. An idle
// logged-in session then has two goroutines (its owner, waiting here, and the client reader)
// instead of three: a goroutine costs a 4 KiB stack once it has grown, the largest part of
// an idle session's memory after crypto/tls.
//
// The wait is a Peek of the reply reader's buffer: it consumes nothing, so a wake (the read
// deadline moved into the past) loses no byte, and crypto/tls keeps a partial record across
// a timeout. A reply is read only after the Peek saw its first byte, with the wait no longer
// parked, so a wake never cuts a reply in two.
type backendWait struct {
	mu      sync.Mutex
	conn    net.Conn // the backend control connection; nil before login
	parked  bool     // a goroutine is in, or about to enter, the Peek
	woken   bool     // wake ended this park
	stopped bool     // the session is ending: every read fails at once from now on
}

// longAgo is the read deadline that ends a wait at once.
var longAgo = time.Unix(1, 0)

func (w *backendWait) setConn(c net.Conn) {
	w.mu.Lock()
	w.conn = c
	if w.stopped {
		c.SetReadDeadline(longAgo)
	}
	w.mu.Unlock()
}

// park sets the read deadline of the wait that follows (zero: none) and marks it wakeable.
// Whatever the waiter must not miss is checked after park and before the read: an event
// that comes later is followed by its wake, which then finds the wait parked.
func (w *backendWait) park(deadline time.Time) {
	w.mu.Lock()
	if !w.stopped {
		w.conn.SetReadDeadline(deadline)
	}
	w.parked, w.woken = true, false
	w.mu.Unlock()
}

// unpark ends the wait; woken reports whether wake ended it.
func (w *backendWait) unpark() (woken bool) {
	w.mu.Lock()
	woken = w.woken
	w.parked = false
	w.mu.Unlock()
	return woken
}

// setDeadline sets the read deadline for reading the rest of a reply, outside any park.
func (w *backendWait) setDeadline(deadline time.Time) {
	w.mu.Lock()
	if !w.stopped {
		w.conn.SetReadDeadline(deadline)
	}
	w.mu.Unlock()
}

// wake ends a parked wait; it does nothing when no goroutine is parked (it is not reading
// the backend, or it will check for the event before it parks again). Any goroutine may
// call it.
func (w *backendWait) wake() {
	w.mu.Lock()
	if w.parked && !w.woken && !w.stopped {
		w.conn.SetReadDeadline(longAgo)
		w.woken = true
	}
	w.mu.Unlock()
}

// stop makes every backend read of the session fail at once, parked or not: the session is
// ending, and a reply cut in two no longer matters.
func (w *backendWait) stop() {
	w.mu.Lock()
	w.stopped = true
	if w.conn != nil {
		w.conn.SetReadDeadline(longAgo)
	}
	w.mu.Unlock()
}

// isTimeout reports a read that ended at its deadline (or at a wake).
func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}
