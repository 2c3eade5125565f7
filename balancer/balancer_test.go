package balancer

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

func pool(t *testing.T, policy PolicyName, weights ...int) *Pool {
	t.Helper()
	var bcs []BackendConfig
	for i, w := range weights {
		bcs = append(bcs, BackendConfig{Address: fmt.Sprintf("10.0.0.%d:21", i+1), Weight: w})
	}
	p, err := NewPool(PoolConfig{Name: "p", Policy: policy, Backends: bcs})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func client(i int) Client {
	return Client{Addr: netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)}), User: fmt.Sprintf("user%d", i)}
}

// share returns each backend's share of first picks over n sessions.
func share(p *Pool, n int) map[string]int {
	out := map[string]int{}
	for i := range n {
		order := p.Order(client(i))
		out[order[0].String()]++
	}
	return out
}

func TestPolicyWeights(t *testing.T) {
	for _, name := range []PolicyName{RoundRobin, LeastConn, Random, IPHash, UserHash} {
		t.Run(string(name), func(t *testing.T) {
			p := pool(t, name, 1, 2, 3)
			const n = 6000
			got := share(p, n)
			for i, w := range []int{1, 2, 3} {
				addr := fmt.Sprintf("10.0.0.%d:21", i+1)
				want := float64(n) * float64(w) / 6
				tol := 0.1 * want
				if name == RoundRobin || name == LeastConn { // least_conn: all idle, all tied
					tol = 1 // smooth WRR is exact over whole cycles
				}
				if math.Abs(float64(got[addr])-want) > tol {
					t.Errorf("%s got %d of %d, want %.0f±%.0f", addr, got[addr], n, want, tol)
				}
			}
		})
	}
}

func TestRoundRobinInterleaves(t *testing.T) {
	p := pool(t, RoundRobin, 1, 1, 1)
	var seq []string
	for i := range 6 {
		seq = append(seq, p.Order(client(i))[0].String())
	}
	for i := 3; i < 6; i++ {
		if seq[i] != seq[i-3] || seq[i] == seq[i-1] {
			t.Fatalf("not a rotation: %v", seq)
		}
	}
}

func TestLeastConn(t *testing.T) {
	p := pool(t, LeastConn, 1, 1, 2)
	b := p.Backends
	b[0].Acquire()
	b[0].Acquire()
	b[1].Acquire()
	b[2].Acquire()
	b[2].Acquire()
	// loads: 2/1, 1/1, 2/2=1 → b1 and b2 tie at 1 and take turns by weight (b2 twice as
	// often); b0, the most loaded, is always last.
	firsts := map[*Backend]int{}
	for range 30 {
		order := p.Order(Client{})
		if len(order) != 3 || order[2] != b[0] || order[0] == order[1] {
			t.Fatalf("order %v", order)
		}
		firsts[order[0]]++
	}
	if firsts[b[1]] != 10 || firsts[b[2]] != 20 {
		t.Fatalf("tied backends first %d and %d times of 30, want 10 and 20", firsts[b[1]], firsts[b[2]])
	}
}

// TestLeastConnTiesTakeTurns: with every backend idle, sessions that come and go spread
// evenly (by weight), not onto the first configured backend.
func TestLeastConnTiesTakeTurns(t *testing.T) {
	for _, weights := range [][]int{{1, 1, 1}, {1, 2, 1}} {
		p := pool(t, LeastConn, weights...)
		sum := 0
		for _, w := range weights {
			sum += w
		}
		n := 12 * sum
		got := map[*Backend]int{}
		for range n {
			first := p.Order(Client{})[0]
			first.Acquire() // a session runs ...
			got[first]++
			first.Release() // ... and ends before the next one starts
		}
		for i, b := range p.Backends {
			if want := 12 * weights[i]; got[b] != want {
				t.Fatalf("weights %v: backend %d placed %d of %d, want %d", weights, i, got[b], n, want)
			}
		}
	}
}

func TestOrderSkipsUnavailable(t *testing.T) {
	for _, name := range PolicyNames {
		p, _ := NewPool(PoolConfig{Name: "p", Policy: name, Backends: []BackendConfig{
			{Address: "10.0.0.1:21"}, {Address: "10.0.0.2:21", MaxSessions: 1}, {Address: "10.0.0.3:21"},
		}})
		for range 3 {
			p.Report(p.Backends[0], false)
		}
		p.Backends[1].Acquire()
		order := p.Order(client(1))
		if len(order) != 1 || order[0] != p.Backends[2] {
			t.Fatalf("%s: order %v", name, order)
		}
	}
}

func TestHashStability(t *testing.T) {
	for _, name := range []PolicyName{IPHash, UserHash} {
		p := pool(t, name, 1, 1, 1, 1)
		before := map[int]*Backend{}
		for i := range 1000 {
			before[i] = p.Order(client(i))[0]
		}
		// Same decision every time, and on another proxy built from the same config.
		q := pool(t, name, 1, 1, 1, 1)
		for i := range 1000 {
			if p.Order(client(i))[0] != before[i] || q.Order(client(i))[0].String() != before[i].String() {
				t.Fatalf("%s: client %d moved without a change", name, i)
			}
		}
		// Removing one backend moves only its own clients.
		gone := p.Backends[2]
		for range 3 {
			p.Report(gone, false)
		}
		moved := 0
		for i := range 1000 {
			now := p.Order(client(i))[0]
			if before[i] != gone && now != before[i] {
				t.Fatalf("%s: client %d moved off a healthy backend", name, i)
			}
			if before[i] == gone {
				moved++
			}
		}
		if moved == 0 {
			t.Fatalf("%s: the removed backend had no clients", name)
		}
	}
}

func TestRiseFall(t *testing.T) {
	tests := []struct {
		name  string
		start bool
		obs   []bool
		want  []bool
	}{
		{"falls after 3", true, []bool{false, false, false}, []bool{true, true, false}},
		{"success resets streak", true, []bool{false, false, true, false, false}, []bool{true, true, true, true, true}},
		{"rises after 2", false, []bool{true, true}, []bool{false, true}},
		{"failure resets rise", false, []bool{true, false, true, true}, []bool{false, false, false, true}},
	}
	for _, tt := range tests {
		s := healthState{healthy: tt.start}
		for i, ok := range tt.obs {
			s = s.next(ok, 2, 3)
			if s.healthy != tt.want[i] {
				t.Fatalf("%s: step %d healthy=%v, want %v", tt.name, i, s.healthy, tt.want[i])
			}
		}
	}
}

func TestAcquireRespectsMax(t *testing.T) {
	b, _ := NewBackend(BackendConfig{Address: "10.0.0.1:21", MaxSessions: 2})
	first, second, third := b.Acquire(), b.Acquire(), b.Acquire()
	if !first || !second || third {
		t.Fatal("max_sessions not enforced")
	}
	b.Release()
	if !b.Acquire() {
		t.Fatal("slot not returned")
	}
}

// TestCheckRounds: a probe that hangs is cut at the interval (not the longer timeout) and
// does not hold up the other backends' probes; fall failures take it down.
func TestCheckRounds(t *testing.T) {
	p, err := NewPool(PoolConfig{Name: "p", Backends: []BackendConfig{{Address: "10.0.0.1:21"}, {Address: "10.0.0.2:21"}},
		Health: HealthConfig{Interval: 50 * time.Millisecond, Timeout: time.Hour, Fall: 3}})
	if err != nil {
		t.Fatal(err)
	}
	hung, fine := p.Backends[0], p.Backends[1]
	var fineProbes atomic.Int64
	probe := func(ctx context.Context, b *Backend) error {
		if b == fine {
			fineProbes.Add(1)
			return nil
		}
		<-ctx.Done() // hangs until the probe's deadline
		return ctx.Err()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	start := time.Now()
	go func() { defer close(done); p.Check(ctx, probe, slog.New(slog.DiscardHandler)) }()
	for hung.Healthy() {
		if time.Since(start) > 5*time.Second {
			t.Fatal("the hung backend never went down")
		}
		time.Sleep(5 * time.Millisecond)
	}
	took := time.Since(start)
	cancel()
	<-done
	if took > time.Second { // 3 rounds of 50 ms; a 1-hour timeout would never get here
		t.Fatalf("down after %v", took)
	}
	if n := fineProbes.Load(); n < 3 || !fine.Healthy() {
		t.Fatalf("the other backend was probed %d times, healthy %v", n, fine.Healthy())
	}
}

// TestReportSession: sessions' failures that overlapped count once; fall failures in a row
// take the backend down; a pool without active checks ignores sessions' outcomes.
func TestReportSession(t *testing.T) {
	p, _ := NewPool(PoolConfig{Name: "p", Backends: []BackendConfig{{Address: "10.0.0.1:21"}},
		Health: HealthConfig{Interval: time.Second, Fall: 3}})
	b := p.Backends[0]
	together := time.Now()
	for range 10 {
		p.ReportSession(b, together, false) // ten sessions stalled by one slow greeting
	}
	p.ReportSession(b, time.Now(), false)
	if !b.Healthy() {
		t.Fatal("down after two counted failures, fall is 3")
	}
	if !p.ReportSession(b, time.Now(), false) || b.Healthy() {
		t.Fatal("not down after three failures in a row")
	}
	off, _ := NewPool(PoolConfig{Name: "off", Backends: []BackendConfig{{Address: "10.0.0.1:21"}}})
	for range 10 {
		off.ReportSession(off.Backends[0], time.Now(), false)
	}
	if !off.Backends[0].Healthy() {
		t.Fatal("a pool without checks ejected a backend it could never bring back")
	}
}

// TestCandidatesPanic: with no healthy backend, panic mode offers every enabled backend that
// is not full, in policy order; with panic off, none.
func TestCandidatesPanic(t *testing.T) {
	no := false
	for _, panicOn := range []*bool{nil, &no} {
		p, _ := NewPool(PoolConfig{Name: "p", Policy: RoundRobin, Panic: panicOn, Backends: []BackendConfig{
			{Address: "10.0.0.1:21"}, {Address: "10.0.0.2:21", MaxSessions: 1}, {Address: "10.0.0.3:21"},
		}})
		if order, panicking := p.Candidates(Client{}); len(order) != 3 || panicking {
			t.Fatalf("all healthy: %v, panicking %v", order, panicking)
		}
		for _, b := range p.Backends {
			for b.Healthy() {
				p.Report(b, false)
			}
		}
		p.Backends[1].Acquire()
		order, panicking := p.Candidates(Client{})
		if panicOn != nil {
			if len(order) != 0 || panicking {
				t.Fatalf("panic off: %v, panicking %v", order, panicking)
			}
			continue
		}
		if !panicking || len(order) != 2 || slices.Contains(order, p.Backends[1]) {
			t.Fatalf("panic: %v, panicking %v", order, panicking)
		}
		p.Backends[2].SetAdmin(AdminDisabled) // an administrator's setting holds in panic too
		if order, _ := p.Candidates(Client{}); len(order) != 1 || order[0] != p.Backends[0] {
			t.Fatalf("panic with one backend disabled: %v", order)
		}
	}
}
