//go:build !linux

package idlepoll

import (
	"errors"
	"syscall"
)

// Poller is not available on this system: Default returns nil.
type Poller struct{}

// Watch is a connection's registration with a Poller.
type Watch struct{}

// Default returns nil: there is no poller on this system.
func Default() *Poller { return nil }

// Arm fails: there is no poller on this system.
func (p *Poller) Arm(c syscall.Conn, w *Watch, fn func()) error {
	return errors.New("idle watch: not supported on this system")
}

// Disarm reports false: nothing is ever armed.
func (p *Poller) Disarm(w *Watch) bool { return false }

// Armed is 0.
func (p *Poller) Armed() int { return 0 }
