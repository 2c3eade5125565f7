package nat

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ErrPortsExhausted is returned by Reserve when every port of the range is leased or held by
// another process. The proxy answers 425 and the session goes on.
var ErrPortsExhausted = errors.New("nat: passive port range exhausted")

// PortRange is an inclusive range of TCP ports, such as the passive ports a firewall forwards to
// the proxy.
type PortRange struct {
	First, Last uint16
}

// MinPort is the lowest port a PortRange may hold: ports below it are the well-known ports of
// other services (and need privileges to bind).
const MinPort = 1024

// ParsePortRange parses "first-last" (e.g. "20000-20999") or a single port ("20000"), with
// MinPort <= first <= last <= 65535. No spaces are allowed. It is the one parser of a port
// range: the config file's data.port_range goes through it (UnmarshalText), so its error
// texts are written for the operator.
func ParsePortRange(s string) (PortRange, error) {
	firstStr, lastStr, isRange := strings.Cut(s, "-")
	if !isRange {
		lastStr = firstStr
	}
	first, end1, err1 := readUint(firstStr, 0, maxPortDigits)
	last, end2, err2 := readUint(lastStr, 0, maxPortDigits)
	switch {
	case err1 != nil || err2 != nil || end1 != len(firstStr) || end2 != len(lastStr):
		return PortRange{}, fmt.Errorf("invalid port range %q; want \"LOW-HIGH\" (e.g. \"20000-20999\") or one port", s)
	case first < MinPort || last > 65535:
		return PortRange{}, fmt.Errorf("port range %q must lie within %d-65535", s, MinPort)
	case first > last:
		return PortRange{}, fmt.Errorf("port range %q is reversed: %d is above %d", s, first, last)
	}
	return PortRange{First: uint16(first), Last: uint16(last)}, nil
}

// UnmarshalText parses r with ParsePortRange.
func (r *PortRange) UnmarshalText(b []byte) error {
	v, err := ParsePortRange(string(b))
	if err == nil {
		*r = v
	}
	return err
}

// Validate reports whether r is usable: First at least MinPort and not after Last.
func (r PortRange) Validate() error {
	if r.First < MinPort {
		return fmt.Errorf("nat: port range %s: ports below %d are not used for data", r, MinPort)
	}
	if r.First > r.Last {
		return fmt.Errorf("nat: port range %s: first port after last", r)
	}
	return nil
}

// Len returns the number of ports in r, 0 if r is inverted.
func (r PortRange) Len() int {
	if r.First > r.Last {
		return 0
	}
	return int(r.Last) - int(r.First) + 1
}

// Contains reports whether port p is in r.
func (r PortRange) Contains(p uint16) bool { return r.First <= p && p <= r.Last }

// String returns r in the form ParsePortRange reads.
func (r PortRange) String() string {
	if r.First == r.Last {
		return strconv.Itoa(int(r.First))
	}
	return strconv.Itoa(int(r.First)) + "-" + strconv.Itoa(int(r.Last))
}

// Allocator hands out the proxy's passive data ports from one PortRange. It is safe for
// concurrent use; create it with NewAllocator. SetRange changes the range for new leases
// while leases taken from the old one stay valid until released.
//
// A released lease's socket is kept, bound but not listening, for the next lease of its port
// (see Reserve): a port between leases refuses connections as a closed one does, and the
// next lease needs one listen(2) instead of a socket, its options, bind, listen, its poller
// registration and, at the end, its close. It costs one descriptor per port of the range
// that has been leased once; StopReusing closes them and keeps no more.
type Allocator struct {
	onForeign func(netip.AddrPort)

	mu      sync.Mutex
	cur     *portSet   // where new leases come from
	old     []*portSet // earlier ranges with leases still out
	noReuse bool       // StopReusing was called
}

// portSet is one range's lease table. Its fields are guarded by the Allocator's mu.
type portSet struct {
	r      PortRange
	leased []bool // indexed by port - r.First; true while a lease or a bind attempt holds it
	inUse  int
	cursor int // index where the next search starts, so a just-released port is reused last
	// idle holds, by the same index, the sockets of released leases (bound, not listening)
	// kept for the port's next lease; nil until the first is kept.
	idle []idleSocket
}

// idleSocket is a released lease's listener after pause: bound to ip and the port, listening
// no more.
type idleSocket struct {
	ln *net.TCPListener
	ip netip.Addr
}

func newPortSet(r PortRange) *portSet { return &portSet{r: r, leased: make([]bool, r.Len())} }

// NewAllocator returns an allocator over r. onForeign, which may be nil, is called from
// Lease.Accept with the address of every connection refused because it did not come from the
// lease's peer; it should return quickly, since Accept waits for it. If r is invalid, Reserve
// reports the error.
func NewAllocator(r PortRange, onForeign func(peer netip.AddrPort)) *Allocator {
	return &Allocator{onForeign: onForeign, cur: newPortSet(r)}
}

// Range returns the range new leases come from.
func (a *Allocator) Range() PortRange {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cur.r
}

// Idle returns the number of sockets kept for the next leases of their ports (see
// Allocator): descriptors the allocator holds between leases.
func (a *Allocator) Idle() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, is := range a.cur.idle {
		if is.ln != nil {
			n++
		}
	}
	return n
}

// SetRange makes new leases come from r (a reload of data.port_range). Leases already out
// keep their ports until released; their range counts in InUse until then. The sockets kept
// for the old range's ports are closed.
func (a *Allocator) SetRange(r PortRange) {
	a.mu.Lock()
	if r == a.cur.r {
		a.mu.Unlock()
		return
	}
	idle := a.cur.takeIdle()
	if a.cur.inUse > 0 {
		a.old = append(a.old, a.cur)
	}
	a.cur = newPortSet(r)
	a.mu.Unlock()
	closeAll(idle)
}

// StopReusing closes the sockets kept for the next leases of their ports and keeps no more:
// from now on every lease binds a socket of its own and closes it when released. The proxy
// calls it when it begins to drain, so that the process taking over (an upgrade) finds the
// ports as they would be without this one. Reserve goes on working.
func (a *Allocator) StopReusing() {
	a.mu.Lock()
	a.noReuse = true
	idle := a.cur.takeIdle()
	a.mu.Unlock()
	closeAll(idle)
}

// takeIdle empties ps's kept sockets into the returned list and frees their ports. a.mu is
// held.
func (ps *portSet) takeIdle() []*net.TCPListener {
	var lns []*net.TCPListener
	for i := range ps.idle {
		if ln := ps.idle[i].ln; ln != nil {
			lns = append(lns, ln)
			ps.idle[i] = idleSocket{}
			ps.leased[i] = false
		}
	}
	return lns
}

func closeAll(lns []*net.TCPListener) {
	for _, ln := range lns {
		_ = ln.Close()
	}
}

// InUse returns the number of ports currently leased, counting a Reserve that is binding one
// and leases from ranges in force before a SetRange.
func (a *Allocator) InUse() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := a.cur.inUse
	for _, ps := range a.old {
		n += ps.inUse
	}
	return n
}

// Reserve binds a TCP listener on listenIP and a free port of the range and returns its lease.
// The listener is bound before Reserve returns, so the 227 or 229 reply can go out at once.
//
// Ports are tried from a rotating cursor, so a port just released is the last to be reused and a
// late connection meant for the previous transfer does not reach the next one. Ports leased by
// this allocator are skipped, and so are ports another process holds (EADDRINUSE); when none is
// left Reserve returns an error wrapping ErrPortsExhausted. Other bind errors, such as listenIP
// not being a local address, are returned as they are, since trying more ports would not help.
// A port whose earlier lease left its socket (see Allocator) listens on that socket again
// when it is for the same listenIP; otherwise the socket is closed and a new one bound.
//
// peer is the only IP (any port) the lease accepts a connection from: the client's real IP, as
// seen on the control connection.
func (a *Allocator) Reserve(ctx context.Context, listenIP, peer netip.Addr) (*Lease, error) {
	a.mu.Lock()
	ps := a.cur
	a.mu.Unlock()
	if err := ps.r.Validate(); err != nil {
		return nil, fmt.Errorf("nat: reserve: %w", err)
	}
	if !listenIP.IsValid() {
		return nil, errors.New("nat: reserve: invalid listen address")
	}
	if !peer.IsValid() {
		return nil, errors.New("nat: reserve: invalid peer address")
	}
	listenIP = listenIP.Unmap()
	// An explicit family keeps an IPv4 listen address from becoming a dual-stack [::] socket.
	network := "tcp6"
	if listenIP.Is4() {
		network = "tcp4"
	}
	// Data connections live one transfer under the proxy's data timeout: no TCP keep-alive
	// (four setsockopt calls per connection). Plain TCP, not Go's default Multipath TCP: an
	// MPTCP listener is a second kernel socket (its first subflow) made and torn down per
	// transfer, and MPTCP would let a connection add subflows from addresses Accept never
	// checks against peer.
	lc := net.ListenConfig{KeepAlive: -1}
	lc.SetMultipathTCP(false)
	for range ps.r.Len() {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("nat: reserve: %w", err)
		}
		port, idle, ok := a.take(ps)
		if !ok {
			break
		}
		lease := &Lease{
			a:    a,
			ps:   ps,
			addr: netip.AddrPortFrom(listenIP, port),
			peer: peer.Unmap().WithZone(""),
		}
		if idle.ln != nil {
			if idle.ip == listenIP && listenAgain(idle.ln) == nil {
				lease.ln = idle.ln
				return lease, nil
			}
			// Another address, or another socket listens on the port now (a process
			// taking over): a socket of its own, or EADDRINUSE below.
			_ = idle.ln.Close()
		}
		ln, err := lc.Listen(ctx, network, lease.addr.String())
		if err != nil {
			a.put(ps, port)
			if errors.Is(err, syscall.EADDRINUSE) {
				continue
			}
			return nil, fmt.Errorf("nat: reserve port %d: %w", port, err)
		}
		lease.ln = ln.(*net.TCPListener) // Listen on a tcp network always returns one
		return lease, nil
	}
	return nil, fmt.Errorf("%w (%s)", ErrPortsExhausted, ps.r)
}

// take marks the first free port of ps at or after its cursor as leased, and hands over the
// socket an earlier lease of the port left, if any. A ps that a SetRange since Reserve read
// it dropped (it had no lease then) is listed among the old ranges again, so the port counts
// in InUse and put forgets ps once more.
func (a *Allocator) take(ps *portSet) (uint16, idleSocket, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if ps != a.cur && ps.inUse == 0 && !slices.Contains(a.old, ps) {
		a.old = append(a.old, ps)
	}
	n := len(ps.leased)
	for k := range n {
		i := (ps.cursor + k) % n
		var idle idleSocket
		if ps.idle != nil {
			idle = ps.idle[i]
		}
		if ps.leased[i] && idle.ln == nil {
			continue // out on a lease, or being bound (a kept socket's port stays marked)
		}
		if idle.ln != nil {
			ps.idle[i] = idleSocket{}
		}
		ps.leased[i] = true
		ps.inUse++
		ps.cursor = (i + 1) % n
		return ps.r.First + uint16(i), idle, true
	}
	return 0, idleSocket{}, false
}

// put returns port to ps, and forgets ps once it is an old range with no lease left.
func (a *Allocator) put(ps *portSet, port uint16) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.putLocked(ps, port)
}

func (a *Allocator) putLocked(ps *portSet, port uint16) {
	if i := int(port) - int(ps.r.First); i >= 0 && i < len(ps.leased) && ps.leased[i] {
		ps.leased[i] = false
		ps.inUse--
	}
	if ps.inUse == 0 && ps != a.cur {
		a.old = slices.DeleteFunc(a.old, func(o *portSet) bool { return o == ps })
	}
}

// putIdle returns a released lease's port, keeping its paused socket for the port's next
// lease while ps is the current range and StopReusing was not called; otherwise it closes it.
func (a *Allocator) putIdle(ps *portSet, addr netip.AddrPort, ln *net.TCPListener) {
	a.mu.Lock()
	i := int(addr.Port()) - int(ps.r.First)
	if ps != a.cur || a.noReuse || i < 0 || i >= len(ps.leased) || !ps.leased[i] {
		a.putLocked(ps, addr.Port())
		a.mu.Unlock()
		_ = ln.Close()
		return
	}
	if ps.idle == nil {
		ps.idle = make([]idleSocket, len(ps.leased))
	}
	ps.idle[i] = idleSocket{ln: ln, ip: addr.Addr()} // the port stays marked until take
	ps.inUse--
	a.mu.Unlock()
}

// Lease is one reserved passive port with its bound listener: one per pending transfer. The
// proxy reserves it at PASV/EPSV, accepts on it at RETR, STOR, LIST and the like, and releases it
// when the transfer is over.
type Lease struct {
	a    *Allocator
	ps   *portSet // the range the port came from
	ln   *net.TCPListener
	addr netip.AddrPort
	peer netip.Addr // unmapped and zoneless, as compared in Accept

	acceptMu    sync.Mutex // serialises Accept, which owns the listener's deadline
	stopped     bool       // under acceptMu: the listener takes no more connections
	closed      bool       // under acceptMu: stopped by closing the socket (pause failed)
	released    atomic.Bool
	releaseOnce sync.Once
}

// Port returns the leased port.
func (l *Lease) Port() uint16 { return l.addr.Port() }

// Addr returns the address the listener is bound to. With NAT it differs from what the client is
// told; see PassiveAddr.
func (l *Lease) Addr() netip.AddrPort { return l.addr }

// Peer returns the only IP the lease accepts a connection from.
func (l *Lease) Peer() netip.Addr { return l.peer }

// aLongTimeAgo is a deadline in the past, which makes a blocked Accept return at once.
var aLongTimeAgo = time.Unix(1, 0)

// Accept waits for one connection from the lease's peer IP and returns it. A connection from any
// other address is reset (SO_LINGER 0), reported to the allocator's onForeign hook, and Accept
// keeps waiting; FTP bounce and port-stealing attacks therefore cannot take the transfer.
//
// Accept returns an error wrapping ctx.Err() when ctx is done, and one wrapping net.ErrClosed
// once the lease is released or has already accepted its connection: after the first successful
// Accept the listener is closed, so the port takes no further connections. A ctx that ends only
// interrupts the wait; the listener stays open and Accept may be called again. Calls to Accept
// are serialised. The returned *net.TCPConn is the caller's to close; keeping the concrete type
// lets io.Copy between two TCP connections use splice.
func (l *Lease) Accept(ctx context.Context) (*net.TCPConn, error) {
	l.acceptMu.Lock()
	defer l.acceptMu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("nat: accept on %s: %w", l.addr, err)
	}
	// Clear the deadline an earlier Accept may have left when its ctx ended. Release sets one
	// in the past after it marks the lease released: read after the clearing, released
	// tells whether that came first.
	if err := l.ln.SetDeadline(time.Time{}); err != nil {
		return nil, fmt.Errorf("nat: accept on %s: %w", l.addr, err)
	}
	if l.stopped || l.released.Load() {
		return nil, fmt.Errorf("nat: accept on %s: %w", l.addr, net.ErrClosed)
	}
	// A past deadline interrupts AcceptTCP without closing the listener. Waiting for fired
	// before returning means the deadline is never set behind the back of the next Accept, and
	// no goroutine outlives this call by more than its return.
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(fired)
		_ = l.ln.SetDeadline(aLongTimeAgo) // fails only if closed, which interrupts too
	})
	defer func() {
		if !stop() {
			<-fired
		}
	}()

	c, err := l.acceptLocked()
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = ctxErr
		}
		return nil, fmt.Errorf("nat: accept on %s: %w", l.addr, err)
	}
	return c, nil
}

// SetDeadline sets the deadline of AcceptTCP: a wait past it, or one under way when it is
// moved into the past, fails with an error wrapping os.ErrDeadlineExceeded, and the listener
// stays open. Any goroutine may call it, to interrupt the one in AcceptTCP; Accept sets the
// deadline itself, so the two are not for the same lease.
func (l *Lease) SetDeadline(t time.Time) error {
	return l.ln.SetDeadline(t)
}

// AcceptTCP is Accept without a context: it waits until the deadline set with SetDeadline
// (none by default). It needs no goroutine, timer or context of its own, and a deadline moved
// into the past by another goroutine interrupts it.
func (l *Lease) AcceptTCP() (*net.TCPConn, error) {
	l.acceptMu.Lock()
	defer l.acceptMu.Unlock()
	if l.stopped || l.released.Load() {
		return nil, fmt.Errorf("nat: accept on %s: %w", l.addr, net.ErrClosed)
	}
	c, err := l.acceptLocked()
	if err != nil {
		return nil, fmt.Errorf("nat: accept on %s: %w", l.addr, err)
	}
	return c, nil
}

// acceptLocked takes the first connection from the peer, resetting the others, and stops
// the listener.
func (l *Lease) acceptLocked() (*net.TCPConn, error) {
	for {
		c, err := l.ln.AcceptTCP()
		if err != nil {
			if l.released.Load() { // Release's deadline, or the socket closed
				return nil, net.ErrClosed
			}
			return nil, err
		}
		remote, ok := remoteAddrPort(c)
		if !ok || remote.Addr().Unmap().WithZone("") != l.peer {
			// An RST rather than a FIN tells the intruder nothing was ever served here.
			_ = c.SetLinger(0)
			_ = c.Close()
			if l.a.onForeign != nil {
				l.a.onForeign(remote)
			}
			continue
		}
		l.stopListening()
		if l.released.Load() {
			// Release raced with this accept; the caller was promised an error.
			_ = c.Close()
			return nil, net.ErrClosed
		}
		return c, nil
	}
}

// stopListening makes the port refuse connections and resets the ones waiting to be accepted,
// as closing the listener would, but keeps the socket bound for the port's next lease
// (pause). acceptMu is held.
func (l *Lease) stopListening() {
	if l.stopped {
		return
	}
	l.stopped = true
	if err := pause(l.ln); err != nil {
		_ = l.ln.Close()
		l.closed = true
	}
}

// remoteAddrPort returns c's peer address.
func remoteAddrPort(c *net.TCPConn) (netip.AddrPort, bool) {
	ta, ok := c.RemoteAddr().(*net.TCPAddr)
	if !ok || ta == nil {
		return netip.AddrPort{}, false
	}
	return ta.AddrPort(), true
}

// Release stops the listener if it still listens and returns the port, with its socket, to
// the allocator. It is idempotent and may be called concurrently with Accept, which then
// returns an error wrapping net.ErrClosed; Release waits for it to return, so the socket
// never serves two leases at once. A connection already returned by Accept is not touched.
func (l *Lease) Release() {
	l.releaseOnce.Do(func() {
		l.released.Store(true)
		_ = l.ln.SetDeadline(aLongTimeAgo) // interrupts an accept under way
		l.acceptMu.Lock()
		l.stopListening()
		closed := l.closed
		if !closed {
			_ = l.ln.SetDeadline(time.Time{})
		}
		l.acceptMu.Unlock()
		if closed {
			l.a.put(l.ps, l.addr.Port())
			return
		}
		l.a.putIdle(l.ps, l.addr, l.ln)
	})
}

// listenBacklog asks for the largest accept queue; the kernel caps it at somaxconn, which is
// what net.Listen asks for too.
const listenBacklog = 65535

// pause stops ln listening but leaves its socket bound: shutdown(SHUT_RD) on a listening
// socket puts it back in the closed state, and connections to the port are refused until
// listenAgain (HAProxy pauses its listeners so). Those waiting to be accepted are reset.
func pause(ln *net.TCPListener) error {
	return control(ln, func(fd int) error { return syscall.Shutdown(fd, syscall.SHUT_RD) })
}

// listenAgain makes a socket stopped by pause listen again on its address.
func listenAgain(ln *net.TCPListener) error {
	return control(ln, func(fd int) error { return syscall.Listen(fd, listenBacklog) })
}

func control(ln *net.TCPListener, f func(fd int) error) error {
	rc, err := ln.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil {
		return err
	}
	return ferr
}
