package proxy

import (
	"errors"
	"log/slog"
	"net/netip"
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

// checkListenerAccess refuses a client that the listener's allow/deny lists do not admit.
// It runs on the real client address (after a PROXY header) and before anything else of the
// session happens, so no backend is contacted. The refusal is quiet in the session's own log
// (the session logger is discarded) and rate-limited in the server's.
func (s *session) checkListenerAccess() error {
	ip := s.clientAddr.Addr()
	if s.lc.Access.Permits(ip) {
		return nil
	}
	// A refused network can open connections as fast as it likes: the line is rate-limited.
	s.srv.limitLog.Warn(s.srv.log, "client refused", "listener", s.lc.name(), "client", ip.String(),
		"reason", "listener.allow/deny")
	s.log = slog.New(slog.DiscardHandler)
	return end421(CauseDenied, errDenied)
}

// access returns the route's allow/deny lists.
func (r *Route) access() AccessList { return AccessList{Allow: r.Allow, Deny: r.Deny} }

// checkRouteAccess refuses a client that the matched route's allow/deny lists do not admit.
func (s *session) checkRouteAccess(r *Route, why string) error {
	if r == nil || r.access().Permits(s.clientAddr.Addr()) {
		return nil
	}
	s.srv.limitLog.Warn(s.log, "client refused", "route", why, "client", s.clientAddr.Addr().String(),
		"reason", "route.allow/deny")
	return end421(CauseDenied, errDenied)
}
