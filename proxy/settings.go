package proxy

import (
	"time"

	"github.com/ftpsproxy/ftpsproxy/internal/enum"
	"github.com/ftpsproxy/ftpsproxy/nat"
)

// TLSMode is how a listener offers TLS to clients (SPEC §3 listener.tls). The zero value is
// TLSNone, so a ListenerConfig built in code is plain FTP unless it says otherwise.
type TLSMode uint8

// Listener TLS modes, in the order the config documents them.
const (
	TLSNone     TLSMode = iota // plain FTP; AUTH TLS is refused
	TLSExplicit                // AUTH TLS offered, plain FTP allowed
	TLSRequired                // AUTH TLS offered and required before USER and before data
	TLSImplicit                // TLS from the first byte (port 990 style)
)

var tlsModeNames = enum.Names[TLSMode]{"none", "explicit", "required", "implicit"}

// String returns the mode's config name.
func (m TLSMode) String() string { return tlsModeNames.Name(m) }

// UnmarshalText parses a config name; an unknown one is an error listing the legal names.
func (m *TLSMode) UnmarshalText(b []byte) error { return tlsModeNames.Parse(m, b) }

// Enabled reports whether the listener speaks TLS at all (it then needs a certificate).
func (m TLSMode) Enabled() bool { return m != TLSNone }

// OffersAUTH reports whether AUTH TLS is accepted on the plain control connection.
func (m TLSMode) OffersAUTH() bool { return m == TLSExplicit || m == TLSRequired }

// RequiresAUTH reports whether commands and data are refused until the client upgrades.
func (m TLSMode) RequiresAUTH() bool { return m == TLSRequired }

// Implicit reports whether TLS starts on connect.
func (m TLSMode) Implicit() bool { return m == TLSImplicit }

// Defaults of the settings this package owns: the config loader starts from them, and the
// proxy falls back to the timeouts when a Config built in code leaves them zero.
const (
	DefaultBanner         = "FTP proxy ready"
	DefaultConnectTimeout = 30 * time.Second
	DefaultIdleTimeout    = 15 * time.Minute
	DefaultLoginTimeout   = 60 * time.Second
	DefaultBackendTimeout = 10 * time.Second
	// DefaultGreetingTimeout is how long a backend may take to greet once connected: what
	// real FTP clients wait for a 220, so a server that is slow for a moment (a stopped
	// master, a burst of logins) is waited for through the proxy as it would be directly.
	DefaultGreetingTimeout  = 30 * time.Second
	DefaultShutdownGrace    = 60 * time.Second
	DefaultDataTimeout      = 5 * time.Minute // as vsftpd's data_connection_timeout
	DefaultTLSHandshake     = 10 * time.Second
	DefaultMaxSessions      = 10000
	DefaultMaxSessionsPerIP = 50
	// The login limits (SPEC §8): in a Limits built in code 0 turns a count off, and
	// LoginBurst, BanTime and MaxBanTime fall back to these when zero.
	DefaultLoginsPerMinute   = 10  // failed logins per client IP
	DefaultLoginBurst        = 5   // failed logins at once
	DefaultAttemptsPerMinute = 120 // all login attempts per client IP
	DefaultBanTime           = time.Minute
	DefaultMaxBanTime        = time.Hour
)

// DefaultPortRange is the default passive port range toward clients: below Linux's default
// ephemeral range (32768-60999), so outgoing connections of the host never take its ports.
var DefaultPortRange = nat.PortRange{First: 20000, Last: 20999}

// DefaultLimits returns the limits a config file gets for the keys it leaves out.
func DefaultLimits() Limits {
	return Limits{
		MaxSessions:       DefaultMaxSessions,
		MaxSessionsPerIP:  DefaultMaxSessionsPerIP,
		LoginsPerMinute:   DefaultLoginsPerMinute,
		LoginBurst:        DefaultLoginBurst,
		AttemptsPerMinute: DefaultAttemptsPerMinute,
		BanTime:           DefaultBanTime,
		MaxBanTime:        DefaultMaxBanTime,
		IdleTimeout:       DefaultIdleTimeout,
		LoginTimeout:      DefaultLoginTimeout,
		BackendTimeout:    DefaultBackendTimeout,
		GreetingTimeout:   DefaultGreetingTimeout,
		TLSHandshake:      DefaultTLSHandshake,
		ShutdownGrace:     DefaultShutdownGrace,
		DataTimeout:       DefaultDataTimeout,
	}
}

// DefaultDataConfig returns the data settings a config file gets for the keys it leaves out.
func DefaultDataConfig() DataConfig {
	return DataConfig{PortRange: DefaultPortRange, AllowActive: true, ConnectTimeout: DefaultConnectTimeout}
}
