package tlsterm

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/ftpsproxy/ftpsproxy/internal/logthrottle"
)

// ACMEOptions configures certificates from ACME. It is also the [tls.acme] table of the config file (the toml tags name the keys; package
// config decodes and validates them, starting from DefaultACMEOptions).
type ACMEOptions struct {
	Domains     []string `toml:"domains"`
	Email       string   `toml:"email"`        // required: with no email certmagic would prompt on stdin
	CA          string   `toml:"ca"`           // directory URL; empty: Let's Encrypt production (its retries go to staging)
	CARoot      string   `toml:"ca_root"`      // PEM file of an extra root to trust for the CA (private/test CA)
	Storage     string   `toml:"storage"`      // directory for certmagic's file storage (certificates, keys, account)
	HTTPAddress string   `toml:"http_address"` // where the HTTP-01 challenge is answered, e.g. ":80" or "127.0.0.1:5002"
	// OnDemand, when enabled, obtains certificates during handshakes for permitted names
	// beyond Domains (which may then be empty).
	OnDemand OnDemandOptions `toml:"on_demand"`
	// Listen, when set, binds HTTPAddress (tableflip's Upgrader.Listen hands the socket over
	// in an upgrade); nil: net.Listen. Not a config key.
	Listen func(network, addr string) (net.Listener, error) `toml:"-"`
}

// DefaultACMEOptions returns the [tls.acme] settings a config file gets for the keys it
// leaves out: Let's Encrypt production, the FHS state directory, HTTP-01 on port 80.
func DefaultACMEOptions() ACMEOptions {
	return ACMEOptions{
		CA:          "https://acme-v02.api.letsencrypt.org/directory",
		Storage:     "/var/lib/ftpsproxy/acme",
		HTTPAddress: ":80",
		OnDemand:    DefaultOnDemandOptions(),
	}
}

// ACME is a CertSource backed by certmagic: it obtains and renews certificates for Domains,
// answers HTTP-01 challenges on HTTPAddress with its own http.Server, and logs issuance and
// renewal through slog (certmagic's zap logs are bridged to slog, see zapslog.go).
//
// It uses a certmagic cache and config of its own (none of certmagic's package-level
// defaults), and only its GetCertificate: the tls.Config is tlsterm.NewServer's, shared by
// control and data connections (certmagic's TLSConfig() would make a new config per call and
// advertise only acme-tls/1).
type ACME struct {
	cache *certmagic.Cache
	cfg   *certmagic.Config
	srv   *http.Server
	done  chan struct{} // closed when the challenge server has stopped

	domains []string // managed names, for Certificates

	logs *logthrottle.Throttle // on-demand decisions (client-chosen names); nil without

	closeOnce sync.Once
	closeErr  error
}

// NewACME starts the challenge server and makes sure a certificate for every domain exists:
// it is loaded from Storage if there (renewed first if due), otherwise obtained from the CA
// now, within ctx. Certmagic then renews in the background until Close.
func NewACME(ctx context.Context, o ACMEOptions, log *slog.Logger) (*ACME, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.HTTPAddress == "" {
		o.HTTPAddress = ":80"
	}
	host, roots, err := o.check()
	if err != nil {
		return nil, err
	}

	zl := newZapLogger(log.Handler())
	a := &ACME{done: make(chan struct{}), domains: o.Domains}
	a.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return a.cfg, nil },
		Logger:           zl,
	})
	mc := certmagic.Config{
		Storage: &certmagic.FileStorage{Path: o.Storage},
		Logger:  zl,
	}
	if len(o.Domains) > 0 {
		// Clients that connect by IP send no SNI (common with FTP); unknown names get the
		// first domain's certificate rather than a failed handshake.
		mc.DefaultServerName, mc.FallbackServerName = o.Domains[0], o.Domains[0]
	}
	if o.OnDemand.Enabled() {
		a.logs = logthrottle.New(log, logthrottle.Options{})
		mc.OnDemand = newOnDemand(o.OnDemand, o.Domains).config(log, a.logs)
	}
	a.cfg = certmagic.New(a.cache, mc)

	listen := o.Listen
	if listen == nil {
		listen = net.Listen
	}
	ln, err := listen("tcp", o.HTTPAddress)
	if err != nil {
		a.cache.Stop()
		return nil, fmt.Errorf("acme: http_address: %w", err)
	}
	issuer := certmagic.NewACMEIssuer(a.cfg, certmagic.ACMEIssuer{
		CA:                      o.CA,
		Email:                   o.Email,
		Agreed:                  true,
		TrustedRoots:            roots,
		DisableTLSALPNChallenge: true,
		// The solver tries to listen on ListenHost:AltHTTPPort; finding our server there
		// (address in use, connect succeeds) it leaves the answering to us.
		ListenHost:  host,
		AltHTTPPort: ln.Addr().(*net.TCPAddr).Port,
		Logger:      zl,
	})
	a.cfg.Issuers = []certmagic.Issuer{issuer}

	a.srv = &http.Server{
		Handler:           issuer.HTTPChallengeHandler(http.NotFoundHandler()),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler().WithAttrs([]slog.Attr{slog.String("component", "acme_http")}), slog.LevelWarn),
	}
	go func() {
		defer close(a.done)
		if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("acme challenge server stopped", "address", ln.Addr().String(), "error", err)
		}
	}()

	if len(o.Domains) > 0 {
		if err := a.cfg.ManageSync(ctx, o.Domains); err != nil {
			a.Close()
			return nil, fmt.Errorf("acme: %w", err)
		}
	}
	for _, d := range o.Domains {
		c, err := a.GetCertificate(&tls.ClientHelloInfo{ServerName: d})
		if err != nil || c == nil || c.Leaf == nil {
			continue
		}
		log.Info("acme certificate ready", "domain", d, "serial", c.Leaf.SerialNumber.Text(16),
			"not_after", c.Leaf.NotAfter, "issuer", c.Leaf.Issuer.CommonName)
	}
	log.Info("acme managing certificates", "domains", o.Domains, "http_address", ln.Addr().String(),
		"ca", issuer.CA, "storage", o.Storage)
	return a, nil
}

// check validates the options and returns the challenge server's host and the CA's extra
// roots (nil: the system's).
func (o ACMEOptions) check() (host string, roots *x509.CertPool, err error) {
	if len(o.Domains) == 0 && !o.OnDemand.Enabled() {
		return "", nil, errors.New("acme: no domains")
	}
	if o.OnDemand.Enabled() {
		if err := o.OnDemand.Validate(); err != nil {
			return "", nil, fmt.Errorf("acme: %w", err)
		}
	}
	if o.Email == "" {
		return "", nil, errors.New("acme: email is required")
	}
	if o.Storage == "" {
		return "", nil, errors.New("acme: storage directory is required")
	}
	if host, _, err = net.SplitHostPort(o.HTTPAddress); err != nil {
		return "", nil, fmt.Errorf("acme: http_address %q: %w", o.HTTPAddress, err)
	}
	if o.CARoot == "" {
		return host, nil, nil
	}
	pemBytes, err := os.ReadFile(o.CARoot)
	if err != nil {
		return "", nil, fmt.Errorf("acme: ca_root: %w", err)
	}
	if roots, err = x509.SystemCertPool(); err != nil {
		roots = x509.NewCertPool()
	}
	if !roots.AppendCertsFromPEM(pemBytes) {
		return "", nil, fmt.Errorf("acme: ca_root %s: no PEM certificate found", o.CARoot)
	}
	return host, roots, nil
}

// GetCertificate returns the managed certificate for the handshake's server name (the first
// domain's when the client sends no SNI or an unknown name).
func (a *ACME) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	c, err := a.cfg.GetCertificate(hello)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Close stops the challenge server and certmagic's maintenance (renewals). Certificates
// stay in storage for the next start.
func (a *ACME) Close() error {
	a.closeOnce.Do(func() {
		a.closeErr = a.srv.Close()
		<-a.done
		a.cache.Stop()
		a.logs.Close() // a nil Throttle's Close does nothing
	})
	return a.closeErr
}
