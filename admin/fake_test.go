package admin

import (
	"bytes"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/nat"
)

// fakeSource is a Source made of real balancer pools, with the rest set by the test.
type fakeSource struct {
	mu        sync.Mutex
	pools     []*balancer.Pool
	listeners []ListenerInfo
	inUse     int
	portRange nat.PortRange
	sessions  int
	draining  atomic.Bool
}

func (f *fakeSource) Sessions() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sessions
}

func (f *fakeSource) Listeners() []ListenerInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.listeners
}

func (f *fakeSource) Pools() []*balancer.Pool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pools
}

func (f *fakeSource) PortsInUse() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inUse
}

func (f *fakeSource) PortRange() nat.PortRange {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.portRange
}

func (f *fakeSource) Accepting() bool { return !f.draining.Load() }

func (f *fakeSource) setPools(ps ...*balancer.Pool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pools = ps
}

// newPool builds a real pool of backends.
func newPool(t testing.TB, name string, policy balancer.PolicyName, backends ...balancer.BackendConfig) *balancer.Pool {
	t.Helper()
	p, err := balancer.NewPool(balancer.PoolConfig{Name: name, Policy: policy, Backends: backends})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// setHealth drives b's rise/fall arithmetic with real reports until its health is up.
func setHealth(t testing.TB, p *balancer.Pool, b *balancer.Backend, up bool) {
	t.Helper()
	for i := 0; i < 10 && b.Healthy() != up; i++ {
		p.Report(b, up)
	}
	if b.Healthy() != up {
		t.Fatalf("backend %s: health stuck at %v", b, b.Healthy())
	}
}

// scrape writes m's metrics and parses them strictly.
func scrape(t testing.TB, m *Metrics) *exposition {
	t.Helper()
	var b bytes.Buffer
	m.WritePrometheus(&b)
	e, err := parseExposition(b.String())
	if err != nil {
		t.Fatalf("exposition: %v\n%s", err, b.String())
	}
	return e
}
