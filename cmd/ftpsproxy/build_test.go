package main

import (
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/config"
	"github.com/ftpsproxy/ftpsproxy/proxy"
)

// TestBuildPassesTypedValues loads the complete golden config and checks that build hands
// the proxy and the balancer the values the loader parsed, with nothing parsed again.
func TestBuildPassesTypedValues(t *testing.T) {
	f, err := config.Load("../../config/testdata/config/full.toml")
	if err != nil {
		t.Fatal(err)
	}
	rt, err := build(f, slog.New(slog.DiscardHandler), nil, buildEnv{})
	if err != nil {
		t.Fatal(err)
	}
	c := rt.cfg
	if !reflect.DeepEqual(c.Data, f.Data) || c.Limits != f.Limits || len(c.Routes) != 2 || !reflect.DeepEqual(c.Routes[0], f.Routes[0]) {
		t.Errorf("data/limits/routes differ from the file: %+v", c)
	}
	if c.Data.ConnectTimeout != 20*time.Second || c.Data.PortRange.First != 40000 || c.Data.AllowActive {
		t.Errorf("data = %+v", c.Data)
	}
	l := c.Listeners[0]
	if l.Name != "ftp" || l.TLS != proxy.TLSExplicit || !l.ProxyProtocol || len(l.TrustedProxies) != 3 || l.Banner != "Example FTP" {
		t.Errorf("listener[0] = %+v", l)
	}
	if c.Listeners[1].TLS != proxy.TLSImplicit || c.Listeners[1].Name != "[::]:990" {
		t.Errorf("listener[1] = %+v", c.Listeners[1])
	}
	if c.TLS == nil || !c.RequireDataReuse {
		t.Errorf("TLS %v, RequireDataReuse %v", c.TLS, c.RequireDataReuse)
	}
	p := c.Pools[0]
	if p.Policy.String() != "round_robin" || p.Health != (balancer.HealthConfig{Interval: 10 * time.Second, Timeout: 2 * time.Second, Rise: 1, Fall: 5}) {
		t.Errorf("pool[0] = %s %+v", p.Policy, p.Health)
	}
	b := p.Backends[0].Config
	if b.TLS != balancer.TLSExplicit || b.TLSConfig == nil || b.ProxyProtocol != balancer.ProxyV2 || b.DataMode != balancer.DataActive ||
		b.Weight != 3 || b.MaxSessions != 200 || b.FixPasvAddress {
		t.Errorf("pool[0].backend[0] = %+v", b)
	}
	if c.Pools[1].Policy.String() != "user_hash" || c.Pools[1].Health.Interval != 0 {
		t.Errorf("pool[1] = %s %+v", c.Pools[1].Policy, c.Pools[1].Health)
	}
}
