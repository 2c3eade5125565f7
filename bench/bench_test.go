package main

import (
	"bytes"
	"os"
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
	byKey := map[string]*Metric{}
	for _, m := range res.Metrics {
		byKey[m.Key] = m
	}
	want := []string{
		"plain_retr_mibps", "plain_stor_mibps", "plain_retr_cpu_s_per_gib", "plain_stor_cpu_s_per_gib",
		"ftps_retr_mibps", "ftps_stor_mibps", "ftps_retr_cpu_s_per_gib", "ftps_stor_cpu_s_per_gib",
		"sessions_per_s", "session_failures", "session_ms", "session_cpu_ms",
		"noop_median_us", "noop_p99_us", "noop_added_median_us",
		"idle_rss_mib_100", "idle_bytes_per_session", "idle_pss_bytes_per_session", "idle_sessions_held",
	}
	for _, key := range want {
		m := byKey[key]
		if m == nil {
			t.Errorf("metric %s missing", key)
			continue
		}
		for _, p := range pathOrder {
			if why, ok := m.NA[p]; ok {
				// Allowed n/a: no proxy on the direct path, the direct reference itself, and
				// FTPS through mod_proxy if mod_proxy cannot do it (reported with the reason).
				if p == pDirect || (p == pModProxy && key[:4] == "ftps") {
					t.Logf("%s %s: n/a: %s", key, p, why)
					continue
				}
				t.Errorf("%s: path %s did not run: %s", key, p, why)
				continue
			}
			n := len(m.Samples[p])
			wantN := opt.Reps
			if m.Once {
				wantN = 1
			}
			if n != wantN {
				t.Errorf("%s: path %s has %d samples, want %d", key, p, n, wantN)
			}
		}
	}
	if m := byKey["session_failures"]; m != nil {
		for p, v := range m.Median {
			if v != 0 {
				t.Errorf("%s: %v sessions failed", p, v)
			}
		}
	}
	if m := byKey["idle_sessions_held"]; m != nil {
		for p, v := range m.Median {
			if int(v) != opt.IdleLevels[0] {
				t.Errorf("%s held %v idle sessions, want %d", p, v, opt.IdleLevels[0])
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
