package admin

import (
	"sync/atomic"

	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/nat"
	"github.com/ftpsproxy/ftpsproxy/proxy"
	"github.com/ftpsproxy/ftpsproxy/tlsterm"
)

// Source is the running proxy as the admin server and the scrape-time gauges see it. Methods
// are called from HTTP handlers and must be safe for concurrent use.
type Source interface {
	// Sessions returns the number of client sessions running.
	Sessions() int
	// Listeners returns the client-facing listeners. Name must be the name the proxy passes
	// to Observer.SessionStarted.
	Listeners() []ListenerInfo
	// Pools returns the pools in force; a reload may return a different slice each time.
	Pools() []*balancer.Pool
	// PortsInUse returns the number of passive data ports leased.
	PortsInUse() int
	// PortRange returns the passive data-port range.
	PortRange() nat.PortRange
	// Accepting reports whether the proxy takes new sessions (false while draining).
	Accepting() bool
}

// BackendLister is a Source that also knows backends removed from the config that still run
// sessions, and the backends' identity across reloads (a balancer.Registry).
type BackendLister interface {
	// Backends lists every backend in force, then the removed ones with sessions left.
	Backends() []balancer.BackendView
}

// ListenerInfo describes one client-facing listener for the status page.
type ListenerInfo struct {
	Name    string // as in metrics labels: the configured name, else the address
	Address string // the bound address when known, else the configured one
	TLS     string // none, explicit, required or implicit
	Pool    string // default pool
}

// ProxySource adapts a *proxy.Server to Source. Set Draining when shutdown starts so /healthz
// turns 503 and load balancers in front of the proxy stop sending clients.
type ProxySource struct {
	srv   *proxy.Server
	addrs []string // bound listener addresses, in config order

	// Draining makes Accepting report false.
	Draining atomic.Bool

	// Registry, when set, supplies removed backends (BackendLister) and the admin API's
	// backend lookups. Set it before the admin server starts.
	Registry *balancer.Registry
}

var _ Source = (*ProxySource)(nil)

// ServerSource returns a Source reading p. Create it after p.Listen, so the listeners' bound
// addresses (which a reload cannot change) are known; before that the configured addresses
// are shown.
func ServerSource(p *proxy.Server) *ProxySource {
	s := &ProxySource{srv: p}
	for _, a := range p.Addrs() {
		s.addrs = append(s.addrs, a.String())
	}
	return s
}

// Sessions implements Source.
func (s *ProxySource) Sessions() int { return s.srv.Sessions() }

// Listeners implements Source.
func (s *ProxySource) Listeners() []ListenerInfo {
	ls := s.srv.Config().Listeners
	out := make([]ListenerInfo, len(ls))
	for i, l := range ls {
		// The proxy names a listener by its configured address when it has no name.
		info := ListenerInfo{Name: l.Name, Address: l.Address, TLS: l.TLS.String(), Pool: l.Pool}
		if info.Name == "" {
			info.Name = l.Address
		}
		if len(s.addrs) == len(ls) {
			info.Address = s.addrs[i]
		}
		out[i] = info
	}
	return out
}

// Pools implements Source.
func (s *ProxySource) Pools() []*balancer.Pool { return s.srv.Config().Pools }

// PortsInUse implements Source.
func (s *ProxySource) PortsInUse() int { return s.srv.Allocator().InUse() }

// PortRange implements Source.
func (s *ProxySource) PortRange() nat.PortRange { return s.srv.Allocator().Range() }

// Certificates returns the client-facing certificates in force (none without TLS), for
// ftpsproxy_tls_certificate_expiry_timestamp_seconds.
func (s *ProxySource) Certificates() []tlsterm.CertInfo { return s.srv.Config().TLS.Certificates() }

// Accepting implements Source.
func (s *ProxySource) Accepting() bool { return !s.Draining.Load() }

// Backends implements BackendLister: the registry's backends, or the pools in force.
func (s *ProxySource) Backends() []balancer.BackendView {
	if s.Registry != nil {
		return s.Registry.Backends()
	}
	var out []balancer.BackendView
	for _, p := range s.Pools() {
		for _, b := range p.Backends {
			out = append(out, balancer.BackendView{Pool: p.Name, Backend: b})
		}
	}
	return out
}
