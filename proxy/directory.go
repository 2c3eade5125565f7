package proxy

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/directory"
)

// choice is where a login goes and with which credentials.
type choice struct {
	pool    *balancer.Pool
	backend *balancer.Backend // set: this backend of pool only (a target naming a backend address)
	by      string            // auth, directory, url, route or listener (logged as by=)
	authed  bool              // the authentication service allowed the login
	route   string            // route[i] when by is route
	user    string            // sent to the backend in USER
	pass    string            // sent to the backend in PASS
}

// HasTarget reports whether t names a pool or a backend address of c: the only places a
// directory or a service may send a login.
func (c *Config) HasTarget(t string) bool {
	p, _ := c.target(t, directory.KindAny)
	return p != nil
}

// target resolves a directory target of kind k: a pool by name, or the backend with that
// configured address (and its pool). Nothing else can be reached.
func (c *Config) target(t string, k directory.Kind) (*balancer.Pool, *balancer.Backend) {
	if k != directory.KindBackend {
		if p := c.pool(t); p != nil {
			return p, nil
		}
	}
	if k != directory.KindPool {
		for _, p := range c.Pools {
			for _, b := range p.Backends {
				if b.Config.Address == t {
					return p, b
				}
			}
		}
	}
	return nil, nil
}

// choose decides the backend and credentials of a login: the authentication service (when
// configured), then the directory (file, then lookup service), then [[route]], then the
// listener's pool. A nil choice means the login was refused and answered already (530, the
// error being the write's); an error ends the session.
func (s *session) choose(pass string) (*choice, error) {
	dir := s.cfg.Directory
	host := s.host
	if host == "" {
		host = s.sni
	}
	if dir == nil {
		pool, why, err := s.route(host)
		if err != nil {
			return nil, err
		}
		return routeChoice(pool, why, s.user, pass)
	}
	local, domain, err := directory.SplitUser(s.user, dir.Config().DomainSeparator)
	if err != nil {
		return nil, s.loginRefused("bad user name", err)
	}
	if domain != "" {
		host = domain
	}
	ch := &choice{user: local, pass: pass}
	var t target
	if dir.HasAuth() {
		ok, err := s.authenticate(dir, ch, &t)
		if !ok {
			return nil, err
		}
	}
	if t.name == "" {
		q := directory.Query{User: s.user, Domain: domain, ClientIP: s.clientAddr.Addr(), Listener: s.lc.name(), SNI: s.sni, Host: host}
		if err := s.lookup(dir, q, ch, local, &t); err != nil {
			return nil, err
		}
	}
	if t.name != "" {
		if ch.pool, ch.backend = s.cfg.target(t.name, t.kind); ch.pool == nil {
			s.srv.obs.Login("error")
			s.log.Warn("directory target is not in the config; login refused", "target", t.name, "by", ch.by)
			return nil, end421(CauseNoBackend, fmt.Errorf("%s target %q is not a pool or backend of the config", ch.by, t.name))
		}
		return ch, nil
	}
	pool, why, err := s.route(host)
	if err != nil {
		return nil, err
	}
	if why == "listener" && domain != "" {
		return nil, s.loginRefused("no directory entry or route for the domain", nil, "domain", domain)
	}
	ch2, err := routeChoice(pool, why, ch.user, ch.pass)
	if ch2 != nil {
		ch2.authed = ch.authed
	}
	return ch2, err
}

// target is a pool or backend named by the directory or a service.
type target struct {
	name string
	kind directory.Kind
}

// authenticate asks the authentication service and applies its answer to ch and t. It
// returns false when the login ends here: refused with 530 (err is the write's) or, with the
// service failing, with a 421 error. Never fail open.
func (s *session) authenticate(dir *directory.Directory, ch *choice, t *target) (bool, error) {
	ans, err := dir.Authenticate(s.ctx, s.authRequest(ch.pass))
	if err != nil {
		s.srv.obs.DirectoryLookup("auth", "error", false)
		s.srv.obs.Login("error")
		s.log.Warn("authentication service failed; login refused", "err", err)
		return false, end421(CauseNoBackend, err)
	}
	if !ans.Allow {
		s.srv.obs.DirectoryLookup("auth", "deny", false)
		return false, s.loginRefused("denied by the authentication service", nil)
	}
	s.srv.obs.DirectoryLookup("auth", "allow", false)
	ch.authed, ch.by = true, "auth"
	*t = target{ans.Target, ans.Kind}
	setIf(&ch.user, ans.BackendUser)
	setIf(&ch.pass, ans.BackendPassword)
	return true, nil
}

// lookup asks the directory (file, then lookup service) for q and applies a found answer to
// ch and t. An error (the service failing with on_error = refuse) ends the session.
func (s *session) lookup(dir *directory.Directory, q directory.Query, ch *choice, local string, t *target) error {
	ans, found, err := dir.Lookup(s.ctx, q)
	switch {
	case err != nil:
		s.srv.obs.DirectoryLookup(ans.Source, "error", false)
		if dir.Config().OnError == directory.OnErrorRefuse {
			s.srv.obs.Login("error")
			s.log.Warn("directory lookup failed; login refused (on_error = refuse)", "err", err)
			return end421(CauseNoBackend, err)
		}
		s.log.Warn("directory lookup failed; using the routes (on_error = routes)", "err", err)
	case found:
		s.srv.obs.DirectoryLookup(ans.Source, "found", ans.Cached)
		*t = target{ans.Target, ans.Kind}
		ch.by = directoryBy(ans.Source)
		if ch.user == local { // a backend user from the authentication service wins
			setIf(&ch.user, ans.BackendUser)
		}
	default:
		s.srv.obs.DirectoryLookup(ans.Source, "not_found", ans.Cached)
	}
	return nil
}

// route is the [[route]] (or the listener's pool) for this session's user and host, with the
// route's client access list applied.
func (s *session) route(host string) (*balancer.Pool, string, error) {
	pool, why, r := s.cfg.route(s.lc, s.user, host)
	if err := s.checkRouteAccess(r, why); err != nil {
		return nil, why, err
	}
	return pool, why, nil
}

// routeChoice is a choice made by [[route]] or the listener's pool.
func routeChoice(pool *balancer.Pool, why, user, pass string) (*choice, error) {
	if pool == nil {
		return nil, end421(CauseNoBackend, fmt.Errorf("no pool for %s", why))
	}
	ch := &choice{pool: pool, by: why, user: user, pass: pass}
	if strings.HasPrefix(why, "route[") {
		ch.by, ch.route = "route", why
	}
	return ch, nil
}

func directoryBy(source string) string {
	if source == "url" {
		return "url"
	}
	return "directory"
}

func setIf(dst *string, v string) {
	if v != "" {
		*dst = v
	}
}

// logAttrs are the login log's attributes saying how the backend was chosen (never the
// password).
func (ch *choice) logAttrs(client string) []any {
	a := []any{"pool", ch.pool.Name, "policy", ch.pool.Policy.String(), "by", ch.by}
	if ch.route != "" {
		a = append(a, "route", ch.route)
	}
	if ch.authed {
		a = append(a, "auth", "allow")
	}
	if ch.user != client {
		a = append(a, "backend_user", ch.user)
	}
	return a
}

// loginRefused answers a login the proxy refuses itself exactly as a wrong password (530,
// counted as a failed login), without dialling anything.
func (s *session) loginRefused(reason string, err error, attrs ...any) error {
	attrs = append(attrs, "reason", reason)
	if err != nil {
		attrs = append(attrs, "err", err)
	}
	s.srv.obs.Login("failed")
	return s.failedLogin("login refused by the proxy", attrs...)
}

// authRequest is what the authentication service is told about this login.
func (s *session) authRequest(pass string) directory.AuthRequest {
	r := directory.AuthRequest{User: s.user, Password: pass, ClientIP: s.clientAddr.Addr().String(), TLS: s.tlsOn}
	if s.clientCert != nil {
		r.ClientCertSubject = s.certSubject
	}
	return r
}

// connectChoice connects to the backend of a choice: the one backend a target named, or the
// pool's ordering.
func (s *session) connectChoice(ch *choice) (net.Conn, *balancer.Backend, error) {
	if ch.backend == nil {
		return s.connectBackend(ch.pool)
	}
	b := ch.backend
	if !b.Healthy() {
		return nil, nil, fmt.Errorf("backend %s: %w", b, balancer.ErrNoBackend)
	}
	if !b.Acquire() {
		return nil, nil, errBackendFull
	}
	conn, err := s.dialReported(ch.pool, b)
	if err != nil {
		b.Release()
		return nil, nil, errors.Join(balancer.ErrNoBackend, err)
	}
	return conn, b, nil
}
