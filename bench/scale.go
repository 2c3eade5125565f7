package main

import (
	"fmt"
	"os"
	"slices"
	"sync"
	"time"
)

// The scale phase: how the cost of a command grows with the number of sessions a proxy holds.
// For each level of idle logged-in plain sessions (held through ftpsproxy and through the
// bare relay at the same time, so that both paths see the same machine), Concurrency worker
// clients, each on its own logged-in session, send ScaleNoops NOOPs each; every round trip is
// recorded. Per level and path: NOOP p50 and p99 and the proxy's CPU per command (its
// utime+stime delta over the commands sent). Paths run one after the other within a round,
// in alternating order. mod_proxy is not measured (it forks one process per session: a
// command never meets the other sessions in one process), nor is direct (vsftpd, one process
// per session too).

func (b *bench) scale() error {
	levels := slices.Clone(b.opt.ScaleLevels)
	slices.Sort(levels)
	levels = slices.Compact(levels)
	paths := []*path{b.plain[1], b.plain[3]} // ftpsproxy, relay
	perCmd := b.opt.Concurrency * b.opt.ScaleNoops
	naDirect := "not measured: vsftpd forks one process per session, so idle sessions share nothing with a working one"
	naMP := "not measured: mod_proxy forks one process per session, so idle sessions share nothing with a working one"
	type levelMetrics struct{ p50, p99, cpu *Metric }
	lm := map[int]levelMetrics{}
	for _, lvl := range levels {
		x := levelMetrics{
			p50: b.res.metric(fmt.Sprintf("scale_noop_p50_us_%d", lvl), fmt.Sprintf("scale: NOOP p50, %d idle + %d working", lvl, b.opt.Concurrency), "µs", false),
			p99: b.res.metric(fmt.Sprintf("scale_noop_p99_us_%d", lvl), fmt.Sprintf("scale: NOOP p99, %d idle + %d working", lvl, b.opt.Concurrency), "µs", false),
			cpu: b.res.metric(fmt.Sprintf("scale_cpu_us_per_cmd_%d", lvl), fmt.Sprintf("scale: proxy CPU per NOOP, %d idle", lvl), "µs", false),
		}
		for _, m := range []*Metric{x.p50, x.p99, x.cpu} {
			m.NA[pDirect], m.NA[pModProxy] = naDirect, naMP
		}
		lm[lvl] = x
	}
	growth := b.res.metric("scale_p99_growth", fmt.Sprintf("scale: NOOP p99 at %d idle / at %d", levels[len(levels)-1], levels[0]), "×", false)
	spread := b.res.metric("scale_cpu_spread", "scale: proxy CPU per NOOP, max/min over the levels", "×", false)
	for _, m := range []*Metric{growth, spread} {
		m.NA[pDirect], m.NA[pModProxy] = naDirect, naMP
		m.Once = true
	}

	idle := map[string][]*ctrl{}
	workers := map[string][]*ctrl{}
	var mu sync.Mutex
	defer func() {
		for _, p := range paths {
			for _, c := range append(idle[p.name], workers[p.name]...) {
				c.Close()
			}
		}
		for _, p := range paths {
			b.awaitDrain(p)
		}
	}()
	open := func(p *path, dst map[string][]*ctrl, target int) error {
		need := target - len(dst[p.name])
		if need <= 0 {
			return nil
		}
		held := dst[p.name]
		err := b.openIdle(p, need, &mu, &held)
		dst[p.name] = held
		if err != nil {
			return fmt.Errorf("opening sessions: %w", err)
		}
		return nil
	}

	// Fresh processes: the relay keeps the pipes of earlier splices in Go's pipe pool (so new
	// sessions would seem to cost 2 descriptors instead of 6, and the cap below would be
	// wrong), and heap kept from earlier phases would change what a command costs.
	for _, p := range paths {
		if err := b.restart(p); err != nil {
			return err
		}
	}
	// What fits: the benchmark holds one descriptor per session, shared between the two
	// paths; each proxy holds what its RLIMIT_NOFILE allows at its descriptors per session
	// (measured on the workers' sessions).
	caps := map[string]int{}
	why := map[string]string{}
	own := (nofile(os.Getpid()) - fdCount(os.Getpid()) - 200) / len(paths)
	for _, p := range paths {
		base := fdCount(p.proc.pid())
		if err := open(p, workers, b.opt.Concurrency); err != nil {
			return err
		}
		caps[p.name] = own - b.opt.Concurrency
		why[p.name] = fmt.Sprintf("the benchmark process can hold only %d more sessions per path (RLIMIT_NOFILE %d, both paths held at once)", own, nofile(os.Getpid()))
		if perFD := float64(fdCount(p.proc.pid())-base) / float64(b.opt.Concurrency); perFD > 0 {
			limit := nofile(p.proc.pid())
			if c := int(float64(limit-base-100)/perFD) - b.opt.Concurrency; c < caps[p.name] {
				caps[p.name] = c
				why[p.name] = fmt.Sprintf("RLIMIT_NOFILE of the %s process is %d (the hard limit here) and it uses %.0f descriptors per session, so it holds at most %d idle sessions beside the %d working ones",
					p.name, limit, perFD, c, b.opt.Concurrency)
			}
		}
	}

	p99s := map[string]map[int]float64{}
	cpus := map[string]map[int]float64{}
	for _, p := range paths {
		p99s[p.name], cpus[p.name] = map[int]float64{}, map[int]float64{}
	}
	for _, lvl := range levels {
		x := lm[lvl]
		var run []*path
		for _, p := range paths {
			if lvl > caps[p.name] {
				for _, m := range []*Metric{x.p50, x.p99, x.cpu} {
					m.NA[p.name] = why[p.name]
				}
				continue
			}
			t0 := time.Now()
			if err := open(p, idle, lvl); err != nil {
				return err
			}
			b.log.Logf("scale: %d idle sessions via %s (opened in %v)", lvl, p.name, time.Since(t0).Round(100*time.Millisecond))
			run = append(run, p)
		}
		time.Sleep(time.Second) // let the last logins settle
		for rep := range b.opt.Reps {
			order := slices.Clone(run)
			if rep%2 == 1 {
				slices.Reverse(order)
			}
			for _, p := range order {
				lat, cpuS, err := b.scaleRound(p, workers[p.name])
				if err != nil {
					return fmt.Errorf("%d idle via %s: %w", lvl, p.name, err)
				}
				p50, p99 := us(lat[len(lat)/2]), us(lat[len(lat)*99/100])
				cpuUS := 1e6 * cpuS / float64(perCmd)
				x.p50.add(p.name, p50)
				x.p99.add(p.name, p99)
				x.cpu.add(p.name, cpuUS)
				b.log.Logf("scale %5d idle round %d %-9s NOOP p50 %6.1f µs  p99 %7.1f µs  proxy CPU %5.1f µs/NOOP", lvl, rep+1, p.name, p50, p99, cpuUS)
			}
		}
		// Every held session must still answer.
		for _, p := range run {
			if err := b.checkAlive(append(slices.Clone(idle[p.name]), workers[p.name]...)); err != nil {
				return fmt.Errorf("scale: sessions via %s at %d idle: %w", p.name, lvl, err)
			}
			p99s[p.name][lvl] = median(x.p99.Samples[p.name])
			cpus[p.name][lvl] = median(x.cpu.Samples[p.name])
		}
	}
	lo, hi := levels[0], levels[len(levels)-1]
	for _, p := range paths {
		if v, ok := p99s[p.name][hi]; ok && p99s[p.name][lo] > 0 {
			growth.add(p.name, v/p99s[p.name][lo])
		} else {
			growth.NA[p.name] = fmt.Sprintf("%d idle sessions not measured: %s", hi, why[p.name])
		}
		var cs []float64
		for _, v := range cpus[p.name] {
			cs = append(cs, v)
		}
		if len(cs) >= 2 && slices.Min(cs) > 0 {
			spread.add(p.name, slices.Max(cs)/slices.Min(cs))
		} else {
			spread.NA[p.name] = "fewer than two levels measured"
		}
	}
	return nil
}

// scaleRound has every worker session send ScaleNoops NOOPs at once and returns every round
// trip, sorted, and the proxy's CPU seconds meanwhile.
func (b *bench) scaleRound(p *path, ws []*ctrl) ([]time.Duration, float64, error) {
	n := b.opt.ScaleNoops
	lat := make([]time.Duration, len(ws)*n)
	errs := make([]error, len(ws))
	for _, c := range ws {
		c.deadline(10 * time.Minute)
		for range 5 { // warm up
			if err := c.noop(); err != nil {
				return nil, 0, err
			}
		}
	}
	before := p.usage()
	var wg sync.WaitGroup
	for i, c := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := lat[i*n : (i+1)*n]
			for j := range mine {
				t0 := time.Now()
				if err := c.noop(); err != nil {
					errs[i] = err
					return
				}
				mine[j] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	cpu := cpuSince(before, p.usage())
	for _, c := range ws {
		c.raw.SetDeadline(time.Time{})
	}
	for _, err := range errs {
		if err != nil {
			return nil, 0, err
		}
	}
	slices.Sort(lat)
	return lat, cpu, nil
}
