package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/nat"
)

// dataSetup handles the client's choice of data connection (PASV, EPSV, PORT, EPRT). It is
// independent of the backend leg, which is chosen per backend at transfer time.
func (s *session) dataSetup(cmd Command) error {
	arg := strings.TrimSpace(cmd.Arg)
	if cmd.Verb == "EPSV" && strings.EqualFold(arg, "ALL") {
		s.epsvAll = true
		return s.writeLine(replyEpsvAll)
	}
	if s.epsvAll && cmd.Verb != "EPSV" {
		return s.writeLine(replyEpsvAllOnly)
	}
	switch cmd.Verb {
	case "PASV", "EPSV":
		return s.passive(cmd.Verb, arg)
	case "PORT", "EPRT":
		return s.active(cmd.Verb, arg)
	}
	return s.writeLine(replyAddrVerbRefused(cmd.Verb))
}

func (s *session) clearData() {
	if s.pasv != nil {
		s.pasv.Release()
		s.pasv = nil
	}
	s.port = netip.AddrPort{}
}

// passive reserves a port of the proxy's own range, bound before the reply goes out.
func (s *session) passive(verb, arg string) error {
	v4 := s.localAddr.Addr().Is4()
	if verb == "PASV" && !v4 {
		return s.writeLine(replyPasvV6)
	}
	if verb == "EPSV" && arg != "" {
		if (arg == "1" && !v4) || (arg == "2" && v4) || (arg != "1" && arg != "2") {
			if v4 {
				return s.writeLine(replyEpsvProto)
			}
			return s.writeLine(replyEpsvProto6)
		}
	}
	s.clearData()
	lease, err := s.srv.alloc.Reserve(s.ctx, s.localAddr.Addr(), s.clientAddr.Addr())
	if err != nil {
		if errors.Is(err, nat.ErrPortsExhausted) {
			s.srv.limitLog.Warn(s.log, "passive port range exhausted")
			s.srv.obs.PortsExhausted()
		} else {
			s.log.Warn("passive port reservation failed", "err", err)
		}
		return s.writeLine(replyCantOpen)
	}
	s.pasv = lease
	return s.announce(verb, lease)
}

// active records a PORT/EPRT target after checking it is the client's own address and not a
// privileged port (no FTP bounce, RFC 2577).
func (s *session) active(verb, arg string) error {
	if !s.cfg.Data.AllowActive {
		return s.writeLine(replyActiveOff)
	}
	var ap netip.AddrPort
	var err error
	if verb == "PORT" {
		ap, err = nat.ParsePORT(arg)
	} else {
		ap, err = nat.ParseEPRT(arg)
	}
	if errors.Is(err, nat.ErrUnsupportedProtocol) {
		return s.writeLine(replyEprtProto)
	}
	if err != nil {
		return s.writeLine(replyPortBad)
	}
	if ap.Addr().Unmap() != s.clientAddr.Addr() || ap.Port() < 1024 || s.ownPort(ap) {
		s.srv.limitLog.Warn(s.log, "data connection target refused", "verb", verb, "target", ap.String())
		s.srv.obs.DataRefused("bounce")
		return s.writeLine(replyPortRefused)
	}
	s.clearData()
	s.port = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	return s.writeLine(replyPortOK)
}

// ownPort reports a PORT/EPRT target that is one of the proxy's own sockets: a client on the
// proxy's host could otherwise make it dial its own listeners or passive ports.
func (s *session) ownPort(ap netip.AddrPort) bool {
	if s.cfg.ownAddr(ap, s.localAddr.Addr()) {
		return true
	}
	if ap.Addr().Unmap() != s.localAddr.Addr() {
		return false
	}
	if s.srv.alloc.Range().Contains(ap.Port()) {
		return true
	}
	for _, a := range s.srv.Addrs() {
		if addrPortOf(a).Port() == ap.Port() {
			return true
		}
	}
	return false
}

// dialClientData makes the client leg of PORT/EPRT: it dials the target until ctx ends.
func (s *session) dialClientData(ctx context.Context) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: s.localAddr.Addr().AsSlice()}, KeepAlive: noKeepAlive}
	c, err := d.DialContext(ctx, "tcp", s.port.String())
	if err != nil {
		return nil, fmt.Errorf("dial client data: %w", err)
	}
	return c, nil
}

// clientGoneError is a client whose control connection ended while the proxy waited for its
// data connection.
type clientGoneError struct{ err error }

func (e *clientGoneError) Error() string { return e.err.Error() }
func (e *clientGoneError) Unwrap() error { return e.err }

// awaitClientData makes the client's data connection within timeout while watching the
// control connection: commands that arrive meanwhile are queued, and a client that leaves
// ends the wait at once with a *clientGoneError. The passive connection is accepted on the
// owner's goroutine (acceptClientData); a PORT/EPRT dial runs on a goroutine of its own.
func (s *session) awaitClientData(timeout time.Duration) (net.Conn, error) {
	if s.pasv != nil {
		return s.acceptClientData(time.Now().Add(timeout))
	}
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	defer cancel()
	out := make(chan legResult, 1)
	go func() {
		c, err := s.dialClientData(ctx)
		out <- legResult{conn: c, err: err}
	}()
	for {
		select {
		case r := <-out:
			return r.conn, r.err
		case ev := <-s.clientLines():
			if !ev.connEnded() {
				s.queue = append(s.queue, ev)
				continue
			}
			cancel()
			if r := <-out; r.conn != nil {
				r.conn.Close()
			}
			return nil, &clientGoneError{ev.err}
		}
	}
}

// acceptClientData accepts the client's passive data connection (from the client's address
// only: nat.Lease) by deadline, on the owner's goroutine. The owner waits in the accept as it
// does in a backend read, with bw on the data port meanwhile: the client reader wakes it for
// each line, which is queued, or ends the wait when the client has gone, and the session's
// end stops it. No goroutine, context or timer of its own: the port's deadline is the wait's.
func (s *session) acceptClientData(deadline time.Time) (net.Conn, error) {
	s.bw.setConn(leaseWait{s.pasv})
	defer s.bw.setConn(s.bconn)
	for {
		s.bw.park(deadline)
		select {
		case ev := <-s.clientLines():
			s.bw.unpark()
			if ev.connEnded() {
				return nil, &clientGoneError{ev.err}
			}
			s.queue = append(s.queue, ev)
			continue
		default:
		}
		if err := s.ctx.Err(); err != nil {
			s.bw.unpark()
			return nil, fmt.Errorf("accept client data: %w", err)
		}
		c, err := s.pasv.AcceptTCP()
		woken, _ := s.bw.unpark()
		if err == nil {
			return c, nil
		}
		if isTimeout(err) && (woken || s.bw.endedEarly() || s.ctx.Err() != nil) {
			continue // a line, the idle sweep, a deadline kept early, or the session's end
		}
		return nil, fmt.Errorf("accept client data: %w", err)
	}
}

// leaseWait is a passive data port as bw waits on it: its read deadline is its accept's.
type leaseWait struct{ *nat.Lease }

func (l leaseWait) SetReadDeadline(t time.Time) error { return l.SetDeadline(t) }

// leaveBackend tells the backend the client has gone (ABOR when a transfer may be running on
// it, then QUIT), without waiting for its answer: the session ends now, and so does its hold
// on the backend's slot.
func (s *session) leaveBackend(abort bool) {
	msg := "QUIT\r\n"
	if abort {
		msg = "ABOR\r\n" + msg
	}
	s.bconn.SetWriteDeadline(time.Now().Add(time.Second))
	s.backendWrite = 0
	io.WriteString(s.bconn, msg)
}

// openBackendData prepares the backend leg per the backend's data_mode: passive dials the
// address from the backend's 227/229 (its control IP when fix_pasv_address is on) now and
// returns the connection; active listens on the proxy's backend-side address, sends
// PORT/EPRT and returns accept, which takes the connection once the transfer command is sent.
func (s *session) openBackendData(timeout time.Duration) (c net.Conn, accept func(context.Context) (net.Conn, error), err error) {
	if s.backend.Config.DataMode == balancer.DataActive {
		accept, err = s.backendActive(timeout)
		return nil, accept, err
	}
	target, err := s.backendPassive()
	if err != nil {
		return nil, nil, err
	}
	d := net.Dialer{KeepAlive: noKeepAlive}
	c, err = dialWithin(s.ctx, &d, target.String(), timeout)
	if err != nil {
		return nil, nil, fmt.Errorf("dial backend data %s: %w", target, err)
	}
	return c, nil, nil
}

// backendPassive sends PASV (EPSV toward an IPv6 backend) and returns the address to dial.
func (s *session) backendPassive() (netip.AddrPort, error) {
	peer := addrPortOf(s.bconn.RemoteAddr()).Addr()
	verb := "PASV"
	if !peer.Is4() {
		verb = "EPSV"
	}
	rep, err := s.roundTrip(verb)
	if err != nil {
		return netip.AddrPort{}, err
	}
	var target netip.AddrPort
	switch {
	case rep.Code == 227 && verb == "PASV":
		target, err = nat.Parse227(rep.Text())
		if err == nil && s.backend.Config.FixPasvAddress {
			target = netip.AddrPortFrom(peer, target.Port())
		}
	case rep.Code == 229 && verb == "EPSV":
		var port uint16
		port, err = nat.Parse229(rep.Text())
		target = netip.AddrPortFrom(peer, port)
	case rep.Code == 421:
		return netip.AddrPort{}, backend421(rep.Raw)
	default:
		err = fmt.Errorf("backend refused %s: %q", verb, firstLine(rep.Raw))
	}
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("backend %s reply: %w", verb, err)
	}
	return target, nil
}

// noKeepAlive turns TCP keep-alive off on data connections: four setsockopt calls each, for
// a connection that lives one transfer under data_timeout. Control connections keep it.
const noKeepAlive = -1

// backendActive listens for the backend's data connection and announces it with PORT/EPRT.
// The returned function accepts it, within timeout.
func (s *session) backendActive(timeout time.Duration) (func(context.Context) (net.Conn, error), error) {
	ln, err := listenData(s.ctx, netip.AddrPortFrom(addrPortOf(s.bconn.LocalAddr()).Addr(), 0))
	if err != nil {
		return nil, fmt.Errorf("listen for backend data: %w", err)
	}
	ap := addrPortOf(ln.Addr())
	var line string
	if ap.Addr().Is4() {
		arg, _ := nat.FormatPORT(ap)
		line = "PORT " + arg
	} else {
		line = "EPRT " + nat.FormatEPRT(ap)
	}
	rep, err := s.roundTrip(line)
	if err == nil && rep.Code != 200 {
		if rep.Code == 421 {
			err = backend421(rep.Raw)
		} else {
			err = fmt.Errorf("backend refused %s: %q", line, firstLine(rep.Raw))
		}
	}
	if err != nil {
		ln.Close()
		return nil, err
	}
	from := addrPortOf(s.bconn.RemoteAddr()).Addr()
	return func(ctx context.Context) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return acceptBackend(ctx, ln, from)
	}, nil
}

// listenData binds the listener for one backend data connection: no keep-alive on what it
// accepts (noKeepAlive), and plain TCP rather than Go's default Multipath TCP, whose listener
// is a second kernel socket (its first subflow) made and torn down per transfer, and whose
// subflows could join from addresses acceptBackend never checks.
func listenData(ctx context.Context, addr netip.AddrPort) (*net.TCPListener, error) {
	lc := net.ListenConfig{KeepAlive: noKeepAlive}
	lc.SetMultipathTCP(false)
	l, err := lc.Listen(ctx, "tcp", addr.String())
	if err != nil {
		return nil, err
	}
	return l.(*net.TCPListener), nil
}

// acceptBackend takes the first connection from the backend's address and closes the listener.
func acceptBackend(ctx context.Context, ln *net.TCPListener, from netip.Addr) (net.Conn, error) {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	defer ln.Close()
	for {
		c, err := ln.AcceptTCP()
		if err != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return nil, fmt.Errorf("accept backend data: %w", err)
		}
		if addrPortOf(c.RemoteAddr()).Addr() != from {
			c.SetLinger(0)
			c.Close()
			continue
		}
		return c, nil
	}
}
