package proxy

import (
	"errors"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// AccessList is an allow/deny pair of networks (listener.allow/deny, route.allow/deny).
// Deny wins; an empty Allow admits every address that Deny does not refuse.
type AccessList struct {
	Allow []netip.Prefix
	Deny  []netip.Prefix
}

// Permits reports whether ip may use what the list guards. IPv4-mapped IPv6 addresses are
// compared as IPv4, so a dual-stack listener matches IPv4 prefixes.
func (a AccessList) Permits(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range a.Deny {
		if p.Contains(ip) {
			return false
		}
	}
	if len(a.Allow) == 0 {
		return true
	}
	for _, p := range a.Allow {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// errDenied ends a session whose client address a listener or route refuses.
var errDenied = errors.New("client address refused by access list")

// Denied log lines are rate-limited: a refused network can open connections as fast as it
// likes, and each would otherwise write several lines.
const (
	deniedLogRate  = 5 // lines per second
	deniedLogBurst = 5
)

// denyLog writes "client refused" lines at most deniedLogRate per second; the next line
// written reports how many were dropped in between.
type denyLog struct {
	lim        *rate.Limiter
	suppressed atomic.Uint64
}

func newDenyLog() *denyLog {
	return &denyLog{lim: rate.NewLimiter(deniedLogRate, deniedLogBurst)}
}

func (d *denyLog) warn(log *slog.Logger, msg string, attrs ...any) {
	if !d.lim.AllowN(time.Now(), 1) {
		d.suppressed.Add(1)
		return
	}
	if n := d.suppressed.Swap(0); n > 0 {
		attrs = append(attrs, "suppressed", n)
	}
	log.Warn(msg, attrs...)
}

// denyLogs is the Server's limiter, made on first use so a Server literal in tests works.
func (s *Server) denyLogs() *denyLog {
	if d := s.denied.Load(); d != nil {
		return d
	}
	s.denied.CompareAndSwap(nil, newDenyLog())
	return s.denied.Load()
}

// checkListenerAccess refuses a client that the listener's allow/deny lists do not admit.
// It runs on the real client address (after a PROXY header) and before anything else of the
// session happens, so no backend is contacted. The refusal is quiet in the session's own log
// (the session logger is discarded) and rate-limited in the server's.
func (s *session) checkListenerAccess() error {
	ip := s.clientAddr.Addr()
	if s.lc.Access.Permits(ip) {
		return nil
	}
	s.srv.denyLogs().warn(s.srv.log, "client refused", "listener", s.lc.name(), "client", ip.String(),
		"reason", "listener.allow/deny")
	s.base = slog.New(slog.DiscardHandler)
	s.log = s.base
	return end421(CauseDenied, errDenied)
}

// access returns the route's allow/deny lists.
func (r *Route) access() AccessList { return AccessList{Allow: r.Allow, Deny: r.Deny} }

// checkRouteAccess refuses a client that the matched route's allow/deny lists do not admit.
func (s *session) checkRouteAccess(r *Route, why string) error {
	if r == nil || r.access().Permits(s.clientAddr.Addr()) {
		return nil
	}
	s.srv.denyLogs().warn(s.log, "client refused", "route", why, "client", s.clientAddr.Addr().String(),
		"reason", "route.allow/deny")
	return end421(CauseDenied, errDenied)
}
