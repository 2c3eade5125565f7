package balancer

import (
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// BackendConfig describes one backend server as configured.
type BackendConfig struct {
	// Name, when set, identifies the backend across reloads and labels it in logs, metrics
	// and the status page instead of its address (pool.backend.name).
	Name        string
	Address     string // host:port of the control connection
	Weight      int    // relative share; 0 means 1
	MaxSessions int    // 0: unlimited
	// Priority is an SRV record's priority: the pool uses the backends of the lowest value
	// that has one available (0 for every configured backend).
	Priority int

	TLS       TLSMode
	TLSConfig *tls.Config // client config for TLS toward the backend; nil when TLS is none

	ProxyProtocol ProxyVersion // header sent on the control connection
	DataMode      DataMode
	// Slots, when set, holds MaxSessions across proxy instances too (nil: this process only).
	Slots SharedSlots

	// FixPasvAddress makes the proxy connect to the backend's control IP with the port its
	// 227/229 announced, ignoring the announced IP (NAT, and hostile backends).
	FixPasvAddress bool
}

// Backend is one server of a pool with its live accounting. Its methods are safe for
// concurrent use. The accounting (sessions, health, admin state, counters) lives in a state
// that a reload hands from the old Backend to the new one of the same identity (see
// Registry), so a session that took a slot on the old one releases it on the shared count.
type Backend struct {
	Config BackendConfig

	*backendState
}

// backendState is the part of a Backend that survives a reload.
type backendState struct {
	active  atomic.Int64
	total   atomic.Uint64
	healthy atomic.Bool
	hmu     sync.Mutex
	health  healthState  // guarded by hmu
	admin   atomic.Int32 // an AdminState

	smu     sync.Mutex // guards the fields below
	since   time.Time  // when the health or admin state last changed
	lastErr string     // the last failed probe's error, "" after a successful one
	probed  time.Time  // when the last probe ended

	// lastSessionFailure is when a session's failure to reach the backend was last counted
	// (ReportSession); guarded by hmu.
	lastSessionFailure time.Time
}

// NewBackend validates c and returns a healthy backend with no sessions.
func NewBackend(c BackendConfig) (*Backend, error) {
	if _, _, err := net.SplitHostPort(c.Address); err != nil {
		return nil, fmt.Errorf("backend %q: %w", c.Address, err)
	}
	if c.Weight <= 0 {
		c.Weight = DefaultWeight
	}
	b := &Backend{Config: c, backendState: &backendState{health: healthState{healthy: true}, since: time.Now()}}
	b.healthy.Store(true)
	return b, nil
}

// Key returns what identifies the backend within its pool across reloads: its name when
// set, else its address.
func (b *Backend) Key() string {
	if b.Config.Name != "" {
		return b.Config.Name
	}
	return b.Config.Address
}

// String returns the backend's label in logs and metrics: its name when set, else its address.
func (b *Backend) String() string { return b.Key() }

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

// Available is the only predicate policies select on: healthy, not full, and neither
// drained nor disabled by an administrator.
func (b *Backend) Available() bool { return b.Healthy() && !b.Full() && b.Admin() == AdminEnabled }

// SharedSlots holds backends' max_sessions across proxy instances (package cluster keeps
// them in Redis). Take reserves one more session of b and reports false when the instances
// together hold MaxSessions already; Give returns one. Both must return quickly whatever the
// shared store does.
type SharedSlots interface {
	Take(b *Backend) bool
	Give(b *Backend)
}

// Acquire takes a session slot, respecting max_sessions even under concurrency (and across
// instances when Config.Slots is set). It returns false when the backend is full. Each
// successful Acquire needs one Release.
func (b *Backend) Acquire() bool {
	m := int64(b.Config.MaxSessions)
	for {
		n := b.active.Load()
		if m > 0 && n >= m {
			return false
		}
		if b.active.CompareAndSwap(n, n+1) {
			break
		}
	}
	if m > 0 && b.Config.Slots != nil && !b.Config.Slots.Take(b) {
		b.active.Add(-1)
		return false
	}
	b.total.Add(1)
	return true
}

// Release returns a slot taken by Acquire. The shared slot is given back whatever
// MaxSessions is now (a reload may have changed it): SharedSlots ignores a Give of a backend
// it holds no slot of.
func (b *Backend) Release() {
	b.active.Add(-1)
	if b.Config.Slots != nil {
		b.Config.Slots.Give(b)
	}
}
