package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Results is everything a run measured; it is also the -json output.
type Results struct {
	Start     time.Time                    `json:"start"`
	DurationS float64                      `json:"measure_duration_s"`
	Env       map[string]string            `json:"environment"`
	Options   Options                      `json:"options"`
	Data      map[string]string            `json:"data_file"`
	Paths     map[string]map[string]string `json:"paths"`
	Configs   map[string]string            `json:"configs"`
	Metrics   []*Metric                    `json:"metrics"`
	Memory    map[string]any               `json:"memory_details"`
	Targets   []Target                     `json:"targets"`
	Verified  int64                        `json:"verified_transfers"`
	// HandshakesVerified: handshake-phase connections that presented the pinned certificate
	// and greeted; IdleAnswered: NOOPs answered by held idle sessions (memory, ftpsidle, scale).
	HandshakesVerified int64    `json:"handshakes_verified"`
	IdleAnswered       int64    `json:"idle_sessions_answered"`
	Notes              []string `json:"notes,omitempty"`

	metrics  map[string]*Metric
	cpuStart cpuTimes // /proc/stat at the start, for the share of CPU time stolen during the run
}

// Metric is one measured quantity on every path: raw samples (one per round) and their
// summary. NA gives the reason a path has no value.
type Metric struct {
	Key     string               `json:"key"`
	Title   string               `json:"title"`
	Unit    string               `json:"unit"`
	Higher  bool                 `json:"higher_is_better"`
	Samples map[string][]float64 `json:"samples"`
	Median  map[string]float64   `json:"median"`
	Min     map[string]float64   `json:"min"`
	Max     map[string]float64   `json:"max"`
	Ratios  map[string]float64   `json:"ratios,omitempty"` // "ftpsproxy/direct" etc.: median of per-round ratios
	NA      map[string]string    `json:"na,omitempty"`
	Sum     bool                 `json:"sum,omitempty"`       // a count: the summary is the total
	Once    bool                 `json:"once,omitempty"`      // measured once, no spread
	Est     map[string]string    `json:"estimated,omitempty"` // values extrapolated, and how
	NoRatio bool                 `json:"-"`
}

// est marks path's value as extrapolated.
func (m *Metric) est(path, how string) {
	if m.Est == nil {
		m.Est = map[string]string{}
	}
	m.Est[path] = how
}

// Target is one of the goals, checked against this run (informational).
type Target struct {
	Name   string  `json:"name"`
	Metric string  `json:"metric"`
	Value  float64 `json:"value"`
	Limit  string  `json:"limit"`
	Result string  `json:"result"`          // PASS, MISS or n/a
	Bound  float64 `json:"bound,omitempty"` // the same ratio for the path no proxy can beat
	Why    string  `json:"why,omitempty"`
}

func newResults(opt Options) *Results {
	r := &Results{
		Start:   time.Now(),
		Options: opt,
		Configs: map[string]string{},
		Memory:  map[string]any{},
		metrics: map[string]*Metric{},
		Env: map[string]string{
			"go":            runtime.Version(),
			"kernel":        readTrim("/proc/sys/kernel/osrelease"),
			"cpus":          fmt.Sprint(runtime.NumCPU()),
			"cpu_model":     cpuModel(),
			"mem_total":     memTotal(),
			"loadavg_start": readTrim("/proc/loadavg"),
			"vsftpd":        readTrim(peersPrefix + "/vsftpd/.installed"),
			"proftpd":       readTrim(peersPrefix + "/proftpd/.installed"),
			"ftpsproxy_git": gitDescribe(),
		},
	}
	r.cpuStart = readCPUTimes()
	return r
}

// cpuTimes is the first line of /proc/stat: all CPUs' time in ticks, in total and stolen by
// the hypervisor (time a vCPU wanted to run and its host ran something else).
type cpuTimes struct{ total, steal uint64 }

func readCPUTimes() cpuTimes {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return cpuTimes{}
	}
	var t cpuTimes
	for i, v := range f[1:] {
		n, _ := strconv.ParseUint(v, 10, 64)
		if i < 8 { // user nice system idle iowait irq softirq steal; guest is inside user
			t.total += n
		}
		if i == 7 {
			t.steal = n
		}
	}
	return t
}

// stealShare is the share of CPU time stolen by the hypervisor since start, as text.
func stealShare(start cpuTimes) string {
	end := readCPUTimes()
	if end.total <= start.total {
		return "n/a"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(end.steal-start.steal)/float64(end.total-start.total))
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for l := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

func memTotal() string {
	b, _ := os.ReadFile("/proc/meminfo")
	l, _, _ := strings.Cut(string(b), "\n")
	return strings.Join(strings.Fields(strings.TrimPrefix(l, "MemTotal:")), " ")
}

func gitDescribe() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

// metric returns the metric with key, creating it in report order.
func (r *Results) metric(key, title, unit string, higher bool) *Metric {
	if m, ok := r.metrics[key]; ok {
		return m
	}
	m := &Metric{Key: key, Title: title, Unit: unit, Higher: higher, Samples: map[string][]float64{},
		Median: map[string]float64{}, Min: map[string]float64{}, Max: map[string]float64{}, NA: map[string]string{}}
	r.metrics[key] = m
	r.Metrics = append(r.Metrics, m)
	return m
}

func (m *Metric) add(path string, v float64) { m.Samples[path] = append(m.Samples[path], v) }

func (r *Results) note(s string) { r.Notes = append(r.Notes, s) }

// finish computes medians, ranges, ratios and the targets.
func (r *Results) finish() {
	for _, m := range r.Metrics {
		for p, s := range m.Samples {
			if len(s) == 0 {
				continue
			}
			if m.Sum {
				var t float64
				for _, v := range s {
					t += v
				}
				m.Median[p], m.Min[p], m.Max[p] = t, t, t
				continue
			}
			m.Median[p], m.Min[p], m.Max[p] = median(s), slices.Min(s), slices.Max(s)
		}
		m.Ratios = map[string]float64{}
		fp, ok := m.value(pFtpsproxy)
		if !ok || m.NoRatio {
			continue
		}
		for _, other := range []string{pDirect, pModProxy, pRelay} {
			if v, ok := m.pairedRatio(pFtpsproxy, other); ok && fp >= 0 {
				m.Ratios[pFtpsproxy+"/"+other] = v
			}
		}
	}
	r.Targets = r.targets()
}

func (m *Metric) value(path string) (float64, bool) {
	if _, na := m.NA[path]; na {
		return 0, false
	}
	v, ok := m.Median[path]
	return v, ok
}

// pairedRatio is a's value over b's as the median over rounds of the ratio within each round.
// Rounds are interleaved, so a round in which the machine is slow slows every path and cancels
// out of its own ratio; a ratio of medians would mix samples from different rounds. Without
// one sample per round on both sides it falls back to the ratio of medians.
func (m *Metric) pairedRatio(a, b string) (float64, bool) {
	va, oka := m.value(a)
	vb, okb := m.value(b)
	if !oka || !okb || vb <= 0 || m.Sum {
		return 0, false // a count (Sum) has no ratio
	}
	sa, sb := m.Samples[a], m.Samples[b]
	if len(sa) != len(sb) || len(sa) == 0 {
		return va / vb, true
	}
	r := make([]float64, 0, len(sa))
	for i := range sa {
		if sb[i] <= 0 {
			return va / vb, true
		}
		r = append(r, sa[i]/sb[i])
	}
	return median(r), true
}

func median(s []float64) float64 {
	c := slices.Clone(s)
	slices.Sort(c)
	n := len(c)
	if n%2 == 1 {
		return c[n/2]
	}
	return (c[n/2-1] + c[n/2]) / 2
}

// targets checks the goals (SPEC: issue 20, which replaced issue 7's). Ratios are
// medians of per-round ratios from this run. Where the target is a ratio to another path, the
// line also gives the bound set by the machine when there is one: the same ratio for the path
// that no proxy can beat (the bare relay over direct: no FTP logic; the bare relay over
// mod_proxy for CPU: the least a relay can spend), and the handshake targets print mod_proxy's
// ratio to the terminator beside them.
func (r *Results) targets() []Target {
	var ts []Target
	// ratio is a target on ftpsproxy/other: ≥ limit, or ≤ limit with le. bound names a
	// pair a/b whose ratio is the machine's bound; beside names a pair printed for context.
	ratio := func(name, key, other string, limit float64, le bool, bound, beside [2]string) {
		op := "≥"
		if le {
			op = "≤"
		}
		t := Target{Name: name, Metric: key, Limit: fmt.Sprintf("%s %.2f×", op, limit)}
		m := r.metrics[key]
		switch {
		case m == nil:
			t.Result, t.Why = "n/a", "not measured in this run"
		default:
			v, ok := m.Ratios[pFtpsproxy+"/"+other]
			if !ok {
				t.Result, t.Why = "n/a", naWhy(m, other)
				break
			}
			t.Value = v
			t.Result = passMiss((!le && v >= limit) || (le && v <= limit))
			var why []string
			if bound[0] != "" {
				if b, ok := m.pairedRatio(bound[0], bound[1]); ok {
					t.Bound = b
					why = append(why, fmt.Sprintf("bound: in this run %s/%s is %.2f×", bound[0], bound[1], b))
				}
			}
			if beside[0] != "" {
				if b, ok := m.pairedRatio(beside[0], beside[1]); ok {
					why = append(why, fmt.Sprintf("%s/%s is %.2f×", beside[0], beside[1], b))
				} else {
					why = append(why, fmt.Sprintf("%s/%s n/a", beside[0], beside[1]))
				}
			}
			t.Why = strings.Join(why, "; ")
		}
		ts = append(ts, t)
	}
	// abs is a target on ftpsproxy's own value.
	abs := func(name, key, limit string, want func(float64) bool) {
		t := Target{Name: name, Metric: key, Limit: limit}
		m := r.metrics[key]
		if m == nil {
			t.Result, t.Why = "n/a", "not measured in this run"
		} else if v, ok := m.value(pFtpsproxy); !ok {
			t.Result, t.Why = "n/a", naWhy(m, pFtpsproxy)
		} else {
			t.Value = v
			t.Result = passMiss(want(v))
			if how, ok := m.Est[pFtpsproxy]; ok {
				t.Why = "est: " + how
			}
		}
		ts = append(ts, t)
	}
	var none [2]string
	for _, lvl := range []int{1000, 5000} {
		abs(fmt.Sprintf("FTPS RSS per idle session at %d", lvl), fmt.Sprintf("ftps_idle_bytes_per_session_%d", lvl),
			"≤ 28672 bytes (28 KiB)", func(v float64) bool { return v <= 28672 })
	}
	for _, k := range []struct{ key, name string }{{"ecdsa_full", "ECDSA full"}, {"ecdsa_resumed", "ECDSA resumed"}, {"rsa_full", "RSA full"}, {"rsa_resumed", "RSA resumed"}} {
		ratio("TLS handshake rate "+k.name+" vs bare terminator", "hs_"+k.key+"_per_s", pRelay, 0.9, false, none, [2]string{pModProxy, pRelay})
	}
	ratio("session rate vs bare relay", "sessions_per_s", pRelay, 0.95, false, none, [2]string{pRelay, pDirect})
	ratio("proxy CPU per session vs bare relay", "session_cpu_ms", pRelay, 1.2, true, none, none)
	abs("NOOP added latency, median", "noop_added_median_us", "≤ 40 µs", func(v float64) bool { return v <= 40 })
	abs("scale: NOOP p99 growth, most/fewest idle", "scale_p99_growth", "≤ 1.50×", func(v float64) bool { return v <= 1.5 })
	abs("scale: proxy CPU per NOOP, max/min", "scale_cpu_spread", "≤ 1.20×", func(v float64) bool { return v <= 1.2 })
	ratio("FTPS RETR CPU per GiB vs mod_proxy", "ftps_retr_cpu_s_per_gib", pModProxy, 0.9, true, [2]string{pRelay, pModProxy}, none)
	ratio("FTPS STOR CPU per GiB vs mod_proxy", "ftps_stor_cpu_s_per_gib", pModProxy, 0.9, true, [2]string{pRelay, pModProxy}, none)
	ratio("plain RETR throughput vs direct", "plain_retr_mibps", pDirect, 0.95, false, [2]string{pRelay, pDirect}, none)
	ratio("plain RETR CPU per GiB vs mod_proxy", "plain_retr_cpu_s_per_gib", pModProxy, 0.3, true, [2]string{pRelay, pModProxy}, none)
	ratio("plain STOR CPU per GiB vs mod_proxy", "plain_stor_cpu_s_per_gib", pModProxy, 0.3, true, [2]string{pRelay, pModProxy}, none)
	abs("sessions dropped by ftpsproxy", "session_failures", "= 0", func(v float64) bool { return v == 0 })
	return ts
}

func naWhy(m *Metric, path string) string {
	if w, ok := m.NA[path]; ok {
		return path + ": " + w
	}
	if _, ok := m.NA[pFtpsproxy]; ok {
		return pFtpsproxy + ": " + m.NA[pFtpsproxy]
	}
	return "no value"
}

func passMiss(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}

// printConfigs writes the configurations in use before anything is measured.
func (b *bench) printConfigs(out io.Writer) {
	fmt.Fprintf(out, "==> ftpsproxy config (%s)\n%s\n", b.w.etc("ftpsproxy.toml"), b.res.Configs["ftpsproxy"])
	fmt.Fprintf(out, "==> ProFTPD mod_proxy config (%s)\n%s\n", b.w.etc("proftpd.conf"), b.res.Configs["mod_proxy"])
}

// print writes the table, the paths, the reasons for n/a cells and the targets.
func (r *Results) print(out io.Writer) {
	var notes []string
	noteIdx := map[string]int{}
	ref := func(reason string) string {
		i, ok := noteIdx[reason]
		if !ok {
			notes = append(notes, reason)
			i = len(notes)
			noteIdx[reason] = i
		}
		return fmt.Sprintf("n/a[%d]", i)
	}
	header := []string{"metric"}
	header = append(header, pathOrder...)
	header = append(header, "fp/direct", "fp/mod_proxy", "fp/relay")
	rows := [][]string{header}
	for _, m := range r.Metrics {
		dir := "↓"
		if m.Higher {
			dir = "↑"
		}
		row := []string{fmt.Sprintf("%s, %s %s", m.Title, m.Unit, dir)}
		if m.Sum {
			row[0] = fmt.Sprintf("%s, %s", m.Title, m.Unit)
		}
		for _, p := range pathOrder {
			row = append(row, m.cell(p, ref))
		}
		for _, o := range []string{pDirect, pModProxy, pRelay} {
			if v, ok := m.Ratios[pFtpsproxy+"/"+o]; ok {
				row = append(row, fmt.Sprintf("%.2f", v))
			} else {
				row = append(row, "-")
			}
		}
		rows = append(rows, row)
	}
	fmt.Fprintf(out, "\n==> ftpsproxy benchmark (%s mode, %d rounds interleaved; median ±half-range over rounds; ↑ higher is better, ↓ lower)\n",
		map[bool]string{true: "quick", false: "full"}[r.Options.Quick], r.Options.Reps)
	fmt.Fprintf(out, "    %s, %s CPUs, %s, Linux %s, %s; load average at start %s, at end %s; CPU time stolen by the hypervisor during the run: %s\n",
		r.Env["cpu_model"], r.Env["cpus"], r.Env["mem_total"], r.Env["kernel"], r.Env["go"], r.Env["loadavg_start"], r.Env["loadavg_end"], r.Env["cpu_steal"])
	o := r.Options
	fmt.Fprintf(out, "    file %s MiB; %d sessions per path per round at %d concurrent; %d NOOPs per path per round; idle levels %v, FTPS %v (mod_proxy capped at %d); login %s\n",
		trimFloat(float64(o.FileSize)/(1<<20)), o.Sessions, o.Concurrency, o.Noops, o.IdleLevels, o.FTPSIdleLevels, o.ModProxyCap, o.Login)
	fmt.Fprintf(out, "    handshakes per path per round %d full, %d resumed (mod_proxy %d each); scale levels %v, %d workers × %d NOOPs per round\n\n",
		o.HSFull, o.HSResumed, o.HSModProxy, o.ScaleLevels, o.Concurrency, o.ScaleNoops)
	printTable(out, rows)
	fmt.Fprintf(out, "\npaths:\n")
	for _, mode := range []string{"plain", "ftps", "handshake"} {
		for _, p := range pathOrder {
			if l, ok := r.Paths[mode][p]; ok {
				fmt.Fprintf(out, "  %-9s %-9s %s\n", mode, p, l)
			}
		}
	}
	if len(notes) > 0 {
		fmt.Fprintf(out, "\nn/a and est:\n")
		for i, n := range notes {
			fmt.Fprintf(out, "  [%d] %s\n", i+1, n)
		}
	}
	fmt.Fprintf(out, "\ntargets (informational; medians of per-round ratios from this run):\n")
	for _, t := range r.Targets {
		v := "-"
		switch {
		case t.Result == "n/a":
			v = "n/a"
		case strings.HasSuffix(t.Limit, "×"):
			v = fmt.Sprintf("%.3f×", t.Value) // 3 places: 0.897 must not print as the 0.90 it misses
		default:
			v = trimFloat(t.Value)
		}
		line := fmt.Sprintf("  %-4s %-52s %10s  target %s", t.Result, t.Name, v, t.Limit)
		if t.Why != "" {
			line += "  (" + t.Why + ")"
		}
		fmt.Fprintln(out, line)
	}
	fmt.Fprintf(out, "\n%d transfers verified by SHA-256, %d TLS handshakes by the pinned certificate, %d NOOPs answered by held idle sessions; measuring took %s\n",
		r.Verified, r.HandshakesVerified, r.IdleAnswered, time.Duration(r.DurationS*float64(time.Second)).Round(time.Second))
	for _, n := range r.Notes {
		fmt.Fprintf(out, "note: %s\n", n)
	}
}

// cell formats a path's summary: "median ±x%" (or ± in the unit for values near zero).
func (m *Metric) cell(p string, ref func(string) string) string {
	if w, ok := m.NA[p]; ok {
		return ref(w)
	}
	v, ok := m.Median[p]
	if !ok {
		return "-"
	}
	s := trimFloat(v)
	if m.Sum {
		return fmt.Sprintf("%.0f", v)
	}
	if how, ok := m.Est[p]; ok {
		return s + " est" + strings.TrimPrefix(ref(how), "n/a")
	}
	if m.Sum || m.Once || len(m.Samples[p]) < 2 {
		return s
	}
	half := (m.Max[p] - m.Min[p]) / 2
	if math.Abs(v) < 1e-9 || math.Abs(half/v) > 1 {
		return s + " ±" + trimFloat(half)
	}
	return fmt.Sprintf("%s ±%.0f%%", s, 100*half/math.Abs(v))
}

func trimFloat(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 1000:
		return fmt.Sprintf("%.0f", v)
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	case a == 0:
		return "0"
	}
	return fmt.Sprintf("%.3f", v)
}

func printTable(out io.Writer, rows [][]string) {
	widths := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], len([]rune(c)))
		}
	}
	for ri, r := range rows {
		var b strings.Builder
		for i, c := range r {
			pad := strings.Repeat(" ", widths[i]-len([]rune(c)))
			if i == 0 {
				b.WriteString(c + pad)
			} else {
				b.WriteString("  " + pad + c)
			}
		}
		fmt.Fprintln(out, strings.TrimRight(b.String(), " "))
		if ri == 0 {
			total := len(widths)*2 - 2
			for _, w := range widths {
				total += w
			}
			fmt.Fprintln(out, strings.Repeat("-", total))
		}
	}
}

// writeJSON writes the results as indented JSON.
func (r *Results) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
