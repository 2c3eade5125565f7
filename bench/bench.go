package main

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Logger receives progress lines; *testing.T satisfies it.
type Logger interface {
	Logf(format string, args ...any)
}

// Options configures a run. DefaultOptions gives the full and the quick run.
type Options struct {
	Quick       bool  `json:"quick"`
	FileSize    int64 `json:"file_size"`   // bytes per RETR/STOR
	Reps        int   `json:"repetitions"` // interleaved rounds of every measurement
	Sessions    int   `json:"sessions"`    // sessions per path per round (session rate)
	Concurrency int   `json:"concurrency"` // concurrent clients (session rate, opening idle sessions)
	Noops       int   `json:"noops"`       // NOOPs per path per round
	IdleLevels  []int `json:"idle_levels"` // idle sessions held for the memory measurement
	ModProxyCap int   `json:"mod_proxy_cap"`
	// FTPSIdleLevels: idle FTPS sessions (TLS control connection, PROT P) held for the
	// ftpsidle phase.
	FTPSIdleLevels []int `json:"ftps_idle_levels"`
	// Handshake phase: connections per path per round, full and resumed; mod_proxy forks and
	// dials the backend per connection (about 40/s here), so it gets HSModProxy per round.
	HSFull     int `json:"handshakes_full"`
	HSResumed  int `json:"handshakes_resumed"`
	HSModProxy int `json:"handshakes_mod_proxy"`
	// Scale phase: idle plain sessions held while Concurrency workers send ScaleNoops NOOPs
	// each.
	ScaleLevels  []int    `json:"scale_levels"`
	ScaleNoops   int      `json:"scale_noops_per_worker"`
	Phases       []string `json:"phases"`
	Login        string   `json:"login"`               // anonymous | local
	LogLevel     string   `json:"ftpsproxy_log_level"` // [log] level of ftpsproxy (its log goes to a file)
	FtpsproxyBin string   `json:"-"`
	Keep         bool     `json:"-"`
}

// Phases in running order.
var allPhases = []string{"plain", "ftps", "sessions", "noop", "handshake", "memory", "ftpsidle", "scale"}

// DefaultOptions returns the full run (quick false) or the -quick one.
func DefaultOptions(quick bool) Options {
	if quick {
		return Options{Quick: true, FileSize: 64 << 20, Reps: 2, Sessions: 200, Concurrency: 32,
			Noops: 500, IdleLevels: []int{100}, ModProxyCap: 100, FTPSIdleLevels: []int{100},
			HSFull: 200, HSResumed: 400, HSModProxy: 20, ScaleLevels: []int{50, 200}, ScaleNoops: 100,
			Phases: allPhases, Login: "anonymous", LogLevel: "info"}
	}
	return Options{FileSize: 1 << 30, Reps: 7, Sessions: 1500, Concurrency: 32,
		Noops: 5000, IdleLevels: []int{1000, 10000}, ModProxyCap: 2000, FTPSIdleLevels: []int{1000, 5000},
		HSFull: 1000, HSResumed: 2000, HSModProxy: 50, ScaleLevels: []int{100, 1000, 5000}, ScaleNoops: 1000,
		Phases: allPhases, Login: "anonymous", LogLevel: "info"}
}

// Path names, in column order.
const (
	pDirect    = "direct"
	pFtpsproxy = "ftpsproxy"
	pModProxy  = "mod_proxy"
	pRelay     = "relay"
)

var pathOrder = []string{pDirect, pFtpsproxy, pModProxy, pRelay}

// path is one way from the client to the backend.
type path struct {
	name    string
	label   string
	addr    string
	ctrlTLS int
	prot    bool  // PBSZ 0 + PROT P after login
	proc    *proc // the proxy's process; nil for direct
	tree    bool  // the proxy is proc and its descendants (mod_proxy forks per session)
	na      string
}

// usage samples the proxy's processes; zero for the direct path.
func (p *path) usage() usage {
	if p.proc == nil {
		return usage{}
	}
	return sample(p.proc.pid(), p.tree)
}

// bench is one run.
type bench struct {
	opt      Options
	log      Logger
	w        *workdir
	ports    portPlan
	user     string
	pass     string
	tls      *tls.Config // client base config: trusts the benchmark's certificate
	plain    []*path
	ftps     []*path
	vsftpd   *proc
	res      *Results
	data     string // pub/ name of the big file
	dataPath string
	dataSum  [32]byte
	small    string
	smallSum [32]byte
	verified atomic.Int64
	// hsVerified counts handshake-phase connections whose certificate matched the pin and
	// that greeted with 220; alive counts NOOPs answered by held idle sessions.
	hsVerified atomic.Int64
	alive      atomic.Int64
	bin        string // the ftpsproxy binary
	uploads    atomic.Int64
	recv       []byte // RETR lands here (file size + 1, pages touched once), hashed after the clock stops
}

// errVerify marks a transfer whose bytes did not match: it always fails the run.
var errVerify = errors.New("verification failed")

// Run runs the benchmark and returns its results; out receives the configs and the report.
func Run(opt Options, log Logger, out io.Writer) (res *Results, err error) {
	if err := preflight(); err != nil {
		return nil, err
	}
	b := &bench{opt: opt, log: log, res: newResults(opt)}
	b.user, b.pass = "anonymous", "bench@"
	if opt.Login == "local" {
		b.user, b.pass = testUser, testPassword
	}
	// The idle-session measurement needs many descriptors: take what the hard limit allows
	// (children inherit it).
	raiseNofile(1 << 18)
	b.w, err = newWorkdir()
	if err != nil {
		return nil, err
	}
	defer func() {
		stopAll()
		// Keep configs and logs of a failed run; the data files go either way.
		os.RemoveAll(b.w.root)
		if !opt.Keep {
			os.Remove(b.w.etc("ftpsproxy")) // the binary built here
		}
		if err == nil && !opt.Keep {
			os.RemoveAll(b.w.dir)
		} else {
			log.Logf("work directory kept: %s", b.w.dir)
		}
	}()
	log.Logf("work directory %s", b.w.dir)
	if err := b.setup(); err != nil {
		return nil, err
	}
	b.printConfigs(out)
	start := time.Now()
	for _, ph := range allPhases {
		if !slices.Contains(opt.Phases, ph) {
			continue
		}
		t0 := time.Now()
		var err error
		switch ph {
		case "plain":
			err = b.throughput("plain", b.plain)
		case "ftps":
			err = b.throughput("ftps", b.ftps)
		case "sessions":
			err = b.sessionRate()
		case "noop":
			err = b.noopLatency()
		case "memory":
			err = b.memory(b.plain, memPlain)
		case "ftpsidle":
			err = b.memory(b.ftps, memFTPS)
		case "handshake":
			err = b.handshakes()
		case "scale":
			err = b.scale()
		}
		if err != nil {
			return b.res, fmt.Errorf("%s: %w", ph, err)
		}
		log.Logf("phase %s done in %v", ph, time.Since(t0).Round(100*time.Millisecond))
	}
	b.res.Verified = b.verified.Load()
	b.res.HandshakesVerified = b.hsVerified.Load()
	b.res.IdleAnswered = b.alive.Load()
	b.res.DurationS = time.Since(start).Seconds()
	b.res.finish()
	b.res.Env["loadavg_end"] = readTrim("/proc/loadavg")
	b.res.Env["cpu_steal"] = stealShare(b.res.cpuStart)
	b.res.print(out)
	return b.res, nil
}

// preflight checks what the benchmark needs before touching anything.
func preflight() error {
	if runtime.GOOS != "linux" {
		return errors.New("the benchmark runs on Linux only")
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("the benchmark needs root (the FTP servers chroot and switch users); running as uid %d", os.Geteuid())
	}
	for _, bin := range []string{vsftpdBinary, proftpdBinary, filepath.Join(proftpdMods, "mod_proxy.so"), filepath.Join(proftpdMods, "mod_tls.so")} {
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("%v: run %s as root to install the test peers", err, installScript)
		}
	}
	for _, ip := range []string{ipBackend, ipTLSRelay} {
		ln, err := net.Listen("tcp4", ip+":0")
		if err != nil {
			return fmt.Errorf("loopback address %s unusable: %w", ip, err)
		}
		ln.Close()
	}
	return nil
}

// raiseNofile sets RLIMIT_NOFILE (soft and hard) to at least n; children inherit it.
func raiseNofile(n uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur >= n && lim.Max >= n {
		return nil
	}
	want := lim
	want.Max = max(lim.Max, n)
	want.Cur = want.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err == nil {
		return nil
	}
	lim.Cur = lim.Max // without CAP_SYS_RESOURCE: the soft limit up to the hard one
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
}

// setup writes the data files and starts every server and relay, then checks every path
// with a small verified RETR and STOR.
func (b *bench) setup() error {
	opt := b.opt
	var err error
	t0 := time.Now()
	b.data = "data.bin"
	b.dataPath, b.dataSum, err = b.w.writeData(b.data, opt.FileSize, 0x5eed_f7b5)
	if err != nil {
		return err
	}
	b.small = "small.bin"
	if _, b.smallSum, err = b.w.writeData(b.small, 1024, 0x5a11); err != nil {
		return err
	}
	b.log.Logf("data file %s: %d bytes, sha256 %x (%v)", b.data, opt.FileSize, b.dataSum, time.Since(t0).Round(time.Millisecond))
	b.res.Data = map[string]string{"file": b.data, "size": fmt.Sprint(opt.FileSize), "sha256": fmt.Sprintf("%x", b.dataSum)}

	pem, _ := os.ReadFile(b.w.cert)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	b.tls = &tls.Config{RootCAs: pool, ServerName: "localhost"}

	bin := opt.FtpsproxyBin
	if bin == "" {
		bin = b.w.etc("ftpsproxy")
		t0 := time.Now()
		if err := buildFtpsproxy(bin); err != nil {
			return err
		}
		b.log.Logf("built ftpsproxy (%v)", time.Since(t0).Round(time.Millisecond))
	}
	if b.ports, err = planPorts(); err != nil {
		return err
	}
	pp := b.ports
	b.log.Logf("ports: vsftpd %s:%d (passive %d-%d), ftpsproxy %d/%d, mod_proxy %d/%d",
		ipBackend, pp.vsftpd, pp.vsPasv[0], pp.vsPasv[1], pp.fpPlain, pp.fpTLS, pp.mpPlain, pp.mpTLS)

	var conf string
	if b.vsftpd, conf, err = startVsftpd(b.w, "vsftpd", pp.vsftpd, pp.vsPasv, false); err != nil {
		return err
	}
	b.res.Configs["vsftpd"] = conf
	vsTLS, conf, err := startVsftpd(b.w, "vsftpd-tls", pp.vsftpdTLS, pp.vsTLSPasv, true)
	if err != nil {
		return err
	}
	_ = vsTLS
	b.res.Configs["vsftpd-tls"] = conf
	relay, err := b.startPlainRelay()
	if err != nil {
		return err
	}
	tlsRelay, err := b.startTLSRelay()
	if err != nil {
		return err
	}
	b.bin = bin
	fp, conf, err := startFtpsproxy(b.w, bin, mainFtpsproxy(b.w, pp), pp, b.opt.LogLevel)
	if err != nil {
		return err
	}
	b.res.Configs["ftpsproxy"] = conf
	maxInst := 200
	if slices.Contains(opt.Phases, "memory") || slices.Contains(opt.Phases, "ftpsidle") {
		maxInst = max(maxInst, opt.ModProxyCap+200)
	}
	mp, conf, err := startProftpd(b.w, pp, maxInst)
	if err != nil {
		return err
	}
	b.res.Configs["mod_proxy"] = conf

	addr := func(ip string, port int) string { return fmt.Sprintf("%s:%d", ip, port) }
	b.plain = []*path{
		{name: pDirect, label: "vsftpd 3.0.3", addr: addr(ipBackend, pp.vsftpd)},
		{name: pFtpsproxy, label: "ftpsproxy, listener tls=none", addr: addr(ipFront, pp.fpPlain), proc: fp},
		{name: pModProxy, label: "ProFTPD 1.3.8 mod_proxy, reverse", addr: addr(ipFront, pp.mpPlain), proc: mp, tree: true},
		{name: pRelay, label: "bare Go relay, io.Copy between *net.TCPConn (splice)", addr: addr(ipFront, pp.vsftpd), proc: relay},
	}
	b.ftps = []*path{
		{name: pDirect, label: "vsftpd 3.0.3 with its own TLS (OpenSSL, TLS 1.2), explicit, PROT P", addr: addr(ipBackend, pp.vsftpdTLS), ctrlTLS: ctrlExplicit, prot: true},
		{name: pFtpsproxy, label: "ftpsproxy, listener tls=explicit, PROT P; backend leg plain", addr: addr(ipFront, pp.fpTLS), ctrlTLS: ctrlExplicit, prot: true, proc: fp},
		{name: pModProxy, label: "mod_proxy + mod_tls toward the client, explicit, PROT P; backend leg plain", addr: addr(ipFront, pp.mpTLS), ctrlTLS: ctrlExplicit, prot: true, proc: mp, tree: true},
		{name: pRelay, label: "bare Go TLS-terminating relay (crypto/tls, implicit on every port), plain to the backend", addr: addr(ipTLSRelay, pp.vsftpd), ctrlTLS: ctrlImplicit, proc: relay},
	}
	b.ftps[3].proc = tlsRelay
	b.res.Paths = map[string]map[string]string{"plain": {}, "ftps": {}}
	for _, p := range b.plain {
		b.res.Paths["plain"][p.name] = p.label + " at " + p.addr
	}
	for _, p := range b.ftps {
		b.res.Paths["ftps"][p.name] = p.label + " at " + p.addr
	}

	// Every path must move a small file both ways, verified, before anything is measured.
	// mod_proxy with TLS toward the client is the one path that may be impossible: it is
	// then reported as n/a with the reason.
	for _, set := range [][]*path{b.plain, b.ftps} {
		for _, p := range set {
			if err := b.probe(p); err != nil {
				if p.name == pModProxy && p.ctrlTLS != ctrlPlain {
					p.na = "mod_proxy could not serve FTPS toward the client: " + err.Error()
					b.log.Logf("FTPS via mod_proxy: n/a: %v", err)
					continue
				}
				return fmt.Errorf("probe %s (%s): %w", p.name, p.addr, err)
			}
		}
	}
	b.log.Logf("all paths answer and verify (setup %v)", time.Since(t0).Round(time.Millisecond))
	return nil
}

func (b *bench) startPlainRelay() (*proc, error) {
	return startRelay("relay", b.w.etc("relay.log"), relaySpec{Listen: ipFront, Target: ipBackend, Ports: portList(b.ports.vsftpd, b.ports.vsPasv)})
}

func (b *bench) startTLSRelay() (*proc, error) {
	return startRelay("tls-relay", b.w.etc("tls-relay.log"), relaySpec{Listen: ipTLSRelay, Target: ipBackend,
		Ports: portList(b.ports.vsftpd, b.ports.vsPasv), Cert: b.w.cert, Key: b.w.key})
}

// restart replaces a single-process proxy (ftpsproxy, the plain or the TLS relay) with a
// fresh one, on every path that uses it.
func (b *bench) restart(p *path) error {
	old := p.proc
	old.stop()
	var np *proc
	var err error
	switch {
	case p.name == pFtpsproxy:
		np, _, err = startFtpsproxy(b.w, b.bin, mainFtpsproxy(b.w, b.ports), b.ports, b.opt.LogLevel)
	case p.name == pRelay && p.ctrlTLS == ctrlPlain:
		np, err = b.startPlainRelay()
	case p.name == pRelay:
		np, err = b.startTLSRelay()
	default:
		return fmt.Errorf("cannot restart %s", p.name)
	}
	if err != nil {
		return err
	}
	for _, set := range [][]*path{b.plain, b.ftps} {
		for _, q := range set {
			if q.proc == old {
				q.proc = np
			}
		}
	}
	return nil
}

// probe checks one path: login, a verified RETR of the 1 KiB file and a verified STOR.
func (b *bench) probe(p *path) error {
	if _, _, err := b.transfer(p, "RETR", b.small, 1024, b.smallSum, "probe"); err != nil {
		return err
	}
	_, _, err := b.transfer(p, "STOR", b.small, 1024, b.smallSum, "probe")
	return err
}

// session opens a logged-in control connection on p.
func (b *bench) session(p *path, timeout time.Duration) (*ctrl, error) {
	c, err := dialCtrl(p, b.tls, timeout)
	if err != nil {
		return nil, err
	}
	if err := c.login(p, b.user, b.pass); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// transfer moves one file over p (RETR of pub/name, or STOR of it to a new name) and verifies
// it by SHA-256: RETR hashes while it reads, STOR hashes the stored file afterwards. It returns
// the rate in MiB/s (from the EPSV to the final reply) and the proxy's CPU seconds meanwhile.
func (b *bench) transfer(p *path, op, name string, size int64, want [32]byte, tag string) (float64, float64, error) {
	mibps, cpu, _, err := b.transferSys(p, op, name, size, want, tag)
	return mibps, cpu, err
}

// transferSys is transfer that also returns the proxy's system CPU seconds.
func (b *bench) transferSys(p *path, op, name string, size int64, want [32]byte, tag string) (float64, float64, float64, error) {
	c, err := b.session(p, 15*time.Second)
	if err != nil {
		return 0, 0, 0, err
	}
	defer c.Close()
	if _, err := c.cmd(2, "TYPE I"); err != nil {
		return 0, 0, 0, err
	}
	c.deadline(10 * time.Minute)
	if op == "RETR" && int64(len(b.recv)) != size+1 {
		b.recv = make([]byte, size+1)
		for i := 0; i < len(b.recv); i += os.Getpagesize() {
			b.recv[i] = 1
		}
	}
	before := p.usage()
	t0 := time.Now()
	d, err := c.passive(true, 10*time.Second)
	if err != nil {
		return 0, 0, 0, err
	}
	var got [32]byte
	var n int64
	upload := ""
	if op == "RETR" {
		conn, err := c.startTransfer("RETR pub/"+name, d)
		if err != nil {
			return 0, 0, 0, err
		}
		n, err = b.readAll(conn, size)
		conn.Close()
		if err != nil {
			return 0, 0, 0, fmt.Errorf("RETR data: %w", err)
		}
	} else {
		upload = fmt.Sprintf("up-%s-%d.bin", tag, b.uploads.Add(1))
		conn, err := c.startTransfer("STOR pub/"+upload, d)
		if err != nil {
			return 0, 0, 0, err
		}
		if err := sendFile(conn, filepath.Join(b.w.pub, name)); err != nil {
			conn.Close()
			return 0, 0, 0, fmt.Errorf("STOR data: %w", err)
		}
		finishUpload(conn)
	}
	if _, _, err := c.expect(op, 2); err != nil {
		return 0, 0, 0, err
	}
	el := time.Since(t0)
	after := p.usage()
	c.quit()
	if upload == "" {
		got = sha256.Sum256(b.recv[:min(n, int64(len(b.recv)))])
	} else {
		path := filepath.Join(b.w.pub, upload)
		got, n, err = fileSum(path)
		os.Remove(path)
		if err != nil {
			return 0, 0, 0, fmt.Errorf("%w: stored file: %v", errVerify, err)
		}
	}
	if n != size || got != want {
		return 0, 0, 0, fmt.Errorf("%w: %s %s via %s: %d bytes sha256 %x, want %d bytes %x", errVerify, op, name, p.name, n, got, size, want)
	}
	b.verified.Add(1)
	return float64(size) / (1 << 20) / el.Seconds(), cpuSince(before, after), sysSince(before, after), nil
}

// readHash reads conn to EOF, hashing.
func readHash(conn net.Conn, buf []byte) (int64, [32]byte, error) {
	h := sha256.New()
	var n int64
	var sum [32]byte
	for {
		k, err := conn.Read(buf)
		if k > 0 {
			h.Write(buf[:k])
			n += int64(k)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return n, sum, err
		}
	}
	copy(sum[:], h.Sum(nil))
	return n, sum, nil
}

// readAll reads conn to EOF into b.recv and returns the number of bytes read (counting, not
// keeping, any beyond the buffer). The client does nothing else while the clock runs: on two
// cores, hashing while receiving (about 0.9 s of CPU per GiB here) would take the core the
// paths compete for, and every path's throughput would be the client's hashing speed. The
// buffer is the expected size plus one byte, so a longer stream shows as a wrong count, and
// its pages are touched once before the first transfer so no page fault lands in the clock.
func (b *bench) readAll(conn net.Conn, size int64) (int64, error) {
	var n int64
	for {
		dst := b.recv[min(n, size):]
		k, err := conn.Read(dst)
		n += int64(k)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// sendFile writes a file to conn: sendfile(2) on plain TCP, 256 KiB writes on TLS.
func sendFile(conn net.Conn, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if tc, ok := conn.(*net.TCPConn); ok {
		_, err = tc.ReadFrom(f)
		return err
	}
	buf := make([]byte, 256<<10)
	for {
		k, rerr := f.Read(buf)
		if k > 0 {
			if _, err := conn.Write(buf[:k]); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// throughput measures RETR and STOR of the big file on every path of a set, interleaved:
// per round, RETR on each path in turn, then STOR on each path in turn.
func (b *bench) throughput(mode string, paths []*path) error {
	size := b.opt.FileSize
	label := map[string]string{"plain": "plain", "ftps": "FTPS"}[mode]
	rate := map[string]*Metric{
		"RETR": b.res.metric(mode+"_retr_mibps", label+" RETR throughput", "MiB/s", true),
		"STOR": b.res.metric(mode+"_stor_mibps", label+" STOR throughput", "MiB/s", true),
	}
	cpu := map[string]*Metric{
		"RETR": b.res.metric(mode+"_retr_cpu_s_per_gib", label+" RETR proxy CPU", "s/GiB", false),
		"STOR": b.res.metric(mode+"_stor_cpu_s_per_gib", label+" STOR proxy CPU", "s/GiB", false),
	}
	for _, p := range paths {
		for _, m := range []*Metric{rate["RETR"], rate["STOR"], cpu["RETR"], cpu["STOR"]} {
			if p.na != "" {
				m.NA[p.name] = p.na
			} else if p.proc == nil && m.Unit == "s/GiB" {
				m.NA[p.name] = "no proxy process"
			}
		}
	}
	for rep := range b.opt.Reps {
		for _, op := range []string{"RETR", "STOR"} {
			for _, p := range paths {
				if p.na != "" || rate[op].NA[p.name] != "" {
					continue
				}
				mibps, cpuS, sysS, err := b.transferSys(p, op, b.data, size, b.dataSum, fmt.Sprintf("%s-%s", mode, p.name))
				if err != nil {
					if errors.Is(err, errVerify) || p.name == pFtpsproxy {
						return err
					}
					reason := fmt.Sprintf("failed in round %d: %v", rep+1, err)
					rate[op].NA[p.name], cpu[op].NA[p.name] = reason, reason
					b.log.Logf("%s %s via %s: %s", mode, op, p.name, reason)
					continue
				}
				rate[op].add(p.name, mibps)
				if p.proc != nil {
					cpu[op].add(p.name, cpuS/(float64(size)/(1<<30)))
				}
				b.log.Logf("%s %s round %d %-9s %8.1f MiB/s  proxy CPU %.2fs (system %.2fs)", mode, op, rep+1, p.name, mibps, cpuS, sysS)
			}
		}
	}
	return nil
}

// sessionRate runs Sessions sessions (connect, login, PASV, RETR of 1 KiB, QUIT) per path per
// round with Concurrency clients, interleaved by round in alternating order (as the scale
// phase does): no path always follows the same neighbour, whose aftermath (mod_proxy's
// thousands of exited processes, vsftpd's) would otherwise land on the same path every round.
func (b *bench) sessionRate() error {
	rateM := b.res.metric("sessions_per_s", fmt.Sprintf("session rate, %d concurrent", b.opt.Concurrency), "sessions/s", true)
	failM := b.res.metric("session_failures", "failed sessions (all rounds)", "sessions", false)
	failM.Sum = true
	latM := b.res.metric("session_ms", "session duration, median", "ms", false)
	cpuM := b.res.metric("session_cpu_ms", "proxy CPU per session", "ms", false)
	cpuM.NA[pDirect] = "no proxy process"
	var corrupt atomic.Pointer[error]
	for rep := range b.opt.Reps {
		order := slices.Clone(b.plain)
		if rep%2 == 1 {
			slices.Reverse(order)
		}
		for _, p := range order {
			before := p.usage()
			t0 := time.Now()
			durs := make([]time.Duration, b.opt.Sessions)
			fails, errs := parallel(b.opt.Sessions, b.opt.Concurrency, func(i int, _ []byte) error {
				s0 := time.Now()
				err := b.oneSession(p)
				durs[i] = time.Since(s0)
				if errors.Is(err, errVerify) {
					corrupt.CompareAndSwap(nil, &err)
				}
				return err
			})
			el := time.Since(t0)
			if e := corrupt.Load(); e != nil {
				return *e
			}
			ok := b.opt.Sessions - fails
			rateM.add(p.name, float64(ok)/el.Seconds())
			failM.add(p.name, float64(fails))
			slices.Sort(durs)
			latM.add(p.name, float64(durs[len(durs)/2])/float64(time.Millisecond))
			cpuMS := 0.0
			if p.proc != nil {
				cpuMS = 1000 * cpuSince(before, p.usage()) / float64(b.opt.Sessions)
				cpuM.add(p.name, cpuMS)
			}
			b.log.Logf("sessions round %d %-9s %7.1f sessions/s  %d failed  median %.1f ms  proxy CPU %.2f ms/session",
				rep+1, p.name, float64(ok)/el.Seconds(), fails, float64(durs[len(durs)/2])/float64(time.Millisecond), cpuMS)
			for _, e := range errs {
				b.log.Logf("  session failure via %s: %s", p.name, e)
				b.res.note(fmt.Sprintf("session failure via %s: %s", p.name, e))
			}
		}
	}
	return nil
}

// oneSession is connect + login + PASV + RETR of 1 KiB (verified) + QUIT.
func (b *bench) oneSession(p *path) error {
	c, err := dialCtrl(p, b.tls, 15*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.deadline(30 * time.Second)
	if err := c.loginOnly(b.user, b.pass); err != nil {
		return err
	}
	d, err := c.passive(false, 10*time.Second)
	if err != nil {
		return err
	}
	conn, err := c.startTransfer("RETR pub/"+b.small, d)
	if err != nil {
		return err
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	var buf [2048]byte
	n, sum, err := readHash(conn, buf[:])
	conn.Close()
	if err != nil {
		return err
	}
	if _, _, err := c.expect("RETR", 2); err != nil {
		return err
	}
	if n != 1024 || sum != b.smallSum {
		return fmt.Errorf("%w: 1 KiB RETR via %s: %d bytes, sha256 %x", errVerify, p.name, n, sum)
	}
	b.verified.Add(1)
	return c.quit()
}

// parallel runs fn n times on workers goroutines and returns the number of failures and
// the first few errors.
func parallel(n, workers int, fn func(i int, buf []byte) error) (int, []string) {
	var next, fails atomic.Int64
	var mu sync.Mutex
	var errs []string
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := fn(i, nil); err != nil {
					fails.Add(1)
					mu.Lock()
					if len(errs) < 5 {
						errs = append(errs, err.Error())
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return int(fails.Load()), errs
}

// noopLatency measures NOOP round trips on one logged-in session per path, interleaved by
// round. The added latency of a path is its median minus the direct path's, per round.
func (b *bench) noopLatency() error {
	med := b.res.metric("noop_median_us", "NOOP round trip, median", "µs", false)
	p99 := b.res.metric("noop_p99_us", "NOOP round trip, p99", "µs", false)
	added := b.res.metric("noop_added_median_us", "NOOP added latency vs direct, median", "µs", false)
	added.NA[pDirect] = "reference"
	conns := map[string]*ctrl{}
	defer func() {
		for _, c := range conns {
			c.quit()
		}
	}()
	for _, p := range b.plain {
		c, err := b.session(p, 15*time.Second)
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		conns[p.name] = c
	}
	// Within a round the NOOPs go in chunks of 100, path after path, so that drift (and
	// the other work on the machine) hits every path alike.
	const chunk = 100
	for rep := range b.opt.Reps {
		samples := map[string][]time.Duration{}
		for _, p := range b.plain {
			c := conns[p.name]
			c.deadline(10 * time.Minute)
			for range 50 { // warm up
				if err := c.noop(); err != nil {
					return fmt.Errorf("%s: %w", p.name, err)
				}
			}
		}
		for done := 0; done < b.opt.Noops; done += chunk {
			for _, p := range b.plain {
				c := conns[p.name]
				for range min(chunk, b.opt.Noops-done) {
					t0 := time.Now()
					if err := c.noop(); err != nil {
						return fmt.Errorf("%s: %w", p.name, err)
					}
					samples[p.name] = append(samples[p.name], time.Since(t0))
				}
			}
		}
		medians := map[string]float64{}
		for _, p := range b.plain {
			s := samples[p.name]
			slices.Sort(s)
			m, q := us(s[len(s)/2]), us(s[len(s)*99/100])
			medians[p.name] = m
			med.add(p.name, m)
			p99.add(p.name, q)
			b.log.Logf("noop round %d %-9s median %6.1f µs  p99 %6.1f µs", rep+1, p.name, m, q)
		}
		for _, p := range b.plain[1:] {
			added.add(p.name, medians[p.name]-medians[pDirect])
		}
	}
	return nil
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// memKind tells the plain memory phase and the FTPS one apart: metric keys, titles, levels.
type memKind struct {
	prefix string // of metric keys and memory_details entries: "" or "ftps_"
	title  string // "" or "FTPS "
	// perLevel adds a bytes-per-session row for every level (the FTPS targets are per level).
	perLevel bool
}

var (
	memPlain = memKind{}
	memFTPS  = memKind{prefix: "ftps_", title: "FTPS ", perLevel: true}
)

func (b *bench) memLevels(k memKind) []int {
	levels := b.opt.IdleLevels
	if k == memFTPS {
		levels = b.opt.FTPSIdleLevels
	}
	levels = slices.Clone(levels)
	slices.Sort(levels)
	return slices.Compact(levels)
}

// memory holds idle logged-in sessions through each proxy of set, one proxy at a time, and
// reads the RSS of its process(es) at each level. A proxy that cannot hold a level (mod_proxy
// past ModProxyCap, one process per session; any process past RLIMIT_NOFILE) is measured at
// the most it can hold: a level within 5% of that is extrapolated from its bytes per session
// and marked, a level further away is n/a with the reason. The FTPS variant (memFTPS) holds
// sessions on the FTPS paths: TLS on the control connection and, where the path has it,
// PBSZ 0 + PROT P done.
func (b *bench) memory(set []*path, k memKind) error {
	levels := b.memLevels(k)
	var all []*Metric
	for _, lvl := range levels {
		m := b.res.metric(fmt.Sprintf("%sidle_rss_mib_%d", k.prefix, lvl), fmt.Sprintf("%sRSS, %d idle sessions", k.title, lvl), "MiB", false)
		all = append(all, m)
		if k.perLevel {
			all = append(all, b.res.metric(fmt.Sprintf("%sidle_bytes_per_session_%d", k.prefix, lvl),
				fmt.Sprintf("%sRSS per idle session, %d idle", k.title, lvl), "bytes", false))
		}
	}
	per := b.res.metric(k.prefix+"idle_bytes_per_session", k.title+"RSS per idle session (at the most held)", "bytes", false)
	perPSS := b.res.metric(k.prefix+"idle_pss_bytes_per_session", k.title+"PSS per idle session (at the most held)", "bytes", false)
	held := b.res.metric(k.prefix+"idle_sessions_held", k.title+"idle sessions held (most)", "sessions", true)
	held.NoRatio = true
	all = append(all, per, perPSS, held)
	for _, m := range all {
		m.NA[pDirect] = "no proxy process"
		m.Once = true
		for _, p := range set {
			if p.na != "" {
				m.NA[p.name] = p.na
			}
		}
	}
	for _, p := range set[1:] {
		if p.tree || p.na != "" {
			continue
		}
		// A fresh process: heap kept from the transfer phases would otherwise absorb the
		// first sessions and hide what they cost.
		if err := b.restart(p); err != nil {
			return err
		}
	}
	for _, p := range set[1:] {
		if p.na != "" {
			continue
		}
		if err := b.memoryPath(p, levels, k); err != nil {
			return err
		}
	}
	return nil
}

// memPoint is one memory reading.
type memPoint struct {
	Sessions int   `json:"sessions"`
	RSS      int64 `json:"rss_bytes"`
	PSS      int64 `json:"pss_bytes"` // shared pages split among the processes sharing them
	Procs    int   `json:"processes"`
	FDs      int   `json:"fds"`
}

// memPath is the memory record of one proxy.
type memPath struct {
	Base   memPoint   `json:"base"`
	Points []memPoint `json:"points"`
	Cap    int        `json:"cap,omitempty"`
	CapWhy string     `json:"cap_reason,omitempty"`
}

func (b *bench) memoryPath(p *path, levels []int, k memKind) error {
	var conns []*ctrl
	var mu sync.Mutex
	defer func() {
		for _, c := range conns {
			c.Close()
		}
		b.awaitDrain(p)
	}()
	rec := &memPath{Cap: math.MaxInt}
	b.res.Memory[k.prefix+p.name] = rec
	if p.name == pModProxy {
		rec.Cap = b.opt.ModProxyCap
		rec.CapWhy = fmt.Sprintf("mod_proxy capped at %d sessions (-mod-proxy-cap): it forks one process per session "+
			"and each session holds 2 more vsftpd processes, so 10,000 sessions would mean 30,000 processes "+
			"(pid_max here: %s) and about 9 GiB of private memory for mod_proxy alone (PSS per session below)",
			b.opt.ModProxyCap, readTrim("/proc/sys/kernel/pid_max"))
		// FTPS sessions through mod_proxy open slowly (a fork and an OpenSSL handshake each,
		// about 20/s here): hold the largest level within the cap, not more.
		if k == memFTPS {
			for _, lvl := range levels {
				if lvl <= b.opt.ModProxyCap {
					rec.Cap = lvl
				}
			}
			rec.CapWhy = fmt.Sprintf("mod_proxy holds at most %d FTPS sessions here: the largest level within -mod-proxy-cap %d. It forks "+
				"one process per session (about 11 MiB RSS, 2 MiB PSS each with mod_tls) and each session holds 2 more vsftpd "+
				"processes (pid_max here: %s); its FTPS sessions open at about 20/s", rec.Cap, b.opt.ModProxyCap, readTrim("/proc/sys/kernel/pid_max"))
		}
	}
	// The load generator holds one descriptor per session.
	if own := nofile(os.Getpid()) - fdCount(os.Getpid()) - 200; own < rec.Cap {
		rec.Cap, rec.CapWhy = own, fmt.Sprintf("the benchmark process can open only %d more descriptors (RLIMIT_NOFILE)", own)
	}
	point := func() memPoint {
		u := p.usage()
		return memPoint{Sessions: len(conns), RSS: u.rss, PSS: pss(p.proc.pid()), Procs: u.n, FDs: fdCount(p.proc.pid())}
	}
	rec.Base = point()
	open := func(target int) error {
		need := target - len(conns)
		if need <= 0 {
			return nil
		}
		t0 := time.Now()
		if err := b.openIdle(p, need, &mu, &conns); err != nil {
			return fmt.Errorf("opening %sidle sessions: %w", k.title, err)
		}
		time.Sleep(time.Second) // let the last logins settle
		mp := point()
		if err := b.checkAlive(conns); err != nil {
			return fmt.Errorf("%sidle sessions via %s: %w", k.title, p.name, err)
		}
		rec.Points = append(rec.Points, mp)
		extra := ""
		if p.tree {
			extra = fmt.Sprintf(", %d processes, PSS %.1f MiB", mp.Procs, float64(mp.PSS)/(1<<20))
		}
		b.log.Logf("%sidle %5d via %-9s RSS %8.1f MiB  %7.0f bytes/session  %d fds%s (opened in %v)", k.title, mp.Sessions, p.name,
			float64(mp.RSS)/(1<<20), perSession(rec.Base, mp), mp.FDs, extra, time.Since(t0).Round(100*time.Millisecond))
		return nil
	}

	// Calibrate: descriptors per session bound what a single process can hold (the hard
	// RLIMIT_NOFILE here is what the machine gives; raising it needs CAP_SYS_RESOURCE).
	if err := open(min(50, levels[0], rec.Cap)); err != nil {
		return err
	}
	if !p.tree {
		last := rec.Points[len(rec.Points)-1]
		if perFD := float64(last.FDs-rec.Base.FDs) / float64(last.Sessions); perFD > 0 {
			limit := nofile(p.proc.pid())
			if c := int(float64(limit-rec.Base.FDs-100) / perFD); c < rec.Cap {
				rec.Cap = c
				rec.CapWhy = fmt.Sprintf("RLIMIT_NOFILE of the %s process is %d (the hard limit here; raising it needs CAP_SYS_RESOURCE, "+
					"which this machine does not grant) and it uses %.0f descriptors per idle session, so it holds at most %d",
					p.name, limit, perFD, c)
			}
		}
	}
	for _, lvl := range levels {
		if err := open(min(lvl, rec.Cap)); err != nil {
			return err
		}
		m := b.res.metrics[fmt.Sprintf("%sidle_rss_mib_%d", k.prefix, lvl)]
		mPer := b.res.metrics[fmt.Sprintf("%sidle_bytes_per_session_%d", k.prefix, lvl)] // nil unless perLevel
		last := rec.Points[len(rec.Points)-1]
		switch {
		case last.Sessions == lvl:
			m.add(p.name, float64(last.RSS)/(1<<20))
			if mPer != nil {
				mPer.add(p.name, perSession(rec.Base, last))
			}
		case float64(last.Sessions) >= 0.95*float64(lvl):
			est := float64(last.RSS) + float64(lvl-last.Sessions)*perSession(rec.Base, last)
			how := fmt.Sprintf("extrapolated from %d sessions at %.0f bytes/session; %s", last.Sessions, perSession(rec.Base, last), rec.CapWhy)
			m.add(p.name, est/(1<<20))
			m.est(p.name, how)
			if mPer != nil {
				mPer.add(p.name, perSession(rec.Base, last))
				mPer.est(p.name, how)
			}
		default:
			m.NA[p.name] = rec.CapWhy
			if mPer != nil {
				mPer.NA[p.name] = rec.CapWhy
			}
		}
	}
	last := rec.Points[len(rec.Points)-1]
	b.res.metrics[k.prefix+"idle_bytes_per_session"].add(p.name, perSession(rec.Base, last))
	if last.Sessions > 0 {
		b.res.metrics[k.prefix+"idle_pss_bytes_per_session"].add(p.name, float64(last.PSS-rec.Base.PSS)/float64(last.Sessions))
	}
	b.res.metrics[k.prefix+"idle_sessions_held"].add(p.name, float64(last.Sessions))
	if rec.Cap < slices.Max(levels) {
		b.res.note(fmt.Sprintf("%s held at most %d %sidle sessions: %s", p.name, last.Sessions, k.title, rec.CapWhy))
	}
	if p.tree {
		b.res.note(fmt.Sprintf("%s at %d %sidle sessions: RSS summed over %d processes %.0f MiB, PSS %.0f MiB (RSS counts shared pages once per process)",
			p.name, last.Sessions, k.title, last.Procs, float64(last.RSS)/(1<<20), float64(last.PSS)/(1<<20)))
	}
	return nil
}

// openIdle opens n logged-in sessions through p in parallel and appends them to *conns
// (under mu) with no deadline left on them.
func (b *bench) openIdle(p *path, n int, mu *sync.Mutex, conns *[]*ctrl) error {
	fails, errs := parallel(n, b.opt.Concurrency, func(int, []byte) error {
		c, err := b.session(p, 30*time.Second)
		if err != nil {
			return err
		}
		c.raw.SetDeadline(time.Time{})
		mu.Lock()
		*conns = append(*conns, c)
		mu.Unlock()
		return nil
	})
	if fails > 0 {
		return fmt.Errorf("via %s: %d of %d failed: %v", p.name, fails, n, errs)
	}
	return nil
}

func perSession(base, p memPoint) float64 {
	if p.Sessions == 0 {
		return 0
	}
	return float64(p.RSS-base.RSS) / float64(p.Sessions)
}

// fdCount counts a process's open descriptors.
func fdCount(pid int) int {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents)
}

// nofile reads a process's soft RLIMIT_NOFILE.
func nofile(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	for l := range strings.SplitSeq(string(b), "\n") {
		if strings.HasPrefix(l, "Max open files") {
			f := strings.Fields(strings.TrimPrefix(l, "Max open files"))
			if n, err := strconv.Atoi(f[0]); err == nil {
				return n
			}
		}
	}
	return 1024
}

// checkAlive sends a NOOP on every idle session (after RSS was read).
func (b *bench) checkAlive(conns []*ctrl) error {
	fails, errs := parallel(len(conns), b.opt.Concurrency, func(i int, _ []byte) error {
		c := conns[i]
		c.deadline(30 * time.Second)
		err := c.noop()
		c.raw.SetDeadline(time.Time{})
		if err == nil {
			b.alive.Add(1)
		}
		return err
	})
	if fails > 0 {
		return fmt.Errorf("%d of %d sessions dead: %v", fails, len(conns), errs)
	}
	return nil
}

// awaitDrain waits until the proxy's and vsftpd's session processes are gone after the idle
// sessions closed, so the next proxy starts from a quiet machine.
func (b *bench) awaitDrain(p *path) {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		n := len(descendants(b.vsftpd.pid()))
		if p.tree {
			n += len(descendants(p.proc.pid())) - 1
		}
		if n <= 1 {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	b.log.Logf("warning: session processes still running two minutes after the idle sessions via %s closed", p.name)
}

func readTrim(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}
