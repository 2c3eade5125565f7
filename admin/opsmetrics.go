package admin

import (
	"io"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/ftpsproxy/ftpsproxy/proxy"
	"github.com/ftpsproxy/ftpsproxy/tlsterm"
)

// tlsReasons label ftpsproxy_tls_handshake_failures_total: a fixed set, so a label never
// carries an error text.
var tlsReasons = tlsterm.FailureReasons

// Histogram buckets, in seconds. Sessions range from a health-check-like login to a working
// day; transfers from a directory listing to a multi-gigabyte file.
var (
	sessionBuckets  = []float64{0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 14400}
	transferBuckets = []float64{0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600}
)

// reloadOutcomes label ftpsproxy_reloads_total.
var reloadOutcomes = []string{"ok", "failed"}

// registerOpsMetrics registers the families of this file at zero. NewMetrics calls it.
func (m *Metrics) registerOpsMetrics() {
	s := m.set
	m.tlsFailures = make(map[[2]string]*metrics.Counter)
	for _, side := range tlsSides {
		for _, r := range tlsReasons {
			m.tlsFailures[[2]string{side, r}] = s.NewCounter(series("ftpsproxy_tls_handshake_failures_total", "side", side, "reason", r))
		}
	}
	m.sessionDuration = s.NewPrometheusHistogramExt("ftpsproxy_session_duration_seconds", sessionBuckets)
	m.transferDuration = make(map[string]*metrics.PrometheusHistogram)
	for _, d := range directions {
		m.transferDuration[d] = s.NewPrometheusHistogramExt(series("ftpsproxy_transfer_duration_seconds", "direction", d), transferBuckets)
	}
	m.reloads = make(map[string]*metrics.Counter)
	for _, o := range reloadOutcomes {
		m.reloads[o] = s.NewCounter(series("ftpsproxy_reloads_total", "outcome", o))
	}
	m.lastReload.Store(m.start.Unix())
	m.lastReloadOK.Store(true)
	s.NewGauge("ftpsproxy_last_reload_timestamp_seconds", func() float64 { return float64(m.lastReload.Load()) })
	s.NewGauge("ftpsproxy_last_reload_successful", func() float64 {
		if m.lastReloadOK.Load() {
			return 1
		}
		return 0
	})
	s.NewGauge("ftpsproxy_start_time_seconds", func() float64 { return float64(m.start.Unix()) })
}

// SetBuildInfo exports ftpsproxy_build_info{version,commit,goversion} = 1. The commit comes
// from the binary's build info (vcs.revision, "-dirty" when modified), else "unknown".
func (m *Metrics) SetBuildInfo(version string) {
	if m == nil {
		return
	}
	m.scrapeMu.Lock()
	defer m.scrapeMu.Unlock()
	if m.buildInfo != "" {
		m.set.UnregisterMetric(m.buildInfo)
	}
	m.buildInfo = series("ftpsproxy_build_info", "version", version, "commit", BuildCommit(), "goversion", runtime.Version())
	m.set.NewGauge(m.buildInfo, func() float64 { return 1 })
}

// stampedCommit is set by release builds (dist/build-deb.sh) with
// -ldflags "-X github.com/ftpsproxy/ftpsproxy/admin.stampedCommit=…", for builds where Go
// cannot stamp VCS information itself (a git worktree, -buildvcs=false).
var stampedCommit string

// BuildCommit returns the VCS revision of the binary (stampedCommit, else Go's vcs.revision
// build setting, 12 hex digits, "-dirty" when the tree was modified), or "unknown". -version
// prints the same.
func BuildCommit() string {
	if stampedCommit != "" {
		return stampedCommit
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "unknown"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}

// Reloaded records a SIGHUP reload: applied (ok) or refused. ftpsproxy_last_reload_timestamp_seconds
// is the time of the last applied one (the start when none was), and
// ftpsproxy_last_reload_successful says whether the last attempt was applied.
func (m *Metrics) Reloaded(ok bool) {
	if m == nil {
		return
	}
	m.lastReloadOK.Store(ok)
	if ok {
		m.reloads["ok"].Inc()
		m.lastReload.Store(time.Now().Unix())
		return
	}
	m.reloads["failed"].Inc()
}

// SessionDuration implements proxy.Observer.
func (m *Metrics) SessionDuration(d time.Duration) {
	if m == nil {
		return
	}
	m.sessionDuration.Update(d.Seconds())
}

// observeTransfer counts what Transfer adds per backend: bytes by direction and failed
// transfers (aborts are the client's choice, not an error), and the duration histogram.
func (m *Metrics) observeTransfer(rec proxy.TransferRecord, dir, res string) {
	m.transferDuration[dir].Update(rec.Duration.Seconds())
	if rec.Backend == "" {
		return
	}
	bc := m.backend(backendKey{rec.Pool, rec.Backend})
	if rec.Bytes > 0 {
		bc.bytes[dir].Add(int(rec.Bytes))
	}
	if res == "failed" {
		bc.transferErrors.Inc()
	}
}

// observeTLSFailure counts a failed handshake by reason.
func (m *Metrics) observeTLSFailure(side string, err error) {
	reason := tlsterm.FailureReason(err) // the classifier the proxy's logs use too
	c := m.tlsFailures[[2]string{side, reason}]
	if c == nil {
		c = m.set.GetOrCreateCounter(series("ftpsproxy_tls_handshake_failures_total", "side", otherLabel, "reason", reason))
	}
	c.Inc()
}

// certificateSource is what a Source implements to export certificate expiry (ProxySource
// does, from the TLS config in force).
type certificateSource interface {
	Certificates() []tlsterm.CertInfo
}

// writeCertificateExpiry writes ftpsproxy_tls_certificate_expiry_timestamp_seconds{name}
// for the certificates in force at scrape time. It is a separate family written after the
// Set, because the certificates (and their names) change on reload and on ACME renewal.
func writeCertificateExpiry(w io.Writer, src Source) {
	cs, ok := src.(certificateSource)
	if !ok {
		return
	}
	certs := cs.Certificates()
	if len(certs) == 0 {
		return
	}
	// Two certificates with one name (a SAN certificate for several ACME domains, or an old
	// and a renewed one): the earlier expiry is the one to alert on.
	first := make(map[string]time.Time, len(certs))
	for _, c := range certs {
		if t, ok := first[c.Name]; !ok || c.NotAfter.Before(t) {
			first[c.Name] = c.NotAfter
		}
	}
	s := metrics.NewSet()
	for name, t := range first {
		s.NewGauge(series("ftpsproxy_tls_certificate_expiry_timestamp_seconds", "name", name), nil).Set(float64(t.Unix()))
	}
	s.WritePrometheus(w)
}
