package proxy

import (
	"context"
	"log/slog"
	"slices"
	"time"
)

// sessionLogger returns base with args added to every record, like base.With(args...), but
// the attributes are kept as values and added when a record is handled, not formatted into
// a derived handler: slog's With keeps a clone of the handler with its preformatted text per
// call (about 1 KiB for a session's three), for lines an idle session never writes. Loggers
// derived from the result with With stay as cheap.
func sessionLogger(base *slog.Logger, args ...any) *slog.Logger {
	return slog.New(&attrsHandler{next: base.Handler()}).With(args...)
}

// attrsHandler adds its attributes before each record's own, which is where a handler's
// With attributes appear in text and JSON output.
type attrsHandler struct {
	next  slog.Handler
	attrs []slog.Attr
}

func (h *attrsHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *attrsHandler) Handle(ctx context.Context, r slog.Record) error {
	nr := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	nr.AddAttrs(h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		nr.AddAttrs(a)
		return true
	})
	return h.next.Handle(ctx, nr)
}

func (h *attrsHandler) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return h
	}
	return &attrsHandler{next: h.next, attrs: append(slices.Clip(h.attrs), as...)}
}

// WithGroup hands the attributes to the next handler first: they stay outside the group.
func (h *attrsHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return h.next.WithAttrs(h.attrs).WithGroup(name)
}

// logRecord writes msg at level through l, like l.Log(ctx, level, msg, args...) but cheaper,
// for the lines every session writes (session start and end, login, transfer): slog looks up
// the caller's program counter for each record (runtime.Callers), which only a handler that
// adds the source uses, and none of ftpsproxy's does; and a session logger's attributes go
// straight into the record instead of through attrsHandler.Handle's copy.
func logRecord(ctx context.Context, l *slog.Logger, level slog.Level, msg string, args ...any) {
	h := l.Handler()
	if !h.Enabled(ctx, level) {
		return
	}
	r := slog.NewRecord(time.Now(), level, msg, 0)
	if ah, ok := h.(*attrsHandler); ok {
		r.AddAttrs(ah.attrs...)
		h = ah.next
	}
	r.Add(args...)
	h.Handle(ctx, r)
}
