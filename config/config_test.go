package config

import (
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/directory"
	"github.com/ftpsproxy/ftpsproxy/nat"
	"github.com/ftpsproxy/ftpsproxy/proxy"
	"github.com/ftpsproxy/ftpsproxy/tlsterm"
)

var updateGolden = flag.Bool("update-config", false, "rewrite testdata/config/*.err and *.ok from the current output")

const exampleConfig = "../config.example.toml"

// goldenEnv is the host the golden files are checked on: a fixed clock (the test
// certificates end on 2026-05-20 and 2026-06-10) and Linux's default ephemeral ports.
var goldenEnv = Env{
	Now:            time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC),
	EphemeralPorts: func() (nat.PortRange, error) { return nat.PortRange{First: 32768, Last: 60999}, nil },
}

// TestConfigGolden loads every testdata/config/*.toml and compares the result
// with the file beside it: NAME.err holds the expected Error text, NAME.ok
// the expected Summary of a valid file followed by its WARN lines, as -check
// prints them.
func TestConfigGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/config/*.toml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	for _, in := range files {
		name := strings.TrimSuffix(in, ".toml")
		t.Run(filepath.Base(name), func(t *testing.T) {
			f, err := Load(in)
			var got, wantFile, other string
			if err != nil {
				var ce *Error
				if !errors.As(err, &ce) {
					t.Fatalf("error is %T, want *Error: %v", err, err)
				}
				if f != nil {
					t.Errorf("Load returned a File with an error")
				}
				got, wantFile, other = err.Error()+"\n", name+".err", name+".ok"
			} else {
				got, wantFile, other = f.Summary()+FormatWarnings(Warnings(f, goldenEnv)), name+".ok", name+".err"
			}
			if *updateGolden {
				os.Remove(other)
				if err := os.WriteFile(wantFile, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, rerr := os.ReadFile(wantFile)
			if rerr != nil {
				if _, err := os.Stat(other); err == nil {
					t.Fatalf("got the outcome of %s, but %s exists; output:\n%s", filepath.Base(wantFile), filepath.Base(other), got)
				}
				t.Fatalf("%v (run go test -run TestConfigGolden -update-config to create it); output:\n%s", rerr, got)
			}
			if got != string(want) {
				t.Errorf("%s mismatch\n--- got\n%s--- want\n%s", filepath.Base(wantFile), got, want)
			}
		})
	}
}

func TestConfigExampleLoads(t *testing.T) {
	f, err := Load(exampleConfig)
	if err != nil {
		t.Fatalf("config.example.toml:\n%v", err)
	}
	data, err := os.ReadFile(exampleConfig)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(data); err != nil {
		t.Fatalf("Parse(config.example.toml):\n%v", err)
	}
	// The example shows the defaults: its first pool and backend keep
	// them, except what it sets on purpose.
	d := mustParse(t, minimalConfig)
	if got, want := f.Limits, d.Limits; got != want {
		t.Errorf("example [limits] = %+v, defaults %+v", got, want)
	}
	if got, want := f.Pools[0].Backends[0], d.Pools[0].Backends[0]; !reflect.DeepEqual(got, want) {
		// Only the address differs.
		got.Address = want.Address
		if !reflect.DeepEqual(got, want) {
			t.Errorf("example backend = %+v, defaults %+v", got, want)
		}
	}
	if got, want := f.Data, d.Data; !reflect.DeepEqual(got, want) {
		t.Errorf("example [data] = %+v, defaults %+v", got, want)
	}
	if got, want := f.Log, d.Log; got != want {
		t.Errorf("example [log] = %+v, defaults %+v", got, want)
	}
}

// TestConfigExampleDocumentsEveryKey scans config.example.toml (commented-out
// keys included) so that a key added to File cannot go undocumented, and a
// key in the example cannot be misspelt.
func TestConfigExampleDocumentsEveryKey(t *testing.T) {
	data, err := os.ReadFile(exampleConfig)
	if err != nil {
		t.Fatal(err)
	}
	header := regexp.MustCompile(`^\[\[?([a-z_.]+)\]\]?(\s|#|$)`)
	keyLine := regexp.MustCompile(`^([a-z_]+)\s*=`)
	documented := map[string]bool{}
	section := ""
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if rest, ok := strings.CutPrefix(line, "#"); ok {
			line = strings.TrimSpace(rest)
		}
		if m := header.FindStringSubmatch(line); m != nil {
			section = m[1]
			documented[section] = true
		} else if m := keyLine.FindStringSubmatch(line); m != nil {
			key := m[1]
			if section != "" {
				key = section + "." + key
			}
			documented[key] = true
			if !slices.Contains(Keys(), key) {
				t.Errorf("config.example.toml:%d: %q is not a config key", i+1, key)
			}
		}
	}
	for _, k := range Keys() {
		if !documented[k] {
			t.Errorf("config.example.toml does not document %q", k)
		}
	}
}

const minimalConfig = `
[[listener]]
address = ":2121"

[[pool]]
name = "default"

[[pool.backend]]
address = "10.0.0.11:21"
`

func mustParse(t *testing.T, s string) *File {
	t.Helper()
	f, err := Parse([]byte(s))
	if err != nil {
		t.Fatalf("Parse:\n%v\ninput:\n%s", err, s)
	}
	return f
}

func TestConfigDefaults(t *testing.T) {
	f := mustParse(t, minimalConfig)
	l, p, b := f.Listeners[0], f.Pools[0], f.Pools[0].Backends[0]
	sec := func(n int) time.Duration { return time.Duration(n) * time.Second }
	tests := []struct {
		key       string
		got, want any
	}{
		{"listener.tls", l.TLS, proxy.TLSNone},
		{"listener.pool", l.Pool, "default"}, // the only pool
		{"listener.proxy_protocol", l.ProxyProtocol, SwitchOff},
		{"listener.trusted_proxies", len(l.TrustedProxies), 0},
		{"listener.banner", l.Banner, "FTP proxy ready"},
		{"listener.name", l.Name, ":2121"}, // the address
		{"tls.cert_file", f.TLS.CertFile, ""},
		{"tls.key_file", f.TLS.KeyFile, ""},
		{"tls.min_version", f.TLS.MinVersion, TLS12},
		{"tls.data_session_reuse", f.TLS.DataSessionReuse, ReuseOptional},
		{"tls.acme.domains", len(f.TLS.ACME.Domains), 0},
		{"tls.acme.email", f.TLS.ACME.Email, ""},
		{"tls.acme.ca", f.TLS.ACME.CA, "https://acme-v02.api.letsencrypt.org/directory"},
		{"tls.acme.ca_root", f.TLS.ACME.CARoot, ""},
		{"tls.acme.storage", f.TLS.ACME.Storage, "/var/lib/ftpsproxy/acme"},
		{"tls.acme.http_address", f.TLS.ACME.HTTPAddress, ":80"},
		{"data.public_address", f.Data.PublicAddress, netip.Addr{}},
		{"data.port_range", f.Data.PortRange, nat.PortRange{First: 20000, Last: 20999}},
		{"data.allow_active", f.Data.AllowActive, true},
		{"data.connect_timeout", f.Data.ConnectTimeout, sec(30)},
		{"pool.policy", p.Policy, balancer.LeastConn},
		{"pool.health_interval", p.HealthInterval, sec(5)},
		{"pool.health_timeout", p.HealthTimeout, sec(3)},
		{"pool.health_rise", p.HealthRise, 2},
		{"pool.health_fall", p.HealthFall, 3},
		{"pool.panic", p.Panic, true},
		{"pool.srv", p.SRV, ""},
		{"pool.resolve_interval", p.ResolveInterval, 30 * time.Second},
		{"pool.backend.weight", b.Weight, 1},
		{"pool.backend.max_sessions", b.MaxSessions, 0},
		{"pool.backend.tls", b.TLS, balancer.TLSNone},
		{"pool.backend.tls_verify", b.TLSVerify, true},
		{"pool.backend.ca_file", b.CAFile, ""},
		{"pool.backend.tls_server_name", b.TLSServerName, ""},
		{"pool.backend.tls_legacy", b.TLSLegacy, false},
		{"pool.backend.proxy_protocol", b.ProxyProtocol, balancer.ProxyOff},
		{"pool.backend.data_mode", b.DataMode, balancer.DataPassive},
		{"pool.backend.fix_pasv_address", b.FixPasvAddress, true},
		{"route", len(f.Routes), 0},
		{"limits.max_sessions", f.Limits.MaxSessions, 10000},
		{"limits.max_sessions_per_ip", f.Limits.MaxSessionsPerIP, 50},
		{"limits.logins_per_minute", f.Limits.LoginsPerMinute, 10},
		{"limits.login_burst", f.Limits.LoginBurst, 5},
		{"limits.attempts_per_minute", f.Limits.AttemptsPerMinute, 120},
		{"limits.ban_time", f.Limits.BanTime, time.Minute},
		{"limits.max_ban_time", f.Limits.MaxBanTime, time.Hour},
		{"limits.idle_timeout", f.Limits.IdleTimeout, 15 * time.Minute},
		{"limits.login_timeout", f.Limits.LoginTimeout, sec(60)},
		{"limits.shutdown_grace", f.Limits.ShutdownGrace, sec(60)},
		{"limits.backend_timeout", f.Limits.BackendTimeout, sec(10)},
		{"limits.greeting_timeout", f.Limits.GreetingTimeout, sec(30)},
		{"limits.tls_handshake_timeout", f.Limits.TLSHandshake, sec(10)},
		{"limits.data_timeout", f.Limits.DataTimeout, 5 * time.Minute},
		{"log.level", f.Log.Level, LevelInfo},
		{"log.format", f.Log.Format, FormatText},
		{"log.transfer_log", f.Log.TransferLog, ""},
		{"admin.address", f.Admin.Address, ""},
		{"admin.token_file", f.Admin.TokenFile, ""},
		{"pool.backend.name", b.Name, ""},
		{"cluster.redis_url", f.Cluster.RedisURL, ""},
		{"cluster.instance", f.Cluster.Instance, ""},
		// Hosting edge.
		{"listener.allow", len(f.Listeners[0].Allow), 0},
		{"listener.deny", len(f.Listeners[0].Deny), 0},
		{"tls.certificate", len(f.TLS.Certificates), 0},
		{"tls.cert_dir", f.TLS.CertDir, ""},
		{"tls.default_certificate", f.TLS.DefaultCertificate, ""},
		{"tls.client_auth", f.TLS.ClientAuth, tlsterm.ClientAuthNone},
		{"tls.client_ca_file", f.TLS.ClientCAFile, ""},
		{"tls.client_cert_user", f.TLS.ClientCertUser, tlsterm.CertUserOff},
		{"tls.acme.on_demand.allow", len(f.TLS.ACME.OnDemand.Allow), 0},
		{"tls.acme.on_demand.ask", f.TLS.ACME.OnDemand.Ask, ""},
		{"tls.acme.on_demand.per_minute", f.TLS.ACME.OnDemand.PerMinute, 10},
		{"tls.acme.on_demand.burst", f.TLS.ACME.OnDemand.Burst, 5},
		{"data.public_address_override", len(f.Data.AddressOverrides), 0},
		{"data.announce_port_offset", f.Data.AnnouncePortOffset, 0},
		{"directory.file", f.Directory.File, ""},
		{"directory.url", f.Directory.URL, ""},
		{"directory.timeout", f.Directory.Timeout, 2 * time.Second},
		{"directory.cache_ttl", f.Directory.CacheTTL, 60 * time.Second},
		{"directory.on_error", f.Directory.OnError, directory.OnErrorRefuse},
		{"directory.domain_separator", f.Directory.DomainSeparator, ""},
		{"directory.auth_url", f.Directory.AuthURL, ""},
		{"directory.ca_file", f.Directory.CAFile, ""},
	}
	covered := map[string]bool{}
	for _, tt := range tests {
		covered[tt.key] = true
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s = %#v, want %#v", tt.key, tt.got, tt.want)
		}
	}
	// Every key with a default is checked here: all but the tables and
	// the required keys.
	noDefault := []string{"listener", "listener.address", "tls", "tls.acme", "data", "pool", "pool.name",
		"pool.backend", "pool.backend.address", "route.user", "route.host", "route.pool", "limits", "log", "admin",
		"tls.acme.on_demand", "tls.certificate.cert_file", "tls.certificate.key_file",
		"data.public_address_override.cidr", "data.public_address_override.address", "route.allow", "route.deny", "directory", "cluster"}
	for _, k := range Keys() {
		if !covered[k] && !slices.Contains(noDefault, k) {
			t.Errorf("no default test for %s", k)
		}
	}
	if f.UsesACME() {
		t.Errorf("UsesACME() = true without [tls.acme]")
	}
}

// TestConfigExplicitValues checks that keys given in the file override the
// defaults, including explicit zeros and false.
func TestConfigExplicitValues(t *testing.T) {
	tests := []struct {
		name, toml string
		check      func(*File) bool
	}{
		{"health_interval 0s turns checks off", `health_interval = "0s"`, func(f *File) bool { return f.Pools[0].HealthInterval == 0 }},
		{"panic false", `panic = false`, func(f *File) bool { return !f.Pools[0].Panic }},
		{"greeting_timeout", "[limits]\ngreeting_timeout = \"45s\"", func(f *File) bool { return f.Limits.GreetingTimeout == 45*time.Second }},
		{"max_sessions 0", "[[pool.backend]]\naddress = \"h:21\"\nmax_sessions = 0", func(f *File) bool { return f.Pools[0].Backends[1].MaxSessions == 0 }},
		{"tls_verify false", "[[pool.backend]]\naddress = \"h:21\"\ntls_verify = false", func(f *File) bool {
			return !f.Pools[0].Backends[1].TLSVerify && f.Pools[0].Backends[0].TLSVerify
		}},
		{"fix_pasv_address false", "[[pool.backend]]\naddress = \"h:21\"\nfix_pasv_address = false", func(f *File) bool { return !f.Pools[0].Backends[1].FixPasvAddress }},
		{"allow_active false", "[data]\nallow_active = false", func(f *File) bool { return !f.Data.AllowActive }},
		{"logins_per_minute 0 needs no burst", "[limits]\nlogins_per_minute = 0\nlogin_burst = 0", func(f *File) bool { return f.Limits.LoginsPerMinute == 0 }},
		{"unlimited sessions", "[limits]\nmax_sessions = 0\nmax_sessions_per_ip = 100000", func(f *File) bool { return f.Limits.MaxSessions == 0 }},
		{"single port", "[data]\nport_range = \"2020\"", func(f *File) bool { return f.Data.PortRange == nat.PortRange{First: 2020, Last: 2020} }},
		{"durations", "[limits]\nidle_timeout = \"1h30m\"", func(f *File) bool { return f.Limits.IdleTimeout == 90*time.Minute }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The snippet goes after the pool header so bare keys land in it.
			s := strings.Replace(minimalConfig, "name = \"default\"\n", "name = \"default\"\n"+firstTableKeys(tt.toml), 1) + restTables(tt.toml)
			f := mustParse(t, s)
			if !tt.check(f) {
				t.Errorf("check failed for\n%s", s)
			}
		})
	}
}

// firstTableKeys returns the bare keys of snippet before its first header,
// restTables the rest.
func firstTableKeys(snippet string) string {
	if i := strings.Index(snippet, "["); i >= 0 {
		return snippet[:i]
	}
	return snippet + "\n"
}

func restTables(snippet string) string {
	if i := strings.Index(snippet, "["); i >= 0 {
		return "\n" + snippet[i:] + "\n"
	}
	return ""
}

func TestConfigListenerPoolAndName(t *testing.T) {
	f := mustParse(t, `
[[listener]]
address = "[::]:21"
[[listener]]
address = ":990"
tls = "implicit"
name = "ftps"
[tls.acme]
domains = ["ftp.example.com"]
email = "ops@example.com"
storage = "/tmp"
[[pool]]
name = "only"
[[pool.backend]]
address = "b:21"
`)
	if got := f.Listeners[0].Pool + "," + f.Listeners[1].Pool; got != "only,only" {
		t.Errorf("pools = %s, want the only pool for both", got)
	}
	if got := f.Listeners[0].Name + "," + f.Listeners[1].Name; got != "[::]:21,ftps" {
		t.Errorf("names = %s", got)
	}
	if !f.UsesACME() {
		t.Errorf("UsesACME() = false with [tls.acme]")
	}
}

func TestConfigLoadResolvesPaths(t *testing.T) {
	f, err := Load("testdata/config/full.toml")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join("testdata", "config")
	for name, got := range map[string]string{
		"tls.cert_file":              f.TLS.CertFile,
		"tls.key_file":               f.TLS.KeyFile,
		"pool[0].backend[0].ca_file": f.Pools[0].Backends[0].CAFile,
		"log.transfer_log":           f.Log.TransferLog,
	} {
		if filepath.Dir(got) != dir {
			t.Errorf("%s = %q, want it in %s", name, got, dir)
		}
	}
	if f.TLS.ACME.Storage != "/var/lib/ftpsproxy/acme" {
		t.Errorf("absolute storage changed: %q", f.TLS.ACME.Storage)
	}
	// ParseConfig takes paths relative to the working directory, where
	// cert.pem does not exist.
	data, _ := os.ReadFile("testdata/config/full.toml")
	_, err = Parse(data)
	if err == nil || !strings.Contains(err.Error(), `tls.cert_file: cannot read "cert.pem"`) {
		t.Errorf("Parse(full.toml) error = %v, want cert.pem not found", err)
	}
}

func TestConfigLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"))
	var ce *Error
	if !errors.As(err, &ce) || len(ce.Problems) != 1 || ce.Problems[0].Key != "config" {
		t.Fatalf("err = %#v, want one problem with key config", err)
	}
}

// TestConfigTypedValues checks that values are parsed into their types once, at load.
func TestConfigTypedValues(t *testing.T) {
	f, err := Load("testdata/config/full.toml")
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{
		netip.MustParsePrefix("10.1.0.0/16"),
		netip.MustParsePrefix("192.0.2.7/32"),
		netip.MustParsePrefix("2001:db8::/32"),
	}
	if got := f.Listeners[0].TrustedProxies; !slices.Equal(got, want) {
		t.Errorf("trusted_proxies = %v, want %v", got, want)
	}
	if got := f.Data.PublicAddress; got != netip.MustParseAddr("203.0.113.10") {
		t.Errorf("public_address = %v", got)
	}
	if got := f.Data.PortRange; got != (nat.PortRange{First: 40000, Last: 40099}) {
		t.Errorf("port_range = %v", got)
	}
	if got := f.Listeners[0].TLS; got != proxy.TLSExplicit || !got.OffersAUTH() || got.RequiresAUTH() || got.Implicit() {
		t.Errorf("listener[0].tls = %v", got)
	}
	if got := f.Pools[1].Policy; got != balancer.UserHash {
		t.Errorf("pool[1].policy = %v", got)
	}
	if got := f.Pools[0].Backends[0]; got.TLS != balancer.TLSExplicit || got.ProxyProtocol != balancer.ProxyV2 || got.DataMode != balancer.DataActive {
		t.Errorf("pool[0].backend[0] = %+v", got)
	}
	tok, err := Load("testdata/config/admin_token_file.toml")
	if err != nil {
		t.Fatal(err)
	}
	if tok.Admin.Token != "test-token-not-secret" {
		t.Errorf("admin token = %q, want the file's content without its newline", tok.Admin.Token)
	}
}

func TestConfigErrorFormat(t *testing.T) {
	e := &Error{Problems: []Problem{{"a", "x"}, {"b[0].c", "y"}}}
	if got, want := e.Error(), "a: x\nb[0].c: y"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func FuzzParse(f *testing.F) {
	// Seeds: the example and every golden input, plus a few edge shapes.
	seeds, _ := filepath.Glob("testdata/config/*.toml")
	seeds = append(seeds, exampleConfig)
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(""))
	f.Add([]byte("listener = 1"))                                 // scalar where an array of tables is expected
	f.Add([]byte("[[pool]]\n[[pool.backend]]\n[pool.backend.x]")) // deeper than the struct tree
	f.Add([]byte("\"\\n\" = 1"))                                  // a control character in an unknown key
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data)
		if err == nil {
			if cfg == nil || len(cfg.Listeners) == 0 || len(cfg.Pools) == 0 {
				t.Fatalf("valid config without listeners or pools: %+v", cfg)
			}
			for _, l := range cfg.Listeners {
				if !slices.ContainsFunc(cfg.Pools, func(p Pool) bool { return p.Name == l.Pool }) {
					t.Fatalf("listener pool %q does not exist", l.Pool)
				}
			}
			_ = cfg.Summary()
			return
		}
		var ce *Error
		if !errors.As(err, &ce) || len(ce.Problems) == 0 {
			t.Fatalf("error %T %v is not a non-empty *Error", err, err)
		}
		keys := map[string]bool{}
		for _, p := range ce.Problems {
			if p.Key == "" || p.Msg == "" || strings.ContainsAny(p.Key+p.Msg, "\r\n") {
				t.Fatalf("bad problem %q", p)
			}
			if keys[p.Key] {
				t.Fatalf("two problems for %q", p.Key)
			}
			keys[p.Key] = true
		}
		// Same input, same report: no map order leaks into it.
		_, err2 := Parse(data)
		if err2 == nil || err2.Error() != err.Error() {
			t.Fatalf("second parse differs:\n%v\n---\n%v", err, err2)
		}
	})
}
