package proxy

import (
	"testing"

	"github.com/ftpsproxy/ftpsproxy/balancer"
)

func TestRoute(t *testing.T) {
	mk := func(name string) *balancer.Pool {
		p, err := balancer.NewPool(balancer.PoolConfig{Name: name, Backends: []balancer.BackendConfig{{Address: "10.0.0.1:21"}}})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	c := &Config{
		Pools: []*balancer.Pool{mk("default"), mk("eu"), mk("host"), mk("both")},
		Routes: []Route{
			{User: "*@eu.example.com", Pool: "eu"},
			{Host: "ftp.b.example", User: "admin", Pool: "both"},
			{Host: "ftp.*.example", Pool: "host"},
		},
	}
	lc := &ListenerConfig{Pool: "default"}
	tests := []struct {
		user, host, want string
	}{
		{"alice@eu.example.com", "", "eu"},
		{"alice@us.example.com", "", "default"},
		{"admin", "ftp.b.example", "both"},
		{"bob", "ftp.b.example", "host"},
		{"bob", "ftp.a.example", "host"},
		{"bob", "other", "default"},
		{"", "", "default"},
	}
	for _, tt := range tests {
		p, _, _ := c.route(lc, tt.user, tt.host)
		if p.Name != tt.want {
			t.Errorf("user %q host %q: pool %s, want %s", tt.user, tt.host, p.Name, tt.want)
		}
	}
}
