package proxy

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"
)

// TestTransferWait: during a transfer the owner's wait takes each event as it comes: the data
// leg's and the pump's results and a client line, each followed by its wake; backend replies
// whole and in order, two in one read included, and a client line while a reply is cut in
// two; its deadline; the end of the session.
func TestTransferWait(t *testing.T) {
	s, backend := pipeSession(t)
	s.cmdc = make(chan clientEvent, 1)
	x := &transfer{s: s, leg: make(chan legResult, 1), pumpc: make(chan pumpResult, 1)}
	later := func(f func()) {
		go func() {
			time.Sleep(20 * time.Millisecond)
			f()
			s.bw.wake()
		}()
	}
	wait := func(want int) {
		t.Helper()
		if what := x.wait(time.Now().Add(5 * time.Second)); what != want {
			t.Fatalf("wait = %d, want %d", what, want)
		}
	}
	later(func() { x.leg <- legResult{err: io.EOF} })
	wait(xferLeg)
	if x.legResult.err != io.EOF {
		t.Fatalf("leg result %+v", x.legResult)
	}
	x.leg = nil
	later(func() { x.pumpc <- pumpResult{primary: 42} })
	wait(xferPump)
	if x.result.primary != 42 {
		t.Fatalf("pump result %+v", x.result)
	}
	x.pumpc = nil
	// A reply cut in two holds nothing up: the line that comes meanwhile is taken, and the
	// reply once it is whole.
	go backend.Write([]byte("226-done\r\n"))
	if what := x.wait(time.Now().Add(200 * time.Millisecond)); what != xferTick {
		t.Fatalf("wait = %d on a reply cut in two, want xferTick", what)
	}
	if s.br.Buffered() != len("226-done\r\n") {
		t.Fatalf("%d bytes buffered, want the first line of the reply", s.br.Buffered())
	}
	later(func() { s.cmdc <- clientEvent{cmd: Command{Verb: "ABOR"}} })
	wait(xferLine)
	if s.waited.cmd.Verb != "ABOR" {
		t.Fatalf("client line %+v", s.waited)
	}
	go backend.Write([]byte("226 end\r\n200 stray\r\n"))
	for _, want := range []string{"226-done\r\n226 end\r\n", "200 stray\r\n"} {
		wait(xferReply)
		if s.waitedReply.err != nil || string(s.waitedReply.rep.Raw) != want {
			t.Fatalf("reply %+v, want %q", s.waitedReply, want)
		}
	}
	start := time.Now()
	if what := x.wait(start.Add(50 * time.Millisecond)); what != xferTick || time.Since(start) < 50*time.Millisecond {
		t.Fatalf("wait = %d after %v; want xferTick after 50ms", what, time.Since(start))
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		s.done()
		s.bw.stop()
	}()
	wait(xferDone)
}

// TestOwnerWakes: a parked owner is woken by a client line, by the end of the session, and
// by nothing else before its deadline; a reply that arrives is read whole.
func TestOwnerWakes(t *testing.T) {
	s, backend := pipeSession(t)
	s.cmdc = make(chan clientEvent, 1)
	go func() {
		time.Sleep(20 * time.Millisecond)
		s.cmdc <- clientEvent{cmd: Command{Verb: "NOOP"}}
		s.bw.wake()
	}()
	if what := s.next(time.Now().Add(5*time.Second), true, false); what != waitCommand || s.waited.cmd.Verb != "NOOP" {
		t.Fatalf("next = %d, %+v; want the client's NOOP", what, s.waited)
	}
	go backend.Write([]byte("211-a\r\n"))
	go func() {
		time.Sleep(20 * time.Millisecond)
		backend.Write([]byte(" b\r\n211 c\r\n"))
	}()
	if what := s.next(time.Now().Add(5*time.Second), true, false); what != waitReply || string(s.waitedReply.rep.Raw) != "211-a\r\n b\r\n211 c\r\n" {
		t.Fatalf("next = %d, %+v; want the whole 211", what, s.waitedReply)
	}
	start := time.Now()
	if what := s.next(time.Now().Add(50*time.Millisecond), true, false); what != waitTimeout || time.Since(start) < 50*time.Millisecond {
		t.Fatalf("next = %d after %v; want waitTimeout after 50ms", what, time.Since(start))
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		s.done()
		s.bw.stop()
	}()
	if what := s.next(time.Now().Add(5*time.Second), true, false); what != waitDone {
		t.Fatalf("next = %d; want waitDone", what)
	}
}

// pipeSession is a session whose backend control connection is one end of a pipe; the other
// end is returned.
func pipeSession(t *testing.T) (*session, net.Conn) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	s := &session{cfg: &Config{}, bconn: a, br: bufio.NewReaderSize(a, readBufSize)}
	s.ctx = &sessionCtx{}
	s.done = s.ctx.cancel
	s.bw.setConn(a)
	return s, b
}

// TestSweepWakesLongParks: the sweep wakes only a wait it found parked at its previous look,
// says the wake was its own, and a new park starts the count again; a wait woken otherwise
// is not the sweep's.
func TestSweepWakesLongParks(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	var w connWait
	w.setConn(a)
	read := func() error {
		_, err := a.Read(make([]byte, 1))
		return err
	}
	w.park(time.Time{})
	w.sweep() // first look: parked since before it? not known yet
	go func() {
		time.Sleep(20 * time.Millisecond)
		b.Write([]byte("x"))
	}()
	if err := read(); err != nil {
		t.Fatalf("a first sweep woke the wait: %v", err)
	}
	if woken, swept := w.unpark(); woken || swept {
		t.Fatalf("unpark = %v, %v after a read; want false, false", woken, swept)
	}
	// woken: the parked read ends at the wake's timeout, and unpark says whose wake it was.
	woken := func(what string, bySweep bool) {
		t.Helper()
		if err := read(); !isTimeout(err) {
			t.Fatalf("read after %s: %v; want the wake's timeout", what, err)
		}
		if woken, swept := w.unpark(); !woken || swept != bySweep {
			t.Fatalf("after %s: unpark = %v, %v; want true, %v", what, woken, swept, bySweep)
		}
	}
	w.park(time.Time{})
	w.sweep()
	w.sweep()
	woken("two sweeps", true)
	w.park(time.Time{})
	w.wake()
	w.sweep()
	woken("a wake", false)
}

// readDeadlineConn counts the read deadlines set on it.
type readDeadlineConn struct {
	net.Conn
	sets int
}

func (c *readDeadlineConn) SetReadDeadline(t time.Time) error {
	c.sets++
	return c.Conn.SetReadDeadline(t)
}

// TestWaitKeepsCloseDeadline: a wait keeps the read deadline in force when it is ahead, not
// after the new one and within a 64th of the wait before it; any other deadline is set.
func TestWaitKeepsCloseDeadline(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := &readDeadlineConn{Conn: a}
	var w connWait
	w.setConn(c)
	d := time.Now().Add(640 * time.Millisecond)
	for _, step := range []struct {
		name     string
		deadline time.Time
		set      bool
	}{
		{"first", d, true},
		{"5ms later: kept", d.Add(5 * time.Millisecond), false},
		{"the same: kept", d, false},
		{"earlier: set", d.Add(-time.Millisecond), true},
		{"30ms later: set", d.Add(30 * time.Millisecond), true},
		{"none: set", time.Time{}, true},
		{"none again: kept", time.Time{}, false},
		{"after none: set", d, true},
	} {
		before := c.sets
		w.park(step.deadline)
		w.unpark()
		if got := c.sets > before; got != step.set {
			t.Fatalf("%s: deadline set %v, want %v", step.name, got, step.set)
		}
	}
	w.setDeadline(time.Now().Add(time.Millisecond))
	time.Sleep(5 * time.Millisecond)
	before := c.sets
	w.setDeadline(time.Now().Add(time.Millisecond / 100)) // ahead of the passed one, within a 64th
	if c.sets == before {
		t.Fatal("a deadline that has passed was kept")
	}
}

// TestOwnerTimesOutAtItsDeadline: an owner whose wait kept an earlier deadline (within a
// 64th) times out at its own deadline, not at the earlier one.
func TestOwnerTimesOutAtItsDeadline(t *testing.T) {
	s, _ := pipeSession(t)
	s.cmdc = make(chan clientEvent, 1)
	early := time.Now().Add(640 * time.Millisecond)
	s.bw.setDeadline(early) // as readReply leaves it
	deadline := early.Add(9 * time.Millisecond)
	if what := s.next(deadline, true, false); what != waitTimeout || time.Now().Before(deadline) {
		t.Fatalf("next = %d at %v before its deadline; want waitTimeout at it", what, time.Until(deadline))
	}
}

// TestStoppedWaitKeepsNoDeadline: once a wait is stopped it keeps no earlier deadline, so an
// owner whose session context is still alive gets its timeout at once instead of parking
// again and again.
func TestStoppedWaitKeepsNoDeadline(t *testing.T) {
	s, _ := pipeSession(t)
	s.cmdc = make(chan clientEvent, 1)
	// Kept, the armed deadline would pass for the wait's own for about 3 s (while 50 ms is
	// within a 64th of what is left), and each park would end at once.
	armed := time.Now().Add(6400 * time.Millisecond)
	s.bw.setDeadline(armed)
	s.bw.stop()
	got := make(chan int, 1)
	go func() { got <- s.next(armed.Add(50*time.Millisecond), true, false) }()
	select {
	case what := <-got:
		if what != waitTimeout {
			t.Fatalf("next = %d; want waitTimeout", what)
		}
	case <-time.After(time.Second):
		s.done()
		t.Fatal("next still waiting 1 s after its wait was stopped")
	}
}
