package proxy

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// recordConn is the TCP connection under the TLS of a data connection. It lets the pump move
// TLS records in bulk, where crypto/tls makes one system call per record (at most 16 KiB):
//
//   - writes: the records of one pump write (up to 16 for the pump's 256 KiB buffer) are
//     collected and leave in one write when tls.Conn.Write returns (batch);
//   - reads: after a read that waited, the records already received are read without
//     waiting (fill), so the buffer goes on in one write to the other side.
//
// Outside batch and fill it is the bare connection: the handshake, alerts and close_notify
// pass straight through, and deadlines set through the tls.Conn apply as before. No byte is
// held back once the pump's write returns, so the data leaves exactly when it did without it.
type recordConn struct {
	net.Conn
	raw syscall.RawConn // nil: the connection cannot be read without waiting; fill does nothing

	mu       sync.Mutex
	batching bool    // the pump is in tls.Conn.Write: records are collected in out
	flushing bool    // out is being written: other writes (alerts) queue behind it
	out      []byte  // records not yet written
	outBuf   *[]byte // the pooled buffer behind out, held only during a batch
	werr     error   // the first failed write: the TLS stream is broken, later writes fail too

	noWait     atomic.Bool // Read returns errNoData rather than wait (during fill)
	handshaken bool        // fill saw the handshake complete (only the reading side calls fill)
}

func newRecordConn(c net.Conn) *recordConn {
	rc := &recordConn{Conn: c}
	if sc, ok := c.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			rc.raw = raw
		}
	}
	return rc
}

// recordConnOf returns the recordConn under c when c is TLS over one.
func recordConnOf(c net.Conn) (*tls.Conn, *recordConn) {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return nil, nil
	}
	rc, _ := tc.NetConn().(*recordConn)
	if rc == nil {
		return nil, nil
	}
	return tc, rc
}

// maxRecordPayload is the most plaintext crypto/tls puts in one record: a write no larger is
// one record, and so one system call, anyway.
const maxRecordPayload = 16 << 10

// recordBufs holds the buffers that collect the records of one pump write: the pump's
// buffer plus each record's header, nonce and tag (at most 29 bytes, TLS 1.2 AES-GCM: about
// 600 bytes for 256 KiB even in the small records crypto/tls starts a connection with). A
// larger write grows the buffer, which is then dropped.
var recordBufs = bufPool(bigBufSize + 4<<10)

// Write writes p, or collects it while a batch is open or being written: writes that
// crypto/tls makes from another goroutine meanwhile (an alert, close_notify from Close)
// must not overtake the records before them, nor wait for a client that does not read.
//
// After a failed write every write fails at once: crypto/tls latches its own write errors but
// not those of a batch it never saw, and its Close would otherwise wait up to 5 s to send
// close_notify to a client that stopped reading.
func (c *recordConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.werr != nil {
		defer c.mu.Unlock()
		return 0, c.werr
	}
	if c.batching || c.flushing {
		c.out = append(c.out, p...)
		c.mu.Unlock()
		return len(p), nil
	}
	c.mu.Unlock()
	n, err := c.Conn.Write(p)
	if err != nil {
		c.mu.Lock()
		c.werr = err
		c.mu.Unlock()
	}
	return n, err
}

// batch writes p through tc, whose records reach the connection in one write. An error of
// that write is returned with no byte counted as written.
func (c *recordConn) batch(tc *tls.Conn, p []byte) (int, error) {
	if len(p) <= maxRecordPayload {
		return tc.Write(p)
	}
	// A handshake that tc.Write would run first must not be collected: its flight has to
	// leave before the peer answers.
	if err := tc.Handshake(); err != nil {
		return 0, err
	}
	c.mu.Lock()
	c.batching = true
	if c.outBuf == nil {
		c.outBuf = recordBufs.Get().(*[]byte)
		c.out = (*c.outBuf)[:0]
	}
	c.mu.Unlock()
	n, err := tc.Write(p)
	if ferr := c.flush(); ferr != nil && err == nil {
		return 0, ferr
	}
	return n, err
}

// flush ends a batch: it writes the collected records, then whatever was queued behind them
// meanwhile. Once a write fails, what is queued is dropped.
func (c *recordConn) flush() error {
	c.mu.Lock()
	c.batching = false
	var err error
	for len(c.out) > 0 && err == nil {
		b := c.out
		c.out, c.flushing = nil, true
		c.mu.Unlock()
		_, err = c.Conn.Write(b)
		c.mu.Lock()
	}
	if err != nil && c.werr == nil {
		c.werr = err
	}
	c.out, c.flushing = nil, false
	if c.outBuf != nil {
		recordBufs.Put(c.outBuf)
		c.outBuf = nil
	}
	c.mu.Unlock()
	return err
}

// errNoData is what Read returns during fill when no byte has arrived. It is a temporary
// net.Error, like a read deadline: crypto/tls then keeps the connection usable and the part
// of a record already read, and its Read returns the error.
var errNoData net.Error = noDataError{}

type noDataError struct{}

func (noDataError) Error() string   { return "no data received yet" }
func (noDataError) Timeout() bool   { return false }
func (noDataError) Temporary() bool { return true }

// Read reads from the connection, without waiting during fill.
func (c *recordConn) Read(p []byte) (int, error) {
	if !c.noWait.Load() {
		return c.Conn.Read(p)
	}
	var n int
	var errno error
	err := c.raw.Read(func(fd uintptr) bool {
		for {
			n, errno = unix.Read(int(fd), p)
			if errno != unix.EINTR {
				return true // never wait for readiness
			}
		}
	})
	if err == nil && errno != nil && errno != unix.EAGAIN {
		err = os.NewSyscallError("read", errno)
	}
	switch {
	case err != nil:
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
	case errno == unix.EAGAIN:
		return 0, errNoData
	case n == 0 && len(p) > 0:
		return 0, io.EOF
	}
	return n, nil
}

// fill reads into buf[n:] through tc what has already arrived, without waiting, until buf
// is full; it returns the new length.
func (c *recordConn) fill(tc *tls.Conn, buf []byte, n int) (int, error) {
	if c.raw == nil {
		return n, nil
	}
	// A handshake must not read without waiting: errNoData would end it. (Asked once: the
	// connection state is built anew on every call, and fill runs once per pump buffer.)
	if !c.handshaken {
		if !tc.ConnectionState().HandshakeComplete {
			return n, nil
		}
		c.handshaken = true
	}
	c.noWait.Store(true)
	defer c.noWait.Store(false)
	for n < len(buf) {
		m, err := tc.Read(buf[n:])
		n += m
		if errors.Is(err, errNoData) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
