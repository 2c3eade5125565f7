package nat

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/internal/sockopt"
)

// The allocator tests use real loopback sockets on ports in 42000-42999, a different slice per
// test, so they can run next to other packages' tests. They are not parallel with each other,
// which keeps the goroutine counts of checkNoLeak meaningful.

var (
	loopback  = netip.MustParseAddr("127.0.0.1")
	loopback2 = netip.MustParseAddr("127.0.0.2") // also loopback on Linux; our "foreign" client
)

// checkNoLeak fails the test if it ends with more goroutines than it started with. Exiting
// goroutines take a moment to be counted out, hence the poll.
func checkNoLeak(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(2 * time.Second)
		for {
			n := runtime.NumGoroutine()
			if n <= before {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<16)
				t.Errorf("goroutines: %d before, %d after\n%s", before, n, buf[:runtime.Stack(buf, true)])
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// dialFrom connects from the IP from (any port) to to.
func dialFrom(from netip.Addr, to netip.AddrPort) (*net.TCPConn, error) {
	d := net.Dialer{
		LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(from, 0)),
		Timeout:   2 * time.Second,
	}
	c, err := d.Dial("tcp", to.String())
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

type acceptResult struct {
	c   *net.TCPConn
	err error
}

// acceptTCPInterrupted runs AcceptTCP in a goroutine, calls interrupt once it waits, and
// returns AcceptTCP's error; the test fails with stuck if AcceptTCP still waits after limit.
func acceptTCPInterrupted(t *testing.T, l *Lease, interrupt func(), limit time.Duration, stuck string) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		c, err := l.AcceptTCP()
		if c != nil {
			c.Close()
		}
		done <- err
	}()
	time.Sleep(50 * time.Millisecond) // let it wait in accept
	interrupt()
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
		t.Fatal(stuck)
		return nil
	}
}

// acceptAsync runs Accept in a goroutine; the channel delivers its result exactly once.
func acceptAsync(ctx context.Context, l *Lease) <-chan acceptResult {
	ch := make(chan acceptResult, 1)
	go func() {
		c, err := l.Accept(ctx)
		ch <- acceptResult{c, err}
	}()
	return ch
}

func TestAllocatorAcceptPeer(t *testing.T) {
	checkNoLeak(t)
	ctx := testCtx(t)
	a := NewAllocator(freeRange(t, 10), nil)
	lease, err := a.Reserve(ctx, loopback, loopback)
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Release()
	if !a.Range().Contains(lease.Port()) || lease.Addr() != netip.AddrPortFrom(loopback, lease.Port()) {
		t.Fatalf("lease on %v, port %d; want 127.0.0.1 in %v", lease.Addr(), lease.Port(), a.Range())
	}
	if got := a.InUse(); got != 1 {
		t.Errorf("InUse = %d; want 1", got)
	}

	// The listener is bound when Reserve returns: dialing before Accept must work.
	client, err := dialFrom(loopback, lease.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := lease.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	// A data connection lives one transfer: no TCP keep-alive (system calls per connection).
	if on := sockopt.Must(t, server, syscall.SOL_SOCKET, syscall.SO_KEEPALIVE) != 0; on {
		t.Error("keep-alive is on on an accepted data connection")
	}

	if _, err := client.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(server, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("server read %q, %v", buf, err)
	}
	if _, err := server.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(client, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("client read %q, %v", buf, err)
	}

	// One connection per lease: the listener is closed after the first.
	if _, err := lease.Accept(ctx); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Accept: %v; want net.ErrClosed", err)
	}
	if c, err := dialFrom(loopback, lease.Addr()); err == nil {
		c.Close()
		t.Error("dial after Accept succeeded; want refused")
	}
	lease.Release()
	if got := a.InUse(); got != 0 {
		t.Errorf("InUse after Release = %d; want 0", got)
	}
}

func TestAcceptForeignPeer(t *testing.T) {
	checkNoLeak(t)
	ctx := testCtx(t)
	foreign := make(chan netip.AddrPort, 4)
	var nForeign atomic.Int32
	a := NewAllocator(freeRange(t, 10), func(peer netip.AddrPort) {
		nForeign.Add(1)
		foreign <- peer
	})
	lease, err := a.Reserve(ctx, loopback, loopback)
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Release()
	res := acceptAsync(ctx, lease)

	// The reset can beat the dialer's own completion of connect, so a reset dial is the same
	// outcome as a reset read.
	intruder, err := dialFrom(loopback2, lease.Addr())
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("cannot dial from %v (needs Linux loopback /8): %v", loopback2, err)
	}
	select {
	case peer := <-foreign:
		if peer.Addr() != loopback2 || intruder != nil && netip.MustParseAddrPort(intruder.LocalAddr().String()) != peer {
			t.Errorf("onForeign(%v); want a peer at %v", peer, loopback2)
		}
	case <-ctx.Done():
		t.Fatal("onForeign not called")
	}
	if intruder != nil {
		defer intruder.Close()
		_ = intruder.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := intruder.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("intruder read: %v; want connection reset", err)
		}
	}
	select {
	case r := <-res:
		t.Fatalf("Accept returned after a foreign connection: %v, %v", r.c, r.err)
	case <-time.After(50 * time.Millisecond):
	}

	client, err := dialFrom(loopback, lease.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.c.Close()
	if got, want := r.c.RemoteAddr().String(), client.LocalAddr().String(); got != want {
		t.Errorf("accepted %s; want %s", got, want)
	}
	if got := nForeign.Load(); got != 1 {
		t.Errorf("onForeign called %d times; want 1", got)
	}
}

func TestAcceptMappedPeer(t *testing.T) {
	checkNoLeak(t)
	ctx := testCtx(t)
	a := NewAllocator(freeRange(t, 5), nil)
	// A control connection on a dual-stack listener reports its peer IPv4-mapped.
	lease, err := a.Reserve(ctx, netip.MustParseAddr("::ffff:127.0.0.1"), netip.MustParseAddr("::ffff:127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Release()
	if lease.Addr().Addr() != loopback {
		t.Errorf("Addr = %v; want unmapped 127.0.0.1", lease.Addr())
	}
	res := acceptAsync(ctx, lease)
	client, err := dialFrom(loopback, lease.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	r.c.Close()
}

func TestAcceptIPv6(t *testing.T) {
	checkNoLeak(t)
	ctx := testCtx(t)
	a := NewAllocator(freeRange(t, 5), nil)
	v6 := netip.IPv6Loopback()
	lease, err := a.Reserve(ctx, v6, v6)
	if err != nil {
		t.Fatalf("no IPv6 loopback: %v", err)
	}
	defer lease.Release()
	res := acceptAsync(ctx, lease)
	client, err := dialFrom(v6, lease.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	r.c.Close()
}

func TestAcceptContextDone(t *testing.T) {
	checkNoLeak(t)
	a := NewAllocator(freeRange(t, 5), nil)
	lease, err := a.Reserve(testCtx(t), loopback, loopback)
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Release()

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := lease.Accept(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Accept: %v; want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Accept took %v to notice its deadline", d)
	}

	canceled, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if _, err := lease.Accept(canceled); !errors.Is(err, context.Canceled) {
		t.Fatalf("Accept with canceled ctx: %v; want context.Canceled", err)
	}

	// The wait was interrupted, not the lease: a later Accept still gets the client.
	client, err := dialFrom(loopback, lease.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c, err := lease.Accept(testCtx(t))
	if err != nil {
		t.Fatalf("Accept after an expired one: %v", err)
	}
	c.Close()
}

// TestAcceptTCPDeadline: AcceptTCP waits until the deadline set with SetDeadline, a deadline
// moved into the past by another goroutine interrupts it, the listener stays open through
// both, and a foreign peer is reset as with Accept.
func TestAcceptTCPDeadline(t *testing.T) {
	checkNoLeak(t)
	var nForeign atomic.Int32
	a := NewAllocator(freeRange(t, 5), func(netip.AddrPort) { nForeign.Add(1) })
	lease, err := a.Reserve(testCtx(t), loopback, loopback)
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Release()

	start := time.Now()
	lease.SetDeadline(start.Add(50 * time.Millisecond))
	if _, err := lease.AcceptTCP(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("AcceptTCP: %v; want os.ErrDeadlineExceeded", err)
	}
	if d := time.Since(start); d < 40*time.Millisecond || d > 2*time.Second {
		t.Errorf("AcceptTCP ended after %v; want its deadline, 50ms", d)
	}

	lease.SetDeadline(time.Time{})
	err = acceptTCPInterrupted(t, lease, func() { lease.SetDeadline(aLongTimeAgo) }, 2*time.Second,
		"a deadline moved into the past did not interrupt AcceptTCP")
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("interrupted AcceptTCP: %v; want os.ErrDeadlineExceeded", err)
	}

	// The listener stayed open: the peer's connection is taken, a foreign one reset before it.
	if intruder, err := dialFrom(loopback2, lease.Addr()); err == nil {
		defer intruder.Close()
	}
	client, err := dialFrom(loopback, lease.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	lease.SetDeadline(time.Now().Add(5 * time.Second))
	c, err := lease.AcceptTCP()
	if err != nil {
		t.Fatalf("AcceptTCP after interrupted ones: %v", err)
	}
	defer c.Close()
	if got, want := c.RemoteAddr().String(), client.LocalAddr().String(); got != want {
		t.Errorf("accepted %s; want %s", got, want)
	}
	if got := nForeign.Load(); got != 1 {
		t.Errorf("onForeign called %d times; want 1", got)
	}
	if _, err := lease.AcceptTCP(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("AcceptTCP after the accepted connection: %v; want net.ErrClosed", err)
	}
}

func TestExhaustion(t *testing.T) {
	checkNoLeak(t)
	ctx := testCtx(t)
	a := NewAllocator(freeRange(t, 3), nil)
	seen := map[uint16]bool{}
	var leases []*Lease
	for range 3 {
		l, err := a.Reserve(ctx, loopback, loopback)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Release()
		if seen[l.Port()] {
			t.Fatalf("port %d leased twice", l.Port())
		}
		seen[l.Port()] = true
		leases = append(leases, l)
	}
	if got := a.InUse(); got != 3 {
		t.Errorf("InUse = %d; want 3", got)
	}
	if _, err := a.Reserve(ctx, loopback, loopback); !errors.Is(err, ErrPortsExhausted) {
		t.Fatalf("4th Reserve: %v; want ErrPortsExhausted", err)
	}
	if got := a.InUse(); got != 3 {
		t.Errorf("InUse after failed Reserve = %d; want 3", got)
	}

	leases[1].Release()
	l, err := a.Reserve(ctx, loopback, loopback)
	if err != nil {
		t.Fatalf("Reserve after Release: %v", err)
	}
	defer l.Release()
	if l.Port() != leases[1].Port() {
		t.Errorf("got port %d; want the released %d", l.Port(), leases[1].Port())
	}
}

func TestRotatingCursor(t *testing.T) {
	checkNoLeak(t)
	ctx := testCtx(t)
	r := freeRange(t, 4)
	a := NewAllocator(r, nil)
	var ports []uint16
	for range 6 {
		l, err := a.Reserve(ctx, loopback, loopback)
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, l.Port())
		l.Release()
	}
	f := r.First
	want := []uint16{f, f + 1, f + 2, f + 3, f, f + 1}
	for i := range want {
		if ports[i] != want[i] {
			t.Fatalf("ports %v; want %v (a released port is reused last)", ports, want)
		}
	}
}

func TestSkipsPortHeldElsewhere(t *testing.T) {
	checkNoLeak(t)
	ctx := testCtx(t)
	r := freeRange(t, 3)
	other, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", r.First))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()

	a := NewAllocator(r, nil)
	var got []uint16
	for range 2 {
		l, err := a.Reserve(ctx, loopback, loopback)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Release()
		got = append(got, l.Port())
	}
	if got[0] != r.First+1 || got[1] != r.First+2 {
		t.Errorf("ports %v; want [%d %d]", got, r.First+1, r.First+2)
	}
	if _, err := a.Reserve(ctx, loopback, loopback); !errors.Is(err, ErrPortsExhausted) {
		t.Errorf("Reserve with the rest taken: %v; want ErrPortsExhausted", err)
	}
	if n := a.InUse(); n != 2 {
		t.Errorf("InUse = %d; want 2 (the skipped port is not counted)", n)
	}
}

func TestReleaseIdempotentAndConcurrent(t *testing.T) {
	checkNoLeak(t)
	ctx := testCtx(t)
	a := NewAllocator(freeRange(t, 5), nil)

	l, err := a.Reserve(ctx, loopback, loopback)
	if err != nil {
		t.Fatal(err)
	}
	res := acceptAsync(ctx, l)
	time.Sleep(20 * time.Millisecond) // let Accept block; the result must not depend on it
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(l.Release)
	}
	wg.Wait()
	if r := <-res; !errors.Is(r.err, net.ErrClosed) {
		t.Errorf("Accept during Release: %v, %v; want net.ErrClosed", r.c, r.err)
	}
	l.Release()
	if n := a.InUse(); n != 0 {
		t.Errorf("InUse = %d; want 0", n)
	}

	// Released before Accept was ever called.
	l2, err := a.Reserve(ctx, loopback, loopback)
	if err != nil {
		t.Fatal(err)
	}
	l2.Release()
	if _, err := l2.Accept(ctx); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Release: %v; want net.ErrClosed", err)
	}
	if n := a.InUse(); n != 0 {
		t.Errorf("InUse = %d; want 0", n)
	}
}

func TestReserveErrors(t *testing.T) {
	checkNoLeak(t)
	ctx := testCtx(t)
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name      string
		r         PortRange
		ctx       context.Context
		listen    netip.Addr
		peer      netip.Addr
		wantErr   error // nil: any error that is not ErrPortsExhausted
		exhausted bool
	}{
		{"inverted range", PortRange{42181, 42180}, ctx, loopback, loopback, nil, false},
		{"zero range", PortRange{}, ctx, loopback, loopback, nil, false},
		{"invalid listen", PortRange{42180, 42181}, ctx, netip.Addr{}, loopback, nil, false},
		{"invalid peer", PortRange{42180, 42181}, ctx, loopback, netip.Addr{}, nil, false},
		{"not local", PortRange{42180, 42181}, ctx, netip.MustParseAddr("192.0.2.1"), loopback, nil, false},
		{"canceled", PortRange{42180, 42181}, canceled, loopback, loopback, context.Canceled, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := NewAllocator(tt.r, nil)
			l, err := a.Reserve(tt.ctx, tt.listen, tt.peer)
			if err == nil {
				l.Release()
				t.Fatal("Reserve succeeded")
			}
			if errors.Is(err, ErrPortsExhausted) {
				t.Errorf("error %v wraps ErrPortsExhausted", err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v; want %v", err, tt.wantErr)
			}
			if n := a.InUse(); n != 0 {
				t.Errorf("InUse = %d; want 0", n)
			}
		})
	}
}

// TestConcurrentReserve hammers a small range from several goroutines; the race detector and the
// held-ports check catch a port leased twice.
func TestConcurrentReserve(t *testing.T) {
	checkNoLeak(t)
	ctx := testCtx(t)
	a := NewAllocator(freeRange(t, 4), nil)
	var (
		mu   sync.Mutex
		held = map[uint16]bool{}
		wg   sync.WaitGroup
	)
	for range 8 {
		wg.Go(func() {
			for range 25 {
				l, err := a.Reserve(ctx, loopback, loopback)
				if errors.Is(err, ErrPortsExhausted) {
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if held[l.Port()] {
					t.Errorf("port %d leased twice", l.Port())
				}
				held[l.Port()] = true
				mu.Unlock()
				runtime.Gosched()
				mu.Lock()
				delete(held, l.Port())
				mu.Unlock()
				l.Release()
			}
		})
	}
	wg.Wait()
	if n := a.InUse(); n != 0 {
		t.Errorf("InUse = %d; want 0", n)
	}
}

// freeRange returns n consecutive ports that are free now and lie below the kernel's
// ephemeral range (so no outgoing connection of a test running in parallel takes one), never
// the same ports twice in this process.
func freeRange(t *testing.T, n int) PortRange {
	t.Helper()
	rangeMu.Lock()
	defer rangeMu.Unlock()
	if nextBase == 0 {
		nextBase = 20000 + (os.Getpid()*97)%8000
	}
	for tries := 0; tries < 200; tries++ {
		base := nextBase
		nextBase += n
		if nextBase > 32000 {
			nextBase = 20000
		}
		ok := true
		for p := base; p < base+n; p++ {
			ln, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				ok = false
				break
			}
			ln.Close()
		}
		if ok {
			return PortRange{uint16(base), uint16(base + n - 1)}
		}
	}
	t.Fatalf("no %d free consecutive ports below the ephemeral range", n)
	return PortRange{}
}

var (
	rangeMu  sync.Mutex
	nextBase int
)

// TestSetRange: after SetRange new leases come from the new range, a lease from the old one
// stays valid and counted until released, and the old range's ports are never handed out
// again.
func TestSetRange(t *testing.T) {
	ctx := context.Background()
	lo := netip.MustParseAddr("127.0.0.1")
	first, second := freeRange(t, 2), freeRange(t, 2)
	a := NewAllocator(first, nil)
	old, err := a.Reserve(ctx, lo, lo)
	if err != nil {
		t.Fatal(err)
	}
	a.SetRange(second)
	if a.Range() != second {
		t.Fatalf("Range() = %v, want %v", a.Range(), second)
	}
	var leases []*Lease
	for range 2 {
		l, err := a.Reserve(ctx, lo, lo)
		if err != nil {
			t.Fatal(err)
		}
		if !second.Contains(l.Port()) {
			t.Fatalf("lease on %d after SetRange(%v)", l.Port(), second)
		}
		leases = append(leases, l)
	}
	if _, err := a.Reserve(ctx, lo, lo); !errors.Is(err, ErrPortsExhausted) {
		t.Fatalf("third lease from a 2-port range: %v", err)
	}
	if n := a.InUse(); n != 3 {
		t.Fatalf("InUse = %d, want 3 (2 new, 1 from the old range)", n)
	}
	// The old lease still works: a connection from its peer is accepted.
	go func() {
		c, err := net.Dial("tcp", old.Addr().String())
		if err == nil {
			c.Close()
		}
	}()
	c, err := old.Accept(ctx)
	if err != nil {
		t.Fatalf("accept on a lease from the old range: %v", err)
	}
	c.Close()
	old.Release()
	leases[0].Release()
	if n := a.InUse(); n != 1 {
		t.Fatalf("InUse after releases = %d, want 1", n)
	}
	l, err := a.Reserve(ctx, lo, lo)
	if err != nil || !second.Contains(l.Port()) {
		t.Fatalf("after releases: %v %v", l, err)
	}
	l.Release()
	leases[1].Release()
}

// TestSetRangeDuringReserve: a Reserve that read the range before a SetRange dropped it (no
// lease out then) still counts its port in InUse, and forgets the old range on release.
func TestSetRangeDuringReserve(t *testing.T) {
	a := NewAllocator(PortRange{First: 40000, Last: 40001}, nil)
	a.mu.Lock()
	ps := a.cur
	a.mu.Unlock()
	a.SetRange(PortRange{First: 41000, Last: 41001})
	port, _, ok := a.take(ps)
	if !ok || a.InUse() != 1 {
		t.Fatalf("take from the dropped range: ok %v, InUse %d; want true, 1", ok, a.InUse())
	}
	a.put(ps, port)
	if a.InUse() != 0 || len(a.old) != 0 {
		t.Fatalf("after put: InUse %d, %d old ranges; want 0, 0", a.InUse(), len(a.old))
	}
}

// The passive listener is plain TCP even where the kernel offers Multipath TCP (Go's
// listeners default to it): one socket per transfer instead of two, and no subflow can join
// the data connection from an address Accept did not check. The data still flows.
func TestReservePlainTCP(t *testing.T) {
	checkNoLeak(t)
	ctx := testCtx(t)
	a := NewAllocator(freeRange(t, 10), nil)
	lease, err := a.Reserve(ctx, loopback, loopback)
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Release()
	if p := sockopt.Must(t, lease.ln, syscall.SOL_SOCKET, syscall.SO_PROTOCOL); p != syscall.IPPROTO_TCP {
		t.Errorf("passive listener protocol %d; want IPPROTO_TCP (%d)", p, syscall.IPPROTO_TCP)
	}
	client, err := dialFrom(loopback, lease.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := lease.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	if p := sockopt.Must(t, server, syscall.SOL_SOCKET, syscall.SO_PROTOCOL); p != syscall.IPPROTO_TCP {
		t.Errorf("accepted data connection protocol %d; want IPPROTO_TCP (%d)", p, syscall.IPPROTO_TCP)
	}
	if _, err := client.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(server, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("server read %q, %v", buf, err)
	}
}
