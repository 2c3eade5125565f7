package proxy_test

import (
	"bytes"
	"runtime"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/balancer"

	"github.com/ftpsproxy/ftpsproxy/proxy"
)

// TestIdleSessionGoroutines counts the goroutines an idle logged-in FTPS session keeps: its
// owner, waiting in a read of the backend, and the client reader. (A goroutine is a 4 KiB
// stack once it has grown; with a backend reader of its own an idle session had three.)
// Goroutines are counted by whether a session method is on their stack, so the in-process
// backend's own goroutines do not count.
func TestIdleSessionGoroutines(t *testing.T) {
	be := startBackend(t, nil)
	opt, cc := withTLS(t, proxy.TLSExplicit, false)
	p := startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)}, opt)
	const n = 20
	conns := make([]*rawConn, n)
	for i := range conns {
		conns[i] = tlsSession(t, p.addr, cc)
		conns[i].cmd("NOOP", 200)
	}
	waitFor(t, 5*time.Second, func() bool { return sessionGoroutines() == 2*n })
	// Every session still answers: its owner is woken by the client reader.
	for _, rc := range conns {
		rc.cmd("PWD", 257)
	}
	if got := sessionGoroutines(); got != 2*n {
		t.Fatalf("%d goroutines in session code for %d idle sessions, want %d", got, n, 2*n)
	}
}

// sessionGoroutines counts the goroutines with a proxy session method on their stack.
func sessionGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		m := runtime.Stack(buf, true)
		if m < len(buf) {
			buf = buf[:m]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	n := 0
	for g := range bytes.SplitSeq(buf, []byte("\n\n")) {
		if bytes.Contains(g, []byte("proxy.(*session).")) {
			n++
		}
	}
	return n
}
