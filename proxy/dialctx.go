package proxy

import (
	"context"
	"net"
	"net/netip"
	"time"
)

// dialCtx is a context with a deadline of its own and no timer: ctx's end still interrupts,
// and the deadline is only reported. net.Dialer puts it on the socket being connected, which
// is all a dial to an address needs; context.WithTimeout would start a runtime timer and,
// under a cancellable ctx, register itself among ctx's children, on every session's path
// (the backend's control connection, each data connection). Nothing else may be given one:
// other users of a context expect Done to close at the deadline, and this one's does not.
type dialCtx struct {
	context.Context
	deadline time.Time
}

func (c dialCtx) Deadline() (time.Time, bool) { return c.deadline, true }

// dialWithin dials addr over TCP with d for at most timeout (less when ctx's own deadline is
// earlier), or until ctx ends. The dialer sets a context's deadline on the socket only when
// the context can end, and a host name's lookup needs the deadline in Done: both go through
// context.WithDeadline.
func dialWithin(ctx context.Context, d *net.Dialer, addr string, timeout time.Duration) (net.Conn, error) {
	deadline := capDeadline(ctx, time.Now().Add(timeout))
	if _, err := netip.ParseAddrPort(addr); err != nil || ctx.Done() == nil {
		ctx, cancel := context.WithDeadline(ctx, deadline)
		defer cancel()
		return d.DialContext(ctx, "tcp", addr)
	}
	return d.DialContext(dialCtx{ctx, deadline}, "tcp", addr)
}

// capDeadline returns deadline, or ctx's deadline when that is earlier.
func capDeadline(ctx context.Context, deadline time.Time) time.Time {
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		return d
	}
	return deadline
}
