package proxy

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// SessionInfo is a read-only snapshot of one running session, as the admin API lists it.
// It never carries a password: Command shows PASS and ACCT redacted.
type SessionInfo struct {
	ID       string
	Client   string // the client's real address (after PROXY protocol)
	User     string // "" before USER
	Pool     string // "" before login
	Backend  string // the backend's label (name, else address); "" before login
	Since    time.Time
	BytesIn  int64  // client to backend, transfers finished so far
	BytesOut int64  // backend to client, transfers finished so far
	Command  string // the last command received, redacted
}

// sessionLive is the part of a session other goroutines may read: the owner writes it
// through the set methods at a few points (USER, login, each command, each transfer), and
// the admin API reads it with snapshot. Everything else in a session stays the owner's.
type sessionLive struct {
	since    time.Time // the accept time (admin API, session end log, duration), set before the session is shared
	bytesIn  atomic.Int64
	bytesOut atomic.Int64
	closing  atomic.Bool  // CloseSession was called: end with the administrator's 421
	active   atomic.Int64 // unix nanoseconds of the start or the last command received

	mu      sync.Mutex
	user    string
	pool    string
	backend string
	cmd     Command
	cancel  context.CancelFunc // the session's, once Run has started
}

func (l *sessionLive) setUser(u string) {
	l.mu.Lock()
	l.user = u
	l.mu.Unlock()
}

func (l *sessionLive) setBackend(pool, backend string) {
	l.mu.Lock()
	l.pool, l.backend = pool, backend
	l.mu.Unlock()
}

func (l *sessionLive) setCommand(c Command) {
	l.active.Store(time.Now().UnixNano())
	l.mu.Lock()
	l.cmd = c
	l.mu.Unlock()
}

// setCancel records the session's cancel function; a close requested before Run started
// takes effect at once.
func (l *sessionLive) setCancel(cancel context.CancelFunc) {
	l.mu.Lock()
	l.cancel = cancel
	l.mu.Unlock()
	if l.closing.Load() {
		cancel()
	}
}

func (s *session) snapshot() SessionInfo {
	l := &s.live
	l.mu.Lock()
	defer l.mu.Unlock()
	info := SessionInfo{
		ID: s.id, Client: s.clientAddr.String(), User: l.user, Pool: l.pool, Backend: l.backend,
		Since: l.since, BytesIn: l.bytesIn.Load(), BytesOut: l.bytesOut.Load(),
	}
	if l.cmd.Verb != "" {
		info.Command = l.cmd.LogString()
	}
	return info
}

// interrupt is what the end of a session's context does: backend reads end at once, and the
// client connection is closed, or, when an administrator closed the session, only its reads
// are woken so the owner can still send the 421 before teardown closes the connection.
func (s *session) interrupt() {
	s.bw.stop()
	s.cw.stop()
	s.ownerEvent()
	if s.live.closing.Load() {
		s.raw.SetReadDeadline(time.Now())
		return
	}
	s.raw.Close()
}

// SessionList returns a snapshot of every running session, ordered by start time.
func (s *Server) SessionList() []SessionInfo {
	s.mu.Lock()
	out := make([]SessionInfo, 0, len(s.sessions))
	for _, sess := range s.sessions {
		out = append(out, sess.snapshot())
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b SessionInfo) int {
		if c := a.Since.Compare(b.Since); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// Quiet reports whether no session has started or received a command for d: the clients of
// an upgraded process that were in the middle of a short exchange have finished it. Sessions
// in a transfer count as quiet (the drain lets transfers finish anyway).
func (s *Server) Quiet(d time.Duration) bool {
	since := time.Now().Add(-d).UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sess := range s.sessions {
		if sess.live.active.Load() > since {
			return false
		}
	}
	return true
}

// CloseSession ends the session id with "421 Session closed by administrator": a transfer in
// progress is cut, and both legs are closed. It reports false when no such session runs.
func (s *Server) CloseSession(id string) bool {
	s.mu.Lock()
	sess := s.sessions[id]
	s.mu.Unlock()
	if sess == nil {
		return false
	}
	l := &sess.live
	l.closing.Store(true)
	l.mu.Lock()
	cancel := l.cancel
	l.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	return true
}
