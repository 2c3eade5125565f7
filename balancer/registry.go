package balancer

import (
	"slices"
	"sync"
)

// Registry keeps backends' identity across reloads. A reload builds new pools; Carry gives
// each new backend the state (sessions, health, admin state, counters) of the backend of the
// same pool and identity in force before, and Commit makes the new pools current and keeps
// backends that left the config listed as removed while they still have sessions.
//
// A backend is the same when its pool and name are the same or, without a name, its pool
// and address.
type Registry struct {
	mu      sync.Mutex
	pools   []*Pool
	removed []BackendView // backends no longer configured, kept while they have sessions
}

// BackendView is one backend as the admin API lists it.
type BackendView struct {
	Pool    string
	Backend *Backend
	Removed bool // left the config; finishing its sessions
}

// Changes is what a reload changes among pools and backends, for its log line.
type Changes struct {
	PoolsAdded, PoolsRemoved, PoolsChanged          []string
	BackendsAdded, BackendsRemoved, BackendsChanged []string // "pool/backend"
}

// Empty reports whether nothing changed.
func (c Changes) Empty() bool {
	return len(c.PoolsAdded)+len(c.PoolsRemoved)+len(c.PoolsChanged)+
		len(c.BackendsAdded)+len(c.BackendsRemoved)+len(c.BackendsChanged) == 0
}

// Carry hands the state of the backends in force to their successors in pools, which must
// not be in use yet, and returns what differs. A backend without a predecessor, when the
// registry already holds pools (a reload) and its pool runs health checks, starts down until
// its first successful probe. Carry does not change what is in force: call Commit once the
// new pools are.
func (r *Registry) Carry(pools []*Pool) Changes {
	r.mu.Lock()
	defer r.mu.Unlock()
	reload := r.pools != nil
	var ch Changes
	seen := map[*backendState]bool{}
	for _, np := range pools {
		op := findPool(r.pools, np.Name)
		if reload && op == nil {
			ch.PoolsAdded = append(ch.PoolsAdded, np.Name)
		} else if op != nil && (op.Policy.String() != np.Policy.String() || op.Health != np.Health || op.Panic != np.Panic) {
			ch.PoolsChanged = append(ch.PoolsChanged, np.Name)
		}
		for _, nb := range np.Backends {
			ob := r.predecessor(op, np.Name, nb)
			switch {
			case ob != nil:
				nb.backendState = ob.backendState
				seen[ob.backendState] = true
				if !sameBackendConfig(ob.Config, nb.Config) {
					ch.BackendsChanged = append(ch.BackendsChanged, np.Name+"/"+nb.Key())
				}
			case reload:
				ch.BackendsAdded = append(ch.BackendsAdded, np.Name+"/"+nb.Key())
				if np.Health.Interval > 0 {
					nb.awaitFirstProbe(np.Health.Rise)
				}
			}
		}
	}
	for _, op := range r.pools {
		if findPool(pools, op.Name) == nil {
			ch.PoolsRemoved = append(ch.PoolsRemoved, op.Name)
		}
		for _, ob := range op.Backends {
			if !seen[ob.backendState] {
				ch.BackendsRemoved = append(ch.BackendsRemoved, op.Name+"/"+ob.Key())
			}
		}
	}
	return ch
}

// predecessor returns the backend in force that nb (of pool name) continues: the one of the
// same name, else (when neither is named) of the same address; a removed backend still
// finishing sessions counts too, so its count carries on when it comes back.
func (r *Registry) predecessor(op *Pool, pool string, nb *Backend) *Backend {
	var cands []*Backend
	if op != nil {
		cands = append(cands, op.Backends...)
	}
	for _, v := range r.removed {
		if v.Pool == pool {
			cands = append(cands, v.Backend)
		}
	}
	for _, ob := range cands {
		if ob.Key() == nb.Key() {
			return ob
		}
	}
	for _, ob := range cands {
		if ob.Config.Name == "" && ob.Config.Address == nb.Config.Address {
			return ob
		}
	}
	return nil
}

// sameBackendConfig compares the settings a reload can change, except the backend TLS
// config, which every reload rebuilds.
func sameBackendConfig(a, b BackendConfig) bool {
	a.TLSConfig, b.TLSConfig = nil, nil
	return a == b
}

func findPool(ps []*Pool, name string) *Pool {
	for _, p := range ps {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// Commit makes pools the pools in force. Backends of the previous pools whose state was not
// carried into pools are kept as removed while they have sessions: those without any are
// forgotten here too, not only when Removed is asked, so the rotating answers of a DNS name
// do not pile up removed backends between two looks at the admin API.
func (r *Registry) Commit(pools []*Pool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	live := map[*backendState]bool{}
	for _, p := range pools {
		for _, b := range p.Backends {
			live[b.backendState] = true
		}
	}
	var removed []BackendView
	for _, v := range r.removed {
		if !live[v.Backend.backendState] {
			removed = append(removed, v)
		}
	}
	for _, op := range r.pools {
		for _, ob := range op.Backends {
			if !live[ob.backendState] {
				removed = append(removed, BackendView{Pool: op.Name, Backend: ob, Removed: true})
			}
		}
	}
	r.pools, r.removed = pools, removed
	r.prune()
}

// Pools returns the pools in force.
func (r *Registry) Pools() []*Pool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pools
}

// Removed returns the backends that left the config but still have sessions, and forgets
// those whose last session has ended.
func (r *Registry) Removed() []BackendView {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.prune()
	return slices.Clone(r.removed)
}

// prune forgets the removed backends whose last session has ended. r.mu must be held.
func (r *Registry) prune() {
	r.removed = slices.DeleteFunc(r.removed, func(v BackendView) bool { return v.Backend.Active() == 0 })
}

// Backends returns every backend in force, pool by pool in config order, then the removed
// ones still finishing sessions.
func (r *Registry) Backends() []BackendView {
	var out []BackendView
	for _, p := range r.Pools() {
		for _, b := range p.Backends {
			out = append(out, BackendView{Pool: p.Name, Backend: b})
		}
	}
	return append(out, r.Removed()...)
}

// Find returns the backend in force of pool whose name or address is id.
func (r *Registry) Find(pool, id string) *Backend {
	p := findPool(r.Pools(), pool)
	if p == nil {
		return nil
	}
	for _, b := range p.Backends {
		if b.Key() == id {
			return b
		}
	}
	for _, b := range p.Backends {
		if b.Config.Address == id {
			return b
		}
	}
	return nil
}
