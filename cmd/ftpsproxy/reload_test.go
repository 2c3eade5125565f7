package main

import (
	"bytes"
	"log/slog"
	"reflect"
	"strings"
	"testing"

	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/config"
	"github.com/ftpsproxy/ftpsproxy/nat"
	"github.com/ftpsproxy/ftpsproxy/proxy"
	"github.com/ftpsproxy/ftpsproxy/tlsterm"
)

// TestKeepRestartOnly: with ACME in use, a changed [tls.acme] key keeps its old value and is
// named in one WARN line each; data_session_reuse (a proxy setting) still changes.
func TestKeepRestartOnly(t *testing.T) {
	cur := &config.File{TLS: config.TLS{MinVersion: config.TLS12, DataSessionReuse: config.ReuseOptional,
		ACME: tlsterm.ACMEOptions{Domains: []string{"a.example"}, Email: "x@example"}}}
	next := &config.File{TLS: config.TLS{MinVersion: config.TLS12, DataSessionReuse: config.ReuseRequired,
		ACME: tlsterm.ACMEOptions{Domains: []string{"b.example"}, Email: "x@example"}}}
	var buf bytes.Buffer
	keepRestartOnly(cur, next, slog.New(slog.NewTextHandler(&buf, nil)))
	if !reflect.DeepEqual(next.TLS.ACME, cur.TLS.ACME) || next.TLS.DataSessionReuse != config.ReuseRequired {
		t.Fatalf("after keepRestartOnly: %+v", next.TLS)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], `level=WARN msg="tls.acme.domains: changed; takes effect at restart"`) {
		t.Fatalf("warnings: %q", buf.String())
	}
	// Without ACME, [tls] changes live: nothing is kept or said.
	buf.Reset()
	plain := &config.File{TLS: config.TLS{CertFile: "b.pem"}}
	keepRestartOnly(&config.File{TLS: config.TLS{CertFile: "a.pem"}}, plain, slog.New(slog.NewTextHandler(&buf, nil)))
	if plain.TLS.CertFile != "b.pem" || buf.Len() != 0 {
		t.Fatalf("without ACME: %+v %q", plain.TLS, buf.String())
	}
}

// TestKeepRestartOnlyCluster: [cluster] is built once; a changed key keeps its old value and
// is named in one WARN line each.
func TestKeepRestartOnlyCluster(t *testing.T) {
	cur := &config.File{Cluster: config.Cluster{RedisURL: "redis://a:6379/0", Instance: "one"}}
	next := &config.File{Cluster: config.Cluster{RedisURL: "redis://b:6379/0", Instance: "two"}}
	var buf bytes.Buffer
	keepRestartOnly(cur, next, slog.New(slog.NewTextHandler(&buf, nil)))
	if next.Cluster != cur.Cluster {
		t.Fatalf("after keepRestartOnly: %+v", next.Cluster)
	}
	for _, k := range []string{"cluster.redis_url", "cluster.instance"} {
		if !strings.Contains(buf.String(), `level=WARN msg="`+k+`: changed; takes effect at restart"`) {
			t.Errorf("no warning for %s: %q", k, buf.String())
		}
	}
}

func TestReloadAttrs(t *testing.T) {
	old := &config.File{Listeners: []config.Listener{{Address: "a:21"}, {Address: "b:21", Banner: "x"}},
		Data: proxy.DataConfig{PortRange: nat.PortRange{First: 1, Last: 2}}}
	next := &config.File{Listeners: []config.Listener{{Address: "b:21", Banner: "y"}, {Address: "c:21"}},
		Data: proxy.DataConfig{PortRange: nat.PortRange{First: 3, Last: 4}}, Log: config.Log{Level: config.LevelDebug}}
	got := reloadAttrs(old, next, balancer.Changes{BackendsAdded: []string{"p/new"}})
	want := []any{"listeners_added", "c:21", "listeners_removed", "a:21", "listeners_changed", "b:21",
		"backends_added", "p/new", "keys_changed", "data.port_range,log.level"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("reloadAttrs = %v, want %v", got, want)
	}
	if got := reloadAttrs(old, old, balancer.Changes{}); !reflect.DeepEqual(got, []any{"changes", "none"}) {
		t.Fatalf("no change: %v", got)
	}
}
