package main

import (
	"bytes"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The handshake phase: TLS handshakes per second with Concurrency clients, for an ECDSA P-256
// and an RSA-2048 server certificate, full and resumed. One unit of work is TCP connect, TLS
// handshake, reading the 220 line, close. Paths, all with implicit TLS (TLS from the first
// byte, so the unit is the same everywhere):
//
//	ftpsproxy  its implicit listener: the main process (ECDSA) and a second one with the RSA
//	           certificate (the certificate is per process)
//	mod_proxy  mod_tls with UseImplicitSSL, one virtual host per certificate type; it forks a
//	           session process and dials the backend per connection: printed beside, not a target
//	relay      the bare Go TLS terminator (relay.go, Terminate): crypto/tls and nothing else
//
// Full: the client keeps no session cache. Resumed: every worker has its own session cache
// and makes one warm-up connection; every measured connection must then resume
// (ConnectionState().DidResume), and those that do not are counted apart and are not
// resumed handshakes. The client checks the server by pinning the expected leaf certificate
// (VerifyConnection compares its DER; it runs on resumed connections too, where
// VerifyPeerCertificate does not): chain building would spend client CPU that the servers
// compete for on two cores.

// hsKey is one certificate type.
type hsKey struct {
	name  string // metric key part: ecdsa, rsa
	title string
	leaf  []byte // DER of the certificate every path must present
}

// hsTarget is one path's endpoint for one certificate type.
type hsTarget struct {
	path string
	addr string
	proc *proc
	tree bool
}

// hsRound is the outcome of one path's run of one kind in one round.
type hsRound struct {
	ok, resumed, fails int
	elapsed            time.Duration
	cpu                float64 // seconds
	errs               []string
	state              string // negotiated version, cipher and group of the first connection
}

func (b *bench) handshakes() error {
	pp := b.ports
	termEC, err := startRelay("term-ecdsa", b.w.etc("term-ecdsa.log"), relaySpec{Listen: ipTLSRelay, Ports: []int{pp.termEC}, Cert: b.w.cert, Key: b.w.key, Terminate: true})
	if err != nil {
		return err
	}
	defer termEC.stop()
	termRSA, err := startRelay("term-rsa", b.w.etc("term-rsa.log"), relaySpec{Listen: ipTLSRelay, Ports: []int{pp.termRSA}, Cert: b.w.rsaCert, Key: b.w.rsaKey, Terminate: true})
	if err != nil {
		return err
	}
	defer termRSA.stop()
	fpRSA, conf, err := startFtpsproxy(b.w, b.bin, rsaFtpsproxy(b.w, pp), pp, b.opt.LogLevel)
	if err != nil {
		return err
	}
	defer fpRSA.stop()
	b.res.Configs["ftpsproxy-rsa"] = conf

	ecLeaf, err := leafDER(b.w.cert)
	if err != nil {
		return err
	}
	rsaLeaf, err := leafDER(b.w.rsaCert)
	if err != nil {
		return err
	}
	addr := func(ip string, port int) string { return net.JoinHostPort(ip, strconv.Itoa(port)) }
	fp, mp := b.plain[1].proc, b.plain[2].proc
	type keySet struct {
		key     hsKey
		targets []hsTarget
	}
	sets := []keySet{
		{hsKey{"ecdsa", "ECDSA P-256", ecLeaf}, []hsTarget{
			{path: pFtpsproxy, addr: addr(ipFront, pp.fpImplicit), proc: fp},
			{path: pModProxy, addr: addr(ipFront, pp.mpImpEC), proc: mp, tree: true},
			{path: pRelay, addr: addr(ipTLSRelay, pp.termEC), proc: termEC},
		}},
		{hsKey{"rsa", "RSA-2048", rsaLeaf}, []hsTarget{
			{path: pFtpsproxy, addr: addr(ipFront, pp.fpRSAImplicit), proc: fpRSA},
			{path: pModProxy, addr: addr(ipFront, pp.mpImpRSA), proc: mp, tree: true},
			{path: pRelay, addr: addr(ipTLSRelay, pp.termRSA), proc: termRSA},
		}},
	}
	labels := map[string]string{
		pFtpsproxy: fmt.Sprintf("ftpsproxy, listener tls=implicit (ECDSA: the main process at %s; RSA: a second process at %s)", sets[0].targets[0].addr, sets[1].targets[0].addr),
		pModProxy:  fmt.Sprintf("mod_proxy + mod_tls, UseImplicitSSL, TLSSessionTickets on, one virtual host per certificate (%s, %s); forks and dials the backend per connection", sets[0].targets[1].addr, sets[1].targets[1].addr),
		pRelay:     fmt.Sprintf("bare Go TLS terminator: crypto/tls handshake, 220, read until close; no backend (%s, %s)", sets[0].targets[2].addr, sets[1].targets[2].addr),
	}
	b.res.Paths["handshake"] = map[string]string{}
	states := map[string]string{}

	modes := []struct {
		name    string
		resumed bool
	}{{"full", false}, {"resumed", true}}
	metrics := map[string][2]*Metric{} // key_mode -> rate, CPU
	notRes := map[string]*Metric{}
	fail := b.res.metric("hs_failures", "failed TLS handshake connections (all kinds, all rounds)", "connections", false)
	fail.Sum = true
	fail.NA[pDirect] = "not measured: the bare terminator (relay column) is the reference"
	for _, s := range sets {
		for _, m := range modes {
			title := fmt.Sprintf("TLS handshakes, %s %s, %d concurrent", s.key.title, m.name, b.opt.Concurrency)
			rate := b.res.metric("hs_"+s.key.name+"_"+m.name+"_per_s", title, "handshakes/s", true)
			cpu := b.res.metric("hs_"+s.key.name+"_"+m.name+"_cpu_us", fmt.Sprintf("proxy CPU per handshake, %s %s", s.key.title, m.name), "µs", false)
			for _, x := range []*Metric{rate, cpu} {
				x.NA[pDirect] = fail.NA[pDirect]
			}
			metrics[s.key.name+"_"+m.name] = [2]*Metric{rate, cpu}
		}
		nr := b.res.metric("hs_"+s.key.name+"_not_resumed", fmt.Sprintf("resumption asked but not granted (full handshakes), %s, all rounds", s.key.title), "connections", false)
		nr.Sum = true
		nr.NA[pDirect] = fail.NA[pDirect]
		notRes[s.key.name] = nr
	}
	attempts := map[string]int{} // key/path -> resumed-mode connections
	for rep := range b.opt.Reps {
		for _, s := range sets {
			for _, m := range modes {
				ms := metrics[s.key.name+"_"+m.name]
				count := b.opt.HSFull
				if m.resumed {
					count = b.opt.HSResumed
				}
				runs := map[string]*hsRun{}
				for _, t := range s.targets {
					r, err := b.hsPrepare(t, s.key, m.resumed)
					if err != nil {
						return fmt.Errorf("%s %s via %s: %w", s.key.title, m.name, t.path, err)
					}
					runs[t.path] = r
					states[t.path+" "+s.key.name] = r.state
				}
				// The Go paths take turns in hsChunks chunks, in alternating order, so that
				// the load of the shared machine meets both alike; mod_proxy (a fraction of
				// the count: it forks per connection) runs in one block in the middle.
				goPaths := []string{pFtpsproxy, pRelay}
				for c := range hsChunks {
					order := slices.Clone(goPaths)
					if c%2 == 1 {
						slices.Reverse(order)
					}
					for _, p := range order {
						n := count/hsChunks + boolInt(c < count%hsChunks)
						if err := b.hsChunk(runs[p], n); err != nil {
							return fmt.Errorf("%s %s via %s: %w", s.key.title, m.name, p, err)
						}
					}
					if c == hsChunks/2-1 {
						if err := b.hsChunk(runs[pModProxy], b.opt.HSModProxy); err != nil {
							return fmt.Errorf("%s %s via %s: %w", s.key.title, m.name, pModProxy, err)
						}
					}
				}
				for _, t := range s.targets {
					r := runs[t.path]
					ok := r.ok
					if m.resumed {
						ok = r.resumed
						notRes[s.key.name].add(t.path, float64(r.ok-r.resumed))
						attempts[s.key.name+"/"+t.path] += r.ok
					}
					fail.add(t.path, float64(r.fails))
					ms[0].add(t.path, float64(ok)/r.elapsed.Seconds())
					cpuUS := 0.0
					if r.ok > 0 {
						cpuUS = 1e6 * r.cpu / float64(r.ok)
					}
					ms[1].add(t.path, cpuUS)
					b.log.Logf("handshake round %d %-6s %-7s %-9s %7.1f/s  %d ok, %d resumed, %d failed  proxy CPU %.0f µs/handshake",
						rep+1, s.key.name, m.name, t.path, float64(ok)/r.elapsed.Seconds(), r.ok, r.resumed, r.fails, cpuUS)
					for _, e := range r.errs {
						b.log.Logf("  handshake failure via %s: %s", t.path, e)
						b.res.note(fmt.Sprintf("handshake failure via %s (%s %s): %s", t.path, s.key.name, m.name, e))
					}
				}
			}
		}
	}
	// A path that resumed nothing has no resumed rate: n/a with the reason, not zero.
	for _, s := range sets {
		rate := metrics[s.key.name+"_resumed"]
		for _, t := range s.targets {
			if nr := sumOf(notRes[s.key.name].Samples[t.path]); nr > 0 && int(nr) == attempts[s.key.name+"/"+t.path] {
				why := fmt.Sprintf("no connection resumed: all %d presented a ticket from an earlier connection and got a full handshake", int(nr))
				for _, x := range rate {
					delete(x.Samples, t.path)
					x.NA[t.path] = why
				}
			}
		}
	}
	for _, p := range []string{pFtpsproxy, pModProxy, pRelay} {
		l := labels[p]
		if st := states[p+" ecdsa"]; st != "" {
			l += "; ECDSA: " + st
		}
		if st := states[p+" rsa"]; st != "" {
			l += "; RSA: " + st
		}
		b.res.Paths["handshake"][p] = l
	}
	return nil
}

func sumOf(s []float64) float64 {
	var t float64
	for _, v := range s {
		t += v
	}
	return t
}

// leafDER reads the first certificate of a PEM file.
func leafDER(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return blk.Bytes, nil
}

// pinnedTLS is a client config that accepts exactly the certificate leaf and nothing else.
// InsecureSkipVerify only turns off chain building: VerifyConnection still refuses any other
// certificate, on full and on resumed handshakes. No SNI is sent (no ServerName): mod_tls
// picks a name-based virtual host by SNI, and with "localhost" its session never greets;
// every path then serves its one certificate.
func pinnedTLS(leaf []byte) *tls.Config {
	return &tls.Config{
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 || !bytes.Equal(cs.PeerCertificates[0].Raw, leaf) {
				return errors.New("server certificate is not the pinned one")
			}
			return nil
		},
	}
}

// hsChunks is how many turns the Go paths take within one round of one kind: short turns
// (about 0.1 s each in the full run) so that a burst of load from elsewhere on the machine
// lands on both paths of a round.
const hsChunks = 8

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// hsRun is one path's run of one kind (certificate, full or resumed) in one round: its
// workers' client configs (and session caches) and the totals over its chunks.
type hsRun struct {
	t    hsTarget
	cfgs []*tls.Config
	hsRound
}

// hsPrepare makes the workers' configs for t. The first connection tells what was
// negotiated; for resumed runs every worker then makes one warm-up connection, which fills
// its cache. Neither is measured.
func (b *bench) hsPrepare(t hsTarget, key hsKey, resumed bool) (*hsRun, error) {
	r := &hsRun{t: t, cfgs: make([]*tls.Config, b.opt.Concurrency)}
	for i := range r.cfgs {
		r.cfgs[i] = pinnedTLS(key.leaf)
		if resumed {
			r.cfgs[i].ClientSessionCache = tls.NewLRUClientSessionCache(1)
		}
	}
	var buf [512]byte
	cs, err := hsOnce(t.addr, pinnedTLS(key.leaf), buf[:])
	if err != nil {
		return nil, fmt.Errorf("first connection: %w", err)
	}
	r.state = fmt.Sprintf("%s %s %s", tls.VersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite), cs.CurveID)
	if resumed {
		var wg sync.WaitGroup
		var werr atomic.Pointer[error]
		for i := range r.cfgs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var buf [512]byte
				if _, err := hsOnce(t.addr, r.cfgs[i], buf[:]); err != nil {
					werr.CompareAndSwap(nil, &err)
				}
			}()
		}
		wg.Wait()
		if e := werr.Load(); e != nil {
			return nil, fmt.Errorf("warm-up connection: %w", *e)
		}
	}
	return r, nil
}

// hsChunk makes n connections on r's path with up to Concurrency workers and adds them to
// r's totals: clock, the server's CPU, connections, resumptions, failures.
func (b *bench) hsChunk(r *hsRun, n int) error {
	t := r.t
	if n <= 0 {
		return nil
	}
	workers := min(len(r.cfgs), n)
	var mu sync.Mutex
	if t.tree {
		awaitChildren(t.proc, 5*time.Second)
	}
	var next, okN, resN, failN atomic.Int64
	before := sample(t.proc.pid(), t.tree)
	t0 := time.Now()
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf [512]byte
			for next.Add(1) <= int64(n) {
				cs, err := hsOnce(t.addr, r.cfgs[i], buf[:])
				if err != nil {
					failN.Add(1)
					mu.Lock()
					if len(r.errs) < 5 {
						r.errs = append(r.errs, err.Error())
					}
					mu.Unlock()
					continue
				}
				okN.Add(1)
				b.hsVerified.Add(1)
				if cs.DidResume {
					resN.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	r.elapsed += time.Since(t0)
	// mod_proxy's session processes end after the client closed: count the CPU they spend
	// exiting (they are reaped into the master's count), outside the clock.
	if t.tree {
		awaitChildren(t.proc, 10*time.Second)
	}
	r.cpu += cpuSince(before, sample(t.proc.pid(), t.tree))
	r.ok += int(okN.Load())
	r.resumed += int(resN.Load())
	r.fails += int(failN.Load())
	return nil
}

// awaitChildren waits until a forking server (mod_proxy) has no session process left.
func awaitChildren(p *proc, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) && len(descendants(p.pid())) > 1 {
		time.Sleep(20 * time.Millisecond)
	}
}

// hsOnce is one unit: connect, TLS handshake, read the 220 line, close. It returns the
// connection's TLS state (DidResume: whether the handshake resumed a session).
func hsOnce(addr string, cfg *tls.Config, buf []byte) (tls.ConnectionState, error) {
	var none tls.ConnectionState
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return none, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	tc := tls.Client(c, cfg)
	if err := tc.Handshake(); err != nil {
		return none, fmt.Errorf("handshake: %w", err)
	}
	// Reading the greeting also reads the TLS 1.3 session tickets sent before it, so the
	// worker's cache holds a fresh one for its next connection.
	n := 0
	for !bytes.Contains(buf[:n], []byte("\n")) {
		if n == len(buf) {
			return none, fmt.Errorf("greeting longer than %d bytes", len(buf))
		}
		k, err := tc.Read(buf[n:])
		n += k
		if err != nil && !bytes.Contains(buf[:n], []byte("\n")) {
			return none, fmt.Errorf("greeting: %w", err)
		}
	}
	if n < 4 || string(buf[:3]) != "220" {
		return none, fmt.Errorf("greeting %q", buf[:n])
	}
	return tc.ConnectionState(), nil
}
