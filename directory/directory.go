package directory

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ftpsproxy/ftpsproxy/internal/enum"
)

// OnError says what a login does when the lookup service fails (down, slow, 5xx, garbage).
type OnError uint8

// The on_error values. The zero value refuses: a login is never sent somewhere the
// directory did not say because the directory was unreachable, unless the operator asks.
const (
	OnErrorRefuse OnError = iota // end the session with 421
	OnErrorRoutes                // carry on with [[route]] and the listener's pool
)

var onErrorNames = enum.Names[OnError]{"refuse", "routes"}

// String returns the config name of o.
func (o OnError) String() string { return onErrorNames.Name(o) }

// UnmarshalText parses the config name of on_error; an unknown one is an error listing the
// legal names.
func (o *OnError) UnmarshalText(b []byte) error { return onErrorNames.Parse(o, b) }

// MarshalText returns the config name of o.
func (o OnError) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

// Config is the [directory] section (the toml tags name its keys). The zero value is a
// directory that knows nobody.
type Config struct {
	File            string        `toml:"file"`      // CSV file user,target[,backend_user]; empty: none
	URL             string        `toml:"url"`       // lookup service (http or https); empty: none
	Timeout         time.Duration `toml:"timeout"`   // per request to URL or AuthURL; 0: DefaultTimeout
	CacheTTL        time.Duration `toml:"cache_ttl"` // URL answers (found and not found); 0: DefaultCacheTTL
	OnError         OnError       `toml:"on_error"`
	DomainSeparator string        `toml:"domain_separator"` // "@": USER alice@shop.example routes by shop.example; empty: off
	AuthURL         string        `toml:"auth_url"`         // authentication service; empty: the backend checks passwords
	CAFile          string        `toml:"ca_file"`          // PEM roots for https URLs; empty: the system's
	// PollInterval is how often the file's mtime is checked; 0: DefaultPollInterval.
	PollInterval time.Duration `toml:"-"`
	// MaxCache bounds the URL answer cache; 0: DefaultMaxCache.
	MaxCache int `toml:"-"`
}

// DefaultConfig returns the settings a config file gets for the [directory] keys it leaves
// out: nothing enabled, the default timeout and cache TTL, on_error refuse.
func DefaultConfig() Config {
	return Config{Timeout: DefaultTimeout, CacheTTL: DefaultCacheTTL, OnError: OnErrorRefuse}
}

// Defaults for the zero fields of Config.
const (
	DefaultTimeout      = 2 * time.Second
	DefaultCacheTTL     = 60 * time.Second
	DefaultPollInterval = 2 * time.Second
	DefaultMaxCache     = 100_000
	// maxBody bounds an answer of the lookup or authentication service.
	maxBody = 64 * 1024
)

func (c *Config) timeout() time.Duration  { return orDefault(c.Timeout, DefaultTimeout) }
func (c *Config) cacheTTL() time.Duration { return orDefault(c.CacheTTL, DefaultCacheTTL) }
func (c *Config) poll() time.Duration     { return orDefault(c.PollInterval, DefaultPollInterval) }
func (c *Config) maxCache() int {
	if c.MaxCache > 0 {
		return c.MaxCache
	}
	return DefaultMaxCache
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Validate checks the URLs and the CA file name.
func (c *Config) Validate() error {
	for _, u := range []struct{ key, v string }{{"url", c.URL}, {"auth_url", c.AuthURL}} {
		if u.v == "" {
			continue
		}
		p, err := url.Parse(u.v)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return fmt.Errorf("directory.%s: want an http:// or https:// URL, got %q", u.key, u.v)
		}
	}
	if len(c.DomainSeparator) > 4 {
		return fmt.Errorf("directory.domain_separator: at most 4 bytes, got %q", c.DomainSeparator)
	}
	return nil
}

// Enabled reports whether c asks for anything at all.
func (c *Config) Enabled() bool {
	return c.File != "" || c.URL != "" || c.AuthURL != "" || c.DomainSeparator != ""
}

// Directory answers lookups from the file and the lookup service, and asks the
// authentication service. It is safe for concurrent use.
type Directory struct {
	cfg   Config
	log   *slog.Logger
	table atomic.Pointer[Table]
	http  *http.Client
	cache *cache

	mu    sync.Mutex // guards known and stamp, and serialises loads
	known func(string) bool
	stamp fileStamp // of the file as last read, good or bad
}

// fileStamp identifies a version of the file for the poll.
type fileStamp struct {
	mod  time.Time
	size int64
}

// New builds a Directory and loads its file. known says which targets the config has (nil:
// any); log may be nil.
func New(cfg Config, known func(string) bool, log *slog.Logger) (*Directory, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := &Directory{cfg: cfg, log: log, known: known}
	if cfg.URL != "" || cfg.AuthURL != "" {
		hc, err := newHTTPClient(cfg)
		if err != nil {
			return nil, err
		}
		d.http = hc
		d.cache = newCache(cfg.maxCache())
	}
	if cfg.File != "" {
		d.mu.Lock()
		err := d.loadLocked()
		d.mu.Unlock()
		if err != nil {
			return nil, err
		}
	}
	return d, nil
}

// newHTTPClient is the client for both services: its own transport (no proxy from the
// environment: a password must not travel through an HTTP proxy nobody configured here),
// the CA file's roots, no redirects, and the timeout.
func newHTTPClient(cfg Config) (*http.Client, error) {
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: 16,
		MaxConnsPerHost:     64,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: cfg.timeout(),
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("directory.ca_file: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("directory.ca_file: no certificate in %s", cfg.CAFile)
		}
		tr.TLSClientConfig.RootCAs = roots
	}
	return &http.Client{
		Transport: tr,
		Timeout:   cfg.timeout(),
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}, nil
}

// Config returns the settings d was built with.
func (d *Directory) Config() Config { return d.cfg }

// Len returns the number of users in the file as loaded.
func (d *Directory) Len() int { return d.table.Load().Len() }

// Reload re-reads the file now (SIGHUP), with known as the config's targets from now on. On
// error the table in force stays and the error says why.
func (d *Directory) Reload(known func(string) bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.known = known
	if d.cfg.File == "" {
		return nil
	}
	return d.loadLocked()
}

// loadLocked reads and swaps in the file. d.mu is held.
func (d *Directory) loadLocked() error {
	f, err := os.Open(d.cfg.File)
	if err != nil {
		return fmt.Errorf("directory: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil {
		d.stamp = fileStamp{st.ModTime(), st.Size()}
	}
	start := time.Now()
	t, err := Parse(f, d.cfg.File, d.known)
	if err != nil {
		return fmt.Errorf("directory: %w", err)
	}
	d.table.Store(t)
	d.log.Info("directory loaded", "file", d.cfg.File, "users", t.Len(), "took", time.Since(start).Round(time.Microsecond))
	return nil
}

// Watch polls the file's mtime and size until ctx ends, and reloads it when they change. A
// file that fails to load is logged and the table in force stays; it is tried again when it
// changes again (an editor writing in place, or better a rename over it).
func (d *Directory) Watch(ctx context.Context) {
	if d.cfg.File == "" {
		return
	}
	tick := time.NewTicker(d.cfg.poll())
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		d.pollOnce()
	}
}

func (d *Directory) pollOnce() {
	st, err := os.Stat(d.cfg.File)
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		if d.stamp != (fileStamp{}) {
			d.log.Error("directory file unreadable; the directory in force stays", "file", d.cfg.File, "err", err)
			d.stamp = fileStamp{}
		}
		return
	}
	if (fileStamp{st.ModTime(), st.Size()}) == d.stamp {
		return
	}
	if err := d.loadLocked(); err != nil {
		d.log.Error("directory reload refused; the directory in force stays", "err", err)
	}
}

// Query is what a lookup knows about a login.
type Query struct {
	User     string // the name as the client sent it (at most MaxUser bytes)
	Domain   string // from user@domain (lower case), or ""
	ClientIP netip.Addr
	Listener string
	SNI      string
	Host     string // the host the login is for: the domain, else HOST, else SNI
}

// Kind says what an answer's Target names.
type Kind int

// Target kinds: a file line's target may be either; the services say which.
const (
	KindAny Kind = iota
	KindPool
	KindBackend
)

// Answer is where a login goes.
type Answer struct {
	Target      string
	Kind        Kind
	BackendUser string // empty: the client's (local part of the) name
	Source      string // "file" or "url"
	Cached      bool   // the URL answer came from the cache
}

// ErrLookup wraps every failure of the lookup service (down, slow, non-200/404, garbage).
var ErrLookup = errors.New("directory lookup failed")

// Lookup finds q's user: the file by full name, then by domain, then the lookup service
// (cached). found is false when no source knows the user; err (wrapping ErrLookup) when the
// service failed, with the answer's Source set to "url".
func (d *Directory) Lookup(ctx context.Context, q Query) (ans Answer, found bool, err error) {
	if len(q.User) > MaxUser {
		return Answer{Source: "file"}, false, nil
	}
	if t := d.table.Load(); t != nil {
		if e, ok := t.Lookup(q.User); ok {
			return Answer{Target: e.Target, BackendUser: e.BackendUser, Source: "file"}, true, nil
		}
		if q.Domain != "" {
			if e, ok := t.Lookup(q.Domain); ok {
				return Answer{Target: e.Target, BackendUser: e.BackendUser, Source: "file"}, true, nil
			}
		}
	}
	if d.cfg.URL == "" {
		return Answer{Source: "file"}, false, nil
	}
	return d.lookupURL(ctx, q)
}
