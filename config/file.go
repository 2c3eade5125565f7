package config

import (
	"log/slog"
	"net/netip"
	"reflect"
	"time"

	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/directory"
	"github.com/ftpsproxy/ftpsproxy/internal/enum"
	"github.com/ftpsproxy/ftpsproxy/proxy"
	"github.com/ftpsproxy/ftpsproxy/tlsterm"
)

// File is the decoded, defaulted and validated config file. A File returned by Load or Parse
// has every default filled in, every value parsed into its type, and every listener naming
// an existing pool.
//
// The order of the fields is the order of config.example.toml (problems are reported in it).
// Tables whose shape is a package's own config are that package's type ([data] is
// proxy.DataConfig, [limits] proxy.Limits, [tls.acme] tlsterm.ACMEOptions, [[route]]
// proxy.Route): the toml tags there name the keys.
type File struct {
	Listeners []Listener       `toml:"listener"`
	TLS       TLS              `toml:"tls"`
	Data      proxy.DataConfig `toml:"data"`
	Pools     []Pool           `toml:"pool"`
	Routes    []proxy.Route    `toml:"route"`
	Limits    proxy.Limits     `toml:"limits"`
	Log       Log              `toml:"log"`
	Admin     Admin            `toml:"admin"`
	Directory directory.Config `toml:"directory"`
	Cluster   Cluster          `toml:"cluster"`
}

// Cluster is the [cluster] table: state shared with other instances through Redis (package
// cluster): login-failure counts and bans, and backends' max_sessions.
type Cluster struct {
	RedisURL string `toml:"redis_url"` // redis://[user:pass@]host:port/db or rediss://…; empty: nothing shared
	Instance string `toml:"instance"`  // this instance's name among the others; empty: the host name
}

// Listener is one [[listener]]: an address where clients connect.
type Listener struct {
	Address        string         `toml:"address"` // host:port; empty host: all interfaces
	TLS            proxy.TLSMode  `toml:"tls"`
	Pool           string         `toml:"pool"` // after validation: always an existing pool
	ProxyProtocol  Switch         `toml:"proxy_protocol"`
	TrustedProxies []netip.Prefix `toml:"trusted_proxies"` // CIDRs or bare IPs (as /32, /128), masked
	Banner         string         `toml:"banner"`          // text of the proxy's own 220
	Name           string         `toml:"name"`            // for logs and metrics; default: Address
	Allow          []netip.Prefix `toml:"allow"`           // clients admitted (empty: all not denied); see proxy.AccessList
	Deny           []netip.Prefix `toml:"deny"`            // clients refused; deny wins
}

// TLS is the [tls] table: the proxy's certificate toward clients.
type TLS struct {
	CertFile         string              `toml:"cert_file"`
	KeyFile          string              `toml:"key_file"`
	MinVersion       TLSVersion          `toml:"min_version"`
	DataSessionReuse Reuse               `toml:"data_session_reuse"`
	ACME             tlsterm.ACMEOptions `toml:"acme"`
	// Hosting edge: more certificates chosen by SNI, and client certificates.
	Certificates       []tlsterm.CertPair     `toml:"certificate"`
	CertDir            string                 `toml:"cert_dir"`
	DefaultCertificate string                 `toml:"default_certificate"` // a NAME in CertDir
	ClientAuth         tlsterm.ClientAuth     `toml:"client_auth"`
	ClientCAFile       string                 `toml:"client_ca_file"`
	ClientCertUser     tlsterm.ClientCertUser `toml:"client_cert_user"`
}

// hasCertFiles reports whether any certificate file source is configured.
func (t *TLS) hasCertFiles() bool {
	return t.CertFile != "" || t.KeyFile != "" || len(t.Certificates) > 0 || t.CertDir != ""
}

// Pool is one [[pool]] of backends with its selection policy.
type Pool struct {
	Name           string              `toml:"name"`
	Policy         balancer.PolicyName `toml:"policy"`
	HealthInterval time.Duration       `toml:"health_interval"` // 0: health checks off
	HealthTimeout  time.Duration       `toml:"health_timeout"`  // one probe's deadline, at most health_interval
	HealthRise     int                 `toml:"health_rise"`     // consecutive successes to become healthy
	HealthFall     int                 `toml:"health_fall"`     // consecutive failures to become unhealthy
	Panic          bool                `toml:"panic"`           // no healthy backend: try them all anyway
	// SRV is a DNS SRV name whose targets are backends of the pool too; ResolveInterval is
	// how often it and the backends' host names are resolved again (balancer.Discovery).
	SRV             string        `toml:"srv"`
	ResolveInterval time.Duration `toml:"resolve_interval"`
	Backends        []Backend     `toml:"backend"`
}

// Health returns the pool's health check settings.
func (p Pool) Health() balancer.HealthConfig {
	return balancer.HealthConfig{Interval: p.HealthInterval, Timeout: p.HealthTimeout, Rise: p.HealthRise, Fall: p.HealthFall}
}

// Backend is one [[pool.backend]]: an FTP server behind the proxy.
type Backend struct {
	Name           string                `toml:"name"`    // identity across reloads and label; empty: the address
	Address        string                `toml:"address"` // host:port, host required
	Weight         int                   `toml:"weight"`
	MaxSessions    int                   `toml:"max_sessions"` // 0: unlimited
	TLS            balancer.TLSMode      `toml:"tls"`
	TLSVerify      bool                  `toml:"tls_verify"`
	CAFile         string                `toml:"ca_file"`
	TLSServerName  string                `toml:"tls_server_name"`
	TLSLegacy      bool                  `toml:"tls_legacy"` // allow TLS 1.0/1.1 and legacy ciphers
	ProxyProtocol  balancer.ProxyVersion `toml:"proxy_protocol"`
	DataMode       balancer.DataMode     `toml:"data_mode"`
	FixPasvAddress bool                  `toml:"fix_pasv_address"` // dial the control IP, ignore the 227/229 IP
}

// Log is the [log] table.
type Log struct {
	Level       LogLevel  `toml:"level"`
	Format      LogFormat `toml:"format"`
	TransferLog string    `toml:"transfer_log"` // xferlog file; empty: off
}

// Admin is the [admin] table.
type Admin struct {
	Address   string `toml:"address"`    // host:port of the status/metrics server; empty: off
	TokenFile string `toml:"token_file"` // file holding the bearer token of the admin API; empty: none
	// Token is the content of TokenFile, surrounding white space trimmed, read when the file
	// is loaded (so a reload picks up a new token); never empty when TokenFile is set.
	Token string `toml:"-"`
}

// tableDefaults holds, per table type, the value a table starts from before its keys are
// decoded: a key the file leaves out keeps its default, an explicit zero stays zero. The
// defaults of settings a package owns come from that package.
var tableDefaults = map[reflect.Type]func() any{
	reflect.TypeFor[Listener]():                func() any { return Listener{ProxyProtocol: SwitchOff, Banner: proxy.DefaultBanner} },
	reflect.TypeFor[TLS]():                     func() any { return TLS{MinVersion: TLS12, DataSessionReuse: ReuseOptional} },
	reflect.TypeFor[tlsterm.ACMEOptions]():     func() any { return tlsterm.DefaultACMEOptions() },
	reflect.TypeFor[tlsterm.OnDemandOptions](): func() any { return tlsterm.DefaultOnDemandOptions() },
	reflect.TypeFor[proxy.DataConfig]():        func() any { return proxy.DefaultDataConfig() },
	reflect.TypeFor[proxy.Limits]():            func() any { return proxy.DefaultLimits() },
	reflect.TypeFor[directory.Config]():        func() any { return directory.DefaultConfig() },
	reflect.TypeFor[Log]():                     func() any { return Log{Level: LevelInfo, Format: FormatText} },
	reflect.TypeFor[Pool](): func() any {
		h := balancer.DefaultHealth()
		return Pool{Policy: balancer.DefaultPolicy, HealthInterval: h.Interval, HealthTimeout: h.Timeout, HealthRise: h.Rise, HealthFall: h.Fall,
			Panic: balancer.DefaultPanic, ResolveInterval: balancer.DefaultResolveInterval}
	},
	reflect.TypeFor[Backend](): func() any {
		return Backend{Weight: balancer.DefaultWeight, TLSVerify: true, FixPasvAddress: true}
	},
}

// UsesACME reports whether certificates come from ACME ([tls.acme] with domains or on-demand
// issuance), as opposed to certificate files.
func (f *File) UsesACME() bool { return len(f.TLS.ACME.Domains) > 0 || f.TLS.ACME.OnDemand.Enabled() }

// UsesTLS reports whether any listener speaks TLS (and so needs [tls]).
func (f *File) UsesTLS() bool {
	for _, l := range f.Listeners {
		if l.TLS.Enabled() {
			return true
		}
	}
	return false
}

// Switch is an "on"/"off" key.
type Switch string

// Values of a Switch.
const (
	SwitchOff Switch = "off"
	SwitchOn  Switch = "on"
)

// On reports whether the switch is on.
func (s Switch) On() bool { return s == SwitchOn }

// UnmarshalText accepts "off" or "on".
func (s *Switch) UnmarshalText(b []byte) error { return parseName(s, b, SwitchOff, SwitchOn) }

// TLSVersion is tls.min_version.
type TLSVersion string

// Values of a TLSVersion.
const (
	TLS12 TLSVersion = "1.2"
	TLS13 TLSVersion = "1.3"
)

// UnmarshalText accepts "1.2" or "1.3".
func (v *TLSVersion) UnmarshalText(b []byte) error { return parseName(v, b, TLS12, TLS13) }

// Reuse is tls.data_session_reuse: whether a protected data connection must resume its
// control connection's TLS session.
type Reuse string

// Values of a Reuse.
const (
	ReuseOptional Reuse = "optional"
	ReuseRequired Reuse = "required"
)

// UnmarshalText accepts "optional" or "required".
func (r *Reuse) UnmarshalText(b []byte) error { return parseName(r, b, ReuseOptional, ReuseRequired) }

// LogLevel is log.level.
type LogLevel string

// Values of a LogLevel.
const (
	LevelDebug LogLevel = "debug"
	LevelInfo  LogLevel = "info"
	LevelWarn  LogLevel = "warn"
	LevelError LogLevel = "error"
)

// UnmarshalText accepts debug, info, warn or error.
func (l *LogLevel) UnmarshalText(b []byte) error {
	return parseName(l, b, LevelDebug, LevelInfo, LevelWarn, LevelError)
}

// Slog returns the slog level.
func (l LogLevel) Slog() slog.Level {
	switch l {
	case LevelDebug:
		return slog.LevelDebug
	case LevelWarn:
		return slog.LevelWarn
	case LevelError:
		return slog.LevelError
	}
	return slog.LevelInfo
}

// LogFormat is log.format.
type LogFormat string

// Values of a LogFormat.
const (
	FormatText LogFormat = "text"
	FormatJSON LogFormat = "json"
)

// UnmarshalText accepts text or json.
func (f *LogFormat) UnmarshalText(b []byte) error { return parseName(f, b, FormatText, FormatJSON) }

// parseName sets *p to the one of legal that b names, or reports the legal names.
func parseName[T ~string](p *T, b []byte, legal ...T) error {
	i, err := enum.Index(string(b), enum.Strings(legal))
	if err == nil {
		*p = legal[i]
	}
	return err
}
