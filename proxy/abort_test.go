package proxy_test

import (
	"crypto/rand"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/internal/peers"
	"github.com/ftpsproxy/ftpsproxy/nat"
	"github.com/ftpsproxy/ftpsproxy/proxy"
)

// sendUrgent writes b as TCP urgent data, as clients send the Telnet Synch (DM) before ABOR.
func sendUrgent(t *testing.T, c net.Conn, b []byte) {
	t.Helper()
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	raw.Write(func(fd uintptr) bool {
		serr = syscall.Sendto(int(fd), b, syscall.MSG_OOB, nil)
		return true
	})
	if serr != nil {
		t.Fatal(serr)
	}
}

// TestAbortDuringTransfer aborts a download with IAC IP + Synch + ABOR: both data legs are
// torn down, the replies arrive in order (426 or 226 for the transfer, then 226 for ABOR),
// and the session goes on.
func TestAbortDuringTransfer(t *testing.T) {
	be := startBackend(t, nil)
	big := make([]byte, 64<<20)
	rand.Read(big)
	os.WriteFile(filepath.Join(be.root, "big"), big, 0o644)
	p := startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)})
	rc := dialRaw(t, p.addr)
	rc.login()
	line := rc.cmd("EPSV", 229)
	port := line[strings.Index(line, "|||")+3 : strings.LastIndex(line, "|")]
	dc, err := net.Dial("tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	rc.send("RETR big\r\n")
	rc.expect(150)
	buf := make([]byte, 1<<20)
	if _, err := dc.Read(buf); err != nil {
		t.Fatal(err)
	}
	rc.send("\xff\xf4\xff")
	sendUrgent(t, rc.c, []byte{0xf2})
	rc.send("ABOR\r\n")
	// The transfer's final reply (the backend's own: 426, 226, or here ftpserverlib's 550),
	// then ABOR's reply.
	if code, l := rc.reply(); code < 200 {
		t.Fatalf("transfer reply after ABOR: %q", l)
	}
	if code, l := rc.reply(); code != 226 && code != 225 {
		t.Fatalf("ABOR reply: %q", l)
	}
	// The data connection is closed by the proxy.
	dc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, err := dc.Read(buf); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("data connection still open after ABOR")
			}
			break
		}
	}
	rc.cmd("NOOP", 200)
	rc.cmd("PWD", 257)
}

// TestPortsExhausted: with a range of two ports, the third PASV in concurrent sessions gets
// 425 while the session goes on, and the ports come back when released.
func TestPortsExhausted(t *testing.T) {
	be := startBackend(t, nil)
	p := startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)}, func(c *proxy.Config, _ *balancer.PoolConfig) {
		r := peers.FreePortRange(t, 2)
		c.Data.PortRange = nat.PortRange{First: uint16(r[0]), Last: uint16(r[1])}
	})
	a, b, c := dialRaw(t, p.addr), dialRaw(t, p.addr), dialRaw(t, p.addr)
	for _, rc := range []*rawConn{a, b, c} {
		rc.login()
	}
	a.cmd("PASV", 227)
	b.cmd("EPSV", 229)
	c.cmd("PASV", 425)
	c.cmd("NOOP", 200)
	a.cmd("QUIT", 221)
	waitFor(t, 2*time.Second, func() bool { return p.srv.Allocator().InUse() == 1 })
	c.cmd("PASV", 227)
	if n := p.srv.Allocator().InUse(); n != 2 {
		t.Fatalf("ports in use %d, want 2", n)
	}
}

// TestEpsvAll: after EPSV ALL, PASV, PORT and EPRT get 503 and EPSV still works.
func TestEpsvAll(t *testing.T) {
	be := startBackend(t, nil)
	p := startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)})
	rc := dialRaw(t, p.addr)
	rc.login()
	rc.cmd("EPSV ALL", 200)
	rc.cmd("PASV", 503)
	rc.cmd("PORT 127,0,0,1,200,1", 503)
	rc.cmd("EPRT |1|127.0.0.1|5000|", 503)
	rc.cmd("EPSV", 229)
	rc.cmd("EPSV 2", 522)
}
