package idlepoll

import (
	"fmt"
	"sync"
	"syscall"
	"time"
)

// Poller is one epoll instance and the goroutine that waits on it.
type Poller struct {
	epfd int

	mu      sync.Mutex
	next    uint64
	waiting map[uint64]func() // armed watches, by token
}

// Watch is a connection's registration with a Poller. Its zero value is ready to use; it
// belongs to one connection for that connection's life.
type Watch struct {
	token uint64 // of the armed watch; 0 when none
	added bool   // the socket is in the epoll set (armed, or fired and disabled)
}

var (
	defaultOnce   sync.Once
	defaultPoller *Poller
)

// Default returns the process's poller, started on first use, or nil when it cannot be
// (no epoll).
func Default() *Poller {
	defaultOnce.Do(func() {
		p, err := newPoller()
		if err == nil {
			defaultPoller = p
			go p.run()
		}
	})
	return defaultPoller
}

func newPoller() (*Poller, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	return &Poller{epfd: fd, waiting: make(map[uint64]func())}, nil
}

// Arm runs fn once, on the poller's goroutine, when c is readable, closed by its peer, or
// failed (at once if it already is). fn must not block. The caller owns w and c: it arms w
// again only after fn ran or Disarm returned true, and it disarms w before it closes c. A
// socket closed while armed leaves the epoll set with its last descriptor; its fn never runs.
func (p *Poller) Arm(c syscall.Conn, w *Watch, fn func()) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("idle watch: %w", err)
	}
	p.mu.Lock()
	p.next++
	token := p.next
	p.waiting[token] = fn
	p.mu.Unlock()
	ev := syscall.EpollEvent{
		Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT,
		Fd:     int32(uint32(token)),
		Pad:    int32(uint32(token >> 32)),
	}
	op := syscall.EPOLL_CTL_ADD
	if w.added {
		op = syscall.EPOLL_CTL_MOD
	}
	var ctlErr error
	// Control holds the descriptor open: the number names this socket and no other.
	err = rc.Control(func(fd uintptr) { ctlErr = syscall.EpollCtl(p.epfd, op, int(fd), &ev) })
	if err == nil {
		err = ctlErr
	}
	if err != nil {
		p.mu.Lock()
		delete(p.waiting, token)
		p.mu.Unlock()
		return fmt.Errorf("idle watch: epoll_ctl: %w", err)
	}
	w.token, w.added = token, true
	return nil
}

// Disarm cancels w's watch. It reports whether it did: false when fn has run or is running
// (or nothing was armed).
func (p *Poller) Disarm(w *Watch) bool {
	p.mu.Lock()
	_, ok := p.waiting[w.token]
	delete(p.waiting, w.token)
	p.mu.Unlock()
	w.token = 0
	return ok
}

// Armed is the number of watches armed, for tests and metrics.
func (p *Poller) Armed() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.waiting)
}

// run waits for events for the life of the process. A token no longer in waiting (disarmed
// meanwhile) is ignored, so an event that crosses a Disarm does nothing.
func (p *Poller) run() {
	events := make([]syscall.EpollEvent, 128)
	for {
		n, err := syscall.EpollWait(p.epfd, events, -1)
		if err != nil {
			if err != syscall.EINTR {
				time.Sleep(10 * time.Millisecond) // not expected: the descriptor is never closed
			}
			continue
		}
		for _, ev := range events[:n] {
			token := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			p.mu.Lock()
			fn := p.waiting[token]
			delete(p.waiting, token)
			p.mu.Unlock()
			if fn != nil {
				fn()
			}
		}
	}
}
