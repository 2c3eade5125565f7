package cluster

import (
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/internal/peers"
	"github.com/ftpsproxy/ftpsproxy/proxy"
)

func newCluster(t *testing.T, url, instance string, ttl time.Duration) (*Cluster, *peers.SyncBuffer) {
	t.Helper()
	lg := &peers.SyncBuffer{}
	c, err := New(Options{RedisURL: url, Instance: instance, LeaseTTL: ttl}, slog.New(slog.NewTextHandler(lg, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, lg
}

func eventually(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var limits = proxy.Limits{LoginsPerMinute: 2, LoginBurst: 1, BanTime: 2 * time.Second, MaxBanTime: time.Minute}

// TestSharedBan: failures counted through two instances add up in Redis; the ban one of them
// makes refuses the address on the other, whose local limiter alone would not; a second ban
// doubles.
func TestSharedBan(t *testing.T) {
	r := peers.StartRedis(t, "", "")
	a, _ := newCluster(t, r.URL, "edge-1", 0)
	b, _ := newCluster(t, r.URL, "edge-2", 0)
	la, lb := a.NewLimiter(limits), b.NewLimiter(limits)
	ip := netip.MustParseAddr("198.51.100.7")
	now := time.Now()
	// limit = 2 per minute + burst 1 = 3 failures in the window; the 4th bans. Alternate
	// instances so neither's local bucket (burst 1, then 2/min) would ban by itself first.
	var ban time.Duration
	for i := range 4 {
		l := la
		if i%2 == 1 {
			l = lb
		}
		if _, banned := l.Banned(ip, now); banned {
			t.Fatalf("banned after %d failures", i)
		}
		_, ban = l.Failed(ip, "u", now)
		now = now.Add(30 * time.Second) // each local bucket refills between its failures; the shared window is real time
	}
	if ban <= 0 || ban > limits.BanTime {
		t.Fatalf("4th failure: ban %v, want up to %v", ban, limits.BanTime)
	}
	for _, l := range []*Limiter{la, lb} {
		if _, banned := l.Banned(ip, now); !banned || l.Attempt(ip, now) {
			t.Fatal("the ban is not in force on both instances")
		}
	}
	if _, banned := lb.Banned(netip.MustParseAddr("198.51.100.8"), now); banned {
		t.Fatal("another address is banned")
	}
	// The next ban of the same address doubles.
	eventually(t, "ban over", 10*time.Second, func() bool { _, banned := la.Banned(ip, time.Now()); return !banned })
	now = time.Now()
	for range 4 {
		_, ban = lb.Failed(ip, "u", now)
		now = now.Add(time.Millisecond)
	}
	if ban < 2*limits.BanTime-time.Second {
		t.Fatalf("second ban %v, want about %v", ban, 2*limits.BanTime)
	}
}

// backend returns a backend with max_sessions m whose slots are shared through c.
func backend(t *testing.T, c *Cluster, m int) *balancer.Backend {
	t.Helper()
	b, err := balancer.NewBackend(balancer.BackendConfig{Address: "192.0.2.10:21", MaxSessions: m, Slots: c.Slots().For("farm")})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSharedSlots: a backend's max_sessions holds across instances; a session's end frees
// its slot for another instance; a crashed instance's sessions stop counting once their
// lease expires (here a 1.5 s TTL; 30 s in production).
func TestSharedSlots(t *testing.T) {
	r := peers.StartRedis(t, "", "")
	ttl := 1500 * time.Millisecond
	a, _ := newCluster(t, r.URL, "edge-1", ttl)
	b, _ := newCluster(t, r.URL, "edge-2", ttl)
	ba, bb := backend(t, a, 3), backend(t, b, 3)
	for i, b := range []*balancer.Backend{ba, ba, bb} {
		if !b.Acquire() {
			t.Fatalf("session %d of max 3 refused", i+1)
		}
	}
	if bb.Acquire() || ba.Acquire() {
		t.Fatal("a 4th session admitted across instances")
	}
	if bb.Active() != 1 || ba.Active() != 2 {
		t.Fatalf("local counts %d, %d after refusals", ba.Active(), bb.Active())
	}
	// Heartbeats keep the leases past their TTL.
	time.Sleep(2 * ttl)
	if bb.Acquire() {
		t.Fatal("leases expired despite heartbeats")
	}
	ba.Release()
	if !bb.Acquire() {
		t.Fatal("a released slot not free for the other instance")
	}
	// A crashes: its loop stops, nothing is given back.
	a.stop()
	<-a.done
	start := time.Now()
	eventually(t, "the crashed instance's session to stop counting", 3*ttl, func() bool {
		return bb.Acquire()
	})
	if waited := time.Since(start); waited < ttl/3 {
		t.Fatalf("the crashed instance's lease freed after %v, before its TTL could run out", waited)
	}
}

// TestRedisOutage: with Redis killed, or hung (SIGSTOP), every call gives up within its
// deadline and the instance goes on with local limits (its own bans and max_sessions);
// the outage is logged once and counted; when Redis returns, the bans made meanwhile and the
// running sessions' leases are written, and shared limits apply again.
func TestRedisOutage(t *testing.T) {
	r := peers.StartRedis(t, "", "")
	a, logA := newCluster(t, r.URL, "edge-1", 0)
	b, _ := newCluster(t, r.URL, "edge-2", 0)
	la, lb := a.NewLimiter(limits), b.NewLimiter(limits)
	ba, bb := backend(t, a, 2), backend(t, b, 2)
	if !ba.Acquire() {
		t.Fatal("first session refused")
	}

	r.Pause()
	start := time.Now()
	ip := netip.MustParseAddr("203.0.113.9")
	la.Banned(ip, time.Now())
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("a hung Redis held a login check for %v", d)
	}
	if a.Up() {
		t.Fatal("still up after a timed-out call")
	}
	r.Stop()
	// Local limits: the local limiter bans (burst 1, then 2/min), max_sessions holds locally.
	now := time.Now()
	var ban time.Duration
	for range 3 {
		_, ban = la.Failed(ip, "u", now)
	}
	if ban <= 0 {
		t.Fatal("no local ban while Redis is down")
	}
	if _, banned := la.Banned(ip, now); !banned {
		t.Fatal("local ban not in force")
	}
	if !ba.Acquire() || ba.Acquire() {
		t.Fatal("local max_sessions not applied during the outage")
	}
	if n := strings.Count(logA.String(), "Redis unreachable"); n != 1 || a.Outages() != 1 {
		t.Fatalf("outage logged %d times, counted %d; want once", n, a.Outages())
	}
	if st, up := a.Status(); up || !strings.Contains(st, "unreachable") {
		t.Fatalf("status: %s", st)
	}

	r.Start(t) // empty: no persistence
	eventually(t, "both instances back on Redis", 5*time.Second, func() bool { return a.Up() && b.Up() })
	if _, banned := lb.Banned(ip, time.Now()); !banned {
		t.Fatal("the ban made during the outage was not written when Redis returned")
	}
	// A's 2 running sessions were written back: B may not add one.
	if bb.Acquire() {
		t.Fatal("the leases of sessions running through the outage were not written back")
	}
	if strings.Count(logA.String(), "Redis reachable again") != 1 {
		t.Fatal("return not logged")
	}
}

// TestSlotsForgetIdleKeys: a backend whose sessions all ended is dropped from the heartbeat
// after one successful beat, so backends discovery or a reload dropped are not kept for ever.
func TestSlotsForgetIdleKeys(t *testing.T) {
	r := peers.StartRedis(t, "", "")
	c, _ := newCluster(t, r.URL, "edge-1", 0)
	b := backend(t, c, 2)
	if !b.Acquire() {
		t.Fatal("session refused")
	}
	b.Release()
	s := c.Slots()
	held := func() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.held) }
	if held() != 1 {
		t.Fatalf("%d keys held before a heartbeat, want 1", held())
	}
	if err := s.heartbeat(); err != nil {
		t.Fatal(err)
	}
	if held() != 0 {
		t.Fatalf("%d keys held after a heartbeat with no session, want 0", held())
	}
}
