package proxy

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// sessionCtx is a session's context: what context.WithCancel of the server's context gives,
// without what that keeps for each session's life. A cancelCtx child sits in its parent's
// map of children, and makes a map of its own the first time anything watches it (every
// backend dial does, through context.AfterFunc), kept until the session ends even when empty:
// about 300 bytes an idle session. Here the server's end reaches each session through
// Server.interruptAll, which holds them all anyway, and the watchers wait in a slice that is
// let go once empty.
//
// The context package watches it through its AfterFunc method, both for context.AfterFunc
// and for contexts derived from it. It carries no values and no deadline.
type sessionCtx struct {
	ended  atomic.Bool
	done   atomic.Value // chan struct{}, made by the first Done
	mu     sync.Mutex   // over done's making, afters and nextID
	afters []afterFunc
	nextID uint64
}

type afterFunc struct {
	id uint64
	f  func()
}

// closedChan is the Done of a context that ended before anyone asked for it.
var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

func (c *sessionCtx) Deadline() (time.Time, bool) { return time.Time{}, false }

func (c *sessionCtx) Done() <-chan struct{} {
	if d := c.done.Load(); d != nil {
		return d.(chan struct{})
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if d := c.done.Load(); d != nil { // made meanwhile, or closedChan stored by cancel
		return d.(chan struct{})
	}
	d := make(chan struct{})
	c.done.Store(d)
	return d
}

func (c *sessionCtx) Err() error {
	if c.ended.Load() {
		return context.Canceled
	}
	return nil
}

func (c *sessionCtx) Value(any) any { return nil }

// AfterFunc arranges for f to be called once the context ends, unless stop is called first
// (stop reports whether it prevented the call). The context package uses it for
// context.AfterFunc and for the contexts derived from this one; the functions it passes only
// end those, so cancel calls them itself.
func (c *sessionCtx) AfterFunc(f func()) (stop func() bool) {
	c.mu.Lock()
	if c.ended.Load() {
		c.mu.Unlock()
		go f()
		return func() bool { return false }
	}
	c.nextID++
	id := c.nextID
	c.afters = append(c.afters, afterFunc{id: id, f: f})
	c.mu.Unlock()
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		i := slices.IndexFunc(c.afters, func(a afterFunc) bool { return a.id == id })
		if i < 0 {
			return false
		}
		c.afters = slices.Delete(c.afters, i, i+1)
		if len(c.afters) == 0 {
			c.afters = nil // an idle session keeps no slice
		}
		return true
	}
}

// cancel ends the context: Done is closed, Err reports context.Canceled, and the functions
// given to AfterFunc and not stopped are called. Later calls do nothing.
func (c *sessionCtx) cancel() {
	c.mu.Lock()
	if c.ended.Load() {
		c.mu.Unlock()
		return
	}
	c.ended.Store(true)
	if d := c.done.Load(); d != nil {
		close(d.(chan struct{}))
	} else {
		c.done.Store(closedChan)
	}
	afters := c.afters
	c.afters = nil
	c.mu.Unlock()
	for _, a := range afters {
		a.f()
	}
}
