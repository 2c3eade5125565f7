package proxy

import (
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// keyedLimiter is a token bucket per key (a client IP or a user name) for login attempts.
// Its map is bounded: idle entries are swept after ttl, and when max keys are held a new key
// evicts the stalest ones first, so a flood of source addresses cannot grow memory without
// bound. A key evicted early only gets a fresh bucket, which errs toward letting a login in.
type keyedLimiter struct {
	limit rate.Limit
	burst int
	ttl   time.Duration
	max   int

	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newKeyedLimiter(perMinute, burst, max int) *keyedLimiter {
	if burst < 1 {
		burst = 1
	}
	return &keyedLimiter{
		limit:   rate.Limit(float64(perMinute) / 60),
		burst:   burst,
		ttl:     10 * time.Minute,
		max:     max,
		buckets: make(map[string]*bucket),
	}
}

// allow takes one token for key at now.
func (k *keyedLimiter) allow(key string, now time.Time) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if now.Sub(k.lastSweep) > k.ttl/4 || len(k.buckets) >= k.max {
		k.sweep(now)
	}
	b := k.buckets[key]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(k.limit, k.burst)}
		k.buckets[key] = b
	}
	b.seen = now
	return b.lim.AllowN(now, 1)
}

// sweep drops buckets idle for ttl and, when still at the cap, the oldest half.
func (k *keyedLimiter) sweep(now time.Time) {
	k.lastSweep = now
	for key, b := range k.buckets {
		if now.Sub(b.seen) > k.ttl {
			delete(k.buckets, key)
		}
	}
	if len(k.buckets) < k.max {
		return
	}
	// Still full: evict everything older than the median age (O(n), rare).
	ages := make([]time.Duration, 0, len(k.buckets))
	for _, b := range k.buckets {
		ages = append(ages, now.Sub(b.seen))
	}
	cut := median(ages)
	for key, b := range k.buckets {
		if now.Sub(b.seen) >= cut {
			delete(k.buckets, key)
		}
	}
}

func median(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)/2]
}

// maxLimiterKeys caps each limiter's map.
const maxLimiterKeys = 100000

// loginLimiter applies [limits] logins_per_minute and login_burst per client IP, and the same
// rate with twice the burst per user name, so one account attacked from many addresses is
// slowed too. Attempts are counted at PASS.
type loginLimiter struct {
	perMinute, burst int
	byIP, byUser     *keyedLimiter
}

func newLoginLimiter(perMinute, burst int) *loginLimiter {
	if perMinute <= 0 {
		return nil
	}
	return &loginLimiter{
		perMinute: perMinute, burst: burst,
		byIP:   newKeyedLimiter(perMinute, burst, maxLimiterKeys),
		byUser: newKeyedLimiter(perMinute, 2*burst, maxLimiterKeys),
	}
}

// allow reports whether a login attempt may proceed. A nil limiter allows everything.
func (l *loginLimiter) allow(ip, user string, now time.Time) bool {
	if l == nil {
		return true
	}
	okIP := l.byIP.allow(ip, now)
	okUser := l.byUser.allow(strings.ToLower(user), now)
	return okIP && okUser
}
