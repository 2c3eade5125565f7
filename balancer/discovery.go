package balancer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultResolveInterval is how often host names of backends and pool.srv names are
// resolved again (pool.resolve_interval).
const DefaultResolveInterval = 30 * time.Second

// resolveTimeout bounds one round of lookups of one name (a SRV name and its targets).
const resolveTimeout = 5 * time.Second

// maxDiscovered bounds the backends one name may yield: a hostile or broken DNS server
// cannot make the proxy probe thousands of addresses.
const maxDiscovered = 256

// Resolver is what discovery needs of a DNS resolver; *net.Resolver implements it (in
// production net.DefaultResolver, which follows /etc/resolv.conf).
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
	LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error)
}

// Discovery turns backends written with a host name, and pools with an SRV name, into one
// backend per address found in DNS. It keeps the last good answer of every name: a failed
// lookup (an error, or an empty answer) leaves the backends of the previous answer in place,
// and is logged (at most once per name per minute) and counted.
type Discovery struct {
	// OnFailure, when set before the first Resolve, is called for every failed lookup (a
	// metric counts them).
	OnFailure func()

	resolver Resolver
	log      *slog.Logger

	mu      sync.Mutex
	answers map[string][]found   // last good answer by name key ("a:host", "srv:name")
	due     map[string]time.Time // when a name is to be resolved again
	logged  map[string]time.Time // when a failure of a name was last logged

	failures atomic.Uint64
}

// found is one address an answer gave, with the SRV record's weight and priority.
type found struct {
	addr     string // ip:port
	weight   int
	priority int
}

// NewDiscovery returns a discovery that asks r (nil: net.DefaultResolver).
func NewDiscovery(r Resolver, log *slog.Logger) *Discovery {
	if r == nil {
		r = net.DefaultResolver
	}
	return &Discovery{resolver: r, log: log, answers: map[string][]found{}, due: map[string]time.Time{}, logged: map[string]time.Time{}}
}

// Failures returns how many lookups failed since the discovery was made.
func (d *Discovery) Failures() uint64 { return d.failures.Load() }

// Dynamic reports whether c has anything to resolve: an SRV name or a backend host name.
func (c PoolConfig) Dynamic() bool {
	if c.SRV != "" {
		return true
	}
	return slices.ContainsFunc(c.Backends, func(b BackendConfig) bool { return hostName(b.Address) != "" })
}

// hostName returns the host of a host:port address when it is a name rather than an IP.
func hostName(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return ""
	}
	return host
}

func (c PoolConfig) resolveInterval() time.Duration {
	if c.ResolveInterval > 0 {
		return c.ResolveInterval
	}
	return DefaultResolveInterval
}

// Resolve looks up every name of pools that is due (all of them when force is set) and
// reports whether any answer differs from the one before.
func (d *Discovery) Resolve(ctx context.Context, pools []PoolConfig, force bool) (changed bool) {
	now := time.Now()
	for _, p := range pools {
		if p.SRV != "" && d.take("srv:"+p.SRV, now, p.resolveInterval(), force) {
			changed = d.update(ctx, "srv:"+p.SRV, func(ctx context.Context) ([]found, error) { return d.lookupSRV(ctx, p.SRV) }) || changed
		}
		for _, b := range p.Backends {
			host := hostName(b.Address)
			if host == "" || !d.take("a:"+host, now, p.resolveInterval(), force) {
				continue
			}
			changed = d.update(ctx, "a:"+host, func(ctx context.Context) ([]found, error) { return d.lookupHost(ctx, host, 0, 1, 0) }) || changed
		}
	}
	return changed
}

// take reports whether the name key is due now and, if so, schedules its next lookup.
func (d *Discovery) take(key string, now time.Time, every time.Duration, force bool) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !force && now.Before(d.due[key]) {
		return false
	}
	d.due[key] = now.Add(every)
	return true
}

// update runs one lookup of key and keeps its answer when it is good.
func (d *Discovery) update(ctx context.Context, key string, lookup func(context.Context) ([]found, error)) bool {
	lctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	got, err := lookup(lctx)
	cancel()
	if err == nil && len(got) == 0 {
		err = errors.New("no addresses")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		d.failures.Add(1)
		if d.OnFailure != nil {
			d.OnFailure()
		}
		if time.Since(d.logged[key]) >= time.Minute {
			d.logged[key] = time.Now()
			d.log.Warn("DNS lookup failed; the last good answer stays in use", "name", key, "err", err, "kept", len(d.answers[key]))
		}
		return false
	}
	slices.SortFunc(got, func(a, b found) int { return cmp.Compare(a.addr, b.addr) })
	if len(got) > maxDiscovered {
		got = got[:maxDiscovered]
	}
	prev, had := d.answers[key]
	d.answers[key] = got
	if had && slices.Equal(prev, got) {
		return false
	}
	d.log.Info("DNS answer changed", "name", key, "addresses", addrList(got))
	return true
}

func addrList(fs []found) string {
	s := make([]string, len(fs))
	for i, f := range fs {
		s[i] = f.addr
	}
	return strings.Join(s, ",")
}

// lookupHost returns the addresses of host with port, weight and priority.
func (d *Discovery) lookupHost(ctx context.Context, host string, port, weight, priority int) ([]found, error) {
	ips, err := d.resolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	out := make([]found, 0, len(ips))
	for _, ip := range ips {
		a := net.JoinHostPort(ip.Unmap().String(), strconv.Itoa(port))
		out = append(out, found{addr: a, weight: weight, priority: priority})
	}
	return out, nil
}

// lookupSRV resolves an SRV name (RFC 2782) and each target's addresses. A target "." says
// the service is not offered there and is skipped; a target that does not resolve is skipped
// as long as another one does.
func (d *Discovery) lookupSRV(ctx context.Context, name string) ([]found, error) {
	_, srvs, err := d.resolver.LookupSRV(ctx, "", "", name)
	if err != nil {
		return nil, err
	}
	var out []found
	var lastErr error
	for _, s := range srvs {
		target := strings.TrimSuffix(s.Target, ".")
		if target == "" || len(out) >= maxDiscovered {
			continue
		}
		fs, err := d.lookupHost(ctx, target, int(s.Port), max(int(s.Weight), DefaultWeight), int(s.Priority))
		if err != nil {
			lastErr = fmt.Errorf("target %s: %w", target, err)
			continue
		}
		out = append(out, fs...)
	}
	if len(out) == 0 && lastErr != nil {
		return nil, lastErr
	}
	return out, nil
}

// Expand returns pools with every backend written with a host name replaced by one backend
// per address of its last good answer (the entry's settings, the address's port taken from
// the entry), and the backends of each pool's SRV name added (the default backend settings,
// with the record's port, weight and priority). A name that never resolved stays as it is: a
// backend dialed by name, or no backend for an SRV name.
func (d *Discovery) Expand(pools []PoolConfig) []PoolConfig {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]PoolConfig, len(pools))
	for i, p := range pools {
		q := p
		q.Backends = nil
		for _, b := range p.Backends {
			host := hostName(b.Address)
			ans, ok := d.answers["a:"+host]
			if host == "" || !ok {
				q.Backends = append(q.Backends, b)
				continue
			}
			_, port, _ := net.SplitHostPort(b.Address)
			for _, f := range ans {
				nb := b
				nb.Address = net.JoinHostPort(f.host(), port)
				if b.Name != "" {
					nb.Name = b.Name + "@" + nb.Address
				}
				q.Backends = append(q.Backends, nb)
			}
		}
		for _, f := range d.answers["srv:"+p.SRV] {
			q.Backends = append(q.Backends, BackendConfig{Address: f.addr, Weight: f.weight, Priority: f.priority})
		}
		out[i] = q
	}
	return out
}

func (f found) host() string {
	h, _, _ := net.SplitHostPort(f.addr)
	return h
}

// Run resolves the names of pools as their resolve_interval says until ctx ends, calling
// changed after a round whose answers differ from the ones before.
func (d *Discovery) Run(ctx context.Context, pools []PoolConfig, changed func()) {
	every := time.Duration(0)
	for _, p := range pools {
		if p.Dynamic() && (every == 0 || p.resolveInterval() < every) {
			every = p.resolveInterval()
		}
	}
	if every == 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if d.Resolve(ctx, pools, false) && ctx.Err() == nil {
			changed()
		}
	}
}
