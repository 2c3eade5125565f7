package proxy_test

// The client side of the corpus: a byte-exact control connection.

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// exactClient is a control connection that writes exact bytes and reads exact replies.
type exactClient struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

// dialExact connects to addr with a 20 s deadline for the whole case.
func dialExact(t *testing.T, addr string) *exactClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return &exactClient{t: t, c: c, r: bufio.NewReader(c)}
}

// send writes s verbatim.
func (h *exactClient) send(s string) {
	h.t.Helper()
	if _, err := io.WriteString(h.c, s); err != nil {
		h.t.Fatalf("write %q: %v", printable(s), err)
	}
}

// readReply reads one whole reply: its exact bytes and its first line without terminator.
func (h *exactClient) readReply() (raw, first string, err error) {
	line, err := h.r.ReadString('\n')
	raw = line
	if err != nil {
		return raw, "", err
	}
	first = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if len(first) >= 4 && first[3] == '-' {
		end := first[:3] + " "
		for {
			l, err := h.r.ReadString('\n')
			raw += l
			if err != nil {
				return raw, first, err
			}
			if strings.HasPrefix(l, end) {
				break
			}
		}
	}
	return raw, first, nil
}

// expect reads one reply and checks it: "raw:<bytes>" is the whole reply byte for byte,
// "<text>*" a prefix of its first line, anything else its exact first line (a one-line reply
// must then be exactly that line and CRLF). It returns the first line.
func (h *exactClient) expect(w string) string {
	h.t.Helper()
	raw, first, err := h.readReply()
	if err != nil {
		h.t.Fatalf("want %q: got %q, %v", printable(w), printable(raw), err)
	}
	ok := true
	switch {
	case strings.HasPrefix(w, "raw:"):
		ok = raw == w[4:]
	case strings.HasSuffix(w, "*"):
		ok = strings.HasPrefix(first, w[:len(w)-1]) && strings.HasSuffix(raw, "\r\n")
	default:
		ok = first == w && strings.HasSuffix(raw, "\r\n")
		if len(first) < 4 || first[3] != '-' {
			ok = ok && raw == w+"\r\n"
		}
	}
	if !ok {
		h.t.Fatalf("want %q, got %q", printable(w), printable(raw))
	}
	return first
}

// expectClose reads until the proxy closes and checks the bytes it sent meanwhile.
func (h *exactClient) expectClose(final string) {
	h.t.Helper()
	h.c.SetReadDeadline(time.Now().Add(3 * time.Second))
	rest, err := io.ReadAll(h.r)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		h.t.Fatalf("want %q then close: got %q, %v", printable(final), printable(string(rest)), err)
	}
	if string(rest) != final {
		h.t.Fatalf("want exactly %q then close, got %q", printable(final), printable(string(rest)))
	}
}

// expectTLSClose checks that the proxy closed the connection without sending a plaintext
// reply: nothing, or TLS alert records only.
func (h *exactClient) expectTLSClose(within time.Duration) {
	h.t.Helper()
	start := time.Now()
	h.c.SetReadDeadline(time.Now().Add(within + 3*time.Second))
	rest, err := io.ReadAll(h.r)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		h.t.Fatalf("not closed: got %q, %v", printable(string(rest)), err)
	}
	for b := rest; len(b) > 0; {
		if len(b) < 5 || b[0] != 0x15 {
			h.t.Fatalf("bytes other than TLS alerts before the close: %q", printable(string(rest)))
		}
		n := 5 + int(binary.BigEndian.Uint16(b[3:5]))
		if n > len(b) {
			h.t.Fatalf("truncated record before the close: %q", printable(string(rest)))
		}
		b = b[n:]
	}
	if d := time.Since(start); d > within {
		h.t.Fatalf("closed after %v, want within %v", d, within)
	}
}

// startTLS runs the client handshake after a 234, refusing bytes the proxy sent early.
func (h *exactClient) startTLS(cc *tls.Config) {
	h.t.Helper()
	if h.r.Buffered() > 0 {
		h.t.Fatalf("bytes after 234 before the handshake")
	}
	tc := tls.Client(h.c, cc)
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		h.t.Fatalf("TLS handshake: %v", err)
	}
	h.c = tc
	h.r = bufio.NewReader(tc)
}

// printable makes bytes readable in failure messages.
func printable(s string) string {
	if len(s) > 200 {
		return s[:120] + fmt.Sprintf("…(%d bytes)…", len(s)-180) + s[len(s)-60:]
	}
	return s
}
