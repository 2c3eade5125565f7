package config

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ftpsproxy/ftpsproxy/balancer"
)

// validate checks the decoded File and completes the defaults that depend on other keys.
// Values were parsed into their types while decoding; what is left is ranges, required keys,
// references between tables, and the files the config names.
func (c *checker) validate(f *File) {
	pools, known := c.checkPools(f)
	c.checkListeners(f, pools, known)
	c.checkTLS(f)
	c.checkData(f)
	c.checkRoutes(f, pools, known)
	c.checkLimits(f)
	c.checkLog(f)
	c.checkAdmin(f)
	c.checkCluster(f)
	c.checkSockets(f)
	c.checkEdge(f)
	c.checkDirectory(f)
}

// checkDirectory validates [directory]: on_error was parsed while decoding; the file itself
// is loaded when the proxy starts (and on reloads), where a bad line is reported with its
// number.
func (c *checker) checkDirectory(f *File) {
	d := f.Directory
	c.positive("directory.timeout", d.Timeout)
	c.positive("directory.cache_ttl", d.CacheTTL)
	if err := d.Validate(); err != nil {
		c.add("directory", strings.TrimPrefix(err.Error(), "directory."))
	}
	if d.CAFile != "" {
		c.readFile("directory.ca_file", d.CAFile)
	}
}

func (c *checker) positive(key string, d time.Duration) {
	if d <= 0 {
		c.addf(key, "must be more than 0s, got %q", d.String())
	}
}

func (c *checker) atLeast(key string, n, min int, note string) {
	if n < min {
		c.addf(key, "must be >= %d%s, got %d", min, note, n)
	}
}

// checkPools validates the pools and returns the index of each name, and whether every pool
// has one (else naming a pool cannot be judged).
func (c *checker) checkPools(f *File) (names map[string]int, known bool) {
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
		if p.HealthInterval < 0 {
			c.addf(k+".health_interval", "must not be negative (\"0s\" turns health checks off), got %q", p.HealthInterval.String())
		}
		c.positive(k+".health_timeout", p.HealthTimeout)
		c.atLeast(k+".health_rise", p.HealthRise, 1, "")
		c.atLeast(k+".health_fall", p.HealthFall, 1, "")
		if len(p.Backends) == 0 && p.SRV == "" {
			c.add(k+".backend", "at least one [[pool.backend]] (or pool.srv) is required")
		}
		if p.SRV != "" && !validSRVName(p.SRV) {
			c.addf(k+".srv", "%q is not an SRV name like \"_ftp._tcp.farm.example\"", p.SRV)
		}
		c.positive(k+".resolve_interval", p.ResolveInterval)
		addrs := map[string]int{}
		for j := range p.Backends {
			c.checkBackend(fmt.Sprintf("%s.backend[%d]", k, j), &p.Backends[j], addrs, j)
		}
	}
	return names, known
}

func (c *checker) checkBackend(k string, b *Backend, addrs map[string]int, j int) {
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
	c.atLeast(k+".weight", b.Weight, 1, "")
	c.atLeast(k+".max_sessions", b.MaxSessions, 0, " (0: unlimited)")
	if b.TLS != balancer.TLSNone && b.TLSVerify && b.CAFile != "" {
		c.certFile(k+".ca_file", b.CAFile)
	}
	if strings.ContainsAny(b.TLSServerName, " \t/") {
		c.addf(k+".tls_server_name", "%q is not a host name", b.TLSServerName)
	}
}

func (c *checker) checkListeners(f *File, pools map[string]int, poolsKnown bool) {
	if len(f.Listeners) == 0 {
		c.add("listener", "at least one [[listener]] is required")
	}
	names := map[string]int{}
	for i := range f.Listeners {
		l := &f.Listeners[i]
		k := fmt.Sprintf("listener[%d]", i)
		c.hostPort(k+".address", l.Address, false)
		switch _, ok := pools[l.Pool]; {
		case !poolsKnown:
		case l.Pool == "" && len(f.Pools) == 1:
			l.Pool = f.Pools[0].Name
		case l.Pool == "":
			c.addf(k+".pool", "required when there is more than one pool (%s)", poolNames(f))
		case !ok:
			c.addf(k+".pool", "unknown pool %q", l.Pool)
		}
		if l.ProxyProtocol.On() && len(l.TrustedProxies) == 0 && !c.seen[k+".trusted_proxies"] {
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

func poolNames(f *File) string {
	var names []string
	for _, p := range f.Pools {
		names = append(names, strconv.Quote(p.Name))
	}
	return strings.Join(names, ", ")
}

func (c *checker) checkTLS(f *File) {
	t := &f.TLS
	files := t.hasCertFiles()
	acme := c.defined["tls.acme"]
	switch {
	case files && acme:
		c.add("tls", "set either cert_file and key_file or [tls.acme], not both")
	case !files && !acme:
		for i, l := range f.Listeners {
			if l.TLS.Enabled() {
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
		c.keyPair("tls.cert_file", "tls.key_file", t.CertFile, t.KeyFile)
	}
	c.checkACME(f, acme)
}

func (c *checker) checkACME(f *File, acme bool) {
	a := &f.TLS.ACME
	if acme && len(a.Domains) == 0 && !a.OnDemand.Enabled() {
		c.add("tls.acme.domains", "at least one domain is required")
	}
	for i, d := range a.Domains {
		k := fmt.Sprintf("tls.acme.domains[%d]", i)
		switch {
		case strings.HasPrefix(d, "*."):
			c.addf(k, "wildcard %q needs the DNS-01 challenge, which ftpsproxy does not answer (it uses HTTP-01)", d)
		case !isDomain(d):
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
	switch {
	case a.Storage == "":
		c.add("tls.acme.storage", "required (certificates and account keys are kept there)")
	case f.UsesACME():
		c.storageDir("tls.acme.storage", a.Storage)
	}
	if a.HTTPAddress == "" {
		c.add("tls.acme.http_address", "required: the HTTP-01 challenge is answered there (usually \":80\")")
	} else {
		c.hostPort("tls.acme.http_address", a.HTTPAddress, false)
	}
}

// isDomain accepts an IP address or a DNS name of letters, digits and hyphens (certmagic
// issues for both).
func isDomain(s string) bool {
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

func (c *checker) checkData(f *File) {
	d := &f.Data
	switch a := d.PublicAddress; {
	case !a.IsValid():
	case !a.Is4():
		c.addf("data.public_address", "%q is not an IPv4 address (227 replies carry IPv4 only)", a.String())
	case a.IsUnspecified():
		c.add("data.public_address", `"0.0.0.0" cannot be announced; leave it empty to announce the local address`)
	}
	c.positive("data.connect_timeout", d.ConnectTimeout)
}

func (c *checker) checkRoutes(f *File, pools map[string]int, poolsKnown bool) {
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

func (c *checker) checkLimits(f *File) {
	l := &f.Limits
	c.atLeast("limits.max_sessions", l.MaxSessions, 0, " (0: unlimited)")
	if l.MaxSessions > 0 && l.MaxSessionsPerIP > l.MaxSessions {
		c.addf("limits.max_sessions_per_ip", "%d is more than max_sessions (%d)", l.MaxSessionsPerIP, l.MaxSessions)
	}
	c.atLeast("limits.max_sessions_per_ip", l.MaxSessionsPerIP, 0, " (0: unlimited)")
	c.atLeast("limits.logins_per_minute", l.LoginsPerMinute, 0, " (0: no limit)")
	if l.LoginsPerMinute > 0 {
		c.atLeast("limits.login_burst", l.LoginBurst, 1, " when logins_per_minute is on")
	}
	c.atLeast("limits.login_burst", l.LoginBurst, 0, "")
	c.atLeast("limits.attempts_per_minute", l.AttemptsPerMinute, 0, " (0: no limit)")
	c.positive("limits.ban_time", l.BanTime)
	c.positive("limits.max_ban_time", l.MaxBanTime)
	if l.BanTime > 0 && l.MaxBanTime > 0 && l.MaxBanTime < l.BanTime {
		c.addf("limits.max_ban_time", "%v is less than ban_time (%v)", l.MaxBanTime, l.BanTime)
	}
	c.positive("limits.idle_timeout", l.IdleTimeout)
	c.positive("limits.login_timeout", l.LoginTimeout)
	c.positive("limits.shutdown_grace", l.ShutdownGrace)
	c.positive("limits.backend_timeout", l.BackendTimeout)
	c.positive("limits.greeting_timeout", l.GreetingTimeout)
	c.positive("limits.tls_handshake_timeout", l.TLSHandshake)
	c.positive("limits.data_timeout", l.DataTimeout)
}

func (c *checker) checkLog(f *File) {
	if f.Log.TransferLog != "" {
		c.logFile("log.transfer_log", f.Log.TransferLog)
	}
}

func (c *checker) checkAdmin(f *File) {
	if f.Admin.Address != "" {
		c.hostPort("admin.address", f.Admin.Address, false)
	}
	if f.Admin.TokenFile != "" {
		if data, ok := c.readFile("admin.token_file", f.Admin.TokenFile); ok {
			f.Admin.Token = strings.TrimSpace(string(data))
			if f.Admin.Token == "" {
				c.addf("admin.token_file", "%q is empty", f.Admin.TokenFile)
			}
		}
	}
}

// checkSockets reports addresses that would collide when bound: two listeners, a listener
// and the admin or ACME HTTP server, or any of them inside the passive port range. A
// wildcard host collides with every host.
func (c *checker) checkSockets(f *File) {
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
			if host == o.host || isWildcard(host) || isWildcard(o.host) {
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
	if c.seen["data.port_range"] {
		return
	}
	r := f.Data.PortRange
	for _, port := range slices.Sorted(maps.Keys(ports)) {
		if port >= 0 && port <= 65535 && r.Contains(uint16(port)) {
			c.addf("data.port_range", "%q includes port %d of %s", r.String(), port, ports[port][0].key)
			break
		}
	}
}

func isWildcard(host string) bool {
	a, err := netip.ParseAddr(host)
	return host == "" || err == nil && a.IsUnspecified()
}

// hostPort checks a host:port address. The host may be empty (all interfaces) unless
// needHost.
func (c *checker) hostPort(key, addr string, needHost bool) (host string, port int, ok bool) {
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
	port, err = atoiPort(p)
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

// atoiPort parses a decimal port, at most 5 digits so nothing overflows.
func atoiPort(s string) (int, error) {
	if s == "" || len(s) > 5 || strings.Trim(s, "0123456789") != "" {
		return 0, errors.New("not a port number")
	}
	return strconv.Atoi(s)
}

// validSRVName reports whether s looks like an SRV owner name (RFC 2782): _service._proto
// followed by a domain, labels of 1 to 63 characters.
func validSRVName(s string) bool {
	labels := strings.Split(strings.TrimSuffix(s, "."), ".")
	if len(labels) < 3 || !strings.HasPrefix(labels[0], "_") || !strings.HasPrefix(labels[1], "_") {
		return false
	}
	for _, l := range labels {
		if len(l) == 0 || len(l) > 63 || strings.ContainsAny(l, " \t/:@") {
			return false
		}
	}
	return true
}

func (c *checker) checkCluster(f *File) {
	if f.Cluster.RedisURL == "" {
		if f.Cluster.Instance != "" {
			c.add("cluster.instance", "set, but cluster.redis_url is empty: nothing is shared")
		}
		return
	}
	u, err := url.Parse(f.Cluster.RedisURL)
	switch {
	case err != nil:
		c.addf("cluster.redis_url", "%v", err)
	case u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix":
		c.addf("cluster.redis_url", "scheme %q: want redis://host:port/db, rediss:// or unix://", u.Scheme)
	case u.Scheme != "unix" && u.Host == "":
		c.add("cluster.redis_url", "no host: want redis://host:port/db")
	}
	if strings.ContainsAny(f.Cluster.Instance, " \t/") {
		c.addf("cluster.instance", "%q: no spaces or slashes", f.Cluster.Instance)
	}
}
