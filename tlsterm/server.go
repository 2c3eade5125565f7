package tlsterm

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// ALPN is the protocol name FTP over TLS negotiates (IANA "ftp").
const ALPN = "ftp"

// CertSource provides the server certificate for a handshake (files or ACME).
type CertSource interface {
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
}

// ServerOptions configures the client-facing TLS.
type ServerOptions struct {
	CertFile, KeyFile string     // PEM files, chain first
	Source            CertSource // instead of files (ACME); takes precedence
	MinVersion        uint16     // default TLS 1.2
}

// Server is the client-facing TLS configuration shared by every listener, control and data
// connections alike, so session tickets issued on a control connection resume on its data
// connections.
type Server struct {
	base *tls.Config
	// files is set for a file source so Reload can replace the certificate.
	files *fileSource
	src   CertSource // files or ACME, for Certificates
}

// NewServer loads the certificate source and builds the shared config.
func NewServer(o ServerOptions) (*Server, error) {
	s := &Server{}
	src := o.Source
	if src == nil {
		fs, err := loadFiles(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, err
		}
		s.files = fs
		src = fs
	}
	s.src = src
	minV := o.MinVersion
	if minV == 0 {
		minV = tls.VersionTLS12
	}
	s.base = &tls.Config{
		MinVersion:     minV,
		NextProtos:     []string{ALPN},
		GetCertificate: src.GetCertificate,
	}
	return s, nil
}

// Reload re-reads the certificate files (SIGHUP). A failed reload keeps the old certificate.
func (s *Server) Reload() error {
	if s.files == nil {
		return nil
	}
	return s.files.reload()
}

// Config returns the shared base config (for implicit listeners and tests).
func (s *Server) Config() *tls.Config { return s.base }

// fileSource serves a certificate loaded from PEM files.
type fileSource struct {
	certFile, keyFile string
	cert              atomic.Pointer[tls.Certificate]
}

func loadFiles(certFile, keyFile string) (*fileSource, error) {
	fs := &fileSource{certFile: certFile, keyFile: keyFile}
	if err := fs.reload(); err != nil {
		return nil, err
	}
	return fs, nil
}

func (f *fileSource) reload() error {
	c, err := tls.LoadX509KeyPair(f.certFile, f.keyFile)
	if err != nil {
		return fmt.Errorf("tls: loading %s and %s: %w", f.certFile, f.keyFile, err)
	}
	f.cert.Store(&c)
	return nil
}

func (f *fileSource) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return f.cert.Load(), nil
}

// StaticSource serves one in-memory certificate (the demo's self-signed one).
type StaticSource struct{ Cert *tls.Certificate }

// GetCertificate returns the certificate.
func (s StaticSource) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.Cert, nil
}

// ticketTag prefixes the session id stored in a ticket's Extra.
var ticketTag = []byte("ftpsproxy-session:")

// Binding ties the TLS sessions of one client session together: tickets issued on its
// control (and data) connections carry its random id, and a data connection counts as
// resumed only when it presents one of those tickets.
type Binding struct {
	srv *Server
	id  []byte

	once    sync.Once
	control *tls.Config
	data    *tls.Config
	upload  *tls.Config
}

// NewBinding starts the TLS identity of one client session.
func (s *Server) NewBinding() *Binding {
	id := make([]byte, 16)
	rand.Read(id)
	return &Binding{srv: s, id: append(append([]byte{}, ticketTag...), id...)}
}

func (b *Binding) init() {
	b.once.Do(func() {
		base := b.srv.base
		wrap := func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
			ss.Extra = append(ss.Extra, b.id)
			return base.EncryptTicket(cs, ss)
		}
		// A ticket of another session decrypts fine but is not ours: answer as if it were
		// unknown, so the handshake falls back to a full one and Resumed reports false.
		unwrap := func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
			ss, err := base.DecryptTicket(identity, cs)
			if err != nil || ss == nil {
				return nil, err
			}
			for _, e := range ss.Extra {
				if bytes.Equal(e, b.id) {
					return ss, nil
				}
			}
			return nil, nil
		}
		b.control = base.Clone()
		b.control.WrapSession, b.control.UnwrapSession = wrap, unwrap
		b.data = b.control.Clone()
		b.data.WrapSession, b.data.UnwrapSession = wrap, unwrap
		// Uploads: a TLS 1.3 ticket sent on a connection the client only writes to stays
		// unread; closing with unread data makes the client's kernel reset the connection
		// and the tail of the upload is lost. So no tickets there (and so no resumption).
		b.upload = b.control.Clone()
		b.upload.SessionTicketsDisabled = true
	})
}

// Control returns the config for this session's control connection.
func (b *Binding) Control() *tls.Config { b.init(); return b.control }

// Data returns the config for one of this session's data connections. requireReuse keeps
// session resumption possible on uploads too (at the cost of the TLS 1.3 ticket caveat).
func (b *Binding) Data(upload, requireReuse bool) *tls.Config {
	b.init()
	if upload && !requireReuse {
		return b.upload
	}
	return b.data
}

// ErrNotResumed reports a data connection that did not resume its control session while
// data_session_reuse = "required".
var ErrNotResumed = errors.New("tls: data connection did not resume the control session")

// Resumed reports whether a handshaken data connection resumed this session. Tickets of
// other sessions are refused in unwrap, so DidResume is enough.
func (b *Binding) Resumed(c *tls.Conn) bool { return c.ConnectionState().DidResume }
