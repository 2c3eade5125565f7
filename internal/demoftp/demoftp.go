// Package demoftp is a small in-process FTP server (github.com/fclairamb/ftpserverlib over a
// directory) used as the backend of `ftpsproxy demo` and of the proxy's fast loopback tests.
//
// It is not a production FTP server and not a stand-in for the real servers (vsftpd,
// pure-ftpd, ProFTPD) that the end-to-end tests run.
package demoftp

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	ftpserver "github.com/fclairamb/ftpserverlib"
	"github.com/spf13/afero"
)

// Config describes a demo server.
type Config struct {
	Addr      string // listen address, "127.0.0.1:0" for any port
	Root      string // directory served as "/"
	User      string
	Password  string
	PasvPorts [2]int // optional passive port range; zero: any
	// PublicHost is announced in 227 replies (e.g. an unreachable private address, to test
	// fix_pasv_address); empty: the server's own address.
	PublicHost string
	TLSConfig  *tls.Config // optional: offers AUTH TLS
	Logger     *slog.Logger
	// Wrap, when set, puts a listener in front of the server's own (a PROXY protocol
	// listener, a scripted greeting prefix) for tests of what reaches a backend.
	Wrap func(net.Listener) net.Listener
}

// Server is a running demo FTP server.
type Server struct {
	ftp  *ftpserver.FtpServer
	ln   *trackingListener
	once sync.Once
}

// trackingListener remembers accepted connections so Stop can cut them the way a dying
// server does (closing the sockets directly: ftpserverlib's own Close races with a session
// that is still starting).
type trackingListener struct {
	net.Listener
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, l: l}
	l.mu.Lock()
	l.conns[tc] = struct{}{}
	l.mu.Unlock()
	return tc, nil
}

// trackedConn forgets itself when closed, so a long-running demo does not accumulate.
type trackedConn struct {
	net.Conn
	l *trackingListener
}

func (c *trackedConn) Close() error {
	c.l.mu.Lock()
	delete(c.l.conns, c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

func (l *trackingListener) closeAll() {
	l.Listener.Close()
	l.mu.Lock()
	conns := make([]net.Conn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// Start listens and serves in the background until Stop.
func Start(c Config) (*Server, error) {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	raw, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return nil, fmt.Errorf("demoftp: %w", err)
	}
	var inner net.Listener = raw
	if c.Wrap != nil {
		inner = c.Wrap(raw)
	}
	ln := &trackingListener{Listener: inner, conns: make(map[net.Conn]struct{})}
	d := &driver{cfg: c, settings: &ftpserver.Settings{
		Listener:                ln,
		PublicHost:              c.PublicHost,
		ActiveTransferPortNon20: true,
		ConnectionTimeout:       30,
		IdleTimeout:             900,
		DefaultTransferType:     ftpserver.TransferTypeBinary,
	}}
	if c.PasvPorts[0] != 0 {
		d.settings.PassiveTransferPortRange = ftpserver.PortRange{Start: c.PasvPorts[0], End: c.PasvPorts[1]}
	}
	srv := ftpserver.NewFtpServer(d)
	srv.Logger = c.Logger
	if err := srv.Listen(); err != nil {
		ln.Close()
		return nil, fmt.Errorf("demoftp: %w", err)
	}
	go srv.Serve()
	return &Server{ftp: srv, ln: ln}, nil
}

// Addr returns the control listener's address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Stop closes the listener and every session, like a server that dies. It is idempotent.
func (s *Server) Stop() error {
	s.once.Do(s.ln.closeAll)
	return nil
}

type driver struct {
	cfg      Config
	settings *ftpserver.Settings
}

func (d *driver) GetSettings() (*ftpserver.Settings, error) { return d.settings, nil }

func (d *driver) ClientConnected(ftpserver.ClientContext) (string, error) {
	return "ftpsproxy demo backend", nil
}

func (d *driver) ClientDisconnected(ftpserver.ClientContext) {}

var errLogin = errors.New("login incorrect")

func (d *driver) AuthUser(_ ftpserver.ClientContext, user, pass string) (ftpserver.ClientDriver, error) {
	if user != d.cfg.User || pass != d.cfg.Password {
		return nil, errLogin
	}
	return afero.NewBasePathFs(afero.NewOsFs(), d.cfg.Root), nil
}

// GetTLSConfig returns the same config every call, so TLS sessions can resume.
func (d *driver) GetTLSConfig() (*tls.Config, error) {
	if d.cfg.TLSConfig == nil {
		return nil, errors.New("demoftp: TLS not configured")
	}
	return d.cfg.TLSConfig, nil
}
