package proxy

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
)

// TestSessionLoggerMatchesWith: a session logger writes the same lines as slog's With, in
// text and JSON, through further With calls and a group; so does logRecord.
func TestSessionLoggerMatchesWith(t *testing.T) {
	for _, json := range []bool{false, true} {
		var a, b bytes.Buffer
		mk := func(w *bytes.Buffer) *slog.Logger {
			o := &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
				if a.Key == slog.TimeKey {
					return slog.Attr{}
				}
				return a
			}}
			if json {
				return slog.New(slog.NewJSONHandler(w, o)).With("server", "x")
			}
			return slog.New(slog.NewTextHandler(w, o)).With("server", "x")
		}
		want := mk(&a).With("session", "1a", "client", "192.0.2.1:5000")
		got := sessionLogger(mk(&b), "session", "1a", "client", "192.0.2.1:5000")
		for _, l := range [][2]*slog.Logger{{want, got}, {want.With("user", "bob"), got.With("user", "bob")}} {
			l[0].Info("login ok", "n", 1, "ok", true)
			l[1].Info("login ok", "n", 1, "ok", true)
			// logRecord writes what slog does, through a session logger and through another.
			ctx := context.Background()
			l[0].Info("transfer", "bytes", int64(7), "err", "")
			logRecord(ctx, l[1], slog.LevelInfo, "transfer", "bytes", int64(7), "err", "")
			logRecord(ctx, l[0], slog.LevelInfo, "session end", "end", "quit")
			l[1].Info("session end", "end", "quit")
			l[0].Log(ctx, slog.LevelDebug-1, "below the level")
			logRecord(ctx, l[1], slog.LevelDebug-1, "below the level")
			l[0].With("backend", "b1").WithGroup("g").Warn("w", "k", "v")
			l[1].With("backend", "b1").WithGroup("g").Warn("w", "k", "v")
			l[0].Debug("d", slog.Group("grp", "a", 1))
			l[1].Debug("d", slog.Group("grp", "a", 1))
		}
		if a.String() != b.String() {
			t.Fatalf("json=%v:\nWith:\n%s\nsessionLogger:\n%s", json, a.String(), b.String())
		}
		if !bytes.Contains(b.Bytes(), []byte("bob")) || !bytes.Contains(b.Bytes(), []byte("b1")) {
			t.Fatalf("attributes missing:\n%s", b.String())
		}
	}
}
