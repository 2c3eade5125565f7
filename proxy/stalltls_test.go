package proxy_test

import (
	"crypto/tls"
	"io"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/proxy"
)

// TestStalledTLSClient: under PROT P the pump's writes toward a client that stops reading
// block in one write of many TLS records. The client leaving, or data_timeout, must still end
// the transfer at once: closing the data connection may not wait for that write (nor for the
// close_notify queued behind it), so the backend slot is released within 1 s, or the client
// gets its 426 and the session goes on.
func TestStalledTLSClient(t *testing.T) {
	for _, leave := range []bool{true, false} {
		name := map[bool]string{true: "client leaves", false: "data_timeout"}[leave]
		t.Run(name, func(t *testing.T) {
			be := startXferBackend(t, false, endlessRetr)
			opt, cc := withTLS(t, proxy.TLSExplicit, false)
			var dataTimeout time.Duration // the default, 5 minutes
			if !leave {
				dataTimeout = 700 * time.Millisecond
			}
			p, b := stallProxy(t, be, dataTimeout, opt)
			rc := dialRaw(t, p.addr)
			rc.cmd("AUTH TLS", 234)
			tc := tls.Client(rc.c, cc)
			rc.c, rc.r = tc, newTextReader(tc)
			rc.cmd("PBSZ 0", 200)
			rc.cmd("PROT P", 200)
			rc.login()
			dc := tls.Client(dialEPSV(t, rc), cc)
			rc.cmd("RETR stall", 150)
			dc.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.ReadFull(dc, make([]byte, 1<<20)); err != nil {
				t.Fatalf("reading the first MiB: %v", err)
			}
			// The client reads no more: the proxy's buffers toward it fill up.
			if leave {
				leaveAndAwaitSlot(t, rc, b)
				return
			}
			rc.expect(426)
			rc.cmd("NOOP", 200)
			rc.cmd("QUIT", 221)
		})
	}
}

// endlessRetr answers RETR with 150 and data until the data connection fails; it writes from
// one buffer, so data flows at once (a payload the size of the buffers on the way would take
// seconds to build under -race, and its building would hold a core).
func endlessRetr(s *xferTransfer, verb, arg string) {
	s.reply("150 Opening data connection.")
	c := s.rawData()
	if c == nil {
		return
	}
	c.SetWriteDeadline(time.Now().Add(30 * time.Second))
	chunk := sizedPayload(1 << 20)
	for {
		if _, err := c.Write(chunk); err != nil {
			c.Close()
			return
		}
	}
}
