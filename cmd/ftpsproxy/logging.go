package main

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"

	"github.com/ftpsproxy/ftpsproxy/config"
)

// logOutput is the process log: its level and format can change while loggers derived from
// it (a child per session) are in use, so a reload or the admin API applies to every logger
// at once.
type logOutput struct {
	level  slog.LevelVar
	json   atomic.Bool
	cfgLvl config.LogLevel // the [log] level last applied from a config, to tell a change on reload
}

// newLogOutput returns the output for [log] c, writing to w, and its root logger.
func newLogOutput(c config.Log, w io.Writer) (*logOutput, *slog.Logger) {
	o := &logOutput{}
	o.apply(c)
	opts := &slog.HandlerOptions{Level: &o.level}
	h := switchHandler{out: o, text: slog.NewTextHandler(w, opts), json: slog.NewJSONHandler(w, opts)}
	return o, slog.New(h)
}

// apply sets the format, and the level when the config's level changed since the last apply:
// a level set through the admin API survives a reload that leaves [log] level alone.
func (o *logOutput) apply(c config.Log) {
	o.json.Store(c.Format == config.FormatJSON)
	if c.Level != o.cfgLvl {
		o.level.Set(c.Level.Slog())
		o.cfgLvl = c.Level
	}
}

// switchHandler keeps a text and a JSON handler derived with the same attributes and groups,
// and writes each record with the one the output's format selects.
type switchHandler struct {
	out  *logOutput
	text slog.Handler
	json slog.Handler
}

func (h switchHandler) pick() slog.Handler {
	if h.out.json.Load() {
		return h.json
	}
	return h.text
}

// Enabled implements slog.Handler.
func (h switchHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.pick().Enabled(ctx, l)
}

// Handle implements slog.Handler.
func (h switchHandler) Handle(ctx context.Context, r slog.Record) error {
	return h.pick().Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h switchHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return switchHandler{out: h.out, text: h.text.WithAttrs(as), json: h.json.WithAttrs(as)}
}

// WithGroup implements slog.Handler.
func (h switchHandler) WithGroup(name string) slog.Handler {
	return switchHandler{out: h.out, text: h.text.WithGroup(name), json: h.json.WithGroup(name)}
}
