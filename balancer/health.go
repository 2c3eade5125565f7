package balancer

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"
)

// HealthConfig sets the active health check of a pool.
type HealthConfig struct {
	Interval time.Duration // 0: no active checks
	Timeout  time.Duration // per probe; default 3s
	Rise     int           // consecutive successes to become healthy; default 2
	Fall     int           // consecutive failures to become unhealthy; default 3
}

func (h HealthConfig) withDefaults() HealthConfig {
	if h.Timeout <= 0 {
		h.Timeout = 3 * time.Second
	}
	if h.Rise <= 0 {
		h.Rise = 2
	}
	if h.Fall <= 0 {
		h.Fall = 3
	}
	return h
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

// Report records one observation of b (a probe, or a real session's connect and greeting)
// and returns true when it changed b's health. Calls are serialised by the pool checker for
// probes; passive reports from sessions may race with it, which at worst delays a change by
// one observation.
func (p *Pool) Report(b *Backend, ok bool) bool {
	b.health.healthy = b.Healthy()
	n := b.health.next(ok, p.Health.Rise, p.Health.Fall)
	b.health = n
	if n.healthy != b.healthy.Load() {
		b.healthy.Store(n.healthy)
		return true
	}
	return false
}

// Check runs the pool's active health checks until ctx ends: every Interval, one probe per
// backend, never two in flight for the same backend. Changes are logged once per change.
func (p *Pool) Check(ctx context.Context, probe func(ctx context.Context, b *Backend) error, log *slog.Logger) {
	if p.Health.Interval <= 0 {
		return
	}
	t := time.NewTicker(p.Health.Interval)
	defer t.Stop()
	for {
		for _, b := range p.Backends {
			pctx, cancel := context.WithTimeout(ctx, p.Health.Timeout)
			err := probe(pctx, b)
			cancel()
			if ctx.Err() != nil {
				return
			}
			if p.Report(b, err == nil) {
				if err != nil {
					log.Warn("backend down", "pool", p.Name, "backend", b.String(), "err", err)
				} else {
					log.Info("backend up", "pool", p.Name, "backend", b.String())
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ProbeFTP is the plain FTP health probe: connect, read a whole 220 reply, send QUIT.
func ProbeFTP(ctx context.Context, b *Backend) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", b.Config.Address)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	r := bufio.NewReaderSize(c, 1024)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("probe: reading greeting: %w", err)
		}
		if len(line) < 4 || !strings.HasPrefix(line, "220") {
			return fmt.Errorf("probe: greeting %q", strings.TrimSpace(line))
		}
		if line[3] == ' ' {
			break
		}
	}
	_, err = c.Write([]byte("QUIT\r\n"))
	return err
}
