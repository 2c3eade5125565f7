// Package balancer chooses the backend FTP server for a proxied session.
//
// It owns pools of backends, the selection policies (round_robin, least_conn, random, ip_hash,
// user_hash), per-backend accounting (active sessions against max_sessions) and health state.
// A policy returns an ordering of the available backends, so failover is walking that list.
// A Registry keeps each backend's state (sessions, health, administrative drain/disable,
// counters) across config reloads: a backend is the same when its pool and name (or, without
// a name, its address) are.
//
// It does not dial backends for sessions, speak FTP beyond a health probe, or know about
// clients beyond the address and user name a policy may hash.
//
// Usage:
//
//	pool, _ := balancer.NewPool(balancer.PoolConfig{Name: "default", Policy: "round_robin",
//		Backends: []balancer.BackendConfig{{Address: "10.0.0.11:21"}}})
//	for _, b := range pool.Order(balancer.Client{Addr: ip, User: user}) {
//		if !b.Acquire() { continue }
//		defer b.Release()
//		// dial b.Config.Address …
//	}
//
//	// On a reload: carry the state over, swap the pools in, then commit.
//	changes := reg.Carry(newPools)
//	// … proxy.Server.Reload(cfg with newPools) …
//	reg.Commit(newPools)
package balancer
