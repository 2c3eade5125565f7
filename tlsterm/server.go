package tlsterm

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"errors"
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
	CertFile, KeyFile string     // PEM files, chain first: the default certificate
	Certificates      []CertPair // more pairs, chosen by SNI ([[tls.certificate]])
	CertDir           string     // a directory of pairs, chosen by SNI (tls.cert_dir)
	// DefaultCertificate names a pair in CertDir for clients without SNI or with an unknown
	// name (tls.default_certificate); empty: CertFile, else the first pair loaded.
	DefaultCertificate string
	Source             CertSource // instead of files (ACME); takes precedence
	MinVersion         uint16     // default TLS 1.2
	ClientAuth         ClientAuth // client certificates (tls.client_auth)
	ClientCAFile       string     // roots that client certificates must chain to (tls.client_ca_file)
}

// storeOptions returns the file sources of o.
func (o ServerOptions) storeOptions() CertStoreOptions {
	so := CertStoreOptions{Dir: o.CertDir, Default: o.DefaultCertificate}
	if o.CertFile != "" || o.KeyFile != "" {
		so.Pairs = append(so.Pairs, CertPair{o.CertFile, o.KeyFile})
	}
	so.Pairs = append(so.Pairs, o.Certificates...)
	return so
}

// Server is the client-facing TLS configuration shared by every listener, control and data
// connections alike, so session tickets issued on a control connection resume on its data
// connections.
type Server struct {
	// base is the shared config that sessions clone; a reload that re-reads client_ca_file
	// swaps in a clone with the new pool (clones keep the ticket keys).
	base atomic.Pointer[tls.Config]
	auth ClientAuth
	ca   string // client_ca_file
	// files is set for file sources so Reload can replace the certificates.
	files *CertStore
	src   CertSource // files or ACME, for Certificates
}

// NewServer loads the certificate source and builds the shared config.
func NewServer(o ServerOptions) (*Server, error) {
	s := &Server{}
	src := o.Source
	if src == nil {
		fs, err := LoadCertStore(o.storeOptions())
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
	base := &tls.Config{
		MinVersion:     minV,
		NextProtos:     []string{ALPN},
		GetCertificate: src.GetCertificate,
	}
	s.auth, s.ca = o.ClientAuth, o.ClientCAFile
	if err := s.auth.apply(base, s.ca); err != nil {
		return nil, err
	}
	s.base.Store(base)
	return s, nil
}

// Reload re-reads the certificate files and client_ca_file (SIGHUP). A failed reload keeps
// what is in force.
func (s *Server) Reload() error {
	if s.files != nil {
		if err := s.files.Reload(); err != nil {
			return err
		}
	}
	if s.auth == ClientAuthNone {
		return nil
	}
	// client_ca_file is read again too: sessions that start after the reload verify client
	// certificates against its current contents.
	next := s.base.Load().Clone()
	if err := s.auth.apply(next, s.ca); err != nil {
		return err
	}
	s.base.Store(next)
	return nil
}

// Config returns the shared base config (for implicit listeners and tests).
func (s *Server) Config() *tls.Config { return s.base.Load() }

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
// resumed only when it presents one of those tickets. A control connection may resume a
// ticket of an earlier control connection (a client reconnecting, or opening parallel
// sessions, skips the full handshake); data connections stay bound to their session.
type Binding struct {
	id   []byte
	base *tls.Config // the server's base config when the session started

	cert    atomic.Pointer[tls.Certificate] // served on the control connection
	sni     atomic.Pointer[string]          // the control connection's SNI when it resumed
	control *tls.Config                     // built with the binding

	// The data configs are built at the first protected data connection: an idle session
	// does not pay for them.
	dataOnce sync.Once
	data     *tls.Config
	upload   *tls.Config
}

// NewBinding starts the TLS identity of one client session.
func (s *Server) NewBinding() *Binding {
	id := make([]byte, len(ticketTag)+16)
	copy(id, ticketTag)
	rand.Read(id[len(ticketTag):])
	b := &Binding{id: id, base: s.base.Load()}
	b.control = b.base.Clone()
	b.control.WrapSession, b.control.UnwrapSession = b.wrap, b.unwrapControl
	b.control.GetCertificate = b.controlCert
	return b
}

// wrap issues a ticket that carries the session's id.
func (b *Binding) wrap(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
	ss.Extra = append(ss.Extra, b.id)
	return b.base.EncryptTicket(cs, ss)
}

// unwrapControl accepts any ticket the server issued: the client holds its secret. The SNI
// is kept for the data connections (a resumed handshake picks no certificate).
func (b *Binding) unwrapControl(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
	ss, err := b.base.DecryptTicket(identity, cs)
	if ss != nil && err == nil {
		name := cs.ServerName
		b.sni.Store(&name)
	}
	return ss, err
}

// unwrapData accepts only this session's tickets. A ticket of another session decrypts fine
// but is not ours: answer as if it were unknown, so the handshake falls back to a full one
// and Resumed reports false.
func (b *Binding) unwrapData(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
	ss, err := b.base.DecryptTicket(identity, cs)
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

func (b *Binding) initData() {
	b.dataOnce.Do(func() {
		b.data = b.control.Clone()
		b.data.UnwrapSession = b.unwrapData
		// Data connections get the control connection's certificate whatever their SNI:
		// clients often send none there, and a different certificate would fail the
		// client's check against the name it connected to.
		b.data.GetCertificate = b.dataCert
		// Uploads: a TLS 1.3 ticket sent on a connection the client only writes to stays
		// unread; closing with unread data makes the client's kernel reset the connection
		// and the tail of the upload is lost. So no tickets there (and so no resumption).
		b.upload = b.data.Clone()
		b.upload.SessionTicketsDisabled = true
	})
}

func (b *Binding) controlCert(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
	c, err := b.base.GetCertificate(h)
	if c != nil {
		b.cert.Store(c)
	}
	return c, err
}

// dataCert serves the control connection's certificate; after a resumed control handshake
// (no certificate chosen) the one for the control connection's name.
func (b *Binding) dataCert(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := b.cert.Load(); c != nil {
		return c, nil
	}
	if name := b.sni.Load(); name != nil && *name != h.ServerName {
		hc := *h
		hc.ServerName = *name
		return b.base.GetCertificate(&hc)
	}
	return b.base.GetCertificate(h)
}

// Control returns the config for this session's control connection.
func (b *Binding) Control() *tls.Config { return b.control }

// Data returns the config for one of this session's data connections. requireReuse keeps
// session resumption possible on uploads too (at the cost of the TLS 1.3 ticket caveat).
func (b *Binding) Data(upload, requireReuse bool) *tls.Config {
	b.initData()
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
