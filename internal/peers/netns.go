package peers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// NetNSDir is where "ip netns add" keeps the named network namespaces.
const NetNSDir = "/run/netns"

// checkNetNS validates Options.NetNS: the namespace exists, ip is installed,
// and Addr names a host (the servers' default, 127.0.0.1, would be the
// namespace's own loopback, which nothing outside it reaches).
func checkNetNS(t testing.TB, o Options) {
	t.Helper()
	if o.NetNS == "" {
		return
	}
	if _, err := os.Stat(NetNSDir + "/" + o.NetNS); err != nil {
		t.Fatalf("peers: Options.NetNS %q: %v (create it with ip netns add)", o.NetNS, err)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("peers: Options.NetNS needs ip (iproute2): %v", err)
	}
	if host, _, err := net.SplitHostPort(o.Addr); err != nil || host == "" {
		t.Fatalf("peers: Options.NetNS %q needs Options.Addr with an address of that namespace, got %q", o.NetNS, o.Addr)
	}
}

// inNetNS rewrites cmd to run under "ip netns exec ns". ip execs the command
// in place, so the process (and its group, for stop) keeps its pid.
func inNetNS(t testing.TB, cmd *exec.Cmd, ns string) {
	t.Helper()
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Fatalf("peers: Options.NetNS needs ip (iproute2): %v", err)
	}
	cmd.Args = append([]string{ip, "netns", "exec", ns, cmd.Path}, cmd.Args[1:]...)
	cmd.Path = ip
}

// probeNetNS is probe from inside the network namespace ns: bash's /dev/tcp
// reads the greeting of a plain server, openssl s_client that of an implicit
// FTPS one. Either sends QUIT.
func probeNetNS(ns, addr string, implicit bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	script := `exec 3<>"/dev/tcp/$0/$1" || exit 1
IFS= read -r line <&3 || exit 1
printf '%s\n' "$line"
printf 'QUIT\r\n' >&3`
	if implicit {
		// -quiet implies -ign_eof: after QUIT it reads until the server
		// closes, so the greeting is never cut off.
		script = `printf 'QUIT\r\n' | openssl s_client -quiet -connect "$2" 2>/dev/null`
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "timeout", "4", "bash", "-c", script, host, port, addr)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err = cmd.Run()
	first, _, _ := strings.Cut(strings.TrimLeft(out.String(), "\r\n"), "\n")
	first = strings.TrimSpace(first)
	if strings.HasPrefix(first, "220") {
		return nil
	}
	if err == nil {
		err = errors.New("no greeting")
	}
	return fmt.Errorf("probe in netns %s: greeting %q: %w: %s", ns, first, err, strings.TrimSpace(stderr.String()))
}
