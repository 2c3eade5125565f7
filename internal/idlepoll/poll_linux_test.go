package idlepoll

import (
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// pair returns both ends of a loopback TCP connection.
func pair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

func fired(t *testing.T, ch <-chan struct{}, want bool) {
	t.Helper()
	wait := 2 * time.Second
	if !want {
		wait = 100 * time.Millisecond
	}
	select {
	case <-ch:
		if !want {
			t.Fatal("watch fired with nothing to read")
		}
	case <-time.After(wait):
		if want {
			t.Fatal("watch did not fire")
		}
	}
}

func arm(t *testing.T, p *Poller, c *net.TCPConn, w *Watch) <-chan struct{} {
	t.Helper()
	ch := make(chan struct{}, 2)
	if err := p.Arm(c, w, func() { ch <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	return ch
}

// TestArmFiresOncePerArm: a watch fires when bytes come, once, and again only after it is
// armed again (the bytes left unread keep the socket readable).
func TestArmFiresOncePerArm(t *testing.T) {
	p := Default()
	a, b := pair(t)
	var w Watch
	ch := arm(t, p, b, &w)
	fired(t, ch, false)
	a.Write([]byte("NOOP\r\n"))
	fired(t, ch, true)
	fired(t, ch, false) // one-shot, though the bytes are still there
	ch = arm(t, p, b, &w)
	fired(t, ch, true) // re-armed on a readable socket: at once
	buf := make([]byte, 16)
	if n, _ := b.Read(buf); string(buf[:n]) != "NOOP\r\n" {
		t.Fatalf("read %q: the watch must not consume bytes", buf[:n])
	}
	ch = arm(t, p, b, &w)
	fired(t, ch, false)
	a.Write([]byte("PWD\r\n"))
	fired(t, ch, true)
}

// TestArmFiresOnPeerClose: the peer's FIN (or RST) fires the watch, so a reader is started
// to see the end of the connection.
func TestArmFiresOnPeerClose(t *testing.T) {
	p := Default()
	for _, reset := range []bool{false, true} {
		a, b := pair(t)
		var w Watch
		ch := arm(t, p, b, &w)
		if reset {
			a.SetLinger(0)
		}
		a.Close()
		fired(t, ch, true)
		if _, err := b.Read(make([]byte, 1)); err == nil {
			t.Fatal("read after the peer closed succeeded")
		} else if !reset && err != io.EOF {
			t.Fatalf("read after FIN: %v", err)
		}
	}
}

// TestDisarm: a disarmed watch never runs, and Disarm says whether it stopped it.
func TestDisarm(t *testing.T) {
	p := Default()
	a, b := pair(t)
	var w Watch
	ch := arm(t, p, b, &w)
	if !p.Disarm(&w) {
		t.Fatal("Disarm of an armed watch reported false")
	}
	a.Write([]byte("x"))
	fired(t, ch, false)
	if p.Disarm(&w) {
		t.Fatal("second Disarm reported true")
	}
	ch = arm(t, p, b, &w) // armed again after a disarm: fires for the byte waiting
	fired(t, ch, true)
	if p.Disarm(&w) {
		t.Fatal("Disarm after the watch ran reported true")
	}
}

// TestClosedWhileArmed: a socket closed while armed leaves the set; its function never
// runs, and its descriptor number, reused by a new socket, is armed afresh.
func TestClosedWhileArmed(t *testing.T) {
	p := Default()
	a, b := pair(t)
	var w Watch
	ch := arm(t, p, b, &w)
	p.Disarm(&w)
	b.Close()
	a.Write([]byte("x"))
	fired(t, ch, false)
	c, d := pair(t) // d may reuse b's descriptor number
	var w2 Watch
	ch2 := arm(t, p, d, &w2)
	c.Write([]byte("y"))
	fired(t, ch2, true)
	if err := p.Arm(b, &w, func() {}); err == nil {
		t.Fatal("Arm on a closed connection succeeded")
	}
}

// TestManyWatches: each of many armed sockets fires its own function, once.
func TestManyWatches(t *testing.T) {
	p := Default()
	const n = 300
	var count atomic.Int32
	done := make(chan int, n)
	peers := make([]*net.TCPConn, n)
	for i := range n {
		a, b := pair(t)
		peers[i] = a
		var w Watch
		if err := p.Arm(b, &w, func() { count.Add(1); done <- i }); err != nil {
			t.Fatal(err)
		}
	}
	for i := n - 1; i >= 0; i-- {
		peers[i].Write([]byte("x"))
	}
	seen := make(map[int]bool)
	for range n {
		select {
		case i := <-done:
			if seen[i] {
				t.Fatalf("watch %d fired twice", i)
			}
			seen[i] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("%d of %d watches fired", len(seen), n)
		}
	}
	if p.Armed() != 0 {
		t.Fatalf("%d watches still armed", p.Armed())
	}
}
