package proxy_test

import (
	"context"
	"crypto/rand"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/proxy"
	"github.com/jlaffaye/ftp"
)

// slowRead reads r in small pieces with pauses, like a throttled client.
func slowRead(r io.Reader, chunk int, pause time.Duration) ([]byte, error) {
	var out []byte
	buf := make([]byte, chunk)
	for {
		n, err := r.Read(buf)
		out = append(out, buf[:n]...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		time.Sleep(pause)
	}
}

func bigFile(t *testing.T, dir string, size int) (string, []byte) {
	t.Helper()
	b := make([]byte, size)
	rand.Read(b)
	if err := os.WriteFile(filepath.Join(dir, "big"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return "big", b
}

// throttled is a reader that hands out chunk bytes per pause, like a slow uploader.
type throttled struct {
	data  []byte
	chunk int
	pause time.Duration
}

func (r *throttled) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	time.Sleep(r.pause)
	n := copy(p[:min(len(p), r.chunk)], r.data)
	r.data = r.data[n:]
	return n, nil
}

// TestIdleTimeoutPausedDuringTransfer: an upload longer than idle_timeout completes, and the
// idle timeout fires after it.
func TestIdleTimeoutPausedDuringTransfer(t *testing.T) {
	be := startBackend(t, nil)
	p := startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)}, func(c *proxy.Config, _ *balancer.PoolConfig) {
		c.Limits.IdleTimeout = 400 * time.Millisecond
	})
	c := goClient(t, p.addr)
	want := make([]byte, 1<<20)
	rand.Read(want)
	start := time.Now()
	if err := c.Stor("up", &throttled{data: want, chunk: 64 << 10, pause: 100 * time.Millisecond}); err != nil {
		t.Fatalf("upload cut: %v", err)
	}
	if d := time.Since(start); d < time.Second {
		t.Fatalf("upload took only %v", d)
	}
	if got := fileSHA(t, filepath.Join(be.root, "up")); got != sha(want) {
		t.Fatal("upload corrupted")
	}
	if err := c.NoOp(); err != nil {
		t.Fatalf("session ended during the transfer: %v", err)
	}
	time.Sleep(800 * time.Millisecond)
	if err := c.NoOp(); err == nil {
		t.Fatal("idle timeout did not fire after the transfer")
	}
}

// TestShutdownDrainsTransfers: with 20 downloads in flight and idle sessions, Shutdown lets
// every transfer finish with the right bytes, sends idle sessions the shutdown 421, and
// returns within the grace.
func TestShutdownDrainsTransfers(t *testing.T) {
	be := startBackend(t, nil)
	name, want := bigFile(t, be.root, 2<<20)
	p := startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)})
	idle := dialRaw(t, p.addr)
	idle.login()

	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	started := make(chan struct{}, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := ftp.Dial(p.addr, ftp.DialWithTimeout(10*time.Second))
			if err != nil {
				errs <- err
				return
			}
			if err := c.Login(demoUser, demoPass); err != nil {
				errs <- err
				return
			}
			r, err := c.Retr(name)
			if err != nil {
				errs <- err
				return
			}
			started <- struct{}{}
			got, err := slowRead(r, 128<<10, 50*time.Millisecond) // ~0.8 s
			if err == nil {
				err = r.Close()
			}
			if err == nil && sha(got) != sha(want) {
				err = io.ErrUnexpectedEOF
			}
			errs <- err
		}()
	}
	for range n {
		select {
		case <-started:
		case err := <-errs:
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := p.srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("transfer during drain: %v", err)
		}
	}
	expectFinal(t, idle, "421 Server shutting down, closing control connection")
	t.Logf("drained %d transfers in %v", n, time.Since(start))
}

// TestShutdownGraceCuts: a grace shorter than the transfers cuts them and Shutdown returns.
func TestShutdownGraceCuts(t *testing.T) {
	be := startBackend(t, nil)
	p := startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)})
	c := goClient(t, p.addr)
	data := make([]byte, 8<<20)
	done := make(chan error, 1)
	go func() { done <- c.Stor("up", &throttled{data: data, chunk: 64 << 10, pause: 50 * time.Millisecond}) }()
	time.Sleep(300 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := p.srv.Shutdown(ctx); err == nil {
		t.Fatal("shutdown reported a clean drain")
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("shutdown took %v", d)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("cut upload reported success")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cut transfer still running")
	}
}

// TestShutdownEndsDataConnectionWait: a session waiting for its client's passive data
// connection (the proxy parked in the accept) is ended by the shutdown's grace running out,
// not by data.connect_timeout (5 s here), and Shutdown returns.
func TestShutdownEndsDataConnectionWait(t *testing.T) {
	be := startBackend(t, nil)
	p := startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)})
	rc := dialRaw(t, p.addr)
	rc.login()
	rc.cmd("EPSV", 229)
	rc.send("RETR never\r\n")
	time.Sleep(100 * time.Millisecond) // the proxy waits for the data connection
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	p.srv.Shutdown(ctx)
	rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	io.Copy(io.Discard, rc.c) // replies, then the end of the session
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the session waiting for its data connection ended %v after the shutdown began", d)
	}
}
