package main

// The configuration layer: decoding, defaults and validation of the TOML file
// (SPEC §3). Decoding is strict and exhaustive: the file is parsed by
// BurntSushi/toml into a generic tree, then walked against the File struct
// tree by its toml tags, so that every unknown key, every value of the wrong
// type and every bad value is reported with its full key path, array indices
// included, instead of stopping at the first. Key names match exactly
// (BurntSushi would otherwise accept "Address" for "address").
//
// Unexported names carry a "cfg" prefix: this is package main, shared with the
// wiring code.

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// File is the decoded, defaulted and validated TOML file. A File returned by
// LoadConfig or ParseConfig has every default filled in, every enum key holds
// one of its legal values, and every listener names an existing pool.
type File struct {
	Listeners []Listener `toml:"listener"`
	TLS       TLS        `toml:"tls"`
	Data      Data       `toml:"data"`
	Pools     []Pool     `toml:"pool"`
	Routes    []Route    `toml:"route"`
	Limits    Limits     `toml:"limits"`
	Log       Log        `toml:"log"`
	Admin     Admin      `toml:"admin"`
}

// Listener is one [[listener]]: an address where clients connect.
type Listener struct {
	Address        string   `toml:"address"`         // host:port; empty host: all interfaces
	TLS            string   `toml:"tls"`             // none | explicit | required | implicit
	Pool           string   `toml:"pool"`            // after validation: always an existing pool
	ProxyProtocol  string   `toml:"proxy_protocol"`  // off | on
	TrustedProxies []string `toml:"trusted_proxies"` // CIDRs or bare IPs; see TrustedPrefixes
	Banner         string   `toml:"banner"`          // text of the proxy's own 220
	Name           string   `toml:"name"`            // for logs and metrics; default: Address
}

// TLS is the [tls] table: the proxy's certificate toward clients.
type TLS struct {
	CertFile         string `toml:"cert_file"`
	KeyFile          string `toml:"key_file"`
	MinVersion       string `toml:"min_version"`        // 1.2 | 1.3
	DataSessionReuse string `toml:"data_session_reuse"` // optional | required
	ACME             ACME   `toml:"acme"`
}

// ACME is the [tls.acme] table. It is in use when the file defines it (then
// Domains is never empty), which File.UsesACME reports; its other fields are
// defaulted either way.
type ACME struct {
	Domains     []string `toml:"domains"`
	Email       string   `toml:"email"`
	CA          string   `toml:"ca"`
	CARoot      string   `toml:"ca_root"`
	Storage     string   `toml:"storage"`
	HTTPAddress string   `toml:"http_address"`
}

// Data is the [data] table: the client-side data channel.
type Data struct {
	PublicAddress  string   `toml:"public_address"` // IPv4 or empty; see PublicAddr
	PortRange      string   `toml:"port_range"`     // "A-B" or "A"; see Ports
	AllowActive    bool     `toml:"allow_active"`
	ConnectTimeout Duration `toml:"connect_timeout"`
}

// Pool is one [[pool]] of backends with its selection policy.
type Pool struct {
	Name           string    `toml:"name"`
	Policy         string    `toml:"policy"`          // round_robin | least_conn | random | ip_hash | user_hash
	HealthInterval Duration  `toml:"health_interval"` // 0: health checks off
	HealthTimeout  Duration  `toml:"health_timeout"`  // connect + 220 greeting of one probe
	HealthRise     int       `toml:"health_rise"`     // consecutive successes to become healthy
	HealthFall     int       `toml:"health_fall"`     // consecutive failures to become unhealthy
	Backends       []Backend `toml:"backend"`
}

// Backend is one [[pool.backend]]: an FTP server behind the proxy.
type Backend struct {
	Name           string `toml:"name"`    // identity across reloads and label; empty: the address
	Address        string `toml:"address"` // host:port, host required
	Weight         int    `toml:"weight"`
	MaxSessions    int    `toml:"max_sessions"` // 0: unlimited
	TLS            string `toml:"tls"`          // none | explicit | implicit
	TLSVerify      bool   `toml:"tls_verify"`
	CAFile         string `toml:"ca_file"`
	TLSServerName  string `toml:"tls_server_name"`
	TLSLegacy      bool   `toml:"tls_legacy"`       // allow TLS 1.0/1.1 and legacy ciphers
	ProxyProtocol  string `toml:"proxy_protocol"`   // off | v1 | v2
	DataMode       string `toml:"data_mode"`        // passive | active
	FixPasvAddress bool   `toml:"fix_pasv_address"` // dial the control IP, ignore the 227/229 IP
}

// Route is one [[route]]: sessions whose USER and/or HOST match go to Pool.
// User and Host are path.Match patterns.
type Route struct {
	User string `toml:"user"`
	Host string `toml:"host"`
	Pool string `toml:"pool"`
}

// Limits is the [limits] table. Zero session limits mean unlimited; zero
// LoginsPerMinute turns the login rate limit off.
type Limits struct {
	MaxSessions         int      `toml:"max_sessions"`
	MaxSessionsPerIP    int      `toml:"max_sessions_per_ip"`
	LoginsPerMinute     int      `toml:"logins_per_minute"`
	LoginBurst          int      `toml:"login_burst"`
	IdleTimeout         Duration `toml:"idle_timeout"`
	LoginTimeout        Duration `toml:"login_timeout"`
	ShutdownGrace       Duration `toml:"shutdown_grace"`
	BackendTimeout      Duration `toml:"backend_timeout"`       // connect + greeting of a backend
	TLSHandshakeTimeout Duration `toml:"tls_handshake_timeout"` // each TLS handshake, both sides
}

// Log is the [log] table.
type Log struct {
	Level       string `toml:"level"`        // debug | info | warn | error
	Format      string `toml:"format"`       // text | json
	TransferLog string `toml:"transfer_log"` // xferlog file; empty: off
}

// Admin is the [admin] table.
type Admin struct {
	Address   string `toml:"address"`    // host:port of the status/metrics server; empty: off
	TokenFile string `toml:"token_file"` // bearer token for the API's writes; empty: writes off
}

// Duration is a time.Duration written in TOML as a Go duration string ("30s").
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string such as "30s" or "15m".
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := time.ParseDuration(string(text))
	if err != nil {
		return fmt.Errorf("invalid duration %q; use a number with a unit, e.g. \"30s\", \"15m\", \"1h\"", text)
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration in the form UnmarshalText reads.
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(d.Duration.String()), nil
}

// Problem is one thing wrong with a config file, named by its key path
// ("pool[0].policy", "listener[1].address", "tls.acme.email"). Problems that
// concern the file as a whole use the key "config".
type Problem struct{ Key, Msg string }

// ConfigError lists every problem found in a config file, in the order of
// the keys in config.example.toml, at most one per key.
type ConfigError struct{ Problems []Problem }

// Error returns one problem per line, as "<key>: <msg>".
func (e *ConfigError) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(p.Key)
		b.WriteString(": ")
		b.WriteString(p.Msg)
	}
	return b.String()
}

// LoadConfig reads, decodes, defaults and validates the config file at path.
// Relative file paths inside it (cert_file, key_file, ca_root, storage,
// ca_file, transfer_log) are taken relative to the directory of path and are
// returned joined with it. Every error, including a file that cannot be read,
// is a *ConfigError.
func LoadConfig(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &ConfigError{Problems: []Problem{{Key: "config", Msg: err.Error()}}}
	}
	return cfgParse(data, filepath.Dir(path))
}

// ParseConfig decodes, defaults and validates a config file's contents.
// Relative file paths inside it are relative to the working directory. Every
// error is a *ConfigError.
func ParseConfig(data []byte) (*File, error) {
	return cfgParse(data, "")
}

// UsesACME reports whether certificates come from ACME ([tls.acme] with
// domains), as opposed to cert_file and key_file.
func (f *File) UsesACME() bool { return len(f.TLS.ACME.Domains) > 0 }

// TrustedPrefixes returns TrustedProxies as prefixes (bare IPs as /32 or
// /128), masked. On a validated File it never drops an entry.
func (l Listener) TrustedPrefixes() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(l.TrustedProxies))
	for _, s := range l.TrustedProxies {
		if p, err := cfgParsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// PublicAddr returns PublicAddress parsed; the zero Addr when it is empty
// (announce the local address of the client's control connection).
func (d Data) PublicAddr() netip.Addr {
	a, _ := netip.ParseAddr(d.PublicAddress)
	return a
}

// Ports returns the bounds of PortRange, both inclusive. On a validated File
// 1024 <= low <= high <= 65535.
func (d Data) Ports() (low, high int) {
	low, high, _ = cfgParsePortRange(d.PortRange)
	return low, high
}

// Summary is a short human description of the configuration, for -check.
func (f *File) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "listeners: %d\n", len(f.Listeners))
	for _, l := range f.Listeners {
		name := l.Address
		if l.Name != l.Address {
			name = fmt.Sprintf("%s (%s)", l.Name, l.Address)
		}
		fmt.Fprintf(&b, "  %s: tls %s, pool %s", name, l.TLS, l.Pool)
		if l.ProxyProtocol == "on" {
			fmt.Fprintf(&b, ", PROXY protocol from %s", strings.Join(l.TrustedProxies, " "))
		}
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "pools: %d\n", len(f.Pools))
	for _, p := range f.Pools {
		health := "health checks off"
		if p.HealthInterval.Duration > 0 {
			health = "health check every " + p.HealthInterval.String()
		}
		fmt.Fprintf(&b, "  %s: %s, %d backend%s, %s\n", p.Name, p.Policy, len(p.Backends), cfgPlural(len(p.Backends)), health)
	}
	fmt.Fprintf(&b, "routes: %d\n", len(f.Routes))
	switch {
	case f.UsesACME():
		fmt.Fprintf(&b, "certificates: ACME for %s\n", strings.Join(f.TLS.ACME.Domains, ", "))
	case f.TLS.CertFile != "":
		fmt.Fprintf(&b, "certificates: %s\n", f.TLS.CertFile)
	default:
		b.WriteString("certificates: none\n")
	}
	data := "data ports: " + f.Data.PortRange
	if f.Data.PublicAddress != "" {
		data += ", announced as " + f.Data.PublicAddress
	}
	b.WriteString(data + "\n")
	if f.Admin.Address == "" {
		b.WriteString("admin: off\n")
	} else {
		fmt.Fprintf(&b, "admin: %s\n", f.Admin.Address)
	}
	return b.String()
}

func cfgPlural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// Legal values of the enum keys. The first is the default where one exists.
var (
	cfgListenerTLS     = []string{"none", "explicit", "required", "implicit"}
	cfgListenerProxy   = []string{"off", "on"}
	cfgMinVersions     = []string{"1.2", "1.3"}
	cfgSessionReuse    = []string{"optional", "required"}
	cfgPolicies        = []string{"round_robin", "least_conn", "random", "ip_hash", "user_hash"}
	cfgBackendTLS      = []string{"none", "explicit", "implicit"}
	cfgBackendProxy    = []string{"off", "v1", "v2"}
	cfgDataModes       = []string{"passive", "active"}
	cfgLogLevels       = []string{"debug", "info", "warn", "error"}
	cfgLogFormats      = []string{"text", "json"}
	cfgDefaultACMECA   = "https://acme-v02.api.letsencrypt.org/directory"
	cfgMaxReferredFile = int64(4 << 20) // certificates, keys, CA bundles
)

// cfgDefaulter is implemented by the config structs that have defaults. The
// decoder applies them to every struct before decoding its table, so a key
// that is absent keeps its default and an explicit zero stays zero.
type cfgDefaulter interface{ setDefaults() }

func (l *Listener) setDefaults() {
	l.TLS = "none"
	l.ProxyProtocol = "off"
	l.Banner = "FTP proxy ready"
}

func (t *TLS) setDefaults() {
	t.MinVersion = "1.2"
	t.DataSessionReuse = "optional"
}

func (a *ACME) setDefaults() {
	a.CA = cfgDefaultACMECA
	a.Storage = "/var/lib/ftpsproxy/acme"
	a.HTTPAddress = ":80"
}

func (d *Data) setDefaults() {
	d.PortRange = "50000-50999"
	d.AllowActive = true
	d.ConnectTimeout = Duration{30 * time.Second}
}

func (p *Pool) setDefaults() {
	p.Policy = "least_conn"
	p.HealthInterval = Duration{5 * time.Second}
	p.HealthTimeout = Duration{3 * time.Second}
	p.HealthRise = 2
	p.HealthFall = 3
}

func (b *Backend) setDefaults() {
	b.Weight = 1
	b.TLS = "none"
	b.TLSVerify = true
	b.ProxyProtocol = "off"
	b.DataMode = "passive"
	b.FixPasvAddress = true
}

func (l *Limits) setDefaults() {
	l.MaxSessions = 10000
	l.MaxSessionsPerIP = 50
	l.LoginsPerMinute = 20
	l.LoginBurst = 5
	l.IdleTimeout = Duration{15 * time.Minute}
	l.LoginTimeout = Duration{60 * time.Second}
	l.ShutdownGrace = Duration{60 * time.Second}
	l.BackendTimeout = Duration{10 * time.Second}
	l.TLSHandshakeTimeout = Duration{10 * time.Second}
}

func (l *Log) setDefaults() {
	l.Level = "info"
	l.Format = "text"
}

// cfgApplyDefaults sets the defaults of v (a struct) and of the structs nested
// in it, but not of slice elements, which get theirs when they are decoded.
func cfgApplyDefaults(v reflect.Value) {
	if d, ok := v.Addr().Interface().(cfgDefaulter); ok {
		d.setDefaults()
	}
	for i := range v.NumField() {
		if f := v.Field(i); f.Kind() == reflect.Struct && f.Type() != cfgDurationType {
			cfgApplyDefaults(f)
		}
	}
}

func cfgParse(data []byte, baseDir string) (*File, error) {
	c := &cfgChecker{seen: map[string]bool{}, defined: map[string]bool{}}
	var tree map[string]any
	if _, err := toml.Decode(string(data), &tree); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			c.add("config", fmt.Sprintf("line %d, column %d: %s", pe.Position.Line, pe.Position.Col, pe.Message))
		} else {
			c.add("config", err.Error())
		}
		return nil, c.err()
	}
	f := new(File)
	rv := reflect.ValueOf(f).Elem()
	cfgApplyDefaults(rv)
	c.decodeTable("", tree, rv)
	if baseDir != "" {
		f.resolvePaths(baseDir)
	}
	c.validate(f)
	if len(c.probs) > 0 {
		return nil, c.err()
	}
	return f, nil
}

// resolvePaths makes the file paths of f relative to dir.
func (f *File) resolvePaths(dir string) {
	join := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	join(&f.TLS.CertFile)
	join(&f.TLS.KeyFile)
	join(&f.TLS.ACME.CARoot)
	join(&f.TLS.ACME.Storage)
	for i := range f.Pools {
		for j := range f.Pools[i].Backends {
			join(&f.Pools[i].Backends[j].CAFile)
		}
	}
	join(&f.Log.TransferLog)
}

// cfgChecker collects problems while decoding and validating one file.
type cfgChecker struct {
	probs   []cfgRanked
	seen    map[string]bool // keys with a problem: one problem per key
	defined map[string]bool // key paths present in the file
}

type cfgRanked struct {
	rank []int
	Problem
}

// add records a problem for key unless key already has one (the first, from
// decoding, explains the rest).
func (c *cfgChecker) add(key, msg string) {
	if c.seen[key] {
		return
	}
	c.seen[key] = true
	// One problem per line: values are quoted with %q, but TOML parse errors
	// and OS errors may still carry raw control characters.
	msg = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, msg)
	c.probs = append(c.probs, cfgRanked{cfgRankOf(key), Problem{key, msg}})
}

func (c *cfgChecker) addf(key, format string, args ...any) { c.add(key, fmt.Sprintf(format, args...)) }

func (c *cfgChecker) err() *ConfigError {
	slices.SortStableFunc(c.probs, func(a, b cfgRanked) int {
		if r := slices.Compare(a.rank, b.rank); r != 0 {
			return r
		}
		return strings.Compare(a.Key, b.Key)
	})
	e := &ConfigError{Problems: make([]Problem, len(c.probs))}
	for i, p := range c.probs {
		e.Problems[i] = p.Problem
	}
	return e
}

var (
	cfgFileType     = reflect.TypeFor[File]()
	cfgDurationType = reflect.TypeFor[Duration]()
)

// cfgRankOf orders key paths as the fields of File are declared (which is
// the order of config.example.toml), array elements by index, unknown keys
// after the known ones of their table, and "config" first.
func cfgRankOf(key string) []int {
	if key == "config" {
		return []int{-1}
	}
	var rank []int
	t := cfgFileType
	for seg := range strings.SplitSeq(key, ".") {
		name, idx := seg, -1
		if i := strings.IndexByte(seg, '['); i > 0 && strings.HasSuffix(seg, "]") {
			if n, err := strconv.Atoi(seg[i+1 : len(seg)-1]); err == nil {
				name, idx = seg[:i], n
			}
		}
		if t.Kind() != reflect.Struct {
			return append(rank, 1<<30)
		}
		fi := cfgFieldByTag(t, name)
		if fi < 0 {
			return append(rank, t.NumField())
		}
		rank = append(rank, fi)
		t = t.Field(fi).Type
		if idx >= 0 && t.Kind() == reflect.Slice {
			rank = append(rank, idx)
			t = t.Elem()
		}
	}
	return rank
}

func cfgFieldByTag(t reflect.Type, name string) int {
	for i := range t.NumField() {
		if cfgTag(t.Field(i)) == name {
			return i
		}
	}
	return -1
}

// cfgTag is the TOML key of a struct field, "" for fields not in the file.
func cfgTag(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	if tag == "-" {
		return ""
	}
	return tag
}

func cfgJoin(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// cfgQuoteKey writes a key of the file the way TOML would need it: bare when
// it can be, quoted otherwise (which also keeps control characters out of
// problem lines).
func cfgQuoteKey(k string) string {
	if k == "" {
		return `""`
	}
	for _, r := range k {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return strconv.Quote(k)
		}
	}
	return k
}

// cfgTypeName names the TOML type of a decoded value.
func cfgTypeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case time.Time:
		return "a date-time"
	case []any, []map[string]any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("a %T", v)
}

// decodeTable decodes the table raw into the struct rv, reporting unknown keys.
func (c *cfgChecker) decodeTable(path string, raw map[string]any, rv reflect.Value) {
	t := rv.Type()
	for i := range t.NumField() {
		name := cfgTag(t.Field(i))
		if name == "" {
			continue
		}
		v, ok := raw[name]
		if !ok {
			continue
		}
		key := cfgJoin(path, name)
		c.defined[key] = true
		c.decodeValue(key, v, rv.Field(i))
	}
	for k := range raw {
		if fi := cfgFieldByTag(t, k); fi < 0 || k == "" {
			c.add(cfgJoin(path, cfgQuoteKey(k)), "unknown key")
		}
	}
}

func (c *cfgChecker) decodeValue(key string, raw any, rv reflect.Value) {
	if rv.Type() == cfgDurationType {
		s, ok := raw.(string)
		if !ok {
			c.addf(key, "must be a duration string such as \"30s\", not %s", cfgTypeName(raw))
			return
		}
		var d Duration
		if err := d.UnmarshalText([]byte(s)); err != nil {
			c.add(key, err.Error())
			return
		}
		rv.Set(reflect.ValueOf(d))
		return
	}
	switch rv.Kind() {
	case reflect.String:
		s, ok := raw.(string)
		if !ok {
			c.addf(key, "must be a string, not %s", cfgTypeName(raw))
			return
		}
		rv.SetString(s)
	case reflect.Bool:
		b, ok := raw.(bool)
		if !ok {
			c.addf(key, "must be true or false, not %s", cfgTypeName(raw))
			return
		}
		rv.SetBool(b)
	case reflect.Int:
		n, ok := raw.(int64)
		if !ok {
			c.addf(key, "must be an integer, not %s", cfgTypeName(raw))
			return
		}
		if rv.OverflowInt(n) {
			c.addf(key, "%d is out of range", n)
			return
		}
		rv.SetInt(n)
	case reflect.Struct:
		m, ok := raw.(map[string]any)
		if !ok {
			c.addf(key, "must be a table, not %s", cfgTypeName(raw))
			return
		}
		c.decodeTable(key, m, rv)
	case reflect.Slice:
		c.decodeSlice(key, raw, rv)
	default:
		panic("config: no decoder for " + rv.Type().String())
	}
}

func (c *cfgChecker) decodeSlice(key string, raw any, rv reflect.Value) {
	et := rv.Type().Elem()
	var elems []any
	switch v := raw.(type) {
	case []any:
		elems = v
	case []map[string]any:
		for _, m := range v {
			elems = append(elems, m)
		}
	default:
		if et.Kind() != reflect.Struct {
			c.addf(key, "must be an array, not %s", cfgTypeName(raw))
			return
		}
		c.addf(key, "must be an array of tables ([[%s]]), not %s", cfgTablePath(key), cfgTypeName(raw))
		return
	}
	out := reflect.MakeSlice(rv.Type(), len(elems), len(elems))
	for i, e := range elems {
		ev := out.Index(i)
		if et.Kind() == reflect.Struct {
			cfgApplyDefaults(ev)
		}
		c.decodeValue(fmt.Sprintf("%s[%d]", key, i), e, ev)
	}
	rv.Set(out)
}

// cfgTablePath turns "pool[0].backend" into "pool.backend", the header of an
// array of tables.
func cfgTablePath(key string) string {
	var b strings.Builder
	depth := 0
	for _, r := range key {
		switch {
		case r == '[':
			depth++
		case r == ']':
			depth--
		case depth == 0:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// validate checks the decoded File and completes the defaults that depend on
// other keys.
func (c *cfgChecker) validate(f *File) {
	pools, known := c.checkPools(f)
	c.checkListeners(f, pools, known)
	c.checkTLS(f)
	c.checkData(f)
	c.checkRoutes(f, pools, known)
	c.checkLimits(f)
	c.checkLog(f)
	c.checkAdmin(f)
	c.checkSockets(f)
}

func (c *cfgChecker) enum(key, val string, legal []string) {
	if !slices.Contains(legal, val) {
		c.addf(key, "unknown value %q; must be one of %s", val, strings.Join(legal, ", "))
	}
}

func (c *cfgChecker) positive(key string, d Duration) {
	if d.Duration <= 0 {
		c.addf(key, "must be more than 0s, got %q", d.String())
	}
}

// checkPools validates the pools and returns the index of each name, and
// whether every pool has one (else naming a pool cannot be judged).
func (c *cfgChecker) checkPools(f *File) (names map[string]int, known bool) {
	names = map[string]int{}
	known = !c.seen["pool"]
	if len(f.Pools) == 0 {
		c.add("pool", "at least one [[pool]] is required")
	}
	for i, p := range f.Pools {
		k := fmt.Sprintf("pool[%d]", i)
		switch prev, dup := names[p.Name]; {
		case p.Name == "":
			c.add(k+".name", "required")
			known = false
		case dup:
			c.addf(k+".name", "duplicate pool name %q (also pool[%d].name)", p.Name, prev)
		default:
			names[p.Name] = i
		}
		c.enum(k+".policy", p.Policy, cfgPolicies)
		if p.HealthInterval.Duration < 0 {
			c.addf(k+".health_interval", "must not be negative (\"0s\" turns health checks off), got %q", p.HealthInterval.String())
		}
		c.positive(k+".health_timeout", p.HealthTimeout)
		if p.HealthRise < 1 {
			c.addf(k+".health_rise", "must be >= 1, got %d", p.HealthRise)
		}
		if p.HealthFall < 1 {
			c.addf(k+".health_fall", "must be >= 1, got %d", p.HealthFall)
		}
		if len(p.Backends) == 0 {
			c.add(k+".backend", "at least one [[pool.backend]] is required")
		}
		addrs := map[string]int{}
		for j := range p.Backends {
			c.checkBackend(fmt.Sprintf("%s.backend[%d]", k, j), &p.Backends[j], addrs, j)
		}
	}
	return names, known
}

func (c *cfgChecker) checkBackend(k string, b *Backend, addrs map[string]int, j int) {
	if host, port, ok := c.hostPort(k+".address", b.Address, true); ok {
		norm := net.JoinHostPort(strings.ToLower(host), strconv.Itoa(port))
		if prev, dup := addrs[norm]; dup {
			c.addf(k+".address", "duplicate backend %q in this pool (also backend[%d])", b.Address, prev)
		} else {
			addrs[norm] = j
		}
	}
	if b.Name != "" {
		if prev, dup := addrs["name:"+b.Name]; dup {
			c.addf(k+".name", "duplicate backend name %q in this pool (also backend[%d])", b.Name, prev)
		} else {
			addrs["name:"+b.Name] = j
		}
	}
	if b.Weight < 1 {
		c.addf(k+".weight", "must be >= 1, got %d", b.Weight)
	}
	if b.MaxSessions < 0 {
		c.addf(k+".max_sessions", "must be >= 0 (0: unlimited), got %d", b.MaxSessions)
	}
	c.enum(k+".tls", b.TLS, cfgBackendTLS)
	if b.TLS != "none" && b.TLSVerify && b.CAFile != "" {
		c.certFile(k+".ca_file", b.CAFile)
	}
	if strings.ContainsAny(b.TLSServerName, " \t/") {
		c.addf(k+".tls_server_name", "%q is not a host name", b.TLSServerName)
	}
	c.enum(k+".proxy_protocol", b.ProxyProtocol, cfgBackendProxy)
	c.enum(k+".data_mode", b.DataMode, cfgDataModes)
}

func (c *cfgChecker) checkListeners(f *File, pools map[string]int, poolsKnown bool) {
	if len(f.Listeners) == 0 {
		c.add("listener", "at least one [[listener]] is required")
	}
	names := map[string]int{}
	for i := range f.Listeners {
		l := &f.Listeners[i]
		k := fmt.Sprintf("listener[%d]", i)
		c.hostPort(k+".address", l.Address, false)
		c.enum(k+".tls", l.TLS, cfgListenerTLS)
		switch _, ok := pools[l.Pool]; {
		case !poolsKnown:
		case l.Pool == "" && len(f.Pools) == 1:
			l.Pool = f.Pools[0].Name
		case l.Pool == "":
			c.addf(k+".pool", "required when there is more than one pool (%s)", cfgPoolNames(f))
		case !ok:
			c.addf(k+".pool", "unknown pool %q", l.Pool)
		}
		c.enum(k+".proxy_protocol", l.ProxyProtocol, cfgListenerProxy)
		for j, s := range l.TrustedProxies {
			if _, err := cfgParsePrefix(s); err != nil {
				c.addf(fmt.Sprintf("%s.trusted_proxies[%d]", k, j), "%q is not a CIDR (\"10.0.0.0/8\") or an IP address", s)
			}
		}
		if l.ProxyProtocol == "on" && len(l.TrustedProxies) == 0 {
			c.add(k+".trusted_proxies", `empty, but proxy_protocol = "on" accepts PROXY headers only from trusted_proxies: every connection would be refused`)
		}
		if strings.ContainsAny(l.Banner, "\r\n\x00") {
			c.add(k+".banner", "must be one line (no CR, LF or NUL)")
		}
		if l.Name == "" {
			// Addresses are unique (checkSockets), so is this default.
			l.Name = l.Address
		} else if prev, dup := names[l.Name]; dup {
			c.addf(k+".name", "duplicate listener name %q (also listener[%d])", l.Name, prev)
		} else {
			names[l.Name] = i
		}
	}
}

func cfgPoolNames(f *File) string {
	var names []string
	for _, p := range f.Pools {
		names = append(names, strconv.Quote(p.Name))
	}
	return strings.Join(names, ", ")
}

func (c *cfgChecker) checkTLS(f *File) {
	t := &f.TLS
	c.enum("tls.min_version", t.MinVersion, cfgMinVersions)
	c.enum("tls.data_session_reuse", t.DataSessionReuse, cfgSessionReuse)
	files := t.CertFile != "" || t.KeyFile != ""
	acme := c.defined["tls.acme"]
	switch {
	case files && acme:
		c.add("tls", "set either cert_file and key_file or [tls.acme], not both")
	case !files && !acme:
		for i, l := range f.Listeners {
			if l.TLS != "none" && slices.Contains(cfgListenerTLS, l.TLS) {
				c.addf("tls", "listener[%d] has tls = %q: set cert_file and key_file, or [tls.acme] with domains", i, l.TLS)
				break
			}
		}
	}
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		c.add("tls.key_file", "required with cert_file")
	case t.CertFile == "" && t.KeyFile != "":
		c.add("tls.cert_file", "required with key_file")
	case t.CertFile != "":
		certPEM, certOK := c.readFile("tls.cert_file", t.CertFile)
		keyPEM, keyOK := c.readFile("tls.key_file", t.KeyFile)
		if certOK && keyOK {
			if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
				c.addf("tls.cert_file", "does not load with key_file %q: %v", t.KeyFile, err)
			}
		}
	}

	a := &t.ACME
	if acme && len(a.Domains) == 0 {
		c.add("tls.acme.domains", "at least one domain is required")
	}
	for i, d := range a.Domains {
		k := fmt.Sprintf("tls.acme.domains[%d]", i)
		switch {
		case strings.HasPrefix(d, "*."):
			c.addf(k, "wildcard %q needs the DNS-01 challenge, which ftpsproxy does not answer (it uses HTTP-01)", d)
		case !cfgIsDomain(d):
			c.addf(k, "%q is not a domain name or IP address", d)
		}
	}
	if acme && a.Email == "" {
		c.add("tls.acme.email", "required: the CA account needs a contact address")
	}
	if a.Email != "" && (!strings.Contains(a.Email, "@") || strings.ContainsAny(a.Email, " \t<>")) {
		c.addf("tls.acme.email", "%q is not an email address", a.Email)
	}
	if u, err := url.Parse(a.CA); err != nil || u.Scheme != "https" || u.Host == "" {
		c.addf("tls.acme.ca", "%q is not an https:// URL of an ACME directory", a.CA)
	}
	if a.CARoot != "" {
		c.certFile("tls.acme.ca_root", a.CARoot)
	}
	if a.Storage == "" {
		c.add("tls.acme.storage", "required (certificates and account keys are kept there)")
	}
	if a.HTTPAddress == "" {
		c.add("tls.acme.http_address", "required: the HTTP-01 challenge is answered there (usually \":80\")")
	} else {
		c.hostPort("tls.acme.http_address", a.HTTPAddress, false)
	}
}

// cfgIsDomain accepts an IP address or a DNS name of letters, digits and
// hyphens (certmagic issues for both).
func cfgIsDomain(s string) bool {
	if _, err := netip.ParseAddr(s); err == nil {
		return true
	}
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(strings.TrimSuffix(s, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

func (c *cfgChecker) checkData(f *File) {
	d := &f.Data
	if d.PublicAddress != "" {
		a, err := netip.ParseAddr(d.PublicAddress)
		switch {
		case err != nil:
			c.addf("data.public_address", "%q is not an IP address", d.PublicAddress)
		case !a.Is4():
			c.addf("data.public_address", "%q is not an IPv4 address (227 replies carry IPv4 only)", d.PublicAddress)
		case a.IsUnspecified():
			c.add("data.public_address", `"0.0.0.0" cannot be announced; leave it empty to announce the local address`)
		}
	}
	if _, _, err := cfgParsePortRange(d.PortRange); err != nil {
		c.add("data.port_range", err.Error())
	}
	c.positive("data.connect_timeout", d.ConnectTimeout)
}

// cfgParsePortRange parses "A-B" or "A", with 1024 <= A <= B <= 65535.
func cfgParsePortRange(s string) (low, high int, err error) {
	lo, hi, isRange := strings.Cut(s, "-")
	if !isRange {
		hi = lo
	}
	low, err1 := cfgAtoiPort(lo)
	high, err2 := cfgAtoiPort(hi)
	switch {
	case err1 != nil || err2 != nil:
		return 0, 0, fmt.Errorf("invalid port range %q; want \"LOW-HIGH\" (e.g. \"50000-50999\") or one port", s)
	case low < 1024 || high > 65535:
		return 0, 0, fmt.Errorf("port range %q must lie within 1024-65535", s)
	case low > high:
		return 0, 0, fmt.Errorf("port range %q is reversed: %d is above %d", s, low, high)
	}
	return low, high, nil
}

// cfgAtoiPort parses a decimal port, at most 5 digits so nothing overflows.
func cfgAtoiPort(s string) (int, error) {
	if s == "" || len(s) > 5 || strings.Trim(s, "0123456789") != "" {
		return 0, errors.New("not a port number")
	}
	return strconv.Atoi(s)
}

func (c *cfgChecker) checkRoutes(f *File, pools map[string]int, poolsKnown bool) {
	for i, r := range f.Routes {
		k := fmt.Sprintf("route[%d]", i)
		if r.User == "" && r.Host == "" {
			c.add(k, "needs user or host (or both)")
		}
		if _, err := path.Match(r.User, ""); err != nil {
			c.addf(k+".user", "bad glob pattern %q", r.User)
		}
		if _, err := path.Match(r.Host, ""); err != nil {
			c.addf(k+".host", "bad glob pattern %q", r.Host)
		}
		switch _, ok := pools[r.Pool]; {
		case r.Pool == "":
			c.add(k+".pool", "required")
		case !poolsKnown:
		case !ok:
			c.addf(k+".pool", "unknown pool %q", r.Pool)
		}
	}
}

func (c *cfgChecker) checkLimits(f *File) {
	l := &f.Limits
	if l.MaxSessions < 0 {
		c.addf("limits.max_sessions", "must be >= 0 (0: unlimited), got %d", l.MaxSessions)
	}
	switch {
	case l.MaxSessionsPerIP < 0:
		c.addf("limits.max_sessions_per_ip", "must be >= 0 (0: unlimited), got %d", l.MaxSessionsPerIP)
	case l.MaxSessions > 0 && l.MaxSessionsPerIP > l.MaxSessions:
		c.addf("limits.max_sessions_per_ip", "%d is more than max_sessions (%d)", l.MaxSessionsPerIP, l.MaxSessions)
	}
	if l.LoginsPerMinute < 0 {
		c.addf("limits.logins_per_minute", "must be >= 0 (0: no limit), got %d", l.LoginsPerMinute)
	}
	if l.LoginsPerMinute > 0 && l.LoginBurst < 1 {
		c.addf("limits.login_burst", "must be >= 1 when logins_per_minute is on, got %d", l.LoginBurst)
	} else if l.LoginBurst < 0 {
		c.addf("limits.login_burst", "must be >= 0, got %d", l.LoginBurst)
	}
	c.positive("limits.idle_timeout", l.IdleTimeout)
	c.positive("limits.login_timeout", l.LoginTimeout)
	c.positive("limits.shutdown_grace", l.ShutdownGrace)
	c.positive("limits.backend_timeout", l.BackendTimeout)
	c.positive("limits.tls_handshake_timeout", l.TLSHandshakeTimeout)
}

func (c *cfgChecker) checkLog(f *File) {
	c.enum("log.level", f.Log.Level, cfgLogLevels)
	c.enum("log.format", f.Log.Format, cfgLogFormats)
}

func (c *cfgChecker) checkAdmin(f *File) {
	if f.Admin.Address != "" {
		c.hostPort("admin.address", f.Admin.Address, false)
	}
}

// checkSockets reports addresses that would collide when bound: two
// listeners, a listener and the admin or ACME HTTP server, or any of them
// inside the passive port range. A wildcard host collides with every host.
func (c *cfgChecker) checkSockets(f *File) {
	type sock struct{ key, host string }
	ports := map[int][]sock{}
	addSock := func(key, addr string) {
		if c.seen[key] {
			return
		}
		host, p, err := net.SplitHostPort(addr)
		if err != nil {
			return
		}
		port, _ := strconv.Atoi(p)
		for _, o := range ports[port] {
			if host == o.host || cfgWildcard(host) || cfgWildcard(o.host) {
				c.addf(key, "%q overlaps %s", addr, o.key)
				return
			}
		}
		ports[port] = append(ports[port], sock{key, host})
	}
	for i, l := range f.Listeners {
		addSock(fmt.Sprintf("listener[%d].address", i), l.Address)
	}
	if f.Admin.Address != "" {
		addSock("admin.address", f.Admin.Address)
	}
	if f.UsesACME() {
		addSock("tls.acme.http_address", f.TLS.ACME.HTTPAddress)
	}
	if lo, hi, err := cfgParsePortRange(f.Data.PortRange); err == nil {
		for _, port := range slices.Sorted(maps.Keys(ports)) {
			if port >= lo && port <= hi {
				c.addf("data.port_range", "%q includes port %d of %s", f.Data.PortRange, port, ports[port][0].key)
				break
			}
		}
	}
}

func cfgWildcard(host string) bool {
	a, err := netip.ParseAddr(host)
	return host == "" || err == nil && a.IsUnspecified()
}

// hostPort checks a host:port address. The host may be empty (all
// interfaces) unless needHost.
func (c *cfgChecker) hostPort(key, addr string, needHost bool) (host string, port int, ok bool) {
	if addr == "" {
		c.add(key, "required")
		return "", 0, false
	}
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		msg := err.Error()
		var ae *net.AddrError
		if errors.As(err, &ae) {
			msg = ae.Err
		}
		c.addf(key, "invalid address %q: %s; want host:port, IPv6 as \"[::1]:21\"", addr, msg)
		return "", 0, false
	}
	port, err = cfgAtoiPort(p)
	switch {
	case err != nil:
		c.addf(key, "invalid address %q: port %q is not a number", addr, p)
		return "", 0, false
	case port < 1 || port > 65535:
		c.addf(key, "invalid address %q: port %d is out of range 1-65535", addr, port)
		return "", 0, false
	case needHost && host == "":
		c.addf(key, "invalid address %q: the host is missing", addr)
		return "", 0, false
	case strings.ContainsAny(host, " \t"):
		c.addf(key, "invalid address %q: the host contains a space", addr)
		return "", 0, false
	}
	return host, port, true
}

func cfgParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.WithZone("")
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// readFile reads a file the config refers to: a regular file of sane size,
// so that a path like /dev/zero or a FIFO cannot hang -check.
func (c *cfgChecker) readFile(key, name string) ([]byte, bool) {
	fail := func(err error) ([]byte, bool) {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		c.addf(key, "cannot read %q: %v", name, err)
		return nil, false
	}
	// Stat before Open: opening a FIFO would block.
	st, err := os.Stat(name)
	if err != nil {
		return fail(err)
	}
	if !st.Mode().IsRegular() {
		return fail(errors.New("not a regular file"))
	}
	fh, err := os.Open(name)
	if err != nil {
		return fail(err)
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, cfgMaxReferredFile+1))
	if err != nil {
		return fail(err)
	}
	if int64(len(data)) > cfgMaxReferredFile {
		return fail(fmt.Errorf("larger than %d MiB", cfgMaxReferredFile>>20))
	}
	return data, true
}

// certFile checks that name is a PEM file of one or more certificates.
func (c *cfgChecker) certFile(key, name string) {
	data, ok := c.readFile(key, name)
	if !ok {
		return
	}
	n := 0
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			c.addf(key, "%q: certificate %d: %v", name, n+1, err)
			return
		}
		n++
	}
	if n == 0 {
		c.addf(key, "%q holds no PEM certificate", name)
	}
}
