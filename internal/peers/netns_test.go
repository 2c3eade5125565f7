package peers

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestNetNS starts every server inside a network namespace, on an address that
// exists only there (so a server started outside it could not even bind),
// plain and, where supported, implicit FTPS (the openssl probe).
func TestNetNS(t *testing.T) {
	ns := fmt.Sprintf("peers-%d", os.Getpid())
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	exec.Command("ip", "netns", "del", ns).Run() // a leftover of a killed run with this pid
	ip("netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	ip("-n", ns, "link", "set", "lo", "up")
	ip("-n", ns, "addr", "add", "203.0.113.77/32", "dev", "lo")

	for i, srv := range servers {
		for _, mode := range []TLSMode{TLSNone, TLSImplicit} {
			if mode == TLSImplicit && !srv.implicit {
				continue
			}
			t.Run(srv.name+"/"+mode.String(), func(t *testing.T) {
				addr := fmt.Sprintf("203.0.113.77:%d", 2100+10*i+int(mode))
				s := srv.start(t, Options{NetNS: ns, Addr: addr, TLS: mode})
				if s.Addr != addr {
					t.Fatalf("Addr %q, want %q", s.Addr, addr)
				}
				if err := probeNetNS(ns, s.Addr, mode == TLSImplicit); err != nil {
					t.Fatalf("%v\n%s", err, s.Log())
				}
			})
		}
	}
}
