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
}

// Server is a running demo FTP server.
type Server struct {
	ftp  *ftpserver.FtpServer
	ln   net.Listener
	drv  *driver
	once sync.Once
}

// Start listens and serves in the background until Stop.
func Start(c Config) (*Server, error) {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return nil, fmt.Errorf("demoftp: %w", err)
	}
	d := &driver{cfg: c, clients: make(map[ftpserver.ClientContext]struct{}), settings: &ftpserver.Settings{
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
	return &Server{ftp: srv, ln: ln, drv: d}, nil
}

// Addr returns the control listener's address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Stop closes the listener and every session, like a server that dies. It is idempotent.
func (s *Server) Stop() error {
	s.once.Do(func() {
		s.ln.Close()
		s.drv.mu.Lock()
		for cc := range s.drv.clients {
			cc.Close()
		}
		s.drv.mu.Unlock()
	})
	return nil
}

type driver struct {
	cfg      Config
	settings *ftpserver.Settings

	mu      sync.Mutex
	clients map[ftpserver.ClientContext]struct{}
}

func (d *driver) GetSettings() (*ftpserver.Settings, error) { return d.settings, nil }

func (d *driver) ClientConnected(cc ftpserver.ClientContext) (string, error) {
	d.mu.Lock()
	d.clients[cc] = struct{}{}
	d.mu.Unlock()
	return "ftpsproxy demo backend", nil
}

func (d *driver) ClientDisconnected(cc ftpserver.ClientContext) {
	d.mu.Lock()
	delete(d.clients, cc)
	d.mu.Unlock()
}

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
