package proxy

import (
	"context"
	"errors"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// fullBacklog returns the address of a loopback listener whose accept queue is full: a
// connect to it gets no SYN-ACK and waits until its deadline.
func fullBacklog(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
	// Fill the queue (a backlog of 0 holds one connection), then check that a connect waits.
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
		if err != nil {
			break
		}
		t.Cleanup(func() { c.Close() })
		if i == 8 {
			t.Fatal("the listener's queue never filled")
		}
	}
	return addr
}

// TestDialWithin: the deadline dialWithin gives a connect holds without a context timer, a
// context that ends interrupts the connect, and both an address and a host name connect.
func TestDialWithin(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	for _, addr := range []string{ln.Addr().String(), net.JoinHostPort("localhost", port)} {
		var d net.Dialer
		c, err := dialWithin(context.Background(), &d, addr, time.Second)
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		c.Close()
	}

	stuck := fullBacklog(t)
	t.Run("deadline", func(t *testing.T) {
		// A cancellable context (a session's) takes the path without a timer; its own
		// deadline, far off, only keeps a broken dial from waiting for the kernel's.
		guard, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, ctx := range []context.Context{context.Background(), guard} {
			var d net.Dialer
			start := time.Now()
			c, err := dialWithin(ctx, &d, stuck, 200*time.Millisecond)
			el := time.Since(start)
			if err == nil {
				c.Close()
				t.Fatal("a connect that gets no answer succeeded")
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("want a timeout at the deadline, got %v after %v", err, el)
			}
			if el < 150*time.Millisecond || el > 3*time.Second {
				t.Fatalf("connect ended after %v, not at its deadline (200ms)", el)
			}
		}
	})
	t.Run("context deadline first", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		var d net.Dialer
		c, err := dialWithin(ctx, &d, stuck, time.Hour)
		if err == nil {
			c.Close()
			t.Fatal("a connect that gets no answer succeeded")
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("want a timeout, got %v", err)
		}
	})
	t.Run("context ends", func(t *testing.T) {
		// A context.WithCancel's, and a session's (sessionCtx).
		ctx, cancel := context.WithCancel(context.Background())
		sess := &sessionCtx{}
		for _, c := range []struct {
			ctx    context.Context
			cancel func()
		}{{ctx, cancel}, {sess, sess.cancel}} {
			time.AfterFunc(100*time.Millisecond, c.cancel)
			var d net.Dialer
			conn, err := dialWithin(c.ctx, &d, stuck, time.Hour)
			if err == nil {
				conn.Close()
				t.Fatal("a connect that gets no answer succeeded")
			}
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("want the context's end, got %v", err)
			}
		}
	})
	t.Run("session goes on", func(t *testing.T) {
		// A dial done lets go of its watch on the session's context.
		ctx := &sessionCtx{}
		var d net.Dialer
		c, err := dialWithin(ctx, &d, ln.Addr().String(), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		if _, err := dialWithin(ctx, &d, stuck, 50*time.Millisecond); err == nil {
			t.Fatal("a connect that gets no answer succeeded")
		}
		if n := ctx.watchers(); n != 0 {
			t.Fatalf("%d watchers left on the session's context after two dials", n)
		}
	})
}
