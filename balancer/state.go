package balancer

import (
	"context"
	"time"
)

// AdminState is an administrator's setting of a backend (admin API), kept across reloads.
type AdminState int32

// Admin states. Draining and disabled backends take no new sessions; running ones go on.
// Health probes go on in every state.
const (
	AdminEnabled AdminState = iota
	AdminDraining
	AdminDisabled
)

// States of a backend as the admin API, the status page and metrics name them (SPEC §8).
const (
	StateUp       = "up"
	StateDown     = "down"
	StateDraining = "draining"
	StateDisabled = "disabled"
	StateRemoved  = "removed"
)

// String returns the admin state's name: enabled, draining or disabled.
func (a AdminState) String() string {
	switch a {
	case AdminDraining:
		return StateDraining
	case AdminDisabled:
		return StateDisabled
	}
	return "enabled"
}

// Admin returns the administrator's setting of b.
func (b *Backend) Admin() AdminState { return AdminState(b.admin.Load()) }

// SetAdmin changes the administrator's setting of b and reports whether it changed.
func (b *Backend) SetAdmin(a AdminState) bool {
	if AdminState(b.admin.Swap(int32(a))) == a {
		return false
	}
	b.touch()
	return true
}

// State returns b's state for the admin API: removed (when removed is set: b left the config
// and only finishes its sessions), else the admin state when not enabled, else up or down.
func (b *Backend) State(removed bool) string {
	switch {
	case removed:
		return StateRemoved
	case b.Admin() != AdminEnabled:
		return b.Admin().String()
	case b.Healthy():
		return StateUp
	}
	return StateDown
}

// Since returns when b's health or admin state last changed (or b was created).
func (b *Backend) Since() time.Time {
	b.smu.Lock()
	defer b.smu.Unlock()
	return b.since
}

// LastError returns the error of the last health probe, or "" when it succeeded (or none ran).
func (b *Backend) LastError() string {
	b.smu.Lock()
	defer b.smu.Unlock()
	return b.lastErr
}

// LastProbe returns when the last health probe ended; zero when none ran.
func (b *Backend) LastProbe() time.Time {
	b.smu.Lock()
	defer b.smu.Unlock()
	return b.probed
}

// touch records a change of state now.
func (b *Backend) touch() {
	b.smu.Lock()
	b.since = time.Now()
	b.smu.Unlock()
}

// RecordProbes wraps a health probe so each result is kept on the backend (LastError,
// LastProbe) for the status page and the admin API.
func RecordProbes(probe func(context.Context, *Backend) error) func(context.Context, *Backend) error {
	return func(ctx context.Context, b *Backend) error {
		err := probe(ctx, b)
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		b.smu.Lock()
		b.lastErr, b.probed = msg, time.Now()
		b.smu.Unlock()
		return err
	}
}

// awaitFirstProbe makes b down until one probe succeeds: a backend added by a reload gets no
// session before it has answered once.
func (b *Backend) awaitFirstProbe(rise int) {
	b.hmu.Lock()
	b.health = healthState{healthy: false, streak: max(rise-1, 0)}
	b.healthy.Store(false)
	b.hmu.Unlock()
	b.smu.Lock()
	b.lastErr = "added by a reload: waiting for the first successful health probe"
	b.smu.Unlock()
}
