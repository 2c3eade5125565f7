package admin

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/ftpsproxy/ftpsproxy/proxy"
	"github.com/ftpsproxy/ftpsproxy/tlsterm"
)

// TLS handshake failure reasons: a fixed set, so a label never carries an error text.
const (
	TLSReasonUnknownCA      = "unknown_ca"          // the peer's certificate chain has no trusted root
	TLSReasonBadCertificate = "bad_certificate"     // wrong name, bad signature, unsupported or revoked
	TLSReasonExpired        = "expired_certificate" // outside its validity period
	TLSReasonNoVersion      = "no_shared_version"   // no TLS version both sides accept
	TLSReasonNoCipher       = "no_shared_cipher"    // no cipher suite, curve or signature both accept
	TLSReasonNotTLS         = "not_tls"             // the peer did not speak TLS (plain FTP on a TLS leg)
	TLSReasonTimeout        = "timeout"             // limits.tls_handshake_timeout passed
	TLSReasonEOF            = "eof"                 // the peer closed or reset the connection
	TLSReasonOther          = "other"
)

var tlsReasons = []string{TLSReasonUnknownCA, TLSReasonBadCertificate, TLSReasonExpired, TLSReasonNoVersion,
	TLSReasonNoCipher, TLSReasonNotTLS, TLSReasonTimeout, TLSReasonEOF, TLSReasonOther}

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
	k := backendKey{rec.Pool, rec.Backend}
	if rec.Bytes > 0 {
		m.set.GetOrCreateCounter(series("ftpsproxy_backend_transfer_bytes_total", "pool", k.pool, "backend", k.backend, "direction", dir)).Add(int(rec.Bytes))
	}
	if res == "failed" {
		m.set.GetOrCreateCounter(backendSeries("ftpsproxy_backend_transfer_errors_total", k)).Inc()
	}
}

// registerBackendCounters pre-registers a backend's transfer counters at zero, so rate() and
// alerts see a series from the backend's first scrape on. refreshLocked calls it.
func (m *Metrics) registerBackendCounters(k backendKey) {
	for _, d := range directions {
		m.set.GetOrCreateCounter(series("ftpsproxy_backend_transfer_bytes_total", "pool", k.pool, "backend", k.backend, "direction", d))
	}
	m.set.GetOrCreateCounter(backendSeries("ftpsproxy_backend_transfer_errors_total", k))
}

// observeTLSFailure counts a failed handshake by reason.
func (m *Metrics) observeTLSFailure(side string, err error) {
	c := m.tlsFailures[[2]string{side, TLSFailureReason(err)}]
	if c == nil {
		c = m.set.GetOrCreateCounter(series("ftpsproxy_tls_handshake_failures_total", "side", otherLabel, "reason", TLSFailureReason(err)))
	}
	c.Inc()
}

// TLSFailureReason maps a TLS handshake error to one of the TLSReason constants. Errors of
// our own verification are read from their types; the peer's alerts arrive as a
// "remote error" whose text is crypto/tls's name for the RFC 8446 alert, the only form the
// standard library exposes them in.
func TLSFailureReason(err error) string {
	var (
		verr   *tls.CertificateVerificationError
		rh     tls.RecordHeaderError
		opErr  *net.OpError
		netErr net.Error
	)
	switch {
	case err == nil:
		return ""
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return TLSReasonTimeout
	case errors.As(err, &verr):
		return certReason(verr.Err)
	case errors.As(err, &rh):
		return TLSReasonNotTLS
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed):
		return TLSReasonEOF
	case errors.As(err, &opErr) && opErr.Op == "remote error" && opErr.Err != nil:
		return alertReason(opErr.Err.Error())
	}
	return localReason(err.Error())
}

// certReason classifies our own rejection of the peer's certificate.
func certReason(err error) string {
	var (
		ua  x509.UnknownAuthorityError
		inv x509.CertificateInvalidError
	)
	switch {
	case errors.As(err, &ua):
		return TLSReasonUnknownCA
	case errors.As(err, &inv) && inv.Reason == x509.Expired:
		return TLSReasonExpired
	}
	return TLSReasonBadCertificate
}

// alertReason classifies an alert the peer sent, by crypto/tls's alert text.
func alertReason(text string) string {
	switch strings.TrimPrefix(text, "tls: ") {
	case "unknown certificate authority":
		return TLSReasonUnknownCA
	case "bad certificate", "unsupported certificate", "revoked certificate", "unknown certificate",
		"certificate required", "bad certificate status response":
		return TLSReasonBadCertificate
	case "expired certificate":
		return TLSReasonExpired
	case "protocol version not supported":
		return TLSReasonNoVersion
	case "handshake failure", "insufficient security level":
		return TLSReasonNoCipher
	}
	return TLSReasonOther
}

// localReason classifies crypto/tls's own handshake errors that have no type.
func localReason(text string) string {
	switch {
	case strings.Contains(text, "unsupported versions"), strings.Contains(text, "protocol version not supported"),
		strings.Contains(text, "server selected unsupported protocol version"):
		return TLSReasonNoVersion
	case strings.Contains(text, "no cipher suite supported"), strings.Contains(text, "no ECDHE curve supported"),
		strings.Contains(text, "no mutually supported"), strings.Contains(text, "handshake failure"):
		return TLSReasonNoCipher
	case strings.Contains(text, "first record does not look like a TLS handshake"):
		return TLSReasonNotTLS
	case strings.Contains(text, "local error: tls: bad record MAC"):
		// A TLS 1.3 client (OpenSSL, GnuTLS) that rejects our certificate sends its alert
		// unencrypted, before it switches to the handshake keys; crypto/tls then fails to
		// decrypt it. Which alert it was is lost, so this is the general reason.
		return TLSReasonBadCertificate
	}
	return TLSReasonOther
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
