package proxy

import (
	"fmt"
	"testing"
	"time"
)

func (k *keyedLimiter) held() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.buckets)
}

// TestKeyedLimiterBounded: a flood of distinct keys never holds more than the cap, idle keys
// are swept after the TTL, and a key over its burst is refused until tokens refill.
func TestKeyedLimiterBounded(t *testing.T) {
	k := newKeyedLimiter(60, 3, 1000)
	now := time.Unix(1e9, 0)
	for i := range 200000 {
		k.allow(fmt.Sprintf("198.51.%d.%d", i>>8&255, i&255)+fmt.Sprint(i>>16), now)
		if n := k.held(); n > 1000 {
			t.Fatalf("%d keys held after %d inserts; cap 1000", n, i+1)
		}
	}
	later := now.Add(k.ttl + time.Minute)
	k.allow("fresh", later)
	if n := k.held(); n != 1 {
		t.Fatalf("%d keys after the TTL sweep, want 1", n)
	}
	for i := range 3 {
		if !k.allow("ip", later) {
			t.Fatalf("attempt %d refused within the burst", i+1)
		}
	}
	if k.allow("ip", later) {
		t.Fatal("4th attempt allowed over a burst of 3")
	}
	if !k.allow("ip", later.Add(time.Second)) {
		t.Fatal("not refilled after a second at 60 per minute")
	}
}

// TestLoginLimiterPerUser: one user attacked from many addresses is limited even though each
// address stays within its own burst.
func TestLoginLimiterPerUser(t *testing.T) {
	l := newLoginLimiter(1, 2)
	now := time.Unix(1e9, 0)
	refused := 0
	for i := range 10 {
		if !l.allow(fmt.Sprintf("198.51.100.%d", i), "Admin", now) {
			refused++
		}
	}
	if refused != 6 { // the user's bucket holds twice the burst: 4
		t.Fatalf("%d of 10 refused, want 6", refused)
	}
	if newLoginLimiter(0, 5).allow("x", "y", now) != true {
		t.Fatal("logins_per_minute = 0 must turn the limit off")
	}
}
