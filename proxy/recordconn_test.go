package proxy

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ftpsproxy/ftpsproxy/tlsterm"
)

// countingConn counts the writes that reach a TCP connection. Embedding *net.TCPConn keeps
// SyscallConn, so a recordConn over it can read without waiting.
type countingConn struct {
	*net.TCPConn
	writes atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.TCPConn.Write(p)
}

// heldConn holds back what is written to it once hold is set, so a test can send a client's
// TLS records to the proxy side in pieces of its choosing.
type heldConn struct {
	net.Conn
	mu   sync.Mutex
	hold bool
	held bytes.Buffer
}

func (c *heldConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hold {
		return c.held.Write(p)
	}
	return c.Conn.Write(p)
}

// recordPair is a TLS connection whose server side runs over a recordConn on loopback TCP:
// srv is the proxy's side, cli the client's, raw the client's TCP connection.
type recordPair struct {
	srv   *tls.Conn
	rc    *recordConn
	count *countingConn
	cli   *tls.Conn
	hc    *heldConn
	raw   *net.TCPConn
}

func newRecordPair(t *testing.T, tls12 bool) *recordPair {
	t.Helper()
	a, b := tcpPair(t)
	cert, _, err := tlsterm.SelfSigned("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	p := &recordPair{count: &countingConn{TCPConn: b}, raw: a}
	p.rc = newRecordConn(p.count)
	scfg := &tls.Config{Certificates: []tls.Certificate{*cert}, SessionTicketsDisabled: true}
	// Full records from the first byte, so a test can count them.
	ccfg := &tls.Config{InsecureSkipVerify: true, DynamicRecordSizingDisabled: true}
	if tls12 {
		ccfg.MaxVersion = tls.VersionTLS12
	}
	p.srv = tls.Server(p.rc, scfg)
	p.hc = &heldConn{Conn: a}
	p.cli = tls.Client(p.hc, ccfg)
	errc := make(chan error, 1)
	go func() { errc <- p.cli.Handshake() }()
	if err := p.srv.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.srv.Close(); p.cli.Close() })
	return p
}

// awaitQueued waits until the proxy side's socket holds n unread bytes.
func (p *recordPair) awaitQueued(t *testing.T, n int) {
	t.Helper()
	raw, err := p.count.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var q int
		raw.Control(func(fd uintptr) { q, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
		if q == n {
			return
		}
		if q > n || time.Now().After(deadline) {
			t.Fatalf("%d bytes queued on the socket, want %d", q, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestRecordConnBatch: the records of one large write leave in one write to the socket, in
// TLS 1.3 and 1.2, and the client reads exactly the bytes written. A write of one record or
// less is not batched.
func TestRecordConnBatch(t *testing.T) {
	for _, tls12 := range []bool{false, true} {
		p := newRecordPair(t, tls12)
		payload := testPayload(bigBufSize)
		got := make(chan []byte, 1)
		go func() {
			b := make([]byte, bigBufSize+100)
			n, _ := io.ReadFull(p.cli, b[:bigBufSize+100])
			got <- b[:n]
		}()
		before := p.count.writes.Load()
		n, err := p.rc.batch(p.srv, payload)
		if n != len(payload) || err != nil {
			t.Fatalf("tls12=%v: batch wrote %d, %v", tls12, n, err)
		}
		if w := p.count.writes.Load() - before; w != 1 {
			t.Fatalf("tls12=%v: %d KiB in %d socket writes, want 1", tls12, bigBufSize>>10, w)
		}
		small := testPayload(100)
		before = p.count.writes.Load()
		if _, err := p.rc.batch(p.srv, small); err != nil {
			t.Fatal(err)
		}
		if w := p.count.writes.Load() - before; w != 1 {
			t.Fatalf("tls12=%v: a small write took %d socket writes", tls12, w)
		}
		if b := <-got; !bytes.Equal(b, append(payload, small...)) {
			t.Fatalf("tls12=%v: client read %d bytes, content differs", tls12, len(b))
		}
		if p.rc.outBuf != nil || p.rc.out != nil || p.rc.batching || p.rc.flushing {
			t.Fatal("the batch buffer is held after the write")
		}
	}
}

// sendHeld has the client write payload with its records held back, and returns them.
func (p *recordPair) sendHeld(t *testing.T, payload []byte) []byte {
	t.Helper()
	p.hc.mu.Lock()
	p.hc.hold = true
	p.hc.mu.Unlock()
	if _, err := p.cli.Write(payload); err != nil {
		t.Fatal(err)
	}
	p.hc.mu.Lock()
	defer p.hc.mu.Unlock()
	return bytes.Clone(p.hc.held.Bytes())
}

// TestRecordConnFill: after a read that waited, fill reads every record already on the
// socket and returns without waiting for more; a record that has only partly arrived stays
// in crypto/tls and is read whole once the rest comes.
func TestRecordConnFill(t *testing.T) {
	for _, tls12 := range []bool{false, true} {
		p := newRecordPair(t, tls12)
		payload := testPayload(100 << 10) // 7 records
		records := p.sendHeld(t, payload)
		const tail = 100 // the last record lacks its last 100 bytes
		if _, err := p.raw.Write(records[:len(records)-tail]); err != nil {
			t.Fatal(err)
		}
		p.awaitQueued(t, len(records)-tail)
		buf := make([]byte, bigBufSize)
		n, err := p.srv.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		n, err = p.rc.fill(p.srv, buf, n)
		if err != nil {
			t.Fatalf("tls12=%v: fill: %v", tls12, err)
		}
		if want := len(payload) - len(payload)%maxRecordPayload; n != want {
			t.Fatalf("tls12=%v: fill stopped at %d bytes, want %d (every whole record)", tls12, n, want)
		}
		if _, err := p.raw.Write(records[len(records)-tail:]); err != nil {
			t.Fatal(err)
		}
		m, err := p.srv.Read(buf[n:])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf[:n+m], payload) {
			t.Fatalf("tls12=%v: %d bytes read, content differs", tls12, n+m)
		}
	}
}

// TestRecordConnFillEnd: fill returns io.EOF with the data before a close_notify, and a
// reset peer's error, never errNoData.
func TestRecordConnFillEnd(t *testing.T) {
	p := newRecordPair(t, false)
	payload := testPayload(40 << 10)
	p.sendHeld(t, payload)
	p.cli.CloseWrite() // its close_notify is held too
	p.hc.mu.Lock()
	records := bytes.Clone(p.hc.held.Bytes())
	p.hc.mu.Unlock()
	p.raw.SetWriteDeadline(time.Time{}) // CloseWrite ended writes on the client's conn
	if _, err := p.raw.Write(records); err != nil {
		t.Fatal(err)
	}
	p.awaitQueued(t, len(records))
	buf := make([]byte, bigBufSize)
	n, err := p.srv.Read(buf)
	if err == nil {
		n, err = p.rc.fill(p.srv, buf, n)
	}
	if err != io.EOF || !bytes.Equal(buf[:n], payload) {
		t.Fatalf("read %d bytes and %v, want the %d sent and EOF", n, err, len(payload))
	}

	p = newRecordPair(t, false)
	records = p.sendHeld(t, payload)
	if _, err := p.raw.Write(records[:len(records)-10]); err != nil {
		t.Fatal(err)
	}
	p.awaitQueued(t, len(records)-10)
	p.raw.SetLinger(0)
	p.raw.Close()
	for err = nil; err == nil; {
		n, err = p.srv.Read(buf) // waits
		if err == nil {
			_, err = p.rc.fill(p.srv, buf, n)
		}
	}
	if errors.Is(err, errNoData) || err == io.EOF {
		t.Fatalf("reset peer: %v, want the connection's error", err)
	}
}

// TestRecordConnDeadlines: a deadline set through the tls.Conn still bounds a batch toward a
// client that does not read, and a fill after the read deadline fails with the timeout.
func TestRecordConnDeadlines(t *testing.T) {
	p := newRecordPair(t, false)
	p.srv.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	payload := testPayload(bigBufSize)
	var err error
	for i := 0; i < 1000 && err == nil; i++ { // the kernel's buffers take a few MiB
		_, err = p.rc.batch(p.srv, payload)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("batch toward a stalled client: %v, want the write deadline", err)
	}

	p = newRecordPair(t, false)
	p.srv.SetReadDeadline(time.Now().Add(-time.Second))
	if _, err := p.rc.fill(p.srv, make([]byte, 1024), 0); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("fill after the read deadline: %v, want the deadline", err)
	}
}

// TestRecordConnCloseDuringFlush: Close while a batch is blocked on a client that does not
// read returns at once and without error (its close_notify is queued behind the records,
// as crypto/tls skips it when Close interrupts a Write), and the blocked batch fails.
func TestRecordConnCloseDuringFlush(t *testing.T) {
	p := newRecordPair(t, false)
	done := make(chan error, 1)
	go func() {
		payload := testPayload(bigBufSize)
		for {
			if _, err := p.rc.batch(p.srv, payload); err != nil {
				done <- err
				return
			}
		}
	}()
	// Wait until a flush is under way and stays so: the client's buffers are full.
	flushing := func() bool { p.rc.mu.Lock(); defer p.rc.mu.Unlock(); return p.rc.flushing }
	for stuck := 0; stuck < 50; {
		if flushing() {
			stuck++
		} else {
			stuck = 0
		}
		time.Sleep(2 * time.Millisecond)
	}
	if err := p.srv.Close(); err != nil {
		t.Fatalf("Close during a blocked flush: %v", err)
	}
	if err := <-done; err == nil {
		t.Fatal("the blocked batch succeeded after Close")
	}
}

// TestRecordConnWithoutSyscallConn: over a connection that cannot be read without waiting
// (net.Pipe) fill leaves the buffer as it is and batch still writes.
func TestRecordConnWithoutSyscallConn(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	rc := newRecordConn(b)
	if rc.raw != nil {
		t.Fatal("net.Pipe has no SyscallConn")
	}
	cert, _, _ := tlsterm.SelfSigned("127.0.0.1")
	srv := tls.Server(rc, &tls.Config{Certificates: []tls.Certificate{*cert}})
	cli := tls.Client(a, &tls.Config{InsecureSkipVerify: true})
	go cli.Handshake()
	if err := srv.Handshake(); err != nil {
		t.Fatal(err)
	}
	if n, err := rc.fill(srv, make([]byte, 10), 3); n != 3 || err != nil {
		t.Fatalf("fill = %d, %v; want 3, nil", n, err)
	}
	payload := testPayload(64 << 10)
	got := make(chan []byte, 1)
	go func() { b := make([]byte, len(payload)); n, _ := io.ReadFull(cli, b); got <- b[:n] }()
	if n, err := rc.batch(srv, payload); n != len(payload) || err != nil {
		t.Fatalf("batch = %d, %v", n, err)
	}
	if !bytes.Equal(<-got, payload) {
		t.Fatal("content differs")
	}
}

// testPayload returns n bytes that differ from one position to the next.
func testPayload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}
