package proxy

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// LoginLimiter decides on login attempts (SPEC §8). Per client IP it caps all attempts
// (attempts_per_minute) and counts failed logins (logins_per_minute, login_burst); an address
// that spends its failure budget is banned, for a time that doubles with each ban. Per user
// name, failures only slow the 530 (a tarpit): a client that knows the password is never
// refused because others failed on its account, and successful logins are never counted.
//
// The Server keeps one for its life. The in-memory one counts per process; an implementation
// shared by several proxies (Redis, say) can take its place through Config.LoginLimiter.
// Methods are called from session goroutines and must be safe for concurrent use and fast.
type LoginLimiter interface {
	// Banned reports whether ip is banned at now and until when. It is asked at connect, at
	// USER and at PASS.
	Banned(ip netip.Addr, now time.Time) (until time.Time, banned bool)
	// Attempt counts one login attempt (a PASS) from ip, before any backend is asked. False
	// refuses it: the attempts cap is reached or ip is banned.
	Attempt(ip netip.Addr, now time.Time) bool
	// Failed counts a failed login of user from ip. delay is how long to hold the 530 (the
	// per-user tarpit); ban, when not zero, is the ban ip has just earned, and the session
	// ends with the 421 instead of the 530.
	Failed(ip netip.Addr, user string, now time.Time) (delay, ban time.Duration)
}

// The per-user tarpit: the 530 of a user's n-th recent failure waits tarpitBase << (n-1), at
// most tarpitMax; one failure is forgiven every tarpitForgive. Long enough to make guessing
// one account from many addresses slow, short enough that the owner who mistypes notices
// nothing.
const (
	tarpitBase    = 250 * time.Millisecond
	tarpitMax     = 4 * time.Second
	tarpitForgive = 15 * time.Second
	tarpitLevels  = 8 // failures remembered at most
)

// Bounds of the in-memory limiter's maps. An entry costs about 300 bytes per address and 60
// per user (user names are kept as a 64-bit hash, never as the string), so a full limiter
// holds about 36 MB whatever the attackers send.
const (
	maxLimiterKeys = 100000
	limiterIdle    = 10 * time.Minute // an entry unused this long is dropped (bans aside)
)

func (l Limits) banTime() time.Duration    { return orDefault(l.BanTime, DefaultBanTime) }
func (l Limits) maxBanTime() time.Duration { return orDefault(l.MaxBanTime, DefaultMaxBanTime) }

func (l Limits) loginBurst() int {
	if l.LoginBurst > 0 {
		return l.LoginBurst
	}
	return DefaultLoginBurst
}

// limitsOn reports whether any login limit is in force.
func (l Limits) limitsOn() bool { return l.LoginsPerMinute > 0 || l.AttemptsPerMinute > 0 }

// memLimiter is the in-memory LoginLimiter: maps keyed by client address and by a hash of
// the user name, bounded in entries (and so in bytes), swept of idle entries.
type memLimiter struct {
	lim atomic.Pointer[Limits] // changed by a reload; buckets pick the new rates on next use

	mu        sync.Mutex
	ips       map[netip.Addr]*ipEntry
	users     map[uint64]*userEntry
	lastSweep time.Time
}

type ipEntry struct {
	attempts *rate.Limiter // all attempts (nil: no cap)
	failures *rate.Limiter // failed logins (nil: failures not limited)
	strikes  int           // bans so far; the next one lasts BanTime << strikes
	banUntil time.Time
	seen     time.Time
}

type userEntry struct {
	level float64 // recent failures, forgiven one per tarpitForgive
	seen  time.Time
}

func newMemLimiter(l Limits) *memLimiter {
	m := &memLimiter{ips: make(map[netip.Addr]*ipEntry), users: make(map[uint64]*userEntry)}
	m.Configure(l)
	return m
}

// Configure applies reloaded limits; entries already held keep their counts and bans.
func (m *memLimiter) Configure(l Limits) { m.lim.Store(&l) }

// Configurable is a LoginLimiter that takes the limits of a reload (Server.Reload passes
// them on when they changed).
type Configurable interface {
	LoginLimiter
	Configure(Limits)
}

// NewLocalLimiter returns the in-memory LoginLimiter a Server uses when Config.LoginLimiter
// is nil: counts and bans of this process only. A shared limiter falls back on it.
func NewLocalLimiter(l Limits) Configurable { return newMemLimiter(l) }

// Banned implements LoginLimiter.
func (m *memLimiter) Banned(ip netip.Addr, now time.Time) (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e := m.ips[ip]; e != nil && now.Before(e.banUntil) {
		return e.banUntil, true
	}
	return time.Time{}, false
}

// Attempt implements LoginLimiter.
func (m *memLimiter) Attempt(ip netip.Addr, now time.Time) bool {
	if !m.lim.Load().limitsOn() {
		return true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.ip(ip, now)
	if now.Before(e.banUntil) {
		return false
	}
	return e.attempts == nil || e.attempts.AllowN(now, 1)
}

// Failed implements LoginLimiter.
func (m *memLimiter) Failed(ip netip.Addr, user string, now time.Time) (delay, ban time.Duration) {
	l := m.lim.Load()
	if !l.limitsOn() {
		return 0, 0
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.ip(ip, now)
	if e.failures != nil && !e.failures.AllowN(now, 1) {
		ban = min(l.banTime()<<min(e.strikes, 30), l.maxBanTime())
		e.strikes++
		e.banUntil = now.Add(ban)
		return 0, ban
	}
	if l.LoginsPerMinute <= 0 {
		return 0, 0
	}
	return m.tarpit(userKey(user), now), 0
}

// tarpit counts a failure against the user and returns the delay for its 530.
func (m *memLimiter) tarpit(key uint64, now time.Time) time.Duration {
	u := m.users[key]
	if u == nil {
		m.sweepIfDue(now)
		u = &userEntry{}
		m.users[key] = u
	} else {
		u.level = max(0, u.level-float64(now.Sub(u.seen))/float64(tarpitForgive))
	}
	u.level = min(u.level+1, tarpitLevels) // an attack that stops is forgiven within minutes
	u.seen = now
	n := int(math.Ceil(u.level)) - 1 // 0 for the first recent failure; a failure partly forgiven still counts
	return min(tarpitBase<<n, tarpitMax)
}

// ip returns the entry of ip, creating it with buckets for the limits in force.
func (m *memLimiter) ip(ip netip.Addr, now time.Time) *ipEntry {
	l := m.lim.Load()
	e := m.ips[ip]
	if e == nil {
		m.sweepIfDue(now)
		e = &ipEntry{}
		m.ips[ip] = e
	}
	e.seen = now
	e.attempts = bucket(e.attempts, l.AttemptsPerMinute, l.AttemptsPerMinute, now)
	e.failures = bucket(e.failures, l.LoginsPerMinute, l.loginBurst(), now)
	return e
}

// bucket returns b set to perMinute with burst, a new one when b is nil, or nil when the
// limit is off. A reload's new rates apply to buckets already held without refilling them.
func bucket(b *rate.Limiter, perMinute, burst int, now time.Time) *rate.Limiter {
	if perMinute <= 0 {
		return nil
	}
	r := rate.Limit(float64(perMinute) / 60)
	if b == nil {
		return rate.NewLimiter(r, burst)
	}
	if b.Limit() != r {
		b.SetLimitAt(now, r)
	}
	if b.Burst() != burst {
		b.SetBurstAt(now, burst)
	}
	return b
}

// sweepIfDue drops idle entries now and then, and always when a map is full, so a flood of
// addresses or user names cannot grow memory past maxLimiterKeys entries each.
func (m *memLimiter) sweepIfDue(now time.Time) {
	if now.Sub(m.lastSweep) < limiterIdle/4 && len(m.ips) < maxLimiterKeys && len(m.users) < maxLimiterKeys {
		return
	}
	m.lastSweep = now
	keep := m.lim.Load().maxBanTime()
	sweep(m.ips, func(e *ipEntry) time.Time {
		// An address is remembered (with its strikes) until max_ban_time after its ban ends.
		return later(e.seen.Add(limiterIdle), e.banUntil.Add(keep))
	}, now)
	sweep(m.users, func(u *userEntry) time.Time {
		return u.seen.Add(min(limiterIdle, time.Duration(u.level*float64(tarpitForgive))))
	}, now)
}

// sweep deletes the entries whose expiry has passed and, when the map is still full, the
// half that expires first: a full map loses its least useful entries, never grows.
func sweep[K comparable, V any](m map[K]V, expiry func(V) time.Time, now time.Time) {
	for k, v := range m {
		if !expiry(v).After(now) {
			delete(m, k)
		}
	}
	if len(m) < maxLimiterKeys {
		return
	}
	ex := make([]time.Time, 0, len(m))
	for _, v := range m {
		ex = append(ex, expiry(v))
	}
	slices.SortFunc(ex, func(a, b time.Time) int { return a.Compare(b) })
	cut := ex[len(ex)/2]
	for k, v := range m {
		if !expiry(v).After(cut) {
			delete(m, k)
		}
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// userKey is the 64-bit FNV-1a hash of a user name with ASCII letters folded to lower case,
// so the limiter holds 8 bytes per name however long the name is. A collision only shares a
// tarpit between two names.
func userKey(user string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(user); i++ {
		c := user[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

// refuseBanned ends the session with the login-rate 421 when the client's address is banned
// (at connect, before the greeting, and at USER).
func (s *session) refuseBanned(at string) error {
	until, banned := s.srv.logins.Banned(s.clientAddr.Addr(), time.Now())
	if !banned {
		return nil
	}
	s.srv.obs.RateLimited()
	s.srv.limitLog.Warn(s.log, "banned address refused", "at", at, "until", until.UTC().Format(time.RFC3339))
	return end421(CauseLoginRate, errors.New("address banned"))
}

// loginAttempt counts a PASS against the client address's attempts cap before any backend
// is asked; over the cap (or banned meanwhile) the session ends with the login-rate 421.
func (s *session) loginAttempt() error {
	if s.srv.logins.Attempt(s.clientAddr.Addr(), time.Now()) {
		return nil
	}
	s.srv.obs.Login("rate_limited")
	s.srv.limitLog.Warn(s.log, "login attempts over the limit")
	return end421(CauseLoginRate, errors.New("login attempts over the limit"))
}

// loginFailed answers a login the backend refused: the 530 after the user's tarpit delay,
// or, when the address has spent its failure budget, the login-rate 421 and a ban.
func (s *session) loginFailed(backend string, code int) error {
	return s.failedLogin("login failed", "backend", backend, "backend_code", code)
}

// failedLogin counts a failed login (refused by the backend, or by the proxy itself for the
// user directory or a client certificate) against the limits, logs msg with the tarpit delay,
// and answers the 530 after that delay, or the login-rate 421 with a ban.
func (s *session) failedLogin(msg string, attrs ...any) error {
	delay, ban := s.srv.logins.Failed(s.clientAddr.Addr(), s.user, time.Now())
	s.srv.limitLog.Info(s.log, msg, append(attrs, "tarpit_s", delay.Seconds())...)
	if ban > 0 {
		s.srv.limitLog.Warn(s.log, "address banned after failed logins", "ban_s", ban.Seconds())
		return end421(CauseLoginRate, fmt.Errorf("banned for %v after failed logins", ban))
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-s.ctx.Done():
			return s.ctx.Err()
		}
	}
	return s.writeLine(replyLoginBad)
}
