package balancer

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"
)

// ErrNoBackend is returned when a pool has no available backend for a session.
var ErrNoBackend = errors.New("no backend available")

// PoolConfig describes one pool as configured.
type PoolConfig struct {
	Name     string
	Policy   PolicyName // "": DefaultPolicy
	Backends []BackendConfig
	Health   HealthConfig
	// SRV, when set, is a DNS SRV name (pool.srv, "_ftp._tcp.farm.example") whose targets
	// are backends of the pool too (see Discovery).
	SRV string
	// ResolveInterval is how often the pool's host names and SRV name are resolved again
	// (pool.resolve_interval); 0: DefaultResolveInterval.
	ResolveInterval time.Duration
	// Panic (pool.panic) decides what a session does when no backend of the pool is
	// healthy: true tries them all anyway, in policy order, since health can be wrong (a
	// frozen server, a network blip) and a try costs little next to a refusal; false
	// refuses at once (421). nil: DefaultPanic.
	Panic *bool
}

// panicMode is Panic with its default.
func (c PoolConfig) panicMode() bool {
	if c.Panic == nil {
		return DefaultPanic
	}
	return *c.Panic
}

// Pool is a named set of backends with its selection policy.
type Pool struct {
	Name     string
	Policy   Policy
	Backends []*Backend
	Health   HealthConfig
	Panic    bool // see PoolConfig.Panic
}

// NewPool builds a pool from its config. Backends start healthy; a health checker started
// with Pool.Check corrects that within its first rounds.
func NewPool(c PoolConfig) (*Pool, error) {
	if len(c.Backends) == 0 && c.SRV == "" {
		return nil, fmt.Errorf("pool %q: no backends", c.Name)
	}
	if c.Policy == "" {
		c.Policy = DefaultPolicy
	}
	pol, err := NewPolicy(c.Policy)
	if err != nil {
		return nil, fmt.Errorf("pool %q: %w", c.Name, err)
	}
	p := &Pool{Name: c.Name, Policy: pol, Health: c.Health.withDefaults(), Panic: c.panicMode()}
	for _, bc := range c.Backends {
		b, err := NewBackend(bc)
		if err != nil {
			return nil, fmt.Errorf("pool %q: %w", c.Name, err)
		}
		p.Backends = append(p.Backends, b)
	}
	return p, nil
}

// Order returns the pool's available backends in the order its policy prefers for c. When
// the backends have SRV priorities, only the best (lowest) priority that has an available
// backend takes part (RFC 2782): the others are a reserve.
func (p *Pool) Order(c Client) []*Backend {
	return p.Policy.Order(bestPriority(filter(p.Backends, (*Backend).Available)), c)
}

// Candidates returns the backends a session for c should try, best first: Order, or, when no
// enabled backend is healthy and the pool's panic mode is on, every enabled backend that is
// not full, in policy order (panicking is then true). Draining and disabled backends are
// never offered: health may be wrong, an administrator's setting is not.
func (p *Pool) Candidates(c Client) (order []*Backend, panicking bool) {
	enabled := func(b *Backend) bool { return b.Admin() == AdminEnabled }
	if !p.Panic || slices.ContainsFunc(p.Backends, func(b *Backend) bool { return enabled(b) && b.Healthy() }) {
		return p.Order(c), false
	}
	return p.Policy.Order(filter(p.Backends, func(b *Backend) bool { return enabled(b) && !b.Full() }), c), true
}

// bestPriority keeps, in place, the backends of av of its lowest priority value.
func bestPriority(av []*Backend) []*Backend {
	if len(av) == 0 {
		return av
	}
	best := slices.MinFunc(av, func(a, b *Backend) int { return cmp.Compare(a.Config.Priority, b.Config.Priority) }).Config.Priority
	return slices.DeleteFunc(av, func(b *Backend) bool { return b.Config.Priority != best })
}

// AllFull reports whether every healthy, enabled backend is at its max_sessions (and at least
// one is healthy and enabled): the proxy then answers "too many connections" rather than "not
// available".
func (p *Pool) AllFull() bool {
	healthy := 0
	for _, b := range p.Backends {
		if b.Healthy() && b.Admin() == AdminEnabled {
			healthy++
			if !b.Full() {
				return false
			}
		}
	}
	return healthy > 0
}
