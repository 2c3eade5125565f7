package main

import (
	"context"
	"fmt"

	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/cluster"
)

// discoveredPools builds the pools of cfgs with the discovery's last good answers in place of
// host names and SRV names.
func discoveredPools(disc *balancer.Discovery, cfgs []balancer.PoolConfig) ([]*balancer.Pool, error) {
	var pools []*balancer.Pool
	for i, bp := range disc.Expand(cfgs) {
		pool, err := balancer.NewPool(bp)
		if err != nil {
			return nil, fmt.Errorf("pool[%d]: %w", i, err)
		}
		pools = append(pools, pool)
	}
	return pools, nil
}

// startDiscovery resolves the runtime's names again as their pools' resolve_interval says
// until the runtime is replaced, and asks the loop to apply a changed answer.
func (d *proc) startDiscovery(rt *runtime) {
	ctx, cancel := context.WithCancel(context.Background())
	rt.stopDisc = cancel
	go d.disc.Run(ctx, rt.poolCfgs, func() {
		select {
		case d.rediscovered <- struct{}{}:
		default: // one is pending already
		}
	})
}

// applyDiscovery rebuilds the pools in force from the discovery's current answers, as a
// reload would rebuild them: backends that stay keep their state, new ones wait for their
// first successful probe, and those no longer in DNS take no new session while theirs run on
// (shown as removed).
func (d *proc) applyDiscovery() {
	pools, err := discoveredPools(d.disc, d.rt.poolCfgs)
	if err != nil {
		d.log.Error("DNS answer not applied", "err", err)
		return
	}
	cfg := d.rt.cfg
	cfg.Pools = pools
	ch := d.reg.Carry(pools)
	if ch.Empty() {
		return
	}
	if err := d.srv.Reload(cfg); err != nil {
		d.log.Error("DNS answer not applied", "err", err)
		return
	}
	d.reg.Commit(pools)
	d.rt.stopHealth()
	d.rt.cfg = cfg
	d.rt.startHealth(d.srv, d.log)
	d.log.Info("backends changed by DNS", changeAttrs(ch)...)
}

// changeAttrs returns the backends a change added and removed as log attributes.
func changeAttrs(ch balancer.Changes) []any {
	var attrs []any
	for _, kv := range []struct {
		key  string
		list []string
	}{{"backends_added", ch.BackendsAdded}, {"backends_removed", ch.BackendsRemoved}, {"backends_changed", ch.BackendsChanged}} {
		if len(kv.list) > 0 {
			attrs = append(attrs, kv.key, fmt.Sprint(kv.list))
		}
	}
	return attrs
}

// env returns what build takes from the running process.
func (d *proc) env() buildEnv {
	e := buildEnv{listen: d.up.listen, disc: d.disc}
	if d.shared != nil {
		e.shared, e.limiter = d.shared, d.limiter
	}
	return e
}

// startCluster connects to [cluster] redis_url, when set, for shared bans and max_sessions.
// Redis need not be up: the instance starts on local limits and catches up when it answers.
func (d *proc) startCluster() error {
	c := d.file.Cluster
	if c.RedisURL == "" {
		return nil
	}
	outages := d.metrics.Set().NewCounter("ftpsproxy_cluster_outages_total")
	shared, err := cluster.New(cluster.Options{RedisURL: c.RedisURL, Instance: c.Instance, OnOutage: outages.Inc}, d.log)
	if err != nil {
		return err
	}
	d.metrics.Set().NewGauge("ftpsproxy_cluster_up", func() float64 {
		if shared.Up() {
			return 1
		}
		return 0
	})
	d.shared, d.limiter = shared, shared.NewLimiter(d.file.Limits)
	d.log.Info("cluster state in Redis", "instance", shared.Instance(), "up", shared.Up())
	return nil
}

// clusterStatus returns the status page's view of [cluster], nil without one.
func (d *proc) clusterStatus() func() (string, bool) {
	if d.shared == nil {
		return nil
	}
	return d.shared.Status
}
