package cluster

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ftpsproxy/ftpsproxy/balancer"
)

// Slots keeps backends' max_sessions across instances: a sorted set per backend
// (ftpsproxy:slots:POOL/BACKEND) holds one member per running session, scored with its
// expiry in Redis's own clock. Heartbeats push the expiry of this instance's members; a
// crashed instance's members expire within the lease TTL and stop counting.
type Slots struct {
	c      *Cluster
	seq    atomic.Uint64
	prefix string // of this process's members: instance/pid-start/

	mu sync.Mutex
	// held maps a set key to the members this process holds. A key stays while it has
	// members, and with none until a heartbeat has cleared its members of sessions that ended
	// while Redis was unreachable; then it goes, so backends that discovery dropped or a
	// reload renamed are not beaten for ever.
	held map[string][]string
}

// takeScript adds member ARGV[3] to the set KEYS[1] with expiry now+ARGV[2] ms unless the
// set, cleared of expired members, holds ARGV[1] already. 1: taken, 0: full.
var takeScript = redis.NewScript(`
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return 1`)

// beatScript sets the expiry of the members ARGV[3..] of KEYS[1] to now+ARGV[1] ms (adding
// those Redis lost, as after an outage) and removes the other members of prefix ARGV[2]
// (sessions that ended while Redis was unreachable).
var beatScript = redis.NewScript(`
local t = redis.call('TIME')
local exp = t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[1])
local keep = {}
for i = 3, #ARGV do keep[ARGV[i]] = true end
local p = ARGV[2]
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if string.sub(m, 1, #p) == p and not keep[m] then redis.call('ZREM', KEYS[1], m) end
end
for i = 3, #ARGV do redis.call('ZADD', KEYS[1], exp, ARGV[i]) end
if #ARGV >= 3 then redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) * 2) end
return 1`)

// For returns the shared slots of the backends of pool, for balancer.BackendConfig.Slots.
func (s *Slots) For(pool string) balancer.SharedSlots { return poolSlots{s: s, pool: pool} }

type poolSlots struct {
	s    *Slots
	pool string
}

func (p poolSlots) key(b *balancer.Backend) string {
	return keyPrefix + "slots:" + p.pool + "/" + b.Key()
}

// Take implements balancer.SharedSlots. With Redis unreachable the session is admitted on
// the local count alone, and its lease is written when Redis returns.
func (p poolSlots) Take(b *balancer.Backend) bool { return p.s.take(p.key(b), b.Config.MaxSessions) }

// Give implements balancer.SharedSlots.
func (p poolSlots) Give(b *balancer.Backend) { p.s.give(p.key(b)) }

func (s *Slots) take(key string, maxSessions int) bool {
	member := s.prefix + strconv.FormatUint(s.seq.Add(1), 10)
	if s.c.usable() {
		ctx, cancel := s.c.ctx()
		n, err := takeScript.Run(ctx, s.c.rdb, []string{key}, maxSessions, s.c.ttl.Milliseconds(), member).Int()
		cancel()
		if s.c.result(err) == nil && n == 0 {
			return false
		}
	}
	s.mu.Lock()
	s.held[key] = append(s.held[key], member)
	s.mu.Unlock()
	return true
}

func (s *Slots) give(key string) {
	s.mu.Lock()
	ms := s.held[key]
	if len(ms) == 0 {
		s.mu.Unlock()
		return
	}
	member := ms[len(ms)-1]
	s.held[key] = ms[:len(ms)-1]
	s.mu.Unlock()
	if s.c.usable() {
		ctx, cancel := s.c.ctx()
		s.c.result(s.c.rdb.ZRem(ctx, key, member).Err())
		cancel()
	}
}

// heartbeat refreshes every lease this process holds (and writes those Redis lost) in one
// pipeline. Once it succeeds, the keys that held no member then nor now are forgotten.
func (s *Slots) heartbeat() error {
	s.mu.Lock()
	type beat struct {
		key     string
		members []string
	}
	beats := make([]beat, 0, len(s.held))
	for k, ms := range s.held {
		beats = append(beats, beat{k, slices.Clone(ms)})
	}
	s.mu.Unlock()
	if len(beats) == 0 {
		return nil
	}
	ctx, cancel := s.c.ctx()
	defer cancel()
	pipe := s.c.rdb.Pipeline()
	for _, b := range beats {
		args := []any{s.c.ttl.Milliseconds(), s.prefix}
		for _, m := range b.members {
			args = append(args, m)
		}
		beatScript.Eval(ctx, pipe, []string{b.key}, args...) // EVALSHA cannot fall back inside a pipeline
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	for _, b := range beats {
		if len(b.members) == 0 && len(s.held[b.key]) == 0 {
			delete(s.held, b.key)
		}
	}
	s.mu.Unlock()
	return nil
}

// releaseAll gives back every lease at shutdown (best effort: the TTL frees them anyway).
func (s *Slots) releaseAll() {
	s.mu.Lock()
	held := s.held
	s.held = map[string][]string{}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*callTimeout)
	defer cancel()
	for k, ms := range held {
		if len(ms) > 0 {
			args := make([]any, len(ms))
			for i, m := range ms {
				args[i] = m
			}
			s.c.rdb.ZRem(ctx, k, args...)
		}
	}
}

// newPrefix names this process's members: the instance, the pid and the start time, so a
// restarted instance (or the new process of an upgrade) never takes another's members for
// its own.
func newPrefix(instance string) string {
	return fmt.Sprintf("%s/%d-%d/", instance, os.Getpid(), time.Now().UnixNano())
}
