package proxy_test

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"

	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/internal/idlepoll"

	"github.com/ftpsproxy/ftpsproxy/proxy"
)

// TestIdleSessionGoroutines counts the goroutines an idle logged-in FTPS session keeps: none.
// Its client reader and its owner hand their waits over to the idle poller once the session
// is silent (TestMain sets the sweep to 50 ms): two watches per session. The client speaking
// starts a reader, which calls the owner back; each session answers, then is down to no
// goroutine again. A client that leaves while no goroutine runs ends its session (the poller
// sees the end of the socket), and so does a backend that leaves (with its 421 policy).
// (A goroutine is a 4 KiB stack once it has grown; an idle session had three, then two.)
// The idle sweep looks at none of the idle sessions, only at their idle deadlines.
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
	idle := func(sessions int) {
		t.Helper()
		waitFor(t, 5*time.Second, func() bool { return sessionGoroutines() == 0 })
		if got := idlepoll.Default().Armed(); got < 2*sessions {
			t.Fatalf("%d idle watches armed for %d idle sessions", got, sessions)
		}
		// The sweep looks at none of them, and holds each one's idle deadline.
		if present, due := p.srv.SweepCounts(); present != 0 || due != sessions {
			t.Fatalf("the sweep looks at %d sessions and holds %d idle deadlines; want 0 and %d", present, due, sessions)
		}
	}
	idle(n)
	for round := range 3 {
		for _, rc := range conns {
			rc.cmd("PWD", 257)
			rc.cmd("NOOP", 200)
		}
		if round == 1 { // a pipelined pair wakes the poller once and is answered in order
			for _, rc := range conns {
				rc.send("PWD\r\nNOOP\r\n")
				rc.expect(257)
				rc.expect(200)
			}
		}
		idle(n)
	}
	for i, rc := range conns[:n/2] {
		if i%2 == 0 {
			rc.cmd("QUIT", 221)
		}
		rc.c.Close()
	}
	waitFor(t, 5*time.Second, func() bool { return p.srv.Sessions() == n-n/2 })
	idle(n - n/2)
	be.srv.Stop() // closes every backend connection: each session's owner is called back
	for _, rc := range conns[n/2:] {
		expectFinal(t, rc, proxy.Line421(proxy.CauseBackend))
	}
	waitFor(t, 5*time.Second, func() bool { return p.srv.Sessions() == 0 })
	if present, due := p.srv.SweepCounts(); present != 0 || due != 0 {
		t.Fatalf("after every session ended the sweep holds %d sessions and %d idle deadlines", present, due)
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

// TestIdleHandOverRaces: sessions pause for random spells around the sweep's interval (50 ms
// in tests), so their goroutines go away and come back at every moment of a command: as the
// owner is marked away, as the reader arms its watch, as a line arrives. Every command is
// answered and every download is intact (sha256); a lost wake would leave a command
// unanswered until the client's deadline.
func TestIdleHandOverRaces(t *testing.T) {
	be := startBackend(t, nil)
	src, want := randomFile(t, be.root, 64<<10+3)
	name := filepath.Base(src)
	p := startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)})
	const sessions, rounds = 8, 25
	stop := make(chan struct{})
	most := make(chan int)
	go func() { // the hand-overs must happen: watches are armed during the test
		m := 0
		for {
			select {
			case <-stop:
				most <- m
				return
			case <-time.After(2 * time.Millisecond):
				m = max(m, idlepoll.Default().Armed())
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, sessions)
	for i := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := ftp.Dial(p.addr, ftp.DialWithTimeout(5*time.Second))
			if err != nil {
				errs <- err
				return
			}
			defer c.Quit()
			if err := c.Login(demoUser, demoPass); err != nil {
				errs <- err
				return
			}
			rng := rand.New(rand.NewPCG(uint64(i), 1))
			for r := range rounds {
				time.Sleep(time.Duration(rng.IntN(130)) * time.Millisecond)
				if err := c.NoOp(); err != nil {
					errs <- fmt.Errorf("session %d round %d NOOP: %w", i, r, err)
					return
				}
				if r%5 != 0 {
					continue
				}
				time.Sleep(time.Duration(rng.IntN(130)) * time.Millisecond)
				rd, err := c.Retr(name)
				if err != nil {
					errs <- fmt.Errorf("session %d round %d RETR: %w", i, r, err)
					return
				}
				got, err := io.ReadAll(rd)
				rd.Close()
				if err != nil || sha(got) != want {
					errs <- fmt.Errorf("session %d round %d: %d bytes, %v, sha256 match %v", i, r, len(got), err, sha(got) == want)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	if m := <-most; m < sessions {
		t.Errorf("at most %d idle watches armed at once: the sessions did not hand over", m)
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
