package tlsterm

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// newZapLogger returns a zap logger that writes into h, for certmagic (which logs with zap).
func newZapLogger(h slog.Handler) *zap.Logger {
	return zap.New(&zapSlogCore{h: h})
}

// zapSlogCore is a zapcore.Core forwarding entries to a slog.Handler: the level is mapped, the
// fields become attrs, and the logger name (certmagic's "obtain", "renew", "handshake"...)
// becomes the "component" attr.
type zapSlogCore struct{ h slog.Handler }

func zapLevel(l zapcore.Level) slog.Level {
	switch {
	case l <= zapcore.DebugLevel:
		return slog.LevelDebug
	case l == zapcore.InfoLevel:
		return slog.LevelInfo
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	default: // Error, DPanic, Panic, Fatal
		return slog.LevelError
	}
}

func (c *zapSlogCore) Enabled(l zapcore.Level) bool {
	return c.h.Enabled(context.Background(), zapLevel(l))
}

func (c *zapSlogCore) With(fields []zapcore.Field) zapcore.Core {
	h := c.h
	// A namespace opens a group holding every later field (and the logger's later context).
	for i, f := range fields {
		if f.Type == zapcore.NamespaceType {
			if attrs := zapAttrs(fields[:i]); len(attrs) > 0 {
				h = h.WithAttrs(attrs)
			}
			h = h.WithGroup(f.Key)
			return (&zapSlogCore{h: h}).With(fields[i+1:])
		}
	}
	if attrs := zapAttrs(fields); len(attrs) > 0 {
		h = h.WithAttrs(attrs)
	}
	return &zapSlogCore{h: h}
}

func (c *zapSlogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *zapSlogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	r := slog.NewRecord(e.Time, zapLevel(e.Level), e.Message, 0)
	// Names join with "."; certmagic's unnamed root makes some start with one.
	if name := strings.TrimPrefix(e.LoggerName, "."); name != "" {
		r.AddAttrs(slog.String("component", name))
	}
	r.AddAttrs(zapAttrs(fields)...)
	if e.Stack != "" {
		r.AddAttrs(slog.String("stack", e.Stack))
	}
	return c.h.Handle(context.Background(), r)
}

func (c *zapSlogCore) Sync() error { return nil }

// zapAttrs converts zap fields to slog attrs; a namespace field groups the fields after it.
func zapAttrs(fields []zapcore.Field) []slog.Attr {
	out := make([]slog.Attr, 0, len(fields))
	for i, f := range fields {
		switch f.Type {
		case zapcore.SkipType:
		case zapcore.NamespaceType:
			return append(out, slog.Attr{Key: f.Key, Value: slog.GroupValue(zapAttrs(fields[i+1:])...)})
		case zapcore.StringType:
			out = append(out, slog.String(f.Key, f.String))
		case zapcore.BoolType:
			out = append(out, slog.Bool(f.Key, f.Integer == 1))
		case zapcore.Int64Type, zapcore.Int32Type, zapcore.Int16Type, zapcore.Int8Type:
			out = append(out, slog.Int64(f.Key, f.Integer))
		case zapcore.Uint64Type, zapcore.Uint32Type, zapcore.Uint16Type, zapcore.Uint8Type, zapcore.UintptrType:
			out = append(out, slog.Uint64(f.Key, uint64(f.Integer)))
		case zapcore.DurationType:
			out = append(out, slog.Duration(f.Key, time.Duration(f.Integer)))
		case zapcore.ErrorType:
			out = append(out, slog.Any(f.Key, f.Interface))
		default:
			// Everything else (times, floats, arrays, objects, reflected values, stringers)
			// through zap's own in-memory encoder.
			enc := zapcore.NewMapObjectEncoder()
			f.AddTo(enc)
			for _, k := range slices.Sorted(maps.Keys(enc.Fields)) {
				out = append(out, slog.Any(k, enc.Fields[k]))
			}
		}
	}
	return out
}
