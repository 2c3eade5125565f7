package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
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

func upload(verb string) bool { return verb == "STOR" || verb == "STOU" || verb == "APPE" }

// transfer runs one data command: the client leg, then the backend leg, then the relay. The
// backend's final reply reaches the client only after the relay toward the client is done.
//
// Under PROT P the proxy sends its own 150 and completes the client's data TLS handshake
// (clients such as ftplib start it only after a 1xx) before the backend is told anything, so
// a refused or failed handshake never starts, truncates or aborts a transfer on the backend.
func (s *session) transfer(cmd Command) error {
	if s.lc.TLS.RequiresAUTH() && s.prot != 'P' {
		return s.writeLine(replyDataTLS)
	}
	if s.pasv == nil && !s.port.IsValid() {
		return s.writeLine(replyNeedData)
	}
	timeout := orDefault(s.cfg.Data.ConnectTimeout, DefaultConnectTimeout)
	cconn, err := s.openClientData(timeout)
	s.clearData()
	if err != nil {
		s.srv.limitLog.Warn(s.log, "client data connection failed", "err", err)
		return s.writeLine(replyCantOpen)
	}
	protected := s.prot == 'P'
	if protected {
		if err := s.writeLine(replyProt150); err != nil {
			cconn.Close()
			return err
		}
		tc, err := s.clientDataTLS(cconn, upload(cmd.Verb))
		if err != nil {
			s.srv.limitLog.Warn(s.log, "client data TLS refused", "err", err)
			if errors.Is(err, errNotResumed) {
				return s.writeLine(replyReuseRequired)
			}
			return s.writeLine(replyDataTLSFailed)
		}
		cconn = tc
	}
	bconn, accept, err := s.openBackendData(timeout)
	if err != nil {
		cconn.Close()
		var e *endError
		if errors.As(err, &e) {
			return err
		}
		s.log.Warn("backend data connection failed", "err", err)
		return s.writeLine(replyCantOpen)
	}
	var hs chan acceptResult // the backend data TLS handshake, run while the reply is awaited
	if bconn != nil && s.bTLS != nil {
		hs = s.startBackendDataTLS(bconn)
	}
	closeAll := func() {
		cconn.Close()
		if bconn != nil {
			bconn.Close()
		}
		if accept != nil {
			accept.cancel()
		}
		if hs != nil {
			if r := <-hs; r.conn != nil {
				r.conn.Close()
			}
		}
	}

	if err := s.sendBackend(cmd.String()); err != nil {
		closeAll()
		return err
	}
	rep, err := s.awaitReply()
	if err != nil {
		closeAll()
		return err
	}
	if !rep.Preliminary() {
		closeAll()
		if rep.Code == 421 {
			return backend421(rep.Raw)
		}
		return s.writeRaw(rep.Raw)
	}
	if !protected {
		if err := s.writeRaw(rep.Raw); err != nil {
			closeAll()
			return err
		}
	}
	if accept != nil {
		bconn, err = accept.wait()
		accept = nil
		if err == nil && s.bTLS != nil {
			hs = s.startBackendDataTLS(bconn)
		}
		if err != nil {
			cconn.Close()
			s.log.Warn("backend data connection not made", "err", err)
			// The backend fails the transfer itself; relay its final reply.
			return s.finishWithoutData(protected)
		}
	}
	if hs != nil {
		r := <-hs
		hs = nil
		if r.err != nil {
			cconn.Close()
			bconn.Close()
			s.log.Warn("backend data TLS failed", "err", r.err)
			return s.finishWithoutData(protected)
		}
		bconn = r.conn
	}
	s.stats.transfers++
	return s.runTransfer(cmd, cconn, bconn)
}

// startBackendDataTLS runs the client-side handshake on a backend data connection in the
// background: servers differ on whether they handshake before or after their 150.
func (s *session) startBackendDataTLS(c net.Conn) chan acceptResult {
	out := make(chan acceptResult, 1)
	go func() {
		tc, err := s.backendTLS(s.ctx, c)
		if err != nil {
			out <- acceptResult{err: err}
			return
		}
		out <- acceptResult{conn: tc}
	}()
	return out
}

// finishWithoutData relays the final reply of a transfer whose backend data connection
// failed. Preliminary replies are dropped when the proxy sent its own 150.
func (s *session) finishWithoutData(sent150 bool) error {
	for {
		rep, err := s.awaitReply()
		if err != nil {
			return err
		}
		if rep.Code == 421 {
			return backend421(rep.Raw)
		}
		if rep.Preliminary() && sent150 {
			continue
		}
		if err := s.writeRaw(rep.Raw); err != nil || !rep.Preliminary() {
			return err
		}
	}
}

// runTransfer relays the data and the remaining replies, handling ABOR from the client.
func (s *session) runTransfer(cmd Command, cconn, bconn net.Conn) error {
	up := upload(cmd.Verb)
	start := time.Now()
	done := make(chan relayResult, 1)
	go relayData(cconn, bconn, up, done)

	var (
		relayed    bool
		result     relayResult
		held       [][]byte // replies waiting for the relay toward the client to finish
		gotFinal   bool
		abortSent  bool
		abortReply bool // the ABOR's own reply has arrived
		abortTimer <-chan time.Time
		finalCode  int
	)
	closeData := func() { cconn.Close(); bconn.Close() }
	flush := func() error {
		for _, raw := range held {
			if err := s.writeRaw(raw); err != nil {
				return err
			}
		}
		held = nil
		return nil
	}
	for !relayed || !gotFinal || (abortSent && !abortReply) {
		cmdc := s.cmdc
		if len(s.queue) >= maxQueued {
			cmdc = nil
		}
		select {
		case result = <-done:
			relayed = true
			if err := flush(); err != nil {
				return err
			}
		case ev := <-s.repc:
			if ev.err != nil {
				closeData()
				if !relayed {
					<-done
				}
				s.writeLine(replyAborted)
				return s.backendLost(ev.err)
			}
			if ev.rep.Code == 421 {
				closeData()
				if !relayed {
					<-done
				}
				if !gotFinal {
					s.writeLine(replyAborted) // the transfer ends before its final reply
				}
				return backend421(ev.rep.Raw)
			}
			if gotFinal {
				abortReply = true
			} else if !ev.rep.Preliminary() {
				gotFinal = true
				finalCode = ev.rep.Code
			}
			if relayed {
				if err := s.writeRaw(ev.rep.Raw); err != nil {
					return err
				}
			} else {
				held = append(held, ev.rep.Raw)
			}
		case ev := <-cmdc:
			if !ev.connEnded() && ev.err == nil && ev.cmd.Verb == "ABOR" && !abortSent {
				s.stats.commands++
				s.log.Info("transfer aborted by client", "cmd", cmd.Verb)
				closeData()
				if err := s.sendBackend("ABOR"); err != nil {
					<-done
					return err
				}
				abortSent = true
				abortTimer = time.After(abortReplyTimeout)
				continue
			}
			s.queue = append(s.queue, ev)
		case <-abortTimer:
			s.log.Warn("backend sent no reply to ABOR")
			abortReply = true
			if !gotFinal {
				gotFinal = true
				held = append(held, []byte(replyAbortOK+"\r\n"))
			}
		case <-s.ctx.Done():
			closeData()
			if !relayed {
				<-done
			}
			return end421(CauseShutdown, s.ctx.Err())
		}
	}
	if up {
		s.stats.bytesIn += result.primary
	} else {
		s.stats.bytesOut += result.primary
	}
	rec := TransferRecord{
		Start: start, Duration: time.Since(start), Client: s.clientAddr.Addr(), User: s.user,
		Listener: s.lc.name(), Pool: s.pool, Backend: s.backend.String(), Command: cmd.Verb, Path: cmd.Arg,
		Bytes: result.primary, Upload: up, ASCII: s.ascii, TLS: s.prot == 'P',
		Complete: finalCode/100 == 2 && result.err == nil && !abortSent, Aborted: abortSent,
		ReplyCode: finalCode, SessionID: s.id,
	}
	s.srv.obs.Transfer(rec)
	s.log.Info("transfer", "cmd", cmd.Verb, "path", cmd.Arg, "bytes", result.primary,
		"duration_s", rec.Duration.Round(time.Millisecond).Seconds(), "reply", finalCode, "complete", rec.Complete,
		"aborted", abortSent, "err", errString(result.err))
	return nil
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// openClientData makes the client leg: accept on the reserved passive port (from the client's
// address only) or dial the PORT/EPRT target.
func (s *session) openClientData(timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	defer cancel()
	if s.pasv != nil {
		c, err := s.pasv.Accept(ctx)
		if err != nil {
			return nil, fmt.Errorf("accept client data: %w", err)
		}
		return c, nil
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: s.localAddr.Addr().AsSlice()}}
	c, err := d.DialContext(ctx, "tcp", s.port.String())
	if err != nil {
		return nil, fmt.Errorf("dial client data: %w", err)
	}
	return c, nil
}

// pendingAccept is an active-mode backend data connection being waited for.
type pendingAccept struct {
	result chan acceptResult
	cancel context.CancelFunc
}

type acceptResult struct {
	conn net.Conn
	err  error
}

func (p *pendingAccept) wait() (net.Conn, error) {
	r := <-p.result
	return r.conn, r.err
}

// openBackendData prepares the backend leg per the backend's data_mode: passive dials the
// address from the backend's 227/229 (its control IP when fix_pasv_address is on); active
// listens on the proxy's backend-side address and sends PORT/EPRT, and the connection is
// accepted once the transfer command is sent.
func (s *session) openBackendData(timeout time.Duration) (net.Conn, *pendingAccept, error) {
	bc := s.backend.Config
	if bc.DataMode == balancer.DataActive {
		p, err := s.backendActive(timeout)
		return nil, p, err
	}
	v4 := s.bAddr.Addr().Is4()
	verb := "PASV"
	if !v4 {
		verb = "EPSV"
	}
	rep, err := s.roundTrip(verb)
	if err != nil {
		return nil, nil, err
	}
	var target netip.AddrPort
	switch {
	case rep.Code == 227 && verb == "PASV":
		target, err = nat.Parse227(rep.Text())
		if err == nil && bc.FixPasvAddress {
			target = netip.AddrPortFrom(s.bAddr.Addr(), target.Port())
		}
	case rep.Code == 229 && verb == "EPSV":
		var port uint16
		port, err = nat.Parse229(rep.Text())
		target = netip.AddrPortFrom(s.bAddr.Addr(), port)
	case rep.Code == 421:
		return nil, nil, backend421(rep.Raw)
	default:
		err = fmt.Errorf("backend refused %s: %q", verb, firstLine(rep.Raw))
	}
	if err != nil {
		return nil, nil, fmt.Errorf("backend %s reply: %w", verb, err)
	}
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", target.String())
	if err != nil {
		return nil, nil, fmt.Errorf("dial backend data %s: %w", target, err)
	}
	return c, nil, nil
}

// backendActive listens for the backend's data connection and announces it with PORT/EPRT.
func (s *session) backendActive(timeout time.Duration) (*pendingAccept, error) {
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: s.bLocal.Addr().AsSlice()})
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
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	p := &pendingAccept{result: make(chan acceptResult, 1), cancel: cancel}
	go acceptBackend(ctx, ln, s.bAddr.Addr(), p.result)
	return p, nil
}

// acceptBackend takes the first connection from the backend's address and closes the listener.
func acceptBackend(ctx context.Context, ln *net.TCPListener, from netip.Addr, out chan<- acceptResult) {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	defer ln.Close()
	for {
		c, err := ln.AcceptTCP()
		if err != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			out <- acceptResult{err: fmt.Errorf("accept backend data: %w", err)}
			return
		}
		if addrPortOf(c.RemoteAddr()).Addr() != from {
			c.SetLinger(0)
			c.Close()
			continue
		}
		out <- acceptResult{conn: c}
		return
	}
}

// relayResult is the outcome of one data relay.
type relayResult struct {
	primary int64 // bytes in the transfer's direction
	err     error
}

type closeWriter interface{ CloseWrite() error }

// relayData copies the transfer's bytes unchanged in both directions with half-close (the
// reverse direction normally carries nothing but the peer's FIN). Between two *net.TCPConn
// io.Copy splices. The result is sent as soon as the primary direction is done and its
// destination half-closed, so the final reply can follow; the reverse direction then gets
// lingerTimeout to finish before both connections are closed. The primary direction runs on
// this goroutine, the reverse one on a second.
func relayData(cconn, bconn net.Conn, up bool, out chan<- relayResult) {
	src, dst := bconn, cconn
	if up {
		src, dst = cconn, bconn
	}
	reverse := make(chan struct{})
	go func() {
		copyHalf(src, dst, smallBufs)
		close(reverse)
	}()
	n, err := copyHalf(dst, src, bigBufs)
	if err != nil {
		cconn.Close()
		bconn.Close()
	} else {
		dst.SetReadDeadline(time.Now().Add(lingerTimeout))
	}
	out <- relayResult{primary: n, err: err}
	<-reverse
	cconn.Close()
	bconn.Close()
}

// copyHalf copies src to dst, then half-closes dst so its reader sees EOF. Between two
// *net.TCPConn io.Copy splices in the kernel. With TLS on a side the bytes pass through user
// space: io.Copy would allocate 32 KiB per transfer and direction, so a buffer from pool is
// used instead: a large one for the transfer's direction (fewer reads on the plain side;
// crypto/tls cuts records of its own), a small one for the reverse direction, which normally
// carries nothing but the FIN.
func copyHalf(dst, src net.Conn, pool *sync.Pool) (int64, error) {
	var n int64
	var err error
	if spliceable(dst, src) {
		n, err = io.Copy(dst, src)
	} else {
		bp := pool.Get().(*[]byte)
		// The wrappers hide ReadFrom/WriteTo, which would bring back io.Copy's own buffer.
		n, err = io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, *bp)
		pool.Put(bp)
	}
	if cw, ok := dst.(closeWriter); ok {
		cw.CloseWrite()
	}
	return n, err
}

func spliceable(dst, src net.Conn) bool {
	_, d := dst.(*net.TCPConn)
	_, s := src.(*net.TCPConn)
	return d && s
}

// bigBufs and smallBufs hold the data relay's buffers for connections with TLS on a side.
var (
	bigBufs   = bufPool(128 << 10)
	smallBufs = bufPool(4 << 10)
)

func bufPool(size int) *sync.Pool {
	return &sync.Pool{New: func() any {
		b := make([]byte, size)
		return &b
	}}
}
