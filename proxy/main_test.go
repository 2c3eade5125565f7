package proxy_test

import (
	"flag"
	"fmt"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/internal/idlepoll"
	"github.com/ftpsproxy/ftpsproxy/proxy"
)

// TestMain fails the package when the tests leave goroutines or file descriptors behind:
// every session, data connection, lease and backend leg must be gone once the tests and
// their cleanups have run.
func TestMain(m *testing.M) {
	// The runtime's network poller opens its own descriptors on first use: count from after.
	if ln, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
		ln.Close()
	}
	// So does the idle poller (its epoll descriptor and goroutine live as long as the process).
	if idlepoll.Default() == nil {
		fmt.Fprintln(os.Stderr, "FAIL: no idle poller (epoll)")
		os.Exit(1)
	}
	// Sessions that pause a little hand their client reader to the poller and take it back.
	proxy.SetIdleSweep(50 * time.Millisecond)
	baseG, baseFD := runtime.NumGoroutine(), openFDs()
	code := m.Run()
	if f := flag.Lookup("test.fuzz"); f != nil && f.Value.String() != "" {
		os.Exit(code) // the fuzzing engine keeps goroutines of its own
	}
	deadline := time.Now().Add(10 * time.Second)
	var g, fd int
	for {
		// splice(2) keeps pipe pairs in a sync.Pool, released by finalizers after GCs.
		runtime.GC()
		g, fd = runtime.NumGoroutine(), openFDs()
		if g <= baseG && fd <= baseFD || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Printf("leak check: goroutines %d (baseline %d), open fds %d (baseline %d)\n", g, baseG, fd, baseFD)
	if code == 0 && (g > baseG || fd > baseFD) {
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		fmt.Fprintf(os.Stderr, "FAIL: leaked goroutines or fds\n%s\n", buf[:n])
		entries, _ := os.ReadDir("/proc/self/fd")
		for _, e := range entries {
			target, _ := os.Readlink("/proc/self/fd/" + e.Name())
			fmt.Fprintf(os.Stderr, "fd %s -> %s\n", e.Name(), target)
		}
		code = 1
	}
	os.Exit(code)
}

func openFDs() int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	return len(entries)
}
