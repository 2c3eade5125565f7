package proxy

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"strings"
	"sync"
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
	if s.loggedIn || s.healthCheck || s.srv.limitLog.Allow(s.log, level, msg) {
		logRecord(s.ctx, s.log, level, msg, args...)
	}
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

// cipherNames caches tls.CipherSuiteName, which builds the list of every suite on each call
// (two log lines of every TLS session name their cipher).
var cipherNames = sync.OnceValue(func() map[uint16]string {
	m := map[uint16]string{}
	for _, c := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		m[c.ID] = c.Name
	}
	return m
})

func cipherName(id uint16) string {
	if n, ok := cipherNames()[id]; ok {
		return n
	}
	return tls.CipherSuiteName(id)
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
		"cipher", cipherName(st.CipherSuite),
		"sni", s.sni,
		"resumed", st.DidResume,
	}
}

// auditFileOp logs, at info, a file operation the backend answered (DELE, MKD, RMD, SITE
// CHMOD; RNFR and RNTO as one rename record), with the backend's reply code, so the log tells
// who changed what and whether it worked. Uploads (STOR, APPE, STOU) are logged by their
// transfer record.
func (s *session) auditFileOp(cmd Command, code int) {
	from := s.rnfr
	s.rnfr = ""
	switch cmd.Verb {
	case "DELE":
		s.log.Info("file op", "op", "delete", "path", cmd.Arg, "reply", code)
	case "MKD", "XMKD":
		s.log.Info("file op", "op", "mkdir", "path", cmd.Arg, "reply", code)
	case "RMD", "XRMD":
		s.log.Info("file op", "op", "rmdir", "path", cmd.Arg, "reply", code)
	case "RNFR":
		if code == 350 {
			s.rnfr = cmd.Arg // the record is written at the RNTO
			return
		}
		s.log.Info("file op", "op", "rename", "from", cmd.Arg, "reply", code)
	case "RNTO":
		s.log.Info("file op", "op", "rename", "from", from, "to", cmd.Arg, "reply", code)
	case "SITE":
		if verb, rest, _ := strings.Cut(cmd.Arg, " "); strings.EqualFold(verb, "CHMOD") {
			mode, path, _ := strings.Cut(strings.TrimSpace(rest), " ")
			s.log.Info("file op", "op", "chmod", "mode", mode, "path", path, "reply", code)
		}
	}
}
