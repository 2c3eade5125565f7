package admin

import (
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/proxy"
)

// Fixed label values. Each combination is registered at construction so its counter reads 0
// before first use; a value outside these sets is counted under "other" so a caller's typo
// cannot grow the label space.
var (
	loginOutcomes  = []string{"ok", "failed", "error", "rate_limited"}
	causes421      = []string{"no_backend", "too_many", "login_rate", "timeout", "shutdown", "backend_lost", "denied", "admin"}
	refusedReasons = []string{"foreign_peer", "bounce"}
	tlsSides       = []string{"client", "backend"}
	tlsResults     = []string{"ok", "error"}
	directions     = []string{"upload", "download"}
	xferResults    = []string{"complete", "failed", "aborted"}
	// dirLookups are the user directory's (source, result) pairs.
	dirLookups = [][2]string{{"file", "found"}, {"file", "not_found"}, {"url", "found"}, {"url", "not_found"},
		{"url", "error"}, {"auth", "allow"}, {"auth", "deny"}, {"auth", "error"}}
)

// otherLabel replaces a label value outside its fixed set.
const otherLabel = "other"

// recent421Size is how many 421s the status page can list.
const recent421Size = 50

// Event421 is one session ended with a 421.
type Event421 struct {
	Time  time.Time
	Cause string // proxy.Cause.String()
}

// CauseCount is the number of 421s of one cause since start.
type CauseCount struct {
	Cause string
	Count uint64
}

// Metrics implements proxy.Observer: it counts on its own metrics.Set (never the library's
// global one), forwards transfers to an optional TransferLog and remembers the last 421s for
// the status page. Gauges of backend load and health, data ports and per-listener sessions are
// read from a Source at scrape time. Methods are safe for concurrent use and never block on
// I/O other than the transfer log's write; they are no-ops on a nil *Metrics.
type Metrics struct {
	set   *metrics.Set
	start time.Time

	src  atomic.Pointer[Source]
	xfer atomic.Pointer[TransferLog]

	// Fixed-label counters, read-only after NewMetrics.
	logins    map[string]*metrics.Counter
	closed    map[string]*metrics.Counter
	refused   map[string]*metrics.Counter
	tls       map[[2]string]*metrics.Counter
	transfers map[[2]string]*metrics.Counter
	bytes     map[string]*metrics.Counter
	dir       map[[2]string]*metrics.Counter

	// Families of opsmetrics.go.
	tlsFailures      map[[2]string]*metrics.Counter // side, reason
	sessionDuration  *metrics.PrometheusHistogram
	transferDuration map[string]*metrics.PrometheusHistogram // by direction
	reloads          map[string]*metrics.Counter             // by outcome
	lastReload       atomic.Int64                            // Unix seconds of the last applied reload
	lastReloadOK     atomic.Bool
	buildInfo        string // the build_info series; guarded by scrapeMu

	// Per-session series by label value, so that a session does not build their names:
	// listener → *listenerSeries, backendKey → *backendCounters. None of these families is
	// ever unregistered, so a cached series stays the set's.
	byListener sync.Map
	byBackend  sync.Map

	portsExhausted *metrics.Counter
	rateLimited    *metrics.Counter
	xferlogErrors  *metrics.Counter
	dirCacheHits   *metrics.Counter

	mu     sync.Mutex // guards recent and next
	recent [recent421Size]Event421
	next   uint64 // number of 421s ever recorded; recent[(next-1)%size] is the newest

	// scrapeMu serialises scrapes, so the backend gauges registered for the pools in force
	// never change while the Set is being written.
	scrapeMu sync.Mutex
	gauged   map[backendKey]struct{} // backends with registered gauges; guarded by scrapeMu
	live     atomic.Pointer[map[backendKey]*balancer.Backend]
	removed  atomic.Pointer[map[*balancer.Backend]bool] // backends of live that left the config
}

// backendKey names a backend as its metrics' labels do.
type backendKey struct{ pool, backend string }

var _ proxy.Observer = (*Metrics)(nil)

// NewMetrics returns Metrics on a fresh metrics.Set with every fixed label combination
// registered at zero.
//
// It also turns on the metrics library's TYPE/HELP lines (metrics.ExposeMetadata, a
// process-wide switch) so Prometheus knows counters from gauges.
func NewMetrics() *Metrics {
	metrics.ExposeMetadata(true)
	s := metrics.NewSet()
	m := &Metrics{
		set:       s,
		start:     time.Now(),
		logins:    make(map[string]*metrics.Counter),
		closed:    make(map[string]*metrics.Counter),
		refused:   make(map[string]*metrics.Counter),
		tls:       make(map[[2]string]*metrics.Counter),
		transfers: make(map[[2]string]*metrics.Counter),
		bytes:     make(map[string]*metrics.Counter),
		dir:       make(map[[2]string]*metrics.Counter),
		gauged:    make(map[backendKey]struct{}),
	}
	for _, o := range loginOutcomes {
		m.logins[o] = s.NewCounter(series("ftpsproxy_logins_total", "outcome", o))
	}
	for _, c := range causes421 {
		m.closed[c] = s.NewCounter(series("ftpsproxy_closed_421_total", "cause", c))
	}
	for _, r := range refusedReasons {
		m.refused[r] = s.NewCounter(series("ftpsproxy_data_refused_total", "reason", r))
	}
	for _, side := range tlsSides {
		for _, res := range tlsResults {
			m.tls[[2]string{side, res}] = s.NewCounter(series("ftpsproxy_tls_handshakes_total", "side", side, "result", res))
		}
	}
	for _, d := range directions {
		for _, res := range xferResults {
			m.transfers[[2]string{d, res}] = s.NewCounter(series("ftpsproxy_transfers_total", "direction", d, "result", res))
		}
		m.bytes[d] = s.NewCounter(series("ftpsproxy_transfer_bytes_total", "direction", d))
	}
	m.registerOpsMetrics()
	m.portsExhausted = s.NewCounter("ftpsproxy_data_ports_exhausted_total")
	m.rateLimited = s.NewCounter("ftpsproxy_rate_limited_total")
	m.xferlogErrors = s.NewCounter("ftpsproxy_transfer_log_errors_total")
	for _, k := range dirLookups {
		m.dir[k] = s.NewCounter(series("ftpsproxy_directory_lookups_total", "source", k[0], "result", k[1]))
	}
	m.dirCacheHits = s.NewCounter("ftpsproxy_directory_cache_hits_total")

	s.NewGauge("ftpsproxy_data_ports_in_use", func() float64 {
		if src := m.source(); src != nil {
			return float64(src.PortsInUse())
		}
		return 0
	})
	s.NewGauge("ftpsproxy_data_ports_range_size", func() float64 {
		if src := m.source(); src != nil {
			return float64(src.PortRange().Len())
		}
		return 0
	})
	empty := map[backendKey]*balancer.Backend{}
	m.live.Store(&empty)
	return m
}

// SetSource makes m read its scrape-time gauges (backend load and health, data ports) from
// src and pre-registers the per-listener and per-backend series it lists. NewServer calls it.
func (m *Metrics) SetSource(src Source) {
	if m == nil {
		return
	}
	if src == nil {
		m.src.Store(nil)
		return
	}
	m.src.Store(&src)
	m.scrapeMu.Lock()
	defer m.scrapeMu.Unlock()
	m.refreshLocked()
}

// SetTransferLog makes Transfer write each file transfer to tl; nil turns that off. It may be
// called at any time, e.g. when a reload changes the log's path.
func (m *Metrics) SetTransferLog(tl *TransferLog) {
	if m == nil {
		return
	}
	m.xfer.Store(tl)
}

func (m *Metrics) source() Source {
	if p := m.src.Load(); p != nil {
		return *p
	}
	return nil
}

// Set returns the metrics.Set m counts on. Scrape through m.WritePrometheus, which first
// brings the backend gauges in line with the pools in force.
func (m *Metrics) Set() *metrics.Set { return m.set }

// WritePrometheus writes every metric in the Prometheus text exposition format, after
// registering gauges for backends that appeared since the last scrape (a reload) and
// unregistering those that left. Counters of departed backends are kept: they are monotonic.
func (m *Metrics) WritePrometheus(w io.Writer) {
	if m == nil {
		return
	}
	m.scrapeMu.Lock()
	defer m.scrapeMu.Unlock()
	m.refreshLocked()
	m.set.WritePrometheus(w)
	if src := m.source(); src != nil {
		writeCertificateExpiry(w, src)
	}
}

// refreshLocked syncs the scrape-time series with the source. Callers hold scrapeMu.
func (m *Metrics) refreshLocked() {
	src := m.source()
	if src == nil {
		return
	}
	for _, l := range src.Listeners() {
		m.set.GetOrCreateCounter(series("ftpsproxy_sessions_total", "listener", l.Name))
		m.set.GetOrCreateGauge(series("ftpsproxy_sessions_active", "listener", l.Name), nil)
	}
	live := make(map[backendKey]*balancer.Backend)
	for _, p := range src.Pools() {
		m.set.GetOrCreateCounter(series("ftpsproxy_pool_panic_total", "pool", p.Name)) // at 0 for alerts
		for _, b := range p.Backends {
			k := backendKey{p.Name, b.String()}
			if _, dup := live[k]; !dup {
				live[k] = b
			}
		}
	}
	removed := map[*balancer.Backend]bool{}
	for pool, bs := range removedBackends(src) { // still counted until their sessions end
		for _, b := range bs {
			if k := (backendKey{pool, b.String()}); live[k] == nil {
				live[k], removed[b] = b, true
			}
		}
	}
	m.removed.Store(&removed)
	m.live.Store(&live)
	for k := range live {
		if _, ok := m.gauged[k]; ok {
			continue
		}
		m.gauged[k] = struct{}{}
		m.backend(k) // its counters show at zero from the first scrape on, for rate() and alerts
		m.set.GetOrCreateGauge(backendSeries("ftpsproxy_backend_active_sessions", k), m.backendGauge(k, func(b *balancer.Backend) float64 {
			return float64(b.Active())
		}))
		m.set.GetOrCreateGauge(backendSeries("ftpsproxy_backend_up", k), m.backendGauge(k, func(b *balancer.Backend) float64 {
			if b.Healthy() {
				return 1
			}
			return 0
		}))
		m.set.GetOrCreateGauge(backendSeries("ftpsproxy_backend_max_sessions", k), m.backendGauge(k, func(b *balancer.Backend) float64 {
			return float64(b.Config.MaxSessions)
		}))
		m.set.GetOrCreateGauge(backendSeries("ftpsproxy_backend_admin_state", k), m.backendGauge(k, m.adminState))
	}
	for k := range m.gauged {
		if _, ok := live[k]; ok {
			continue
		}
		delete(m.gauged, k)
		for _, name := range []string{"ftpsproxy_backend_active_sessions", "ftpsproxy_backend_up", "ftpsproxy_backend_max_sessions", "ftpsproxy_backend_admin_state"} {
			m.set.UnregisterMetric(backendSeries(name, k))
		}
	}
}

// adminState is ftpsproxy_backend_admin_state: 0 enabled, 1 draining, 2 disabled, 3 removed
// from the config (finishing its sessions).
func (m *Metrics) adminState(b *balancer.Backend) float64 {
	if r := m.removed.Load(); r != nil && (*r)[b] {
		return 3
	}
	return float64(b.Admin())
}

// backendGauge returns a gauge callback reading k's backend in the pools of the last refresh.
func (m *Metrics) backendGauge(k backendKey, f func(*balancer.Backend) float64) func() float64 {
	return func() float64 {
		if b := (*m.live.Load())[k]; b != nil {
			return f(b)
		}
		return 0
	}
}

// listenerSeries are a listener's session series.
type listenerSeries struct {
	total  *metrics.Counter
	active *metrics.Gauge
}

// listener returns the session series of a listener, registering them on first use.
func (m *Metrics) listener(name string) *listenerSeries {
	if ls, ok := m.byListener.Load(name); ok {
		return ls.(*listenerSeries)
	}
	ls, _ := m.byListener.LoadOrStore(name, &listenerSeries{
		total:  m.set.GetOrCreateCounter(series("ftpsproxy_sessions_total", "listener", name)),
		active: m.set.GetOrCreateGauge(series("ftpsproxy_sessions_active", "listener", name), nil),
	})
	return ls.(*listenerSeries)
}

// SessionStarted implements proxy.Observer.
func (m *Metrics) SessionStarted(listener string) {
	if m == nil {
		return
	}
	ls := m.listener(listener)
	ls.total.Inc()
	ls.active.Inc()
}

// SessionEnded implements proxy.Observer. The backend's own active count is read from the pool
// at scrape time, so backend is not used here.
func (m *Metrics) SessionEnded(listener, backend string) {
	if m == nil {
		return
	}
	m.listener(listener).active.Dec()
}

// HealthCheck implements proxy.Observer: a load balancer's health check (PROXY v2 LOCAL),
// counted apart from sessions.
func (m *Metrics) HealthCheck(listener string) {
	if m == nil {
		return
	}
	m.set.GetOrCreateCounter(series("ftpsproxy_health_checks_total", "listener", listener)).Inc()
}

// BackendSession implements proxy.Observer.
func (m *Metrics) BackendSession(pool, backend string) {
	if m == nil {
		return
	}
	m.backend(backendKey{pool, backend}).sessions.Inc()
}

// backendCounters are a backend's counters that sessions and transfers add to.
type backendCounters struct {
	sessions       *metrics.Counter
	bytes          map[string]*metrics.Counter // by direction
	transferErrors *metrics.Counter
}

// backend returns k's counters, registering them on first use.
func (m *Metrics) backend(k backendKey) *backendCounters {
	if bc, ok := m.byBackend.Load(k); ok {
		return bc.(*backendCounters)
	}
	bc := &backendCounters{
		sessions:       m.set.GetOrCreateCounter(backendSeries("ftpsproxy_backend_sessions_total", k)),
		bytes:          map[string]*metrics.Counter{},
		transferErrors: m.set.GetOrCreateCounter(backendSeries("ftpsproxy_backend_transfer_errors_total", k)),
	}
	for _, d := range directions {
		bc.bytes[d] = m.set.GetOrCreateCounter(series("ftpsproxy_backend_transfer_bytes_total", "pool", k.pool, "backend", k.backend, "direction", d))
	}
	v, _ := m.byBackend.LoadOrStore(k, bc)
	return v.(*backendCounters)
}

// PoolPanic implements proxy.Observer.
func (m *Metrics) PoolPanic(pool string) {
	if m == nil {
		return
	}
	m.set.GetOrCreateCounter(series("ftpsproxy_pool_panic_total", "pool", pool)).Inc()
}

// DirectoryLookup implements proxy.Observer: lookups by source and result (errors are the
// result "error"), and lookup service answers served from the cache.
func (m *Metrics) DirectoryLookup(source, result string, cached bool) {
	if m == nil {
		return
	}
	c := m.dir[[2]string{source, result}]
	if c == nil {
		c = m.set.GetOrCreateCounter(series("ftpsproxy_directory_lookups_total", "source", otherLabel, "result", otherLabel))
	}
	c.Inc()
	if cached {
		m.dirCacheHits.Inc()
	}
}

// Login implements proxy.Observer.
func (m *Metrics) Login(outcome string) {
	if m == nil {
		return
	}
	m.fixed(m.logins, "ftpsproxy_logins_total", "outcome", outcome).Inc()
}

// Closed421 implements proxy.Observer: it counts the 421 by cause and keeps it among the
// recent ones shown on the status page.
func (m *Metrics) Closed421(cause proxy.Cause) {
	if m == nil {
		return
	}
	name := cause.String()
	if m.closed[name] == nil {
		name = otherLabel
	}
	m.fixed(m.closed, "ftpsproxy_closed_421_total", "cause", name).Inc()
	m.mu.Lock()
	m.recent[m.next%recent421Size] = Event421{Time: time.Now(), Cause: name}
	m.next++
	m.mu.Unlock()
}

// DataRefused implements proxy.Observer.
func (m *Metrics) DataRefused(reason string) {
	if m == nil {
		return
	}
	m.fixed(m.refused, "ftpsproxy_data_refused_total", "reason", reason).Inc()
}

// PortsExhausted implements proxy.Observer.
func (m *Metrics) PortsExhausted() {
	if m == nil {
		return
	}
	m.portsExhausted.Inc()
}

// RateLimited implements proxy.Observer: it counts a connection refused because its address
// is banned (a PASS refused by a limit is counted once, as Login("rate_limited")).
func (m *Metrics) RateLimited() {
	if m == nil {
		return
	}
	m.rateLimited.Inc()
}

// TLSHandshake implements proxy.Observer.
func (m *Metrics) TLSHandshake(side string, err error) {
	if m == nil {
		return
	}
	res := "ok"
	if err != nil {
		res = "error"
	}
	if err != nil {
		m.observeTLSFailure(side, err)
	}
	k := [2]string{side, res}
	c := m.tls[k]
	if c == nil {
		c = m.set.GetOrCreateCounter(series("ftpsproxy_tls_handshakes_total", "side", otherLabel, "result", res))
	}
	c.Inc()
}

// Transfer implements proxy.Observer: it counts the transfer and its bytes (directory listings
// included, as downloads) and writes file transfers to the transfer log, if any.
func (m *Metrics) Transfer(rec proxy.TransferRecord) {
	if m == nil {
		return
	}
	dir := "download"
	if rec.Upload {
		dir = "upload"
	}
	res := "failed"
	switch {
	case rec.Aborted:
		res = "aborted"
	case rec.Complete:
		res = "complete"
	}
	m.transfers[[2]string{dir, res}].Inc()
	if rec.Bytes > 0 {
		m.bytes[dir].Add(int(rec.Bytes))
	}
	m.observeTransfer(rec, dir, res)
	if tl := m.xfer.Load(); tl != nil {
		if err := tl.Write(rec); err != nil {
			m.xferlogErrors.Inc()
		}
	}
}

// fixed returns the counter of value in a fixed label set, or the family's "other" counter.
func (m *Metrics) fixed(set map[string]*metrics.Counter, family, label, value string) *metrics.Counter {
	if c := set[value]; c != nil {
		return c
	}
	return m.set.GetOrCreateCounter(series(family, label, otherLabel))
}

// Recent421 returns up to n of the last 421s, newest first.
func (m *Metrics) Recent421(n int) []Event421 {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	n = max(0, min(n, int(min(m.next, recent421Size))))
	out := make([]Event421, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, m.recent[(m.next-uint64(i))%recent421Size])
	}
	return out
}

// Counts421 returns the number of 421s per cause since start, in the fixed cause order,
// followed by "other" when any 421 had an unknown cause.
func (m *Metrics) Counts421() []CauseCount {
	if m == nil {
		return nil
	}
	out := make([]CauseCount, 0, len(causes421)+1)
	for _, c := range causes421 {
		out = append(out, CauseCount{Cause: c, Count: m.closed[c].Get()})
	}
	if n := m.otherCount("ftpsproxy_closed_421_total", "cause"); n > 0 {
		out = append(out, CauseCount{Cause: otherLabel, Count: n})
	}
	return out
}

// otherCount reads a family's "other" counter without creating it.
func (m *Metrics) otherCount(family, label string) uint64 {
	name := series(family, label, otherLabel)
	for _, n := range m.set.ListMetricNames() {
		if n == name {
			return m.set.GetOrCreateCounter(name).Get()
		}
	}
	return 0
}

// Uptime returns the time since NewMetrics.
func (m *Metrics) Uptime() time.Duration {
	if m == nil {
		return 0
	}
	return time.Since(m.start)
}

// series returns a metric name with labels, e.g. series("a_total", "k", "v") is a_total{k="v"}.
// Values are escaped as the exposition format requires; keys are constants of this package.
func series(name string, kv ...string) string {
	var b strings.Builder
	b.WriteString(name)
	b.WriteByte('{')
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(kv[i])
		b.WriteString(`="`)
		labelEscaper.WriteString(&b, strings.ToValidUTF8(kv[i+1], "\uFFFD"))
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

func backendSeries(name string, k backendKey) string {
	return series(name, "pool", k.pool, "backend", k.backend)
}

// labelEscaper escapes a label value for the text exposition format: backslash, double quote
// and line feed are the only escapes it defines.
var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
