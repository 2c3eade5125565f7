package balancer

import (
	"time"

	"github.com/ftpsproxy/ftpsproxy/internal/enum"
)

// TLSMode is how the proxy speaks TLS to a backend (pool.backend.tls). The zero value is
// TLSNone.
type TLSMode uint8

// TLS modes of the proxy's leg toward a backend.
const (
	TLSNone     TLSMode = iota // plain FTP
	TLSExplicit                // AUTH TLS after the greeting
	TLSImplicit                // TLS from the first byte
)

var tlsModeNames = enum.Names[TLSMode]{"none", "explicit", "implicit"}

// String returns the mode's config name.
func (m TLSMode) String() string { return tlsModeNames.Name(m) }

// UnmarshalText parses a config name; an unknown one is an error listing the legal names.
func (m *TLSMode) UnmarshalText(b []byte) error { return tlsModeNames.Parse(m, b) }

// DataMode is how the proxy opens data connections toward a backend (pool.backend.data_mode).
// The zero value is DataPassive.
type DataMode uint8

// Data modes.
const (
	DataPassive DataMode = iota // PASV/EPSV: the proxy connects to the backend
	DataActive                  // PORT/EPRT: the backend connects to the proxy
)

var dataModeNames = enum.Names[DataMode]{"passive", "active"}

// String returns the mode's config name.
func (m DataMode) String() string { return dataModeNames.Name(m) }

// UnmarshalText parses a config name; an unknown one is an error listing the legal names.
func (m *DataMode) UnmarshalText(b []byte) error { return dataModeNames.Parse(m, b) }

// ProxyVersion is the PROXY protocol header the proxy sends first on a backend's control
// connection (pool.backend.proxy_protocol). The zero value, ProxyOff, sends none.
type ProxyVersion uint8

// PROXY protocol versions.
const (
	ProxyOff ProxyVersion = iota
	ProxyV1               // the text header
	ProxyV2               // the binary header, with TLVs
)

var proxyVersionNames = enum.Names[ProxyVersion]{"off", "v1", "v2"}

// String returns the version's config name.
func (v ProxyVersion) String() string { return proxyVersionNames.Name(v) }

// UnmarshalText parses a config name; an unknown one is an error listing the legal names.
func (v *ProxyVersion) UnmarshalText(b []byte) error { return proxyVersionNames.Parse(v, b) }

// Number returns the protocol version number (1 or 2) for the header, 0 for ProxyOff.
func (v ProxyVersion) Number() byte { return byte(v) }

// Defaults of the pool and backend settings, used by NewPool and NewBackend for zero fields
// and by the config loader for keys a file leaves out.
const (
	DefaultHealthInterval = 5 * time.Second
	DefaultHealthTimeout  = 3 * time.Second
	DefaultHealthRise     = 2
	DefaultHealthFall     = 3
	DefaultWeight         = 1
)

// DefaultHealth returns the health check a config file gets for the keys it leaves out. (A
// HealthConfig built in code with a zero Interval has health checks off.)
func DefaultHealth() HealthConfig {
	return HealthConfig{Interval: DefaultHealthInterval, Timeout: DefaultHealthTimeout, Rise: DefaultHealthRise, Fall: DefaultHealthFall}
}
