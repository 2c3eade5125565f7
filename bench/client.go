package main

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// The load generator's FTP client: raw sockets, passive mode only, just enough FTP for the
// benchmark, and cheap (one bufio.Reader per control connection, no per-command goroutines).

// Control-connection TLS of a path.
const (
	ctrlPlain    = iota // no TLS
	ctrlExplicit        // AUTH TLS before USER, then PBSZ 0 / PROT P after login
	ctrlImplicit        // TLS from the first byte (the bare TLS relay)
)

// ctrl is one client control connection.
type ctrl struct {
	raw  net.Conn // the TCP connection
	conn net.Conn // raw, or the TLS connection over it
	r    *bufio.Reader
	host string // the control peer's IP: data connections go there (227/229 addresses ignored)
	tls  *tls.Config
	// dataTLS makes data connections TLS clients (after PROT P, or through the TLS relay).
	dataTLS bool
}

// replyError is a reply with an unexpected code.
type replyError struct {
	cmd  string
	code int
	text string
}

func (e *replyError) Error() string {
	return fmt.Sprintf("%s: unexpected reply %d %s", e.cmd, e.code, e.text)
}

// dialCtrl connects to p, reads the greeting and, for TLS paths, sets up TLS. It does not log in.
func dialCtrl(p *path, tcfg *tls.Config, timeout time.Duration) (*ctrl, error) {
	d := net.Dialer{Timeout: timeout}
	raw, err := d.Dial("tcp", p.addr)
	if err != nil {
		return nil, err
	}
	host, _, _ := net.SplitHostPort(p.addr)
	c := &ctrl{raw: raw, conn: raw, host: host}
	raw.SetDeadline(time.Now().Add(timeout))
	if p.ctrlTLS != ctrlPlain {
		c.tls = sessionTLS(tcfg)
	}
	if p.ctrlTLS == ctrlImplicit {
		tc := tls.Client(raw, c.tls)
		if err := tc.Handshake(); err != nil {
			raw.Close()
			return nil, fmt.Errorf("implicit TLS handshake: %w", err)
		}
		c.conn = tc
		c.dataTLS = true
	}
	c.r = bufio.NewReaderSize(c.conn, 1024)
	if _, _, err := c.expect("greeting", 2); err != nil {
		raw.Close()
		return nil, err
	}
	if p.ctrlTLS == ctrlExplicit {
		if _, err := c.cmd(2, "AUTH TLS"); err != nil {
			raw.Close()
			return nil, err
		}
		tc := tls.Client(raw, c.tls)
		if err := tc.Handshake(); err != nil {
			raw.Close()
			return nil, fmt.Errorf("AUTH TLS handshake: %w", err)
		}
		c.conn = tc
		c.r = bufio.NewReaderSize(tc, 1024)
	}
	return c, nil
}

// sessionTLS is the client config of one FTP session: its own session cache, so data
// connections resume the control connection's TLS session as servers expect.
func sessionTLS(base *tls.Config) *tls.Config {
	c := base.Clone()
	c.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	return c
}

// login logs in and, on paths with PROT P, sends PBSZ 0 and PROT P.
func (c *ctrl) login(p *path, user, pass string) error {
	if err := c.loginOnly(user, pass); err != nil {
		return err
	}
	if p.prot {
		if _, err := c.cmd(2, "PBSZ 0"); err != nil {
			return err
		}
		if _, err := c.cmd(2, "PROT P"); err != nil {
			return err
		}
		c.dataTLS = true
	}
	return nil
}

// loginOnly sends USER and PASS.
func (c *ctrl) loginOnly(user, pass string) error {
	code, err := c.cmd(0, "USER "+user)
	if err != nil {
		return err
	}
	if code == 331 {
		_, err = c.cmd(2, "PASS "+pass)
		return err
	}
	if code/100 != 2 {
		return &replyError{cmd: "USER", code: code}
	}
	return nil
}

// Close drops the connection without QUIT.
func (c *ctrl) Close() error { return c.raw.Close() }

// quit sends QUIT, waits for its reply, and closes.
func (c *ctrl) quit() error {
	_, err := c.cmd(2, "QUIT")
	c.raw.Close()
	return err
}

func (c *ctrl) deadline(d time.Duration) { c.raw.SetDeadline(time.Now().Add(d)) }

// send writes one command line.
func (c *ctrl) send(line string) error {
	_, err := io.WriteString(c.conn, line+"\r\n")
	return err
}

// cmd sends a command and reads its final reply (a 1xx is an error here). class is the
// expected first digit, or 0 for any.
func (c *ctrl) cmd(class int, line string) (int, error) {
	if err := c.send(line); err != nil {
		return 0, err
	}
	verb, _, _ := strings.Cut(line, " ")
	code, _, err := c.expect(verb, class)
	return code, err
}

// expect reads one reply and checks its first digit (0: any but 1xx).
func (c *ctrl) expect(what string, class int) (int, string, error) {
	code, text, err := c.reply()
	if err != nil {
		return 0, "", fmt.Errorf("%s: %w", what, err)
	}
	if (class != 0 && code/100 != class) || (class == 0 && code < 200) {
		return code, text, &replyError{cmd: what, code: code, text: text}
	}
	return code, text, nil
}

// reply reads one complete reply (multi-line replies too) and returns its code and the text
// of its first line.
func (c *ctrl) reply() (int, string, error) {
	line, err := c.r.ReadString('\n')
	if err != nil {
		return 0, "", err
	}
	if len(line) < 4 {
		return 0, "", fmt.Errorf("short reply %q", line)
	}
	code, err := strconv.Atoi(line[:3])
	if err != nil {
		return 0, "", fmt.Errorf("bad reply %q", line)
	}
	text := strings.TrimRight(line[4:], "\r\n")
	if line[3] == '-' {
		end := line[:3] + " "
		for {
			l, err := c.r.ReadString('\n')
			if err != nil {
				return 0, "", err
			}
			if strings.HasPrefix(l, end) {
				break
			}
		}
	}
	return code, text, nil
}

// noop is one NOOP round trip, without allocations on the hot path.
func (c *ctrl) noop() error {
	if _, err := c.conn.Write(noopLine); err != nil {
		return err
	}
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return err
	}
	if len(line) < 4 || line[0] != '2' || line[3] != ' ' {
		return fmt.Errorf("NOOP: reply %q", line)
	}
	return nil
}

var noopLine = []byte("NOOP\r\n")

// passive sends EPSV (or PASV) and connects to the port it names, on the control peer's IP:
// like most clients (curl, jlaffaye/ftp), the 227 address is ignored.
func (c *ctrl) passive(epsv bool, timeout time.Duration) (net.Conn, error) {
	verb := "PASV"
	if epsv {
		verb = "EPSV"
	}
	_, text, err := c.sendExpect(verb, 2)
	if err != nil {
		return nil, err
	}
	var port int
	if epsv {
		port, err = parse229(text)
	} else {
		port, err = parse227(text)
	}
	if err != nil {
		return nil, err
	}
	d := net.Dialer{Timeout: timeout}
	return d.Dial("tcp", net.JoinHostPort(c.host, strconv.Itoa(port)))
}

func (c *ctrl) sendExpect(line string, class int) (int, string, error) {
	if err := c.send(line); err != nil {
		return 0, "", err
	}
	verb, _, _ := strings.Cut(line, " ")
	return c.expect(verb, class)
}

func parse229(text string) (int, error) {
	i := strings.Index(text, "(|||")
	if i < 0 {
		return 0, fmt.Errorf("bad 229 %q", text)
	}
	rest := text[i+4:]
	j := strings.IndexByte(rest, '|')
	if j < 0 {
		return 0, fmt.Errorf("bad 229 %q", text)
	}
	return strconv.Atoi(rest[:j])
}

func parse227(text string) (int, error) {
	i := strings.IndexAny(text, "0123456789")
	if i < 0 {
		return 0, fmt.Errorf("bad 227 %q", text)
	}
	f := strings.FieldsFunc(text[i:], func(r rune) bool { return r == ',' || r == ')' || r == ' ' })
	if len(f) < 6 {
		return 0, fmt.Errorf("bad 227 %q", text)
	}
	hi, err1 := strconv.Atoi(f[4])
	lo, err2 := strconv.Atoi(f[5])
	if err1 != nil || err2 != nil || hi > 255 || lo > 255 {
		return 0, fmt.Errorf("bad 227 %q", text)
	}
	return hi<<8 | lo, nil
}

// startTransfer sends a transfer command on c and returns the data connection, TLS-wrapped
// when the path protects data, once the server has sent its 1xx. data is the connection
// from passive.
//
// The TLS handshake starts right after the command goes out: servers differ on whether they
// send their 150 before or after the data handshake, and a ClientHello waiting in the
// socket is harmless to both kinds.
func (c *ctrl) startTransfer(line string, data net.Conn) (net.Conn, error) {
	if err := c.send(line); err != nil {
		data.Close()
		return nil, err
	}
	conn := data
	if c.dataTLS {
		tc := tls.Client(data, c.tls)
		if err := tc.Handshake(); err != nil {
			data.Close()
			// Surface the server's reply when there is one (a refusal explains more).
			c.raw.SetReadDeadline(time.Now().Add(2 * time.Second))
			if code, text, rerr := c.reply(); rerr == nil {
				return nil, fmt.Errorf("data TLS handshake: %w (reply %d %s)", err, code, text)
			}
			return nil, fmt.Errorf("data TLS handshake: %w", err)
		}
		conn = tc
	}
	verb, _, _ := strings.Cut(line, " ")
	code, text, err := c.reply()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("%s: %w", verb, err)
	}
	if code/100 != 1 {
		conn.Close()
		return nil, &replyError{cmd: verb, code: code, text: text}
	}
	return conn, nil
}

// finishUpload ends the client side of an upload so that the server sees a clean EOF: the
// TLS close_notify (or FIN), then the rest of what the server sends (a TLS 1.3 session
// ticket left unread would make the kernel answer with RST and lose the upload's tail).
// Errors are not reported: the server's final reply and the hash of the stored file decide.
func finishUpload(conn net.Conn) {
	type closeWriter interface{ CloseWrite() error }
	if cw, ok := conn.(closeWriter); ok {
		cw.CloseWrite()
	}
	io.Copy(io.Discard, conn)
	conn.Close()
}
