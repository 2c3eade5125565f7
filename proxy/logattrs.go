package proxy

import (
	"context"
	"log/slog"
	"slices"
	"time"
)

// sessionHandler gives every record of a session the session's attributes, read from the
// session when the record is handled: session and client, then via, health_check,
// cert_subject, user and backend once known; then attributes added with With. Nothing is
// formatted or copied ahead: slog's With would keep a derived handler with a copy of the
// attributes each time one is added (about 400 bytes a session, for lines an idle session
// never writes). The session sets these fields before any goroutine but its owner logs
// through it (user and cert_subject before login, backend at login before the client reader
// starts), so a record reads them without a lock.
type sessionHandler struct {
	next  slog.Handler
	s     *session
	attrs []slog.Attr // added with With, after the session's
}

// initLog makes s.log the session's logger over base.
func (s *session) initLog(base *slog.Logger) {
	s.log = slog.New(&sessionHandler{next: base.Handler(), s: s})
}

// addLogAttrs adds the session's attributes to r.
func (s *session) addLogAttrs(r *slog.Record) {
	r.AddAttrs(slog.String("session", s.id), slog.String("client", s.clientAddr.String()))
	if s.header != nil {
		r.AddAttrs(slog.String("via", s.header.via.String()))
	}
	if s.healthCheck {
		r.AddAttrs(slog.Bool("health_check", true))
	}
	if s.certSubject != "" {
		r.AddAttrs(slog.String("cert_subject", s.certSubject))
	}
	if s.user != "" {
		r.AddAttrs(slog.String("user", s.user))
	}
	if s.backend != nil {
		r.AddAttrs(slog.String("backend", s.backend.String()))
	}
}

func (h *sessionHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

// addAttrs adds the session's attributes to r, then those added with With.
func (h *sessionHandler) addAttrs(r *slog.Record) {
	h.s.addLogAttrs(r)
	r.AddAttrs(h.attrs...)
}

func (h *sessionHandler) Handle(ctx context.Context, r slog.Record) error {
	nr := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	h.addAttrs(&nr)
	r.Attrs(func(a slog.Attr) bool {
		nr.AddAttrs(a)
		return true
	})
	return h.next.Handle(ctx, nr)
}

func (h *sessionHandler) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return h
	}
	return &sessionHandler{next: h.next, s: h.s, attrs: append(slices.Clip(h.attrs), as...)}
}

// WithGroup hands the attributes, as they are now, to the next handler first: they stay
// outside the group.
func (h *sessionHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	var r slog.Record
	h.addAttrs(&r)
	as := make([]slog.Attr, 0, r.NumAttrs())
	r.Attrs(func(a slog.Attr) bool {
		as = append(as, a)
		return true
	})
	return h.next.WithAttrs(as).WithGroup(name)
}

// logRecord writes msg at level through l, like l.Log(ctx, level, msg, args...) but cheaper,
// for the lines every session writes (session start and end, login, transfer): slog looks up
// the caller's program counter for each record (runtime.Callers), which only a handler that
// adds the source uses, and none of ftpsproxy's does; and a session logger's attributes go
// straight into the record instead of through sessionHandler.Handle's copy.
func logRecord(ctx context.Context, l *slog.Logger, level slog.Level, msg string, args ...any) {
	h := l.Handler()
	if !h.Enabled(ctx, level) {
		return
	}
	r := slog.NewRecord(time.Now(), level, msg, 0)
	if sh, ok := h.(*sessionHandler); ok {
		sh.addAttrs(&r)
		h = sh.next
	}
	r.Add(args...)
	h.Handle(ctx, r)
}
