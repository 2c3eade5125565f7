package nat

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"
)

// The sockets a released lease leaves for its port's next lease (Allocator, Reserve).

// bindAlone binds a socket without SO_REUSEADDR to ap and closes it: it fails while any
// socket, listening or not, is bound there.
func bindAlone(ap netip.AddrPort) error {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	return syscall.Bind(fd, &syscall.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())})
}

// serveOne dials the lease from from, accepts, and checks that bytes cross both ways.
func serveOne(t *testing.T, l *Lease, from netip.Addr) {
	t.Helper()
	client, err := dialFrom(from, l.Addr())
	if err != nil {
		t.Fatalf("dial %v: %v", l.Addr(), err)
	}
	defer client.Close()
	l.SetDeadline(time.Now().Add(5 * time.Second))
	server, err := l.AcceptTCP()
	if err != nil {
		t.Fatalf("accept on %v: %v", l.Addr(), err)
	}
	defer server.Close()
	if _, err := client.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(server, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("server read %q, %v", buf, err)
	}
	if _, err := server.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(client, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("client read %q, %v", buf, err)
	}
}

// reserve leases a port of a for a client on loopback, listening on ip.
func reserve(t *testing.T, a *Allocator, ip netip.Addr) *Lease {
	t.Helper()
	l, err := a.Reserve(testCtx(t), ip, loopback)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func refused(t *testing.T, ap netip.AddrPort, when string) {
	t.Helper()
	c, err := dialFrom(loopback, ap)
	if err == nil {
		c.Close()
		t.Fatalf("%s: dial %v succeeded; want refused", when, ap)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("%s: dial %v: %v; want connection refused", when, ap, err)
	}
}

// TestReuseKeepsSocket: a released lease's port refuses connections like a closed one, its
// socket stays bound, and the port's next lease (in cursor order, still reused last) listens
// on that socket again: the peer's connection is served, a foreign one reset. StopReusing
// closes what is kept.
func TestReuseKeepsSocket(t *testing.T) {
	checkNoLeak(t)
	r := freeRange(t, 2)
	var foreign []netip.AddrPort
	a := NewAllocator(r, func(p netip.AddrPort) { foreign = append(foreign, p) })

	l1 := reserve(t, a, loopback)
	first := l1.ln
	serveOne(t, l1, loopback)
	refused(t, l1.Addr(), "after the lease's connection")
	l1.Release()
	if a.InUse() != 0 || a.Idle() != 1 {
		t.Fatalf("after Release: InUse %d, Idle %d; want 0, 1", a.InUse(), a.Idle())
	}
	refused(t, l1.Addr(), "between leases")

	l2 := reserve(t, a, loopback)
	if l2.Port() != r.First+1 || l2.ln == first {
		t.Fatalf("second lease on port %d (same socket %v); want a new socket on %d", l2.Port(), l2.ln == first, r.First+1)
	}
	l2.Release()
	// (The port of l2, which had no connection: the first one's TIME_WAIT holds its port
	// against such a bind whether its socket is kept or not.)
	if err := bindAlone(l2.Addr()); err == nil {
		t.Fatal("the released port could be bound: its socket was not kept")
	}

	l3 := reserve(t, a, loopback)
	defer l3.Release()
	if l3.Port() != r.First || l3.ln != first {
		t.Fatalf("third lease on port %d (same socket %v); want the first lease's socket on %d", l3.Port(), l3.ln == first, r.First)
	}
	if a.InUse() != 1 || a.Idle() != 1 {
		t.Fatalf("InUse %d, Idle %d; want 1, 1", a.InUse(), a.Idle())
	}
	// A foreign address is still reset, and the peer still served, on the reused socket.
	intruder, err := dialFrom(loopback2, l3.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer intruder.Close()
	serveOne(t, l3, loopback)
	intruder.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := intruder.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("foreign connection read: %v; want reset", err)
	}
	if len(foreign) != 1 || foreign[0].Addr() != loopback2 {
		t.Errorf("onForeign saw %v; want one connection from %v", foreign, loopback2)
	}

	l3.Release()
	a.StopReusing()
	if a.Idle() != 0 || a.InUse() != 0 {
		t.Fatalf("after StopReusing: Idle %d, InUse %d; want 0, 0", a.Idle(), a.InUse())
	}
	if err := bindAlone(l2.Addr()); err != nil {
		t.Errorf("port %d after StopReusing: %v; want it free", l2.Port(), err)
	}
	// Leases go on, without keeping their sockets.
	l4 := reserve(t, a, loopback)
	serveOne(t, l4, loopback)
	l4.Release()
	if a.Idle() != 0 {
		t.Errorf("Idle after StopReusing and a lease: %d; want 0", a.Idle())
	}
}

// TestReleaseDuringAcceptTCP: Release interrupts an AcceptTCP that has no deadline, waits for
// it, and the socket serves the port's next lease (one lease at a time).
func TestReleaseDuringAcceptTCP(t *testing.T) {
	checkNoLeak(t)
	a := NewAllocator(freeRange(t, 1), nil)
	l := reserve(t, a, loopback)
	err := acceptTCPInterrupted(t, l, l.Release, 5*time.Second, "AcceptTCP still waiting after Release")
	if !errors.Is(err, net.ErrClosed) {
		t.Fatalf("AcceptTCP during Release: %v; want net.ErrClosed", err)
	}
	if _, err := l.AcceptTCP(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("AcceptTCP after Release: %v; want net.ErrClosed", err)
	}
	next := reserve(t, a, loopback)
	defer next.Release()
	if next.ln != l.ln {
		t.Fatal("the next lease did not get the released socket")
	}
	serveOne(t, next, loopback)
	a.StopReusing()
}

// TestReuseAfterTakeover: a port whose socket is kept is free for another process to listen
// on (an upgrade's new process; neither socket listens while kept), and the next lease of
// the port then skips it as a port held elsewhere, closing the kept socket.
func TestReuseAfterTakeover(t *testing.T) {
	checkNoLeak(t)
	r := freeRange(t, 1)
	a := NewAllocator(r, nil)
	l := reserve(t, a, loopback)
	l.Release()
	other, err := net.Listen("tcp4", l.Addr().String())
	if err != nil {
		t.Fatalf("another listener on the kept port: %v; want it allowed", err)
	}
	defer other.Close()
	if _, err := a.Reserve(testCtx(t), loopback, loopback); !errors.Is(err, ErrPortsExhausted) {
		t.Fatalf("Reserve with the only port taken over: %v; want ErrPortsExhausted", err)
	}
	if a.Idle() != 0 || a.InUse() != 0 {
		t.Fatalf("Idle %d, InUse %d; want 0, 0 (the kept socket closed)", a.Idle(), a.InUse())
	}
	// The other listener was left alone.
	c, err := net.DialTimeout("tcp4", other.Addr().String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	other.Close()
	l2 := reserve(t, a, loopback)
	serveOne(t, l2, loopback)
	l2.Release()
	a.StopReusing()
}

// TestReuseOtherAddress: a kept socket is bound to its lease's listen address; a lease of the
// port for another address gets a socket of its own.
func TestReuseOtherAddress(t *testing.T) {
	checkNoLeak(t)
	a := NewAllocator(freeRange(t, 1), nil)
	l := reserve(t, a, loopback)
	l.Release()
	l2 := reserve(t, a, loopback2)
	if l2.ln == l.ln || l2.Addr() != netip.AddrPortFrom(loopback2, l.Port()) {
		t.Fatalf("lease for %v on %v (same socket %v); want a new socket", loopback2, l2.Addr(), l2.ln == l.ln)
	}
	refused(t, l.Addr(), "the first address after the second's lease") // its socket closed
	serveOne(t, l2, loopback)
	l2.Release()
	a.StopReusing()
}

// TestSetRangeClosesKept: the sockets kept for the old range's ports are closed by SetRange.
func TestSetRangeClosesKept(t *testing.T) {
	checkNoLeak(t)
	old := freeRange(t, 2)
	a := NewAllocator(old, nil)
	for range 2 {
		l := reserve(t, a, loopback)
		l.Release()
	}
	if a.Idle() != 2 {
		t.Fatalf("Idle %d; want 2", a.Idle())
	}
	a.SetRange(freeRange(t, 2))
	if a.Idle() != 0 {
		t.Fatalf("Idle after SetRange %d; want 0", a.Idle())
	}
	for p := old.First; p <= old.Last; p++ {
		if err := bindAlone(netip.AddrPortFrom(loopback, p)); err != nil {
			t.Errorf("old port %d after SetRange: %v; want it free", p, err)
		}
	}
}
