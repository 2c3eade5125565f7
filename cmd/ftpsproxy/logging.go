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
	return o, slog.New(newSwitchHandler(o, slog.NewTextHandler(w, opts), slog.NewJSONHandler(w, opts)))
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

// switchHandler writes each record with the text or the JSON handler, as the output's format
// selects. A derived handler (WithAttrs, WithGroup: one per session) derives the handler of
// the format in use when it is made; the other one only if the format changes while it
// lives. Every session derives its logger, so deriving both would cost each session a second
// handler it almost never uses.
type switchHandler struct {
	out    *logOutput
	parent *switchHandler // nil at the root
	attrs  []slog.Attr    // added to parent's handlers (or group, when not empty)
	group  string
	text   atomic.Pointer[slog.Handler]
	json   atomic.Pointer[slog.Handler]
}

func newSwitchHandler(out *logOutput, text, json slog.Handler) *switchHandler {
	h := &switchHandler{out: out}
	h.text.Store(&text)
	h.json.Store(&json)
	return h
}

// handler returns the handler for one format, deriving it from the parent's on first use.
func (h *switchHandler) handler(json bool) slog.Handler {
	p := &h.text
	if json {
		p = &h.json
	}
	if d := p.Load(); d != nil {
		return *d
	}
	d := h.parent.handler(json)
	if h.group != "" {
		d = d.WithGroup(h.group)
	} else {
		d = d.WithAttrs(h.attrs)
	}
	p.CompareAndSwap(nil, &d) // a concurrent derivation made the same handler
	return *p.Load()
}

func (h *switchHandler) pick() slog.Handler { return h.handler(h.out.json.Load()) }

// Enabled implements slog.Handler.
func (h *switchHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.pick().Enabled(ctx, l)
}

// Handle implements slog.Handler.
func (h *switchHandler) Handle(ctx context.Context, r slog.Record) error {
	return h.pick().Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h *switchHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := &switchHandler{out: h.out, parent: h, attrs: as}
	c.pick()
	return c
}

// WithGroup implements slog.Handler.
func (h *switchHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := &switchHandler{out: h.out, parent: h, group: name}
	c.pick()
	return c
}
