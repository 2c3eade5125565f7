// Package cluster shares state between ftpsproxy instances through Redis ([cluster]
// redis_url, instance): login-failure counts and bans (Limiter), and backends' max_sessions
// (Slots, one lease per session with a TTL that heartbeats refresh).
//
// Redis is optional and never in the way: every call has a short deadline, and while Redis
// is unreachable the instance goes on with its local limits (logged once per outage, counted,
// shown on the status page). A probe every second notices its return; the instance then
// catches up: it writes the bans it made meanwhile and the leases of the sessions it runs.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Timing of the shared state. callTimeout bounds one Redis call (a login waits at most that
// long for Redis, and only until the first failure marks Redis down); LeaseTTL is how long a
// lease of a session counts without a heartbeat, so a crashed instance's sessions stop
// counting within LeaseTTL; heartbeats come every LeaseTTL/3.
const (
	callTimeout   = 250 * time.Millisecond
	LeaseTTL      = 30 * time.Second
	probeInterval = time.Second
)

// keyPrefix starts every key this package writes.
const keyPrefix = "ftpsproxy:"

// Options configure a Cluster.
type Options struct {
	// RedisURL is redis://[user:password@]host:port/db (or rediss:// for TLS).
	RedisURL string
	// Instance names this proxy among the others (its leases carry it); default: the host name.
	Instance string
	// LeaseTTL overrides LeaseTTL (tests); 0: LeaseTTL.
	LeaseTTL time.Duration
	// OnOutage, when set, is called once each time Redis becomes unreachable (a metric).
	OnOutage func()
}

// Cluster is the connection to the shared store and its state. Its methods are safe for
// concurrent use.
type Cluster struct {
	rdb      *redis.Client
	instance string
	ttl      time.Duration
	log      *slog.Logger
	onOutage func()

	up      atomic.Bool
	outages atomic.Uint64
	smu     sync.Mutex
	since   time.Time // when up last changed
	lastErr string

	slots   *Slots
	limiter atomic.Pointer[Limiter] // nil until NewLimiter

	stop context.CancelFunc
	done chan struct{}
}

// New connects to opts.RedisURL (without waiting for Redis: it may come later) and starts
// the probe and heartbeat loop; Close stops it.
func New(opts Options, log *slog.Logger) (*Cluster, error) {
	ro, err := redis.ParseURL(opts.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("cluster.redis_url: %w", err)
	}
	ro.DialTimeout, ro.ReadTimeout, ro.WriteTimeout = callTimeout, callTimeout, callTimeout
	ro.MaxRetries = -1 // a failed call falls back at once; the probe finds Redis again
	ro.ContextTimeoutEnabled = true
	ttl := opts.LeaseTTL
	if ttl <= 0 {
		ttl = LeaseTTL
	}
	if opts.Instance == "" {
		opts.Instance, _ = os.Hostname()
	}
	c := &Cluster{rdb: redis.NewClient(ro), instance: opts.Instance, ttl: ttl, log: log, onOutage: opts.OnOutage,
		since: time.Now(), done: make(chan struct{})}
	c.up.Store(true) // until a call says otherwise
	c.slots = &Slots{c: c, held: map[string][]string{}, prefix: newPrefix(c.instance)}
	ctx, cancel := context.WithCancel(context.Background())
	c.stop = cancel
	c.probe(ctx)
	go c.loop(ctx)
	return c, nil
}

// Close stops the loop, gives back this instance's leases, and closes the connection.
func (c *Cluster) Close() error {
	c.stop()
	<-c.done
	c.slots.releaseAll()
	return c.rdb.Close()
}

// Instance returns the instance name.
func (c *Cluster) Instance() string { return c.instance }

// Up reports whether Redis answered the last call.
func (c *Cluster) Up() bool { return c.up.Load() }

// Outages returns how many times Redis became unreachable.
func (c *Cluster) Outages() uint64 { return c.outages.Load() }

// Status returns a line for the status page (up or down since when, and why) and whether
// Redis is up.
func (c *Cluster) Status() (string, bool) {
	c.smu.Lock()
	defer c.smu.Unlock()
	if c.up.Load() {
		return fmt.Sprintf("Redis up since %s (instance %s)", c.since.UTC().Format(time.RFC3339), c.instance), true
	}
	return fmt.Sprintf("Redis unreachable since %s (%s): local limits only (instance %s)", c.since.UTC().Format(time.RFC3339), c.lastErr, c.instance), false
}

// ctx returns the deadline of one call.
func (c *Cluster) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), callTimeout)
}

// usable reports whether a call should be tried now: not while Redis is known down (the
// probe finds it again), so a dead Redis costs a login nothing.
func (c *Cluster) usable() bool { return c.up.Load() }

// result records the outcome of a call: the first failure marks Redis down (logged and
// counted once per outage).
func (c *Cluster) result(err error) error {
	if err == nil || errors.Is(err, redis.Nil) {
		return nil
	}
	if c.up.CompareAndSwap(true, false) {
		c.outages.Add(1)
		c.smu.Lock()
		c.since, c.lastErr = time.Now(), err.Error()
		c.smu.Unlock()
		if c.onOutage != nil {
			c.onOutage()
		}
		c.log.Error("Redis unreachable: going on with local limits until it returns", "err", err)
	}
	return err
}

// loop probes Redis while it is down and sends heartbeats while it is up.
func (c *Cluster) loop(ctx context.Context) {
	defer close(c.done)
	t := time.NewTicker(probeInterval)
	defer t.Stop()
	lastBeat := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !c.up.Load() {
			c.probe(ctx)
			continue
		}
		if time.Since(lastBeat) >= c.ttl/3 {
			lastBeat = time.Now()
			c.result(c.slots.heartbeat())
		}
	}
}

// probe pings Redis; when it answers after an outage, the instance catches up (bans made
// meanwhile, leases of running sessions) and uses Redis again.
func (c *Cluster) probe(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, callTimeout)
	err := c.rdb.Ping(pctx).Err()
	cancel()
	if err != nil {
		c.result(err)
		return
	}
	if err := c.slots.heartbeat(); err != nil {
		c.result(err)
		return
	}
	if l := c.limiter.Load(); l != nil {
		if err := l.catchUp(); err != nil {
			c.result(err)
			return
		}
	}
	if c.up.CompareAndSwap(false, true) {
		c.smu.Lock()
		c.since, c.lastErr = time.Now(), ""
		c.smu.Unlock()
		c.log.Info("Redis reachable again: shared limits back in force")
	}
}

// Slots returns the shared max_sessions of backends.
func (c *Cluster) Slots() *Slots { return c.slots }
