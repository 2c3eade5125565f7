package proxy

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"testing"

	"github.com/ftpsproxy/ftpsproxy/balancer"
)

// TestSessionLogMatchesWith: a session's logger writes the same lines as slog's With given
// the session's attributes as they stand (session and client; then via, health_check,
// cert_subject, user, backend as the session learns them), in text and JSON, through further
// With calls and a group; so does logRecord.
func TestSessionLogMatchesWith(t *testing.T) {
	be, err := balancer.NewBackend(balancer.BackendConfig{Address: "198.51.100.7:21"})
	if err != nil {
		t.Fatal(err)
	}
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
		s := &session{id: "1a", clientAddr: netip.MustParseAddrPort("192.0.2.1:5000")}
		s.initLog(mk(&b))
		want := mk(&a).With("session", "1a", "client", "192.0.2.1:5000")
		stages := []struct {
			learn func()
			attrs []any
		}{
			{func() {}, nil},
			{func() {
				s.header = &headerAddrs{via: s.clientAddr, dst: netip.MustParseAddrPort("198.51.100.1:21")}
				s.clientAddr = netip.MustParseAddrPort("203.0.113.9:6000")
			}, nil},
			{func() { s.healthCheck = true }, []any{"health_check", true}},
			{func() { s.certSubject = "CN=bob" }, []any{"cert_subject", "CN=bob"}},
			{func() { s.user = "bob" }, []any{"user", "bob"}},
			{func() { s.backend = be }, []any{"backend", "198.51.100.7:21"}},
		}
		for i, st := range stages {
			st.learn()
			if i == 1 { // a PROXY header: the real client, and the proxy that sent it
				want = mk(&a).With("session", "1a", "client", "203.0.113.9:6000", "via", "192.0.2.1:5000")
			}
			want = want.With(st.attrs...)
			l := [2]*slog.Logger{want, s.log}
			l[0].Info("login ok", "n", 1, "ok", true)
			l[1].Info("login ok", "n", 1, "ok", true)
			// logRecord writes what slog does, through a session's logger and through another.
			ctx := context.Background()
			l[0].Info("transfer", "bytes", int64(7), "err", "")
			logRecord(ctx, l[1], slog.LevelInfo, "transfer", "bytes", int64(7), "err", "")
			logRecord(ctx, l[0], slog.LevelInfo, "session end", "end", "quit")
			l[1].Info("session end", "end", "quit")
			l[0].Log(ctx, slog.LevelDebug-1, "below the level")
			logRecord(ctx, l[1], slog.LevelDebug-1, "below the level")
			l[0].With("k1", "v1").With("k2", 2).WithGroup("g").Warn("w", "k", "v")
			l[1].With("k1", "v1").With("k2", 2).WithGroup("g").Warn("w", "k", "v")
			logRecord(ctx, l[0].With("k1", "v1"), slog.LevelInfo, "with", "k", "v")
			logRecord(ctx, l[1].With("k1", "v1"), slog.LevelInfo, "with", "k", "v")
			l[0].Debug("d", slog.Group("grp", "a", 1))
			l[1].Debug("d", slog.Group("grp", "a", 1))
		}
		if a.String() != b.String() {
			t.Fatalf("json=%v:\nWith:\n%s\nsession logger:\n%s", json, a.String(), b.String())
		}
		for _, w := range []string{"203.0.113.9", "health_check", "CN=bob", "bob", "198.51.100.7:21"} {
			if !bytes.Contains(b.Bytes(), []byte(w)) {
				t.Fatalf("json=%v: %q missing:\n%s", json, w, b.String())
			}
		}
	}
}
