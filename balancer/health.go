package balancer

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// HealthConfig sets the active health check of a pool.
type HealthConfig struct {
	Interval time.Duration // 0: no active checks
	Timeout  time.Duration // per probe; 0: DefaultHealthTimeout; never more than Interval
	Rise     int           // consecutive successes to become healthy; 0: DefaultHealthRise
	Fall     int           // consecutive failures to become unhealthy; 0: DefaultHealthFall
}

func (h HealthConfig) withDefaults() HealthConfig {
	if h.Timeout <= 0 {
		h.Timeout = DefaultHealthTimeout
	}
	if h.Rise <= 0 {
		h.Rise = DefaultHealthRise
	}
	if h.Fall <= 0 {
		h.Fall = DefaultHealthFall
	}
	return h
}

// ProbeTimeout is the deadline of one probe: Timeout, capped at Interval. A probe that could
// outlast the interval would stretch every round, so a hung backend (one that accepts TCP and
// never greets) is down within Fall × Interval of hanging, plus one interval at most for the
// round under way, whatever Timeout says.
func (h HealthConfig) ProbeTimeout() time.Duration {
	if h.Interval > 0 && h.Interval < h.Timeout {
		return h.Interval
	}
	return h.Timeout
}

// healthState is rise/fall arithmetic: consecutive results in the direction opposite to the
// current state move it once they reach rise or fall.
type healthState struct {
	healthy bool
	streak  int
}

// next returns the state after one probe result.
func (s healthState) next(ok bool, rise, fall int) healthState {
	if ok == s.healthy {
		return healthState{healthy: s.healthy}
	}
	s.streak++
	need := fall
	if ok {
		need = rise
	}
	if s.streak >= need {
		return healthState{healthy: ok}
	}
	return s
}

// Report records one observation of b (an active probe) and returns true when it changed b's
// health.
func (p *Pool) Report(b *Backend, ok bool) bool {
	b.hmu.Lock()
	defer b.hmu.Unlock()
	return p.observe(b, ok)
}

// observe applies one result to b's rise/fall state. b.hmu must be held.
func (p *Pool) observe(b *Backend, ok bool) bool {
	n := b.health.next(ok, p.Health.Rise, p.Health.Fall)
	b.health = n
	if n.healthy != b.healthy.Load() {
		b.healthy.Store(n.healthy)
		b.touch()
		return true
	}
	return false
}

// ReportSession records the outcome of a real session's connect and greeting to b, attempted
// from start (passive health), and returns true when it changed b's health. It counts like an
// active probe, under the same rise and fall, with two differences:
//   - failures of attempts that overlapped in time count once: ten sessions stalled by the
//     same slow greeting are one failure, not ten, so only Fall failures in a row (each begun
//     after the previous one was counted) take a backend out;
//   - in a pool without active checks it changes nothing, since no check would bring the
//     backend back.
func (p *Pool) ReportSession(b *Backend, start time.Time, ok bool) bool {
	if p.Health.Interval <= 0 {
		return false
	}
	b.hmu.Lock()
	defer b.hmu.Unlock()
	if !ok {
		if !start.After(b.lastSessionFailure) {
			return false
		}
		b.lastSessionFailure = time.Now()
	}
	return p.observe(b, ok)
}

// Check runs the pool's active health checks until ctx ends: every Interval one round, which
// probes every backend at once (never two probes in flight for the same backend), each under
// ProbeTimeout. probe must honour its context's deadline. Changes of health are logged once
// per change; failed probes of a backend still up are logged too, so the cause is on record
// before it goes down.
func (p *Pool) Check(ctx context.Context, probe func(ctx context.Context, b *Backend) error, log *slog.Logger) {
	if p.Health.Interval <= 0 {
		return
	}
	t := time.NewTicker(p.Health.Interval)
	defer t.Stop()
	for {
		var wg sync.WaitGroup
		for _, b := range p.Backends {
			wg.Go(func() { p.checkOne(ctx, b, probe, log) })
		}
		wg.Wait()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// checkOne runs one probe of b and records its result.
func (p *Pool) checkOne(ctx context.Context, b *Backend, probe func(context.Context, *Backend) error, log *slog.Logger) {
	pctx, cancel := context.WithTimeout(ctx, p.Health.ProbeTimeout())
	err := probe(pctx, b)
	cancel()
	if ctx.Err() != nil {
		return
	}
	changed := p.Report(b, err == nil)
	switch {
	case changed && err != nil:
		log.Warn("backend down", "pool", p.Name, "backend", b.String(), "err", err)
	case changed:
		log.Info("backend up", "pool", p.Name, "backend", b.String())
	case err != nil && b.Healthy():
		log.Warn("health check failed", "pool", p.Name, "backend", b.String(), "err", err)
	}
}
