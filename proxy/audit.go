package proxy

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"strings"
	"time"
)

// The session's audit lines (README, Logs). A connection is logged at info only once it
// matters: "session start" at its first USER, when its TLS state, SNI and HOST are settled,
// and "session end" when it ends. Until the session has logged in, anyone can cause these
// lines, so they go through the per-cause rate limit (Server.limitLog); after a login they
// are always written.

// audit logs msg at level for this session: at once when it has logged in, else through
// the outsider rate limit; a health check's lines at debug only.
func (s *session) audit(level slog.Level, msg string, args ...any) {
	if s.healthCheck {
		level = slog.LevelDebug
	}
	if s.loggedIn || s.healthCheck {
		s.log.Log(s.ctx, level, msg, args...)
		return
	}
	s.srv.limitLog.Log(s.log, level, msg, args...)
}

// logStart writes "session start" once, at the first USER.
func (s *session) logStart() {
	if s.started {
		return
	}
	s.started = true
	s.audit(slog.LevelInfo, "session start", append([]any{"listener", s.lc.Address}, s.tlsAttrs()...)...)
}

// logEnd writes "session end" with the session's counts and how it ended.
func (s *session) logEnd(start time.Time, err error) {
	end := "quit"
	if err != nil && !errors.Is(err, errQuit) {
		end = err.Error()
	}
	attrs := append([]any{
		"duration_s", time.Since(start).Round(time.Millisecond).Seconds(),
		"commands", s.stats.commands, "transfers", s.stats.transfers,
		"bytes_in", s.stats.bytesIn, "bytes_out", s.stats.bytesOut,
		"end", end,
	}, s.tlsAttrs()...)
	s.audit(slog.LevelInfo, "session end", attrs...)
}

// tlsAttrs describes the client control connection's TLS: tls (none, TLS1.2, TLS1.3),
// cipher, sni and resumed.
func (s *session) tlsAttrs() []any {
	tc, ok := s.client.(*tls.Conn)
	if !ok || !s.tlsOn {
		return []any{"tls", "none"}
	}
	st := tc.ConnectionState()
	return []any{
		"tls", strings.ReplaceAll(tls.VersionName(st.Version), " ", ""),
		"cipher", tls.CipherSuiteName(st.CipherSuite),
		"sni", s.sni,
		"resumed", st.DidResume,
	}
}
