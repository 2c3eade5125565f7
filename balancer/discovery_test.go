package balancer

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/ftpsproxy/ftpsproxy/internal/dnstest"
)

func addrs(pcs []PoolConfig) []string {
	var out []string
	for _, b := range pcs[0].Backends {
		out = append(out, b.Address)
	}
	return out
}

// TestDiscoveryHostName: a backend written with a host name becomes one backend per A/AAAA
// address with the entry's settings; a changed answer is reported; a failed or empty one
// keeps the last good answer, is counted, and logged once.
func TestDiscoveryHostName(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Set(t, "farm.test", "A 192.0.2.1", "A 192.0.2.2", "AAAA 2001:db8::1")
	var logs bytes.Buffer
	d := NewDiscovery(srv.Resolver(), slog.New(slog.NewTextHandler(&logs, nil)))
	pcs := []PoolConfig{{Name: "p", Backends: []BackendConfig{
		{Name: "web", Address: "farm.test:2121", MaxSessions: 7, Weight: 3},
		{Address: "192.0.2.9:21"},
	}}}
	ctx := context.Background()
	if !d.Resolve(ctx, pcs, true) {
		t.Fatal("first answer not reported as a change")
	}
	got := d.Expand(pcs)
	want := []string{"192.0.2.1:2121", "192.0.2.2:2121", "[2001:db8::1]:2121", "192.0.2.9:21"}
	if !reflect.DeepEqual(addrs(got), want) {
		t.Fatalf("expanded %v, want %v", addrs(got), want)
	}
	for _, b := range got[0].Backends[:3] {
		if b.MaxSessions != 7 || b.Weight != 3 || !strings.HasPrefix(b.Name, "web@") {
			t.Fatalf("discovered backend lost the entry's settings: %+v", b)
		}
	}
	if d.Resolve(ctx, pcs, true) {
		t.Fatal("an unchanged answer reported as a change")
	}
	srv.Set(t, "farm.test", "A 192.0.2.2", "A 192.0.2.3")
	if !d.Resolve(ctx, pcs, true) {
		t.Fatal("changed answer not reported")
	}
	if a := addrs(d.Expand(pcs)); !reflect.DeepEqual(a, []string{"192.0.2.2:2121", "192.0.2.3:2121", "192.0.2.9:21"}) {
		t.Fatalf("after the change: %v", a)
	}
	for _, fail := range []func(){func() { srv.Fail("farm.test") }, func() { srv.Set(t, "farm.test") }} {
		fail()
		if d.Resolve(ctx, pcs, true) {
			t.Fatal("a failed lookup reported as a change")
		}
		if a := addrs(d.Expand(pcs)); len(a) != 3 || a[0] != "192.0.2.2:2121" {
			t.Fatalf("a failed lookup dropped the last good answer: %v", a)
		}
	}
	if d.Failures() != 2 {
		t.Fatalf("failures = %d, want 2", d.Failures())
	}
	if n := strings.Count(logs.String(), "DNS lookup failed"); n != 1 {
		t.Fatalf("failure logged %d times, want once per minute:\n%s", n, logs.String())
	}
	// Not due yet: no lookup at all.
	before := srv.Queries()
	d.Resolve(ctx, pcs, false)
	if srv.Queries() != before {
		t.Fatal("a name was resolved before its resolve_interval")
	}
}

// TestDiscoveryNeverResolved: a name that never resolved stays a backend dialed by name, and
// an SRV pool without an answer has no backends (NewPool accepts it).
func TestDiscoveryNeverResolved(t *testing.T) {
	srv := dnstest.Start(t)
	d := NewDiscovery(srv.Resolver(), slog.New(slog.DiscardHandler))
	pcs := []PoolConfig{{Name: "p", SRV: "_ftp._tcp.none.test", Backends: []BackendConfig{{Address: "nowhere.test:21"}}}}
	d.Resolve(context.Background(), pcs, true)
	got := d.Expand(pcs)
	if a := addrs(got); !reflect.DeepEqual(a, []string{"nowhere.test:21"}) {
		t.Fatalf("expanded %v", a)
	}
	if _, err := NewPool(PoolConfig{Name: "s", SRV: "_ftp._tcp.none.test"}); err != nil {
		t.Fatalf("SRV pool with no answer yet: %v", err)
	}
	if _, err := NewPool(PoolConfig{Name: "s"}); err == nil {
		t.Fatal("a pool with neither backends nor srv was accepted")
	}
}

// TestDiscoverySRV: targets, ports, weights and priorities come from the SRV records; a
// target "." is skipped; the pool sends sessions to the best priority that has an available
// backend and falls back to the next only when all of it are unavailable.
func TestDiscoverySRV(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Set(t, "_ftp._tcp.farm.test", "SRV 10 60 2121 a.farm.test.", "SRV 10 20 2122 b.farm.test.", "SRV 20 0 2123 c.farm.test.", "SRV 30 0 21 .")
	srv.Set(t, "a.farm.test", "A 192.0.2.1")
	srv.Set(t, "b.farm.test", "A 192.0.2.2", "A 192.0.2.3")
	srv.Set(t, "c.farm.test", "A 192.0.2.4")
	d := NewDiscovery(srv.Resolver(), slog.New(slog.DiscardHandler))
	pcs := []PoolConfig{{Name: "p", SRV: "_ftp._tcp.farm.test", Policy: RoundRobin}}
	d.Resolve(context.Background(), pcs, true)
	got := d.Expand(pcs)[0]
	type bw struct {
		addr       string
		weight, pr int
	}
	var have []bw
	for _, b := range got.Backends {
		have = append(have, bw{b.Address, b.Weight, b.Priority})
	}
	want := []bw{{"192.0.2.1:2121", 60, 10}, {"192.0.2.2:2122", 20, 10}, {"192.0.2.3:2122", 20, 10}, {"192.0.2.4:2123", 1, 20}}
	if !reflect.DeepEqual(have, want) {
		t.Fatalf("SRV backends %v, want %v", have, want)
	}
	p, err := NewPool(got)
	if err != nil {
		t.Fatal(err)
	}
	c := Client{Addr: netip.MustParseAddr("198.51.100.1"), User: "u"}
	for range 50 {
		first := p.Order(c)[0]
		if first.Config.Priority != 10 {
			t.Fatalf("priority %d backend chosen while priority 10 is available", first.Config.Priority)
		}
	}
	for _, b := range p.Backends[:3] {
		b.SetAdmin(AdminDisabled)
	}
	if o := p.Order(c); len(o) != 1 || o[0].Config.Address != "192.0.2.4:2123" {
		t.Fatalf("with priority 10 unavailable: %v", o)
	}
	p.Backends[1].SetAdmin(AdminEnabled)
	if o := p.Order(c); len(o) != 1 || o[0].Config.Address != "192.0.2.2:2122" {
		t.Fatalf("priority 10 back: %v", o)
	}
}

// TestDiscoveryBounded: an answer with more addresses than maxDiscovered (a hostile or broken
// DNS server) yields maxDiscovered backends.
func TestDiscoveryBounded(t *testing.T) {
	srv := dnstest.Start(t)
	var rrs []string
	for i := range 300 {
		rrs = append(rrs, fmt.Sprintf("A 10.0.%d.%d", i/250, 1+i%250))
	}
	srv.Set(t, "many.test", rrs...)
	d := NewDiscovery(srv.Resolver(), slog.New(slog.DiscardHandler))
	pcs := []PoolConfig{{Name: "p", Backends: []BackendConfig{{Address: "many.test:21"}}}}
	d.Resolve(context.Background(), pcs, true)
	if n := len(d.Expand(pcs)[0].Backends); n != maxDiscovered {
		t.Fatalf("%d backends from 300 addresses, want %d", n, maxDiscovered)
	}
}
