// Package logthrottle rate-limits the log lines that someone outside can cause (refused
// connections, refused data peers, bans, TLS handshake failures, unsolicited backend
// replies...), so that no flood of one kind can fill the disk or drown the other lines.
//
// Lines are grouped by cause (their level and message, a fixed string at each call site).
// Each cause may log PerCause lines per Interval; past that its lines are counted, and one
// "suppressed N similar" line per cause and Interval reports how many were dropped. All
// causes together may log at most Total lines per Interval, summaries included. Callers
// count every event in their metrics before logging, so metrics never lose one.
//
// It does not buffer, reorder or rewrite records: a line that is let through is logged at
// once through the caller's own *slog.Logger, with the caller's attributes.
package logthrottle

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Defaults: at most 10 lines of one cause and 100 lines in all per second.
const (
	DefaultPerCause = 10
	DefaultTotal    = 100
	DefaultInterval = time.Second
	maxCauses       = 256 // causes are call-site messages; past this they share one
)

// Options sets the limits; zero fields take the defaults.
type Options struct {
	PerCause int           // lines per cause and interval
	Total    int           // lines of all causes and interval, summaries included
	Interval time.Duration // the period of both limits and of the summaries
}

// Throttle rate-limits log lines per cause. Its methods are safe for concurrent use; a nil
// *Throttle lets every line through.
type Throttle struct {
	base     *slog.Logger // where the summaries go
	perCause int
	interval time.Duration
	total    *rate.Limiter

	mu      sync.Mutex
	causes  map[key]*cause
	starved int // summaries waiting for a token of the total: lines wait for them
	closed  bool
	pending sync.WaitGroup // summaries scheduled or running, for Close to wait on
}

type key struct {
	level slog.Level
	msg   string
}

type cause struct {
	lim        *rate.Limiter
	suppressed int
	timer      *time.Timer // pending summary, nil when none
	starved    bool        // its summary found the total spent and waits for the next interval
}

// New returns a Throttle whose summary lines go to base.
func New(base *slog.Logger, o Options) *Throttle {
	if o.PerCause <= 0 {
		o.PerCause = DefaultPerCause
	}
	if o.Total <= 0 {
		o.Total = DefaultTotal
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	every := func(n int) rate.Limit { return rate.Limit(float64(n) / o.Interval.Seconds()) }
	t := &Throttle{
		base:     base,
		perCause: o.PerCause,
		interval: o.Interval,
		total:    rate.NewLimiter(every(o.Total), o.Total),
		causes:   make(map[key]*cause),
	}
	return t
}

// Warn logs msg at warn level through l unless its cause is over its limit.
func (t *Throttle) Warn(l *slog.Logger, msg string, args ...any) {
	t.Log(l, slog.LevelWarn, msg, args...)
}

// Info logs msg at info level through l unless its cause is over its limit.
func (t *Throttle) Info(l *slog.Logger, msg string, args ...any) {
	t.Log(l, slog.LevelInfo, msg, args...)
}

// Error logs msg at error level through l unless its cause is over its limit.
func (t *Throttle) Error(l *slog.Logger, msg string, args ...any) {
	t.Log(l, slog.LevelError, msg, args...)
}

// Log logs msg at level through l, or counts it for the cause's next summary. It reports
// whether the line was logged. Lines below l's level cost nothing and are not counted.
func (t *Throttle) Log(l *slog.Logger, level slog.Level, msg string, args ...any) bool {
	if t.Allow(l, level, msg) {
		l.Log(context.Background(), level, msg, args...)
		return true
	}
	return false
}

// Allow reports whether a line msg at level may be written through l now, taking its
// tokens: for a caller that writes the line itself. A line below l's level is not allowed
// and not counted.
func (t *Throttle) Allow(l *slog.Logger, level slog.Level, msg string) bool {
	if !l.Enabled(context.Background(), level) {
		return false
	}
	return t == nil || t.allow(level, msg)
}

// allow takes a token of the cause and of the total, or counts a suppressed line and makes
// sure a summary is due.
func (t *Throttle) allow(level slog.Level, msg string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := key{level, msg}
	c := t.causes[k]
	if c == nil {
		if len(t.causes) >= maxCauses {
			k = key{level, "(other causes)"}
			c = t.causes[k]
		}
		if c == nil {
			c = &cause{lim: rate.NewLimiter(rate.Limit(float64(t.perCause)/t.interval.Seconds()), t.perCause)}
			t.causes[k] = c
		}
	}
	now := time.Now()
	if t.starved == 0 && c.lim.AllowN(now, 1) && t.total.AllowN(now, 1) {
		return true
	}
	c.suppressed++
	if c.timer == nil && !t.closed {
		t.schedule(k, c)
	}
	return false
}

// summarize logs one "suppressed N similar" line for cause k. A summary takes a token of the
// total like any line; when none is left it waits for the next interval (its count keeps
// growing) and no line of any cause is logged until it is out, so the summaries, which tell
// an operator that lines are missing, always get through and the total still holds.
func (t *Throttle) summarize(k key) {
	t.summarizeAt(k, false)
}

func (t *Throttle) summarizeAt(k key, closing bool) {
	t.mu.Lock()
	c := t.causes[k]
	if !closing && !t.closed && !t.total.AllowN(time.Now(), 1) {
		if !c.starved {
			c.starved = true
			t.starved++
		}
		t.schedule(k, c)
		t.mu.Unlock()
		return
	}
	if c.starved {
		c.starved = false
		t.starved--
	}
	n := c.suppressed
	c.suppressed = 0
	c.timer = nil
	t.mu.Unlock()
	if n > 0 {
		t.base.Log(context.Background(), k.level, fmt.Sprintf("suppressed %d similar", n),
			"cause", k.msg, "suppressed", n, "interval_s", t.interval.Seconds())
	}
}

// schedule arms the summary of cause k for one interval from now. t.mu is held.
func (t *Throttle) schedule(k key, c *cause) {
	t.pending.Add(1)
	c.timer = time.AfterFunc(t.interval, func() {
		defer t.pending.Done()
		t.summarize(k)
	})
}

// Close logs the pending summaries at once, stops the timers and returns when no summary is
// being written; lines logged after Close are still throttled but not summarized.
func (t *Throttle) Close() {
	if t == nil {
		return
	}
	t.mu.Lock()
	t.closed = true
	var due []key
	for k, c := range t.causes {
		if c.timer != nil && c.timer.Stop() {
			t.pending.Done() // its callback will not run
			due = append(due, k)
		}
	}
	t.mu.Unlock()
	for _, k := range due {
		t.summarizeAt(k, true)
	}
	t.pending.Wait() // a summary that fired meanwhile writes at once (closed) and is done
}
