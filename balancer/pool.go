package balancer

import (
	"errors"
	"fmt"
)

// ErrNoBackend is returned when a pool has no available backend for a session.
var ErrNoBackend = errors.New("no backend available")

// PoolConfig describes one pool as configured.
type PoolConfig struct {
	Name     string
	Policy   PolicyName // "": DefaultPolicy
	Backends []BackendConfig
	Health   HealthConfig
}

// Pool is a named set of backends with its selection policy.
type Pool struct {
	Name     string
	Policy   Policy
	Backends []*Backend
	Health   HealthConfig
}

// NewPool builds a pool from its config. Backends start healthy; a health checker started
// with Pool.Check corrects that within its first rounds.
func NewPool(c PoolConfig) (*Pool, error) {
	if len(c.Backends) == 0 {
		return nil, fmt.Errorf("pool %q: no backends", c.Name)
	}
	if c.Policy == "" {
		c.Policy = DefaultPolicy
	}
	pol, err := NewPolicy(c.Policy)
	if err != nil {
		return nil, fmt.Errorf("pool %q: %w", c.Name, err)
	}
	p := &Pool{Name: c.Name, Policy: pol, Health: c.Health.withDefaults()}
	for _, bc := range c.Backends {
		b, err := NewBackend(bc)
		if err != nil {
			return nil, fmt.Errorf("pool %q: %w", c.Name, err)
		}
		p.Backends = append(p.Backends, b)
	}
	return p, nil
}

// Order returns the pool's available backends in the order its policy prefers for c.
func (p *Pool) Order(c Client) []*Backend { return p.Policy.Order(p.Backends, c) }

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
