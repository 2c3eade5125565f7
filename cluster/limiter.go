package cluster

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ftpsproxy/ftpsproxy/proxy"
)

// maxPending bounds the bans remembered during an outage for catching up.
const maxPending = 10000

// failWindow is the window of the shared failure count per client IP.
const failWindow = time.Minute

// Limiter is a proxy.LoginLimiter shared by the instances: failed logins per client IP are
// counted in Redis (ftpsproxy:fail:IP, a one-minute window) as well as locally, and a ban
// made by any instance (ftpsproxy:ban:IP, expiring with the ban; ftpsproxy:strikes:IP
// doubling the next one) refuses the address on all. The local limiter still applies on its
// own (its ban, its per-user tarpit, the attempts cap), and alone while Redis is unreachable;
// its bans of that time are written to Redis when it returns.
type Limiter struct {
	c     *Cluster
	local proxy.Configurable
	lim   atomic.Pointer[proxy.Limits]

	pmu     sync.Mutex
	pending map[netip.Addr]time.Time // bans made while Redis was unreachable, until when
}

// failScript counts a failure of an address and bans it when the count passes the limit or
// the local limiter banned it. KEYS: fail, strikes, ban. ARGV: window ms, limit, ban ms,
// max ban ms, local ban ms. Returns the ban in ms, 0 for none.
var failScript = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
if tonumber(ARGV[5]) == 0 and n <= tonumber(ARGV[2]) then return 0 end
local s = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[4]) * 2)
local ban = math.min(tonumber(ARGV[3]) * 2 ^ math.min(s - 1, 30), tonumber(ARGV[4]))
ban = math.max(ban, tonumber(ARGV[5]))
redis.call('SET', KEYS[3], '1', 'PX', math.floor(ban))
redis.call('DEL', KEYS[1])
return math.floor(ban)`)

// NewLimiter returns the shared login limiter for limits l, falling back on a local one.
// Build it once: the proxy keeps it for its life and hands it reloaded limits (Configure).
func (c *Cluster) NewLimiter(l proxy.Limits) *Limiter {
	lim := &Limiter{c: c, local: proxy.NewLocalLimiter(l), pending: map[netip.Addr]time.Time{}}
	lim.lim.Store(&l)
	c.limiter.Store(lim)
	return lim
}

// Configure implements proxy.Configurable.
func (l *Limiter) Configure(lim proxy.Limits) {
	l.lim.Store(&lim)
	l.local.Configure(lim)
}

func banKey(ip netip.Addr) string { return keyPrefix + "ban:" + ip.Unmap().String() }

// remoteBan returns how long ip stays banned in Redis; 0: not banned, or Redis unusable.
func (l *Limiter) remoteBan(ip netip.Addr) time.Duration {
	if !l.c.usable() {
		return 0
	}
	ctx, cancel := l.c.ctx()
	defer cancel()
	d, err := l.c.rdb.PTTL(ctx, banKey(ip)).Result()
	if l.c.result(err) != nil || d <= 0 {
		return 0
	}
	return d
}

// Banned implements proxy.LoginLimiter: banned here, or by any instance.
func (l *Limiter) Banned(ip netip.Addr, now time.Time) (time.Time, bool) {
	if until, ok := l.local.Banned(ip, now); ok {
		return until, true
	}
	if d := l.remoteBan(ip); d > 0 {
		return now.Add(d), true
	}
	return time.Time{}, false
}

// Attempt implements proxy.LoginLimiter.
func (l *Limiter) Attempt(ip netip.Addr, now time.Time) bool {
	if l.remoteBan(ip) > 0 {
		return false
	}
	return l.local.Attempt(ip, now)
}

// Failed implements proxy.LoginLimiter: the local verdict, and the shared count that may ban
// the address everywhere.
func (l *Limiter) Failed(ip netip.Addr, user string, now time.Time) (delay, ban time.Duration) {
	delay, ban = l.local.Failed(ip, user, now)
	lim := l.lim.Load()
	if lim.LoginsPerMinute <= 0 {
		return delay, ban
	}
	if l.c.usable() {
		burst := lim.LoginBurst
		if burst <= 0 {
			burst = proxy.DefaultLoginBurst
		}
		ctx, cancel := l.c.ctx()
		a := ip.Unmap().String()
		ms, err := failScript.Run(ctx, l.c.rdb, []string{keyPrefix + "fail:" + a, keyPrefix + "strikes:" + a, banKey(ip)},
			failWindow.Milliseconds(), lim.LoginsPerMinute+burst, banTime(lim).Milliseconds(), maxBanTime(lim).Milliseconds(), ban.Milliseconds()).Int64()
		cancel()
		if l.c.result(err) == nil {
			if shared := time.Duration(ms) * time.Millisecond; shared > ban {
				ban, delay = shared, 0
			}
			return delay, ban
		}
	}
	if ban > 0 {
		l.pmu.Lock()
		if len(l.pending) < maxPending {
			l.pending[ip.Unmap()] = now.Add(ban)
		}
		l.pmu.Unlock()
	}
	return delay, ban
}

func banTime(l *proxy.Limits) time.Duration {
	if l.BanTime > 0 {
		return l.BanTime
	}
	return proxy.DefaultBanTime
}

func maxBanTime(l *proxy.Limits) time.Duration {
	if l.MaxBanTime > 0 {
		return l.MaxBanTime
	}
	return proxy.DefaultMaxBanTime
}

// catchUp writes the bans made while Redis was unreachable that still run.
func (l *Limiter) catchUp() error {
	l.pmu.Lock()
	pending := l.pending
	l.pending = map[netip.Addr]time.Time{}
	l.pmu.Unlock()
	if len(pending) == 0 {
		return nil
	}
	ctx, cancel := l.c.ctx()
	defer cancel()
	pipe := l.c.rdb.Pipeline()
	for ip, until := range pending {
		if d := time.Until(until); d > time.Millisecond {
			pipe.Set(ctx, banKey(ip), "1", d)
		}
	}
	_, err := pipe.Exec(ctx)
	if err != nil {
		l.pmu.Lock()
		for ip, until := range pending {
			if len(l.pending) < maxPending {
				l.pending[ip] = until
			}
		}
		l.pmu.Unlock()
	}
	return err
}
