package admin

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/nat"
	"github.com/ftpsproxy/ftpsproxy/tlsterm"
)

// certSource is a fakeSource that also lists certificates, as ProxySource does.
type certSource struct {
	*fakeSource
	certs []tlsterm.CertInfo
}

func (c *certSource) Certificates() []tlsterm.CertInfo { return c.certs }

// TestEveryFamilyHasHelp scrapes /metrics of a server with every kind of series present
// (backends, certificates, build info, Go runtime, process, descriptors) and checks that
// each family has a TYPE and a non-empty HELP, and that the families issue #15 asks for
// are there.
func TestEveryFamilyHasHelp(t *testing.T) {
	pool := newPool(t, "default", "round_robin", balancer.BackendConfig{Address: "10.0.0.11:21"})
	notAfter := time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)
	src := &certSource{
		fakeSource: &fakeSource{pools: []*balancer.Pool{pool}, portRange: nat.PortRange{First: 50000, Last: 50009},
			listeners: []ListenerInfo{{Name: "main", Address: "127.0.0.1:21"}}},
		certs: []tlsterm.CertInfo{{Name: "ftp.example.com", NotAfter: notAfter},
			{Name: "ftp.example.com", NotAfter: notAfter.Add(time.Hour)}, {Name: "other.example.com", NotAfter: notAfter}},
	}
	m := NewMetrics()
	m.SetBuildInfo("9.8.7")
	s := startServer(t, src, m)
	_, _, body := get(t, "http://"+s.Addr().String()+"/metrics")
	e, err := parseExposition(body)
	if err != nil {
		t.Fatal(err)
	}
	for fam, typ := range e.types {
		if strings.TrimSpace(e.helps[fam]) == "" {
			t.Errorf("family %s (%s) has no HELP text", fam, typ)
		}
	}
	for fam := range e.helps {
		if e.types[fam] == "" {
			t.Errorf("family %s has HELP but no TYPE", fam)
		}
	}
	for _, fam := range []string{"process_open_fds", "process_max_fds", "process_cpu_seconds_total",
		"process_resident_memory_bytes", "ftpsproxy_build_info", "ftpsproxy_tls_certificate_expiry_timestamp_seconds",
		"ftpsproxy_session_duration_seconds", "ftpsproxy_transfer_duration_seconds", "ftpsproxy_reloads_total",
		"ftpsproxy_last_reload_timestamp_seconds", "ftpsproxy_tls_handshake_failures_total",
		"ftpsproxy_backend_transfer_bytes_total", "ftpsproxy_backend_transfer_errors_total"} {
		if e.types[fam] == "" {
			t.Errorf("family %s missing", fam)
		}
	}
	for k, want := range map[string]float64{
		key("ftpsproxy_tls_certificate_expiry_timestamp_seconds", "name", "ftp.example.com"):                                              float64(notAfter.Unix()), // the earlier of two
		key("ftpsproxy_tls_certificate_expiry_timestamp_seconds", "name", "other.example.com"):                                            float64(notAfter.Unix()),
		canonical("ftpsproxy_build_info", map[string]string{"version": "9.8.7", "commit": BuildCommit(), "goversion": runtime.Version()}): 1,
	} {
		if got, ok := e.values[k]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, want)
		}
	}
	if e.values["process_open_fds"] < 3 || e.values["process_max_fds"] < e.values["process_open_fds"] {
		t.Errorf("process_open_fds %v, process_max_fds %v", e.values["process_open_fds"], e.values["process_max_fds"])
	}
}
