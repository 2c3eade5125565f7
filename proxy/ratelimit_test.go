package proxy

import (
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"
)

func (m *memLimiter) held() (ips, users int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.ips), len(m.users)
}

var limiterEpoch = time.Unix(1e9, 0)

func testIP(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

// TestLoginLimiterFailuresBan: per address, failed logins spend a budget of login_burst; the
// next failure bans the address, for ban_time doubled with each ban up to max_ban_time; a
// banned address has its attempts refused until the ban ends.
func TestLoginLimiterFailuresBan(t *testing.T) {
	m := newMemLimiter(Limits{LoginsPerMinute: 10, LoginBurst: 5, AttemptsPerMinute: 120, BanTime: time.Minute, MaxBanTime: 3 * time.Minute})
	ip, now := testIP(1), limiterEpoch
	// fail makes the address fail until it is banned and returns the ban and the failures
	// that went by before it.
	fail := func() (time.Duration, int) {
		for n := 0; n < 100; n++ {
			if !m.Attempt(ip, now) {
				t.Fatalf("attempt %d refused before a ban", n+1)
			}
			if _, ban := m.Failed(ip, "alice", now); ban > 0 {
				return ban, n
			}
		}
		t.Fatal("never banned")
		return 0, 0
	}
	for i, want := range []time.Duration{time.Minute, 2 * time.Minute, 3 * time.Minute, 3 * time.Minute} {
		ban, before := fail()
		if ban != want {
			t.Fatalf("ban %d lasts %v, want %v", i+1, ban, want)
		}
		if i == 0 && before != 5 {
			t.Fatalf("first ban after %d failures, want 5 then the ban on the 6th", before)
		}
		if until, banned := m.Banned(ip, now.Add(ban-time.Second)); !banned || !until.Equal(now.Add(ban)) {
			t.Fatalf("ban %d: banned=%v until %v", i+1, banned, until)
		}
		if m.Attempt(ip, now.Add(ban/2)) {
			t.Fatalf("ban %d: attempt allowed while banned", i+1)
		}
		now = now.Add(ban)
		if _, banned := m.Banned(ip, now); banned {
			t.Fatalf("ban %d still in force at its end", i+1)
		}
	}
	if _, banned := m.Banned(testIP(2), now); banned {
		t.Fatal("another address is banned")
	}
}

// TestLoginLimiterSuccessNeverCounted: successful logins spend nothing but the attempts cap,
// so 120 quick logins from one address are fine; the 121st attempt in the same instant is
// refused, and a second later one more is allowed.
func TestLoginLimiterSuccessNeverCounted(t *testing.T) {
	m := newMemLimiter(Limits{LoginsPerMinute: 10, LoginBurst: 5, AttemptsPerMinute: 120})
	ip := testIP(3)
	for i := range 120 {
		if !m.Attempt(ip, limiterEpoch) {
			t.Fatalf("attempt %d refused", i+1)
		}
	}
	if m.Attempt(ip, limiterEpoch) {
		t.Fatal("121st attempt within the same instant allowed")
	}
	if _, banned := m.Banned(ip, limiterEpoch); banned {
		t.Fatal("the attempts cap banned the address")
	}
	if !m.Attempt(ip, limiterEpoch.Add(time.Second)) {
		t.Fatal("attempt refused after the cap refilled")
	}
	if got := newMemLimiter(Limits{}); !got.Attempt(ip, limiterEpoch) {
		t.Fatal("all limits 0 must allow")
	} else if d, b := got.Failed(ip, "u", limiterEpoch); d != 0 || b != 0 {
		t.Fatalf("all limits 0: failure delayed %v, banned %v", d, b)
	}
}

// TestLoginLimiterTarpit: failures on one user from many addresses (none over its own
// budget) delay the 530 from 250 ms doubling to 4 s, never ban anyone and never refuse an
// attempt; the delay falls back as failures stop, and the user name's case does not matter.
func TestLoginLimiterTarpit(t *testing.T) {
	m := newMemLimiter(Limits{LoginsPerMinute: 10, LoginBurst: 5, AttemptsPerMinute: 120})
	want := []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second}
	for i := range 200 {
		ip := testIP(100 + i%50)
		if !m.Attempt(ip, limiterEpoch) {
			t.Fatalf("attempt %d on the attacked user refused", i+1)
		}
		user := "Victim"
		if i%2 == 1 {
			user = "vICTIM"
		}
		delay, ban := m.Failed(ip, user, limiterEpoch)
		if ban != 0 {
			t.Fatalf("failure %d banned %v", i+1, ip)
		}
		if w := want[min(i, len(want)-1)]; delay != w {
			t.Fatalf("failure %d delayed %v, want %v", i+1, delay, w)
		}
	}
	// The owner, who knows the password, is never refused: Attempt says yes.
	if !m.Attempt(testIP(99), limiterEpoch) {
		t.Fatal("the owner's attempt was refused")
	}
	// Failures are forgiven one per 15 s, and at most 8 are remembered: 8 × 15 s after the
	// 200 failures, one mistake costs 250 ms again.
	if d, _ := m.Failed(testIP(99), "victim", limiterEpoch.Add(tarpitLevels*tarpitForgive)); d != tarpitBase {
		t.Fatalf("after the failures stopped: %v, want %v", d, tarpitBase)
	}
	if d, _ := m.Failed(testIP(98), "someone-else", limiterEpoch); d != tarpitBase {
		t.Fatalf("another user: %v", d)
	}
}

// TestLoginLimiterBoundedInBytes (issue 13 item 4): 100,000 failed logins, each from its
// own address with its own 4 KB user name, cost at most 50 MiB of heap, the limiter holds
// at most maxLimiterKeys entries per map, and idle entries are swept.
func TestLoginLimiterBoundedInBytes(t *testing.T) {
	m := newMemLimiter(Limits{LoginsPerMinute: 10, LoginBurst: 5, AttemptsPerMinute: 120})
	name := []byte(strings.Repeat("n", 4096))
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	for i := range 100000 {
		copy(name, fmt.Sprintf("%08d", i)) // a fresh 4 KB string per attempt, as from the wire
		now := limiterEpoch.Add(time.Duration(i) * time.Millisecond)
		m.Attempt(testIP(i), now)
		m.Failed(testIP(i), string(name), now)
	}
	after := heap()
	ips, users := m.held()
	delta := int64(after) - int64(before)
	t.Logf("100000 attempts with 4 KB names: heap +%.1f MiB, %d addresses and %d users held", float64(delta)/(1<<20), ips, users)
	if delta > 50<<20 {
		t.Fatalf("heap grew by %d bytes, want at most 50 MiB", delta)
	}
	if ips > maxLimiterKeys || users > maxLimiterKeys {
		t.Fatalf("%d addresses, %d users held; cap %d", ips, users, maxLimiterKeys)
	}
	runtime.KeepAlive(m)
	later := limiterEpoch.Add(100*time.Second + limiterIdle + time.Minute)
	m.Failed(testIP(1<<20), "fresh", later)
	if ips, users := m.held(); ips != 1 || users != 1 {
		t.Fatalf("after the idle sweep: %d addresses, %d users held, want 1 and 1", ips, users)
	}
}

// TestLoginLimiterReload: new rates apply to addresses already held, and their bans stay.
func TestLoginLimiterReload(t *testing.T) {
	m := newMemLimiter(Limits{LoginsPerMinute: 10, LoginBurst: 5})
	ip := testIP(7)
	for range 5 {
		m.Failed(ip, "u", limiterEpoch)
	}
	m.Configure(Limits{LoginsPerMinute: 10, LoginBurst: 1, AttemptsPerMinute: 1})
	if _, ban := m.Failed(ip, "u", limiterEpoch); ban != DefaultBanTime {
		t.Fatalf("ban %v after the reload, want %v", ban, DefaultBanTime)
	}
	m.Configure(Limits{LoginsPerMinute: 10, LoginBurst: 5})
	if _, banned := m.Banned(ip, limiterEpoch.Add(time.Second)); !banned {
		t.Fatal("a reload lifted the ban")
	}
}

func TestUserKeyFoldsASCII(t *testing.T) {
	if userKey("Alice") != userKey("aLICE") || userKey("alice") == userKey("alicf") || userKey("") == userKey("a") {
		t.Fatal("userKey")
	}
}
