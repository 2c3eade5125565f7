package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/internal/peers"
)

const (
	alertsFile     = "../dist/prometheus/alerts.yml"
	alertTestsFile = "../dist/prometheus/alerts_test.yml"
	dashboardFile  = "../dist/grafana/ftpsproxy.json"
)

// TestPromtoolRules checks dist/prometheus/alerts.yml with promtool (Debian's prometheus
// package, installed by scripts/install-test-peers.sh): the rules parse, and the unit tests
// in alerts_test.yml fire each alert on the series that should fire it and not on others.
func TestPromtoolRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found; scripts/install-test-peers.sh installs Debian's prometheus package: %v", err)
	}
	for _, args := range [][]string{{"check", "rules", alertsFile}, {"test", "rules", alertTestsFile}} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "SUCCESS") {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestDashboardMetricsExist runs the binary with an admin listener, TLS from files and a real
// vsftpd backend, makes one transfer through it, scrapes /metrics and checks that every
// metric name used in the Grafana dashboard's and the alert rules' expressions is exported.
func TestDashboardMetricsExist(t *testing.T) {
	backend := peers.StartVsftpd(t, peers.Options{})
	certFile, keyFile, _ := proxyCert(t)
	adminAddr := freeAddr(t)
	p := startProxy(t, explicitTLSConfig(t, freeAddr(t), certFile, keyFile, backend.Addr,
		fmt.Sprintf("[admin]\naddress = %q\n", adminAddr)))
	up, data := randomData(t, t.TempDir(), "dash.bin", 64<<10)
	if out, err := peers.Curl(context.Background(), "--ssl-reqd", "--cacert", certFile, "--user",
		peers.User+":"+peers.Password, "-T", up, "ftp://"+p.addr+"/dash.bin"); err != nil {
		t.Fatalf("curl upload: %v\n%s", err, out)
	}
	if fileSum(t, filepath.Join(backend.Root, "dash.bin")) != sum(data) {
		t.Fatal("upload sha256 mismatch")
	}

	// Clients that do not trust the certificate: curl (OpenSSL) rejects it in the handshake.
	// With TLS 1.2 its unknown_ca alert arrives; with TLS 1.3 it is sent unencrypted, which
	// crypto/tls reports as a bad record MAC, counted as bad_certificate.
	for _, max := range []string{"1.2", "1.3"} {
		if out, err := peers.Curl(context.Background(), "--ssl-reqd", "--tls-max", max, "--user",
			peers.User+":"+peers.Password, "ftp://"+p.addr+"/dash.bin", "-o", "/dev/null"); err == nil {
			t.Fatalf("curl trusted a self-signed certificate: %s", out)
		}
	}

	exported, body := scrapeNames(t, "http://"+adminAddr+"/metrics")
	t.Logf("TLS failures after the untrusting client:\n%s", grepLines(body, "ftpsproxy_tls_handshake_failures_total{side=\"client\""))
	for _, want := range []string{
		fmt.Sprintf(`ftpsproxy_backend_transfer_bytes_total{pool="farm",backend=%q,direction="upload"} %d`, backend.Addr, len(data)),
		`ftpsproxy_tls_handshake_failures_total{side="client",reason="unknown_ca"} 1`,
		`ftpsproxy_tls_handshake_failures_total{side="client",reason="bad_certificate"} 1`,
		`ftpsproxy_tls_certificate_expiry_timestamp_seconds{name="localhost"}`,
		`ftpsproxy_transfer_duration_seconds_count{direction="upload"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	used := map[string][]string{} // metric name → files using it
	for _, expr := range dashboardExprs(t) {
		for _, n := range metricNames(expr) {
			used[n] = append(used[n], "dashboard")
		}
	}
	for _, expr := range alertExprs(t) {
		for _, n := range metricNames(expr) {
			used[n] = append(used[n], "alerts")
		}
	}
	if len(used) < 20 {
		t.Fatalf("only %d metric names found in the dashboard and alerts: the extraction is broken", len(used))
	}
	for _, n := range slices.Sorted(maps.Keys(used)) {
		if !exported[n] {
			t.Errorf("%s (used in %v) is not in /metrics", n, slices.Compact(used[n]))
		}
	}
}

// scrapeNames returns the sample names of a /metrics scrape, and the scrape.
func scrapeNames(t *testing.T, url string) (map[string]bool, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	names := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names, string(b)
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// dashboardExprs returns every target expression of the dashboard, checking its structure on
// the way: valid JSON, every panel but rows has at least one target.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string `json:"title"`
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var exprs []string
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("dashboard panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	return exprs
}

// alertExprs returns the expr of every rule in alerts.yml (one-line expressions, which
// promtool checks in TestPromtoolRules).
func alertExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var exprs []string
	for _, line := range strings.Split(string(b), "\n") {
		if e, ok := strings.CutPrefix(strings.TrimSpace(line), "expr:"); ok {
			exprs = append(exprs, strings.TrimSpace(e))
		}
	}
	if len(exprs) == 0 {
		t.Fatalf("%s: no expr found", alertsFile)
	}
	return exprs
}

// metricName matches this proxy's, the Go runtime's and the process's metric names in PromQL.
var metricName = regexp.MustCompile(`\b(?:ftpsproxy|process|go)_[a-zA-Z0-9_]+`)

// metricNames returns the metric names an expression uses.
func metricNames(expr string) []string { return metricName.FindAllString(expr, -1) }
