package balancer

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"
)

// HealthConfig sets the active health check of a pool.
type HealthConfig struct {
	Interval time.Duration // 0: no active checks
	Timeout  time.Duration // per probe; 0: DefaultHealthTimeout
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

// Report records one observation of b (a probe, or a real session's connect and greeting:
// passive ejection) and returns true when it changed b's health.
func (p *Pool) Report(b *Backend, ok bool) bool {
	b.hmu.Lock()
	defer b.hmu.Unlock()
	n := b.health.next(ok, p.Health.Rise, p.Health.Fall)
	b.health = n
	if n.healthy != b.healthy.Load() {
		b.healthy.Store(n.healthy)
		b.touch()
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

// ProbeFTP is the active health probe: connect, read a whole 220 greeting, and for TLS
// backends also complete the handshake (implicit: before the greeting; explicit: AUTH TLS →
// 234, then the handshake), then QUIT. ctx bounds the whole probe.
func ProbeFTP(ctx context.Context, b *Backend) error {
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", b.Config.Address)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	defer raw.Close()
	if dl, ok := ctx.Deadline(); ok {
		raw.SetDeadline(dl)
	}
	var c net.Conn = raw
	if b.Config.TLS == TLSImplicit {
		tc := tls.Client(raw, b.Config.TLSConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("probe: TLS handshake: %w", err)
		}
		c = tc
	}
	r := bufio.NewReaderSize(c, 1024)
	if code, err := probeReply(r); err != nil || code != 220 {
		return fmt.Errorf("probe: greeting %d: %v", code, err)
	}
	if b.Config.TLS == TLSExplicit {
		if _, err := io.WriteString(c, "AUTH TLS\r\n"); err != nil {
			return fmt.Errorf("probe: %w", err)
		}
		if code, err := probeReply(r); err != nil || code != 234 {
			return fmt.Errorf("probe: AUTH TLS answered %d: %v", code, err)
		}
		tc := tls.Client(raw, b.Config.TLSConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("probe: TLS handshake: %w", err)
		}
		c = tc
	}
	_, err = io.WriteString(c, "QUIT\r\n")
	return err
}

// probeReply reads one reply, single- or multi-line, and returns its code.
func probeReply(r *bufio.Reader) (int, error) {
	first, err := r.ReadString('\n')
	if err != nil {
		return 0, err
	}
	if len(first) < 4 {
		return 0, fmt.Errorf("short reply %q", first)
	}
	code, err := strconv.Atoi(first[:3])
	if err != nil {
		return 0, fmt.Errorf("bad reply %q", strings.TrimSpace(first))
	}
	if first[3] != '-' {
		return code, nil
	}
	for range 1000 {
		line, err := r.ReadString('\n')
		if err != nil {
			return 0, err
		}
		if strings.HasPrefix(line, first[:3]+" ") {
			return code, nil
		}
	}
	return 0, fmt.Errorf("multi-line reply too long")
}
