package admin

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/nat"
	"github.com/ftpsproxy/ftpsproxy/proxy"
)

// zeroSeries is every fixed series NewMetrics registers, at 0.
func zeroSeries() map[string]float64 {
	want := map[string]float64{
		"ftpsproxy_data_ports_exhausted_total": 0,
		"ftpsproxy_rate_limited_total":         0,
		"ftpsproxy_transfer_log_errors_total":  0,
		"ftpsproxy_data_ports_in_use":          0,
		"ftpsproxy_data_ports_range_size":      0,
		"ftpsproxy_directory_cache_hits_total": 0,
	}
	for _, k := range dirLookups {
		want[canonical("ftpsproxy_directory_lookups_total", map[string]string{"source": k[0], "result": k[1]})] = 0
	}
	for _, o := range loginOutcomes {
		want[key("ftpsproxy_logins_total", "outcome", o)] = 0
	}
	for _, c := range causes421 {
		want[key("ftpsproxy_closed_421_total", "cause", c)] = 0
	}
	for _, r := range refusedReasons {
		want[key("ftpsproxy_data_refused_total", "reason", r)] = 0
	}
	for _, s := range tlsSides {
		for _, r := range tlsResults {
			want[canonical("ftpsproxy_tls_handshakes_total", map[string]string{"side": s, "result": r})] = 0
		}
	}
	for _, d := range directions {
		for _, r := range xferResults {
			want[canonical("ftpsproxy_transfers_total", map[string]string{"direction": d, "result": r})] = 0
		}
		want[key("ftpsproxy_transfer_bytes_total", "direction", d)] = 0
		addHistogram(want, "ftpsproxy_transfer_duration_seconds", []string{"direction", d}, transferBuckets)
	}
	for _, s := range tlsSides {
		for _, r := range tlsReasons {
			want[canonical("ftpsproxy_tls_handshake_failures_total", map[string]string{"side": s, "reason": r})] = 0
		}
	}
	addHistogram(want, "ftpsproxy_session_duration_seconds", nil, sessionBuckets)
	for _, o := range reloadOutcomes {
		want[key("ftpsproxy_reloads_total", "outcome", o)] = 0
	}
	want["ftpsproxy_last_reload_successful"] = 1
	return want
}

// addHistogram adds the series of a Prometheus histogram with the given observations to want.
func addHistogram(want map[string]float64, family string, labels []string, buckets []float64, obs ...float64) {
	lm := func(extra ...string) map[string]string {
		m := map[string]string{}
		kv := append(slices.Clone(labels), extra...)
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	sum := 0.0
	for _, o := range obs {
		sum += o
	}
	for _, b := range append(slices.Clone(buckets), math.Inf(1)) {
		n := 0
		for _, o := range obs {
			if o <= b {
				n++
			}
		}
		le := strconv.FormatFloat(b, 'g', -1, 64)
		if math.IsInf(b, 1) {
			le = "+Inf"
		}
		want[canonical(family+"_bucket", lm("le", le))] = float64(n)
	}
	want[canonical(family+"_sum", lm())] = sum
	want[canonical(family+"_count", lm())] = float64(len(obs))
}

// timeSeries are the ftpsproxy_ series whose value is a wall-clock time; ours() leaves them
// out and the tests check them apart.
var timeSeries = []string{"ftpsproxy_start_time_seconds", "ftpsproxy_last_reload_timestamp_seconds"}

// ours keeps the ftpsproxy_ series of a scrape.
func ours(e *exposition) map[string]float64 {
	out := make(map[string]float64)
	for k, v := range e.values {
		if strings.HasPrefix(k, "ftpsproxy_") && !slices.Contains(timeSeries, k) {
			out[k] = v
		}
	}
	return out
}

func diffSeries(t *testing.T, got, want map[string]float64) {
	t.Helper()
	for _, k := range slices.Sorted(maps.Keys(want)) {
		g, ok := got[k]
		if !ok {
			t.Errorf("missing %s (want %v)", k, want[k])
		} else if g != want[k] {
			t.Errorf("%s = %v, want %v", k, g, want[k])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected series %s = %v", k, got[k])
		}
	}
}

func TestMetricsZeroBeforeUse(t *testing.T) {
	m := NewMetrics()
	e := scrape(t, m)
	diffSeries(t, ours(e), zeroSeries())
	for fam, typ := range map[string]string{
		"ftpsproxy_logins_total":          "counter",
		"ftpsproxy_closed_421_total":      "counter",
		"ftpsproxy_data_ports_in_use":     "gauge",
		"ftpsproxy_transfer_bytes_total":  "counter",
		"ftpsproxy_data_ports_range_size": "gauge",
	} {
		if e.types[fam] != typ {
			t.Errorf("TYPE of %s = %q, want %q", fam, e.types[fam], typ)
		}
	}
}

func TestMetricsScripted(t *testing.T) {
	b1 := balancer.BackendConfig{Address: "10.0.0.11:21", MaxSessions: 5}
	b2 := balancer.BackendConfig{Address: "10.0.0.12:21", Weight: 3}
	pool := newPool(t, "default", "least_conn", b1, b2)
	src := &fakeSource{
		pools:     []*balancer.Pool{pool},
		listeners: []ListenerInfo{{Name: "ftp", Address: ":21", TLS: "explicit", Pool: "default"}, {Name: "ftps", Address: ":990", TLS: "implicit", Pool: "default"}},
		inUse:     7,
		portRange: nat.PortRange{First: 50000, Last: 50099},
	}
	m := NewMetrics()
	m.SetSource(src)

	// Before any event, listeners and backends show up at zero.
	want := zeroSeries()
	want["ftpsproxy_data_ports_in_use"] = 7
	want["ftpsproxy_data_ports_range_size"] = 100
	for _, l := range []string{"ftp", "ftps"} {
		want[key("ftpsproxy_sessions_total", "listener", l)] = 0
		want[key("ftpsproxy_sessions_active", "listener", l)] = 0
	}
	for _, b := range []string{"10.0.0.11:21", "10.0.0.12:21"} {
		want[key("ftpsproxy_backend_sessions_total", "pool", "default", "backend", b)] = 0
		want[key("ftpsproxy_backend_active_sessions", "pool", "default", "backend", b)] = 0
		want[key("ftpsproxy_backend_up", "pool", "default", "backend", b)] = 1
		want[key("ftpsproxy_backend_admin_state", "pool", "default", "backend", b)] = 0
	}
	want[key("ftpsproxy_backend_max_sessions", "pool", "default", "backend", "10.0.0.11:21")] = 5
	want[key("ftpsproxy_backend_max_sessions", "pool", "default", "backend", "10.0.0.12:21")] = 0
	for _, b := range []string{"10.0.0.11:21", "10.0.0.12:21"} {
		for _, d := range directions {
			want[canonical("ftpsproxy_backend_transfer_bytes_total", map[string]string{"pool": "default", "backend": b, "direction": d})] = 0
		}
		want[key("ftpsproxy_backend_transfer_errors_total", "pool", "default", "backend", b)] = 0
	}
	diffSeries(t, ours(scrape(t, m)), want)

	// The script.
	for range 3 {
		m.SessionStarted("ftp")
	}
	m.SessionStarted("ftps")
	m.SessionEnded("ftp", "10.0.0.11:21")
	m.BackendSession("default", "10.0.0.11:21")
	m.BackendSession("default", "10.0.0.11:21")
	m.BackendSession("default", "10.0.0.12:21")
	for _, o := range []string{"ok", "ok", "ok", "failed", "failed", "error", "rate_limited", "bogus"} {
		m.Login(o)
	}
	for _, c := range []proxy.Cause{proxy.CauseAdmin, proxy.CauseTimeout, proxy.CauseTimeout, proxy.CauseShutdown, proxy.CauseBackend,
		proxy.CauseNoBackend, proxy.CauseTooMany, proxy.CauseLoginRate, proxy.Cause(99)} {
		m.Closed421(c)
	}
	m.DataRefused("foreign_peer")
	m.DataRefused("bounce")
	m.DataRefused("bounce")
	m.PortsExhausted()
	m.PortsExhausted()
	m.RateLimited()
	m.TLSHandshake("client", nil)
	m.TLSHandshake("client", nil)
	m.TLSHandshake("client", errors.New("bad certificate"))
	m.TLSHandshake("backend", nil)
	m.TLSHandshake("backend", os.ErrDeadlineExceeded)
	const b11, b12 = "10.0.0.11:21", "10.0.0.12:21"
	m.Transfer(proxy.TransferRecord{Command: "STOR", Upload: true, Complete: true, Bytes: 1000, Pool: "default", Backend: b11, Duration: 20 * time.Millisecond})
	m.Transfer(proxy.TransferRecord{Command: "STOR", Upload: true, Bytes: 10, Pool: "default", Backend: b12, Duration: 2 * time.Second})
	m.Transfer(proxy.TransferRecord{Command: "RETR", Complete: true, Bytes: 2048, Pool: "default", Backend: b11, Duration: 100 * time.Second})
	m.Transfer(proxy.TransferRecord{Command: "RETR", Aborted: true, Bytes: 512, Pool: "default", Backend: b11})
	m.Transfer(proxy.TransferRecord{Command: "LIST", Complete: true, Bytes: 300, Pool: "default", Backend: b12})
	m.SessionDuration(3 * time.Second)
	m.SessionDuration(2 * time.Hour)
	m.Reloaded(true)
	m.Reloaded(false)
	m.DirectoryLookup("file", "found", false)
	m.DirectoryLookup("url", "found", true)
	m.DirectoryLookup("url", "found", false)
	m.DirectoryLookup("url", "not_found", true)
	m.DirectoryLookup("url", "error", false)
	m.DirectoryLookup("auth", "deny", false)
	m.DirectoryLookup("ldap", "found", false)
	// Backend load and health are read from the pool at scrape time.
	b := pool.Backends[0]
	b.Acquire()
	b.Acquire()
	setHealth(t, pool, pool.Backends[1], false)

	want[key("ftpsproxy_sessions_total", "listener", "ftp")] = 3
	want[key("ftpsproxy_sessions_total", "listener", "ftps")] = 1
	want[key("ftpsproxy_sessions_active", "listener", "ftp")] = 2
	want[key("ftpsproxy_sessions_active", "listener", "ftps")] = 1
	want[key("ftpsproxy_backend_sessions_total", "pool", "default", "backend", "10.0.0.11:21")] = 2
	want[key("ftpsproxy_backend_sessions_total", "pool", "default", "backend", "10.0.0.12:21")] = 1
	want[key("ftpsproxy_backend_active_sessions", "pool", "default", "backend", "10.0.0.11:21")] = 2
	want[key("ftpsproxy_backend_up", "pool", "default", "backend", "10.0.0.12:21")] = 0
	want[key("ftpsproxy_logins_total", "outcome", "ok")] = 3
	want[key("ftpsproxy_logins_total", "outcome", "failed")] = 2
	want[key("ftpsproxy_logins_total", "outcome", "error")] = 1
	want[key("ftpsproxy_logins_total", "outcome", "rate_limited")] = 1
	want[key("ftpsproxy_logins_total", "outcome", "other")] = 1
	want[key("ftpsproxy_closed_421_total", "cause", "timeout")] = 2
	want[key("ftpsproxy_closed_421_total", "cause", "shutdown")] = 1
	want[key("ftpsproxy_closed_421_total", "cause", "backend_lost")] = 1
	want[key("ftpsproxy_closed_421_total", "cause", "no_backend")] = 1
	want[key("ftpsproxy_closed_421_total", "cause", "too_many")] = 1
	want[key("ftpsproxy_closed_421_total", "cause", "login_rate")] = 1
	want[key("ftpsproxy_closed_421_total", "cause", "other")] = 1
	want[key("ftpsproxy_closed_421_total", "cause", "admin")] = 1
	want[key("ftpsproxy_data_refused_total", "reason", "foreign_peer")] = 1
	want[key("ftpsproxy_data_refused_total", "reason", "bounce")] = 2
	want["ftpsproxy_data_ports_exhausted_total"] = 2
	want["ftpsproxy_rate_limited_total"] = 1
	want[canonical("ftpsproxy_tls_handshakes_total", map[string]string{"side": "client", "result": "ok"})] = 2
	want[canonical("ftpsproxy_tls_handshakes_total", map[string]string{"side": "client", "result": "error"})] = 1
	want[canonical("ftpsproxy_tls_handshakes_total", map[string]string{"side": "backend", "result": "ok"})] = 1
	want[canonical("ftpsproxy_tls_handshakes_total", map[string]string{"side": "backend", "result": "error"})] = 1
	want[canonical("ftpsproxy_transfers_total", map[string]string{"direction": "upload", "result": "complete"})] = 1
	want[canonical("ftpsproxy_transfers_total", map[string]string{"direction": "upload", "result": "failed"})] = 1
	want[canonical("ftpsproxy_transfers_total", map[string]string{"direction": "download", "result": "complete"})] = 2
	want[canonical("ftpsproxy_transfers_total", map[string]string{"direction": "download", "result": "aborted"})] = 1
	want[key("ftpsproxy_transfer_bytes_total", "direction", "upload")] = 1010
	want[key("ftpsproxy_transfer_bytes_total", "direction", "download")] = 2860
	dirKey := func(source, result string) string {
		return canonical("ftpsproxy_directory_lookups_total", map[string]string{"source": source, "result": result})
	}
	want[dirKey("file", "found")] = 1
	want[dirKey("url", "found")] = 2
	want[dirKey("url", "not_found")] = 1
	want[dirKey("url", "error")] = 1
	want[dirKey("auth", "deny")] = 1
	want[dirKey("other", "other")] = 1
	want["ftpsproxy_directory_cache_hits_total"] = 2
	backendBytes := func(b, dir string) string {
		return canonical("ftpsproxy_backend_transfer_bytes_total", map[string]string{"pool": "default", "backend": b, "direction": dir})
	}
	want[backendBytes(b11, "upload")] = 1000
	want[backendBytes(b12, "upload")] = 10
	want[backendBytes(b11, "download")] = 2048 + 512
	want[backendBytes(b12, "download")] = 300
	want[key("ftpsproxy_backend_transfer_errors_total", "pool", "default", "backend", b12)] = 1 // the aborted one is no error
	want[canonical("ftpsproxy_tls_handshake_failures_total", map[string]string{"side": "client", "reason": "other"})] = 1
	want[canonical("ftpsproxy_tls_handshake_failures_total", map[string]string{"side": "backend", "reason": "timeout"})] = 1
	addHistogram(want, "ftpsproxy_transfer_duration_seconds", []string{"direction", "upload"}, transferBuckets, 0.02, 2)
	addHistogram(want, "ftpsproxy_transfer_duration_seconds", []string{"direction", "download"}, transferBuckets, 100, 0, 0)
	addHistogram(want, "ftpsproxy_session_duration_seconds", nil, sessionBuckets, 3, 7200)
	want[key("ftpsproxy_reloads_total", "outcome", "ok")] = 1
	want[key("ftpsproxy_reloads_total", "outcome", "failed")] = 1
	want["ftpsproxy_last_reload_successful"] = 0
	e := scrape(t, m)
	if ts := e.values["ftpsproxy_last_reload_timestamp_seconds"]; time.Since(time.Unix(int64(ts), 0)) > time.Minute {
		t.Errorf("ftpsproxy_last_reload_timestamp_seconds = %v, not the reload just done", ts)
	}
	diffSeries(t, ours(e), want)

	for fam, typ := range map[string]string{
		"ftpsproxy_sessions_active":              "gauge",
		"ftpsproxy_sessions_total":               "counter",
		"ftpsproxy_backend_up":                   "gauge",
		"ftpsproxy_backend_active_sessions":      "gauge",
		"ftpsproxy_backend_max_sessions":         "gauge",
		"ftpsproxy_backend_sessions_total":       "counter",
		"ftpsproxy_backend_admin_state":          "gauge",
		"ftpsproxy_tls_handshakes_total":         "counter",
		"ftpsproxy_transfers_total":              "counter",
		"ftpsproxy_transfer_duration_seconds":    "histogram",
		"ftpsproxy_session_duration_seconds":     "histogram",
		"ftpsproxy_backend_transfer_bytes_total": "counter",
		"ftpsproxy_tls_handshake_failures_total": "counter",
		"ftpsproxy_reloads_total":                "counter",
	} {
		if e.types[fam] != typ {
			t.Errorf("TYPE of %s = %q, want %q", fam, e.types[fam], typ)
		}
	}

	// 421s: counts in the fixed order, recent ones newest first.
	wantCounts := []CauseCount{{"no_backend", 1}, {"too_many", 1}, {"login_rate", 1}, {"timeout", 2},
		{"shutdown", 1}, {"backend_lost", 1}, {"denied", 0}, {"admin", 1}, {"other", 1}}
	if got := m.Counts421(); !slices.Equal(got, wantCounts) {
		t.Errorf("Counts421 = %v, want %v", got, wantCounts)
	}
	var causes []string
	for _, ev := range m.Recent421(3) {
		causes = append(causes, ev.Cause)
		if time.Since(ev.Time) > time.Minute {
			t.Errorf("421 time %v", ev.Time)
		}
	}
	if want := []string{"other", "login_rate", "too_many"}; !slices.Equal(causes, want) {
		t.Errorf("Recent421(3) = %v, want %v", causes, want)
	}
	if n := len(m.Recent421(100)); n != 9 {
		t.Errorf("Recent421(100) has %d events, want 9", n)
	}

	// A reload swaps the pools: gauges follow, counters of departed backends stay.
	pool2 := newPool(t, "default", "round_robin", balancer.BackendConfig{Address: "10.0.0.13:21"})
	src.setPools(pool2)
	got := ours(scrape(t, m))
	if _, ok := got[key("ftpsproxy_backend_up", "pool", "default", "backend", "10.0.0.12:21")]; ok {
		t.Error("gauge of a removed backend still exported")
	}
	if got[key("ftpsproxy_backend_up", "pool", "default", "backend", "10.0.0.13:21")] != 1 {
		t.Error("gauge of a new backend missing")
	}
	if got[key("ftpsproxy_backend_sessions_total", "pool", "default", "backend", "10.0.0.11:21")] != 2 {
		t.Error("counter of a removed backend lost")
	}
	// And back: the old backend's gauges are registered again, reading the new pool.
	src.setPools(pool)
	got = ours(scrape(t, m))
	if got[key("ftpsproxy_backend_active_sessions", "pool", "default", "backend", "10.0.0.11:21")] != 2 {
		t.Error("gauge of a returning backend missing")
	}
}

func TestMetricsRecent421Ring(t *testing.T) {
	m := NewMetrics()
	for i := range 120 {
		c := proxy.CauseTimeout
		if i%2 == 1 {
			c = proxy.CauseShutdown
		}
		m.Closed421(c)
	}
	r := m.Recent421(1000)
	if len(r) != recent421Size {
		t.Fatalf("kept %d 421s, want %d", len(r), recent421Size)
	}
	if r[0].Cause != "shutdown" || r[1].Cause != "timeout" {
		t.Errorf("newest first: got %v, %v", r[0].Cause, r[1].Cause)
	}
	for i := 1; i < len(r); i++ {
		if r[i].Time.After(r[i-1].Time) {
			t.Fatalf("event %d newer than event %d", i, i-1)
		}
	}
	if got := m.Recent421(0); len(got) != 0 {
		t.Errorf("Recent421(0) = %v", got)
	}
}

func TestMetricsLabelEscaping(t *testing.T) {
	odd := "we\"ird\\pool\nname"
	pool := newPool(t, odd, "", balancer.BackendConfig{Address: "[2001:db8::1]:21"})
	m := NewMetrics()
	m.SetSource(&fakeSource{pools: []*balancer.Pool{pool}, listeners: []ListenerInfo{{Name: "a\"b"}}})
	m.BackendSession(odd, "[2001:db8::1]:21")
	m.SessionStarted("a\"b")
	m.SessionStarted("\xff invalid utf-8")
	got := ours(scrape(t, m))
	if got[key("ftpsproxy_backend_sessions_total", "pool", odd, "backend", "[2001:db8::1]:21")] != 1 {
		t.Errorf("escaped pool name did not round-trip: %v", got)
	}
	if got[key("ftpsproxy_sessions_total", "listener", "a\"b")] != 1 {
		t.Errorf("escaped listener name did not round-trip")
	}
	if got[key("ftpsproxy_sessions_total", "listener", "\uFFFD invalid utf-8")] != 1 {
		t.Errorf("invalid UTF-8 not replaced")
	}
}

func TestMetricsNil(t *testing.T) {
	var m *Metrics
	var obs proxy.Observer = m
	obs.SessionStarted("x")
	obs.SessionEnded("x", "y")
	obs.BackendSession("p", "b")
	obs.Login("ok")
	obs.Closed421(proxy.CauseTimeout)
	obs.DataRefused("bounce")
	obs.PortsExhausted()
	obs.TLSHandshake("client", nil)
	obs.Transfer(proxy.TransferRecord{})
	obs.DirectoryLookup("url", "found", true)
	m.RateLimited()
	m.SetSource(nil)
	m.SetTransferLog(nil)
	var b bytes.Buffer
	m.WritePrometheus(&b)
	if b.Len() != 0 || m.Recent421(5) != nil || m.Counts421() != nil {
		t.Error("nil Metrics produced output")
	}
}

// TestMetricsConcurrent runs every observer method from many goroutines while scraping and
// reloading, for the race detector; the totals must add up.
func TestMetricsConcurrent(t *testing.T) {
	pools := []*balancer.Pool{
		newPool(t, "a", "", balancer.BackendConfig{Address: "10.0.0.1:21"}),
		newPool(t, "b", "", balancer.BackendConfig{Address: "10.0.0.2:21"}),
	}
	src := &fakeSource{pools: pools[:1], listeners: []ListenerInfo{{Name: "ftp"}}}
	m := NewMetrics()
	m.SetSource(src)
	const workers, rounds = 8, 200
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				m.SessionStarted("ftp")
				m.BackendSession("a", "10.0.0.1:21")
				m.Login("ok")
				m.Closed421(proxy.CauseTimeout)
				m.TLSHandshake("client", nil)
				m.Transfer(proxy.TransferRecord{Command: "RETR", Complete: true, Bytes: 1, Client: netip.MustParseAddr("10.1.1.1")})
				m.SessionEnded("ftp", "10.0.0.1:21")
				if i%50 == 0 {
					src.setPools(pools[(w+i)%2])
				}
			}
		}()
	}
	stop := make(chan struct{})
	scraped := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				scraped <- n
				return
			default:
			}
			var b bytes.Buffer
			m.WritePrometheus(&b)
			if _, err := parseExposition(b.String()); err != nil {
				t.Error(err)
			}
			m.Recent421(10)
			m.Counts421()
			n++
		}
	}()
	wg.Wait()
	close(stop)
	t.Logf("%d scrapes during the run", <-scraped)
	got := ours(scrape(t, m))
	total := float64(workers * rounds)
	for k, v := range map[string]float64{
		key("ftpsproxy_sessions_total", "listener", "ftp"):                             total,
		key("ftpsproxy_sessions_active", "listener", "ftp"):                            0,
		key("ftpsproxy_backend_sessions_total", "pool", "a", "backend", "10.0.0.1:21"): total,
		key("ftpsproxy_logins_total", "outcome", "ok"):                                 total,
		key("ftpsproxy_closed_421_total", "cause", "timeout"):                          total,
		key("ftpsproxy_transfer_bytes_total", "direction", "download"):                 total,
	} {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}

func ExampleMetrics() {
	m := NewMetrics()
	m.Login("ok")
	var b bytes.Buffer
	m.WritePrometheus(&b)
	for _, line := range strings.Split(b.String(), "\n") {
		if strings.HasPrefix(line, "ftpsproxy_logins_total") {
			fmt.Println(line)
		}
	}
	// Output:
	// ftpsproxy_logins_total{outcome="error"} 0
	// ftpsproxy_logins_total{outcome="failed"} 0
	// ftpsproxy_logins_total{outcome="ok"} 1
	// ftpsproxy_logins_total{outcome="rate_limited"} 0
}

// TestMetricsHealthChecks: health checks are counted per listener with their HELP, and are
// not sessions.
func TestMetricsHealthChecks(t *testing.T) {
	m := NewMetrics()
	m.HealthCheck("ftp")
	m.HealthCheck("ftp")
	got := ours(scrape(t, m))
	if got[key("ftpsproxy_health_checks_total", "listener", "ftp")] != 2 {
		t.Fatalf("health checks: %v", got)
	}
	if got[key("ftpsproxy_sessions_total", "listener", "ftp")] != 0 {
		t.Fatal("a health check counted as a session")
	}
	var raw, b strings.Builder
	m.WritePrometheus(&raw)
	fillHelp(&b, []byte(raw.String())) // as /metrics serves it
	if !strings.Contains(b.String(), "# HELP ftpsproxy_health_checks_total Health checks") {
		t.Fatal("no HELP for ftpsproxy_health_checks_total")
	}
}
