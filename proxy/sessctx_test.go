package proxy

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
	"unsafe"
)

// watchers counts the functions waiting for c to end.
func (c *sessionCtx) watchers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.afters)
}

func isClosed(d <-chan struct{}) bool {
	select {
	case <-d:
		return true
	default:
		return false
	}
}

// TestSessionCtx: a session's context behaves as context.WithCancel's toward the context
// package: context.AfterFunc runs its function at the end unless stopped, derived contexts
// end with it, and whatever stops or ends first lets go of its place, so that a session
// whose watchers have all gone keeps nothing.
func TestSessionCtx(t *testing.T) {
	c := &sessionCtx{}
	if c.Err() != nil || isClosed(c.Done()) {
		t.Fatal("a new context has ended")
	}
	if _, ok := c.Deadline(); ok {
		t.Fatal("a session's context has a deadline")
	}
	ran := make(chan string, 4)
	context.AfterFunc(c, func() { ran <- "kept" })
	stop := context.AfterFunc(c, func() { ran <- "stopped" })
	if !stop() || stop() {
		t.Fatal("stop: want true once, then false")
	}
	child, cancelChild := context.WithCancel(c)
	short, cancelShort := context.WithTimeout(c, 10*time.Millisecond)
	defer cancelShort()
	<-short.Done()
	if !errors.Is(short.Err(), context.DeadlineExceeded) {
		t.Fatalf("a derived context with a timeout ended with %v", short.Err())
	}
	cancelChild()
	if child.Err() == nil {
		t.Fatal("a derived context did not end when cancelled")
	}
	// A timed-out context lets go of its place just after its Done closes.
	waitUntil(t, "one watcher left after a stop and two derived contexts ended", func() bool { return c.watchers() == 1 })
	kept, cancelKept := context.WithCancel(c)
	defer cancelKept()
	done := c.Done()
	if c.Done() != done {
		t.Fatal("Done changed")
	}

	c.cancel()
	if !isClosed(done) || !errors.Is(c.Err(), context.Canceled) {
		t.Fatalf("after cancel: Done closed %v, Err %v", isClosed(done), c.Err())
	}
	select {
	case <-kept.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a derived context did not end with the session's")
	}
	if !errors.Is(kept.Err(), context.Canceled) {
		t.Fatalf("the derived context ended with %v", kept.Err())
	}
	expectRun(t, ran, "kept")
	if n := c.watchers(); n != 0 || c.afters != nil {
		t.Fatalf("%d watchers kept after the end", n)
	}

	// After the end: a new watcher runs at once, a derived context starts ended, and
	// cancelling again does nothing.
	context.AfterFunc(c, func() { ran <- "late" })
	expectRun(t, ran, "late")
	if late, cancel := context.WithCancel(c); late.Err() == nil {
		t.Fatal("a context derived after the end has not ended")
	} else {
		cancel()
	}
	c.cancel()
	if len(ran) != 0 {
		t.Fatalf("%q ran once more", <-ran)
	}

	// Ended before anyone asked for Done.
	e := &sessionCtx{}
	e.cancel()
	if !isClosed(e.Done()) {
		t.Fatal("Done of a context ended earlier is open")
	}
}

// TestSessionCtxConcurrent: watchers come and go on several goroutines while the context
// ends; every one not stopped in time runs once, and none is left behind.
func TestSessionCtxConcurrent(t *testing.T) {
	for range 50 {
		c := &sessionCtx{}
		var wg sync.WaitGroup
		var mu sync.Mutex
		runs, stopped := 0, 0
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				stop := context.AfterFunc(c, func() {
					mu.Lock()
					runs++
					mu.Unlock()
				})
				if i%2 == 0 && stop() {
					mu.Lock()
					stopped++
					mu.Unlock()
				}
				ctx, cancel := context.WithCancel(c)
				if i%3 == 0 {
					cancel()
				}
				<-ctx.Done()
				cancel()
			}()
		}
		time.Sleep(time.Millisecond)
		c.cancel()
		wg.Wait()
		waitUntil(t, "every AfterFunc run or stopped", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return runs+stopped == 8
		})
		if n := c.watchers(); n != 0 {
			t.Fatalf("%d watchers left", n)
		}
	}
}

// expectRun waits for the AfterFunc named want to run, and for no other.
func expectRun(t *testing.T, ran <-chan string, want string) {
	t.Helper()
	select {
	case what := <-ran:
		if what != want {
			t.Fatalf("the %s AfterFunc ran, not the %s one", what, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("the %s AfterFunc did not run", want)
	}
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not within 5s: %s", what)
		}
	}
}

// TestSessionSize: a session stays within the 1,024-byte allocation class, the next being
// 1,152 bytes: every idle session pays for each field (README Performance).
func TestSessionSize(t *testing.T) {
	if n := unsafe.Sizeof(session{}); n > 1024 {
		t.Fatalf("a session is %d bytes, over the 1,024-byte allocation class: move what few sessions use behind a pointer", n)
	}
}
