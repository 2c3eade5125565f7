package balancer

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"

	"github.com/ftpsproxy/ftpsproxy/internal/enum"
)

// Client is what a policy may know about the session it places.
type Client struct {
	Addr netip.Addr // the client's real address (after PROXY protocol)
	User string     // the USER name
}

// Policy orders backends for one session: the proxy tries them in that order. Implementations
// are safe for concurrent use.
type Policy interface {
	// Order returns bs, best first, as a new slice (bs itself is left as it is). Which
	// backends are candidates is the pool's decision (Pool.Order, Pool.Candidates).
	Order(bs []*Backend, c Client) []*Backend
	// String returns the policy's config name.
	String() string
}

// PolicyName is a policy's name as written in the config (pool.policy). The zero value
// selects DefaultPolicy.
type PolicyName string

// Policy names as written in the config.
const (
	RoundRobin PolicyName = "round_robin"
	LeastConn  PolicyName = "least_conn"
	Random     PolicyName = "random"
	IPHash     PolicyName = "ip_hash"
	UserHash   PolicyName = "user_hash"
)

// DefaultPolicy is the policy of a pool that names none.
const DefaultPolicy = LeastConn

// PolicyNames lists the legal policy names in the order the docs give them.
var PolicyNames = []PolicyName{RoundRobin, LeastConn, Random, IPHash, UserHash}

// UnmarshalText accepts one of PolicyNames; an unknown name is an error listing them.
func (n *PolicyName) UnmarshalText(b []byte) error {
	i, err := enum.Index(string(b), enum.Strings(PolicyNames))
	if err == nil {
		*n = PolicyNames[i]
	}
	return err
}

// NewPolicy returns the policy called name.
func NewPolicy(name PolicyName) (Policy, error) {
	switch name {
	case RoundRobin:
		return &roundRobin{}, nil
	case LeastConn:
		return &leastConn{}, nil
	case Random:
		return random{}, nil
	case IPHash:
		return hashPolicy{name: IPHash, key: func(c Client) []byte { return c.Addr.Unmap().AsSlice() }}, nil
	case UserHash:
		return hashPolicy{name: UserHash, key: func(c Client) []byte { return []byte(c.User) }}, nil
	}
	return nil, fmt.Errorf("unknown policy %q", name)
}

// filter returns the backends of bs that keep holds for, as a new slice.
func filter(bs []*Backend, keep func(*Backend) bool) []*Backend {
	out := make([]*Backend, 0, len(bs))
	for _, b := range bs {
		if keep(b) {
			out = append(out, b)
		}
	}
	return out
}

// roundRobin is smooth weighted round robin (as in nginx): over any window of sum(weights)
// picks each backend is chosen weight times, interleaved. The rest of the order follows the
// configured order after the chosen one, for failover.
type roundRobin struct {
	mu      sync.Mutex
	current map[*Backend]int
}

func (p *roundRobin) String() string { return string(RoundRobin) }

func (p *roundRobin) Order(bs []*Backend, _ Client) []*Backend {
	av := slices.Clone(bs)
	if len(av) < 2 {
		return av
	}
	p.mu.Lock()
	if p.current == nil {
		p.current = make(map[*Backend]int)
	}
	total, best := 0, -1
	for i, b := range av {
		w := b.Config.Weight
		total += w
		p.current[b] += w
		if best < 0 || p.current[b] > p.current[av[best]] {
			best = i
		}
	}
	p.current[av[best]] -= total
	p.mu.Unlock()
	return append(av[best:], av[:best]...)
}

// leastConn orders by active sessions per unit of weight. Backends tied for the least load
// take turns by smooth weighted round robin, so with all idle (the common case on a quiet
// farm) sessions spread by weight instead of piling on the first configured backend.
type leastConn struct {
	ties roundRobin
}

func (*leastConn) String() string { return string(LeastConn) }

func (p *leastConn) Order(bs []*Backend, _ Client) []*Backend {
	av, loads := sortedBy(bs, func(b *Backend) float64 { return float64(b.Active()) / float64(b.Config.Weight) })
	tied := 1
	for tied < len(av) && loads[tied] == loads[0] {
		tied++
	}
	if tied > 1 {
		copy(av, p.ties.Order(av[:tied], Client{}))
	}
	return av
}

// sortedBy returns bs as a new slice in ascending order of key, ties in the order of bs, and
// the keys in that order. key is called once per backend: a load read twice could change
// while sorting.
func sortedBy(bs []*Backend, key func(*Backend) float64) ([]*Backend, []float64) {
	type keyed struct {
		b *Backend
		k float64
	}
	ks := make([]keyed, len(bs))
	for i, b := range bs {
		ks[i] = keyed{b, key(b)}
	}
	slices.SortStableFunc(ks, func(x, y keyed) int { return cmp.Compare(x.k, y.k) })
	out, keys := make([]*Backend, len(ks)), make([]float64, len(ks))
	for i, k := range ks {
		out[i], keys[i] = k.b, k.k
	}
	return out, keys
}

// random draws a weighted order without replacement (Efraimidis–Spirakis keys).
type random struct{}

func (random) String() string { return string(Random) }

func (random) Order(bs []*Backend, _ Client) []*Backend {
	// Highest key first.
	av, _ := sortedBy(bs, func(b *Backend) float64 { return -math.Pow(rand.Float64(), 1/float64(b.Config.Weight)) })
	return av
}

// hashPolicy is weighted rendezvous (highest random weight) hashing on a client key: every
// proxy with the same config picks the same backend for the same key, and removing a backend
// moves only the keys it held.
type hashPolicy struct {
	name PolicyName
	key  func(Client) []byte
}

func (p hashPolicy) String() string { return string(p.name) }

func (p hashPolicy) Order(bs []*Backend, c Client) []*Backend {
	key := p.key(c)
	// Highest score first.
	av, _ := sortedBy(bs, func(b *Backend) float64 { return -RendezvousScore(key, b.Config.Address, b.Config.Weight) })
	return av
}

// RendezvousScore is the weighted HRW score of key on the backend named id: -w/ln(h) with h
// the 64-bit FNV-1a hash of key and id mapped into (0,1).
func RendezvousScore(key []byte, id string, weight int) float64 {
	h := fnv.New64a()
	h.Write(key)
	h.Write([]byte{0})
	h.Write([]byte(id))
	sum := h.Sum64()
	// A finaliser (splitmix64) spreads FNV's weak high bits.
	sum ^= sum >> 30
	sum *= 0xbf58476d1ce4e5b9
	sum ^= sum >> 27
	sum *= 0x94d049bb133111eb
	sum ^= sum >> 31
	u := (float64(sum>>11) + 0.5) / (1 << 53)
	return -float64(weight) / math.Log(u)
}
