package main

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"testing"
)

func TestMain(m *testing.M) {
	// The relays run as children of this test binary (see startRelay).
	if relayChild() {
		os.Exit(relayMain())
	}
	os.Exit(m.Run())
}

// TestQuick runs the -quick benchmark once. It asserts that every path ran every
// measurement and that every transfer verified, never a timing: the numbers depend on the
// machine and on whatever else runs on it.
func TestQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real servers for about 30 s")
	}
	var out bytes.Buffer
	res, err := Run(DefaultOptions(true), t, &out)
	t.Logf("report:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	opt := res.Options
	if res.Verified == 0 {
		t.Fatal("no transfer verified")
	}
	if res.HandshakesVerified == 0 {
		t.Fatal("no TLS handshake verified")
	}
	if res.IdleAnswered == 0 {
		t.Fatal("no idle session checked")
	}
	byKey := map[string]*Metric{}
	for _, m := range res.Metrics {
		byKey[m.Key] = m
	}
	// Every metric, and the paths allowed to be n/a in it (with a reason, which is logged).
	// direct has no proxy process; mod_proxy may be unable to serve FTPS toward the client
	// (the ftps rows then say why); the scale phase leaves out the forking servers.
	type want struct {
		key string
		na  []string
	}
	var wants []want
	add := func(na []string, keys ...string) {
		for _, k := range keys {
			wants = append(wants, want{k, na})
		}
	}
	direct := []string{pDirect}
	directMP := []string{pDirect, pModProxy}
	add(direct, "plain_retr_mibps", "plain_stor_mibps", "plain_retr_cpu_s_per_gib", "plain_stor_cpu_s_per_gib")
	add(directMP, "ftps_retr_mibps", "ftps_stor_mibps", "ftps_retr_cpu_s_per_gib", "ftps_stor_cpu_s_per_gib")
	add(direct, "sessions_per_s", "session_failures", "session_ms", "session_cpu_ms",
		"noop_median_us", "noop_p99_us", "noop_added_median_us",
		"idle_rss_mib_100", "idle_bytes_per_session", "idle_pss_bytes_per_session", "idle_sessions_held")
	for _, lvl := range opt.FTPSIdleLevels {
		add(directMP, fmt.Sprintf("ftps_idle_rss_mib_%d", lvl), fmt.Sprintf("ftps_idle_bytes_per_session_%d", lvl))
	}
	add(directMP, "ftps_idle_bytes_per_session", "ftps_idle_pss_bytes_per_session", "ftps_idle_sessions_held")
	// mod_proxy's resumed rows may be n/a (with the reason) if mod_tls stops resuming.
	add(direct, "hs_failures", "hs_ecdsa_full_per_s", "hs_ecdsa_full_cpu_us", "hs_rsa_full_per_s", "hs_rsa_full_cpu_us",
		"hs_ecdsa_not_resumed", "hs_rsa_not_resumed")
	add(directMP, "hs_ecdsa_resumed_per_s", "hs_ecdsa_resumed_cpu_us", "hs_rsa_resumed_per_s", "hs_rsa_resumed_cpu_us")
	for _, lvl := range opt.ScaleLevels {
		add(directMP, fmt.Sprintf("scale_noop_p50_us_%d", lvl), fmt.Sprintf("scale_noop_p99_us_%d", lvl), fmt.Sprintf("scale_cpu_us_per_cmd_%d", lvl))
	}
	add(directMP, "scale_p99_growth", "scale_cpu_spread")
	for _, w := range wants {
		m := byKey[w.key]
		if m == nil {
			t.Errorf("metric %s missing", w.key)
			continue
		}
		for _, p := range pathOrder {
			if why, ok := m.NA[p]; ok {
				if slices.Contains(w.na, p) && why != "" {
					t.Logf("%s %s: n/a: %s", w.key, p, why)
					continue
				}
				t.Errorf("%s: path %s did not run: %s", w.key, p, why)
				continue
			}
			n := len(m.Samples[p])
			switch {
			case m.Sum:
				if n == 0 {
					t.Errorf("%s: path %s has no count", w.key, p)
				}
			case m.Once && n != 1:
				t.Errorf("%s: path %s has %d samples, want 1", w.key, p, n)
			case !m.Once && n != opt.Reps:
				t.Errorf("%s: path %s has %d samples, want %d", w.key, p, n, opt.Reps)
			}
		}
	}
	// Counts that must be zero: failed sessions and handshakes, and resumption refused by
	// the bare terminator and by ftpsproxy (a control connection may resume a ticket of an
	// earlier one).
	for _, key := range []string{"session_failures", "hs_failures"} {
		if m := byKey[key]; m != nil {
			for p, v := range m.Median {
				if v != 0 {
					t.Errorf("%s: %s: %v", key, p, v)
				}
			}
		}
	}
	for _, key := range []string{"hs_ecdsa_not_resumed", "hs_rsa_not_resumed"} {
		if m := byKey[key]; m != nil {
			for _, p := range []string{pFtpsproxy, pRelay} {
				if v := m.Median[p]; v != 0 {
					t.Errorf("%s: %s made %v full handshakes where resumption was asked", key, p, v)
				}
			}
		}
	}
	for key, level := range map[string]int{"idle_sessions_held": opt.IdleLevels[0], "ftps_idle_sessions_held": opt.FTPSIdleLevels[0]} {
		if m := byKey[key]; m != nil {
			for p, v := range m.Median {
				if int(v) != level {
					t.Errorf("%s: %s held %v idle sessions, want %d", key, p, v, level)
				}
			}
		}
	}
	if len(res.Targets) == 0 {
		t.Error("no targets evaluated")
	}
}

// TestPairedRatio checks that ratios pair samples by round, so a slow round cancels out, and
// fall back to the ratio of medians when the rounds do not line up.
func TestPairedRatio(t *testing.T) {
	m := &Metric{Samples: map[string][]float64{}, Median: map[string]float64{}, NA: map[string]string{}}
	set := func(p string, s ...float64) {
		m.Samples[p] = s
		m.Median[p] = median(s)
	}
	// Round 2 is slow for everyone; ftpsproxy is 0.9× the relay in every round.
	set(pFtpsproxy, 900, 450, 1800)
	set(pRelay, 1000, 500, 2000)
	if got, ok := m.pairedRatio(pFtpsproxy, pRelay); !ok || got < 0.8999 || got > 0.9001 {
		t.Errorf("paired ratio = %v, %v; want 0.9", got, ok)
	}
	// A drifting machine makes the ratio of medians lie; the paired one does not.
	set(pFtpsproxy, 950, 2000, 1000)
	set(pRelay, 1000, 2100, 980)
	if got, _ := m.pairedRatio(pFtpsproxy, pRelay); got < 0.952 || got > 0.953 {
		t.Errorf("paired ratio = %v; want the middle round's 2000/2100", got)
	}
	set(pDirect, 1000, 1000)
	if got, ok := m.pairedRatio(pFtpsproxy, pDirect); !ok || got != 1 {
		t.Errorf("unpaired ratio = %v, %v; want the ratio of medians 1000/1000", got, ok)
	}
	m.NA[pModProxy] = "not run"
	set(pModProxy, 1)
	if _, ok := m.pairedRatio(pFtpsproxy, pModProxy); ok {
		t.Error("ratio against an n/a path")
	}
}
