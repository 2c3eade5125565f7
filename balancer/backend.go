package balancer

import (
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
)

// BackendConfig describes one backend server as configured.
type BackendConfig struct {
	Address     string // host:port of the control connection
	Weight      int    // relative share; 0 means 1
	MaxSessions int    // 0: unlimited

	TLS       TLSMode
	TLSConfig *tls.Config // client config for TLS toward the backend; nil when TLS is none

	ProxyProtocol ProxyVersion // header sent on the control connection
	DataMode      DataMode
	// FixPasvAddress makes the proxy connect to the backend's control IP with the port its
	// 227/229 announced, ignoring the announced IP (NAT, and hostile backends).
	FixPasvAddress bool
}

// Backend is one server of a pool with its live accounting. Its methods are safe for
// concurrent use.
type Backend struct {
	Config BackendConfig

	active  atomic.Int64
	total   atomic.Uint64
	healthy atomic.Bool
	hmu     sync.Mutex
	health  healthState // guarded by hmu
}

// NewBackend validates c and returns a healthy backend with no sessions.
func NewBackend(c BackendConfig) (*Backend, error) {
	if _, _, err := net.SplitHostPort(c.Address); err != nil {
		return nil, fmt.Errorf("backend %q: %w", c.Address, err)
	}
	if c.Weight <= 0 {
		c.Weight = DefaultWeight
	}
	b := &Backend{Config: c, health: healthState{healthy: true}}
	b.healthy.Store(true)
	return b, nil
}

// String returns the backend's address.
func (b *Backend) String() string { return b.Config.Address }

// Active returns the number of sessions currently assigned to the backend.
func (b *Backend) Active() int { return int(b.active.Load()) }

// Total returns the number of sessions ever assigned to the backend.
func (b *Backend) Total() uint64 { return b.total.Load() }

// Healthy reports the backend's health as last determined by checks and passive ejection.
func (b *Backend) Healthy() bool { return b.healthy.Load() }

// Full reports whether the backend is at its max_sessions.
func (b *Backend) Full() bool {
	m := b.Config.MaxSessions
	return m > 0 && b.active.Load() >= int64(m)
}

// Available is the only predicate policies select on: healthy and not full.
func (b *Backend) Available() bool { return b.Healthy() && !b.Full() }

// Acquire takes a session slot, respecting max_sessions even under concurrency. It returns
// false when the backend is full. Each successful Acquire needs one Release.
func (b *Backend) Acquire() bool {
	m := int64(b.Config.MaxSessions)
	for {
		n := b.active.Load()
		if m > 0 && n >= m {
			return false
		}
		if b.active.CompareAndSwap(n, n+1) {
			b.total.Add(1)
			return true
		}
	}
}

// Release returns a slot taken by Acquire.
func (b *Backend) Release() { b.active.Add(-1) }
