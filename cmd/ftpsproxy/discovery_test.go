package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"

	"github.com/ftpsproxy/ftpsproxy/admin"
	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/config"
	"github.com/ftpsproxy/ftpsproxy/internal/dnstest"
	"github.com/ftpsproxy/ftpsproxy/internal/peers"
)

// testListen returns the [[listener]] and [data] tables of a test config: free ports for the
// listener and the passive range, which must not overlap (the config refuses it).
func testListen(t *testing.T) string {
	r := peers.FreePortRange(t, 20)
	return fmt.Sprintf("[[listener]]\naddress = \"127.0.0.1:%d\"\n\n[data]\nport_range = \"%d-%d\"\n", peers.FreePort(t), r[0], r[1])
}

// startDaemon runs the daemon (what serve runs, without the upgrader's socket handover) on
// the config text cfg with DNS questions sent to resolver, until the test ends.
func startDaemon(t *testing.T, cfg string, resolver balancer.Resolver) (*proc, *peers.SyncBuffer) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ftpsproxy.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	logBuf := &peers.SyncBuffer{}
	logs, log := newLogOutput(f.Log, logBuf)
	d := &proc{path: path, logs: logs, log: log, file: f, up: &upgrader{log: log}, reg: &balancer.Registry{},
		metrics: admin.NewMetrics(), resolver: resolver}
	if err := d.start(); err != nil {
		d.closeAll()
		t.Fatalf("start: %v\n%s", err, logBuf)
	}
	done := make(chan int)
	go func() { done <- d.loop(make(chan os.Signal)) }()
	t.Cleanup(func() {
		d.srv.Close()
		<-done
		d.rt.stopHealth()
		d.rt.stopDisc()
		if t.Failed() {
			t.Logf("proxy log:\n%s", logBuf)
		}
	})
	return d, logBuf
}

// waitFor polls cond every 20 ms for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// login opens a session through the proxy at addr.
func login(t *testing.T, addr string) *ftp.ServerConn {
	t.Helper()
	c, err := ftp.Dial(addr, ftp.DialWithTimeout(10*time.Second), ftp.DialWithDisabledEPSV(true))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login(peers.User, peers.Password); err != nil {
		c.Quit()
		t.Fatal(err)
	}
	return c
}

// retrSum downloads name and returns its sha256.
func retrSum(t *testing.T, c *ftp.ServerConn, name string) [32]byte {
	t.Helper()
	r, err := c.Retr(name)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	_, err = io.Copy(h, r)
	if cerr := r.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

// backendByAddr returns the backend of the registry (in force or removed) at addr.
func backendByAddr(d *proc, addr string) (balancer.BackendView, bool) {
	for _, v := range d.reg.Backends() {
		if v.Backend.Config.Address == addr {
			return v, true
		}
	}
	return balancer.BackendView{}, false
}

// TestDNSDiscovery: a backend written as farm.test:PORT becomes the addresses the DNS
// server (real, miekg/dns) answers, re-resolved every resolve_interval. When the answer moves
// from vsftpd A to vsftpd B, A takes no new session and its running session finishes a
// transfer (A shown as removed); B gets sessions once probed; an added address with nothing
// listening never gets one; a failed lookup keeps the last good answer and is counted.
func TestDNSDiscovery(t *testing.T) {
	dnsSrv := dnstest.Start(t)
	port := peers.FreePort(t)
	a := peers.StartVsftpd(t, peers.Options{Addr: "127.0.0.2:" + strconv.Itoa(port)})
	b := peers.StartVsftpd(t, peers.Options{Addr: "127.0.0.3:" + strconv.Itoa(port)})
	data := make([]byte, 1<<20)
	rand.Read(data)
	want := sha256.Sum256(data)
	a.WriteFile(t, "f.bin", data)
	b.WriteFile(t, "f.bin", data)
	dnsSrv.Set(t, "farm.test", "A 127.0.0.2")

	d, logs := startDaemon(t, testListen(t)+fmt.Sprintf(`
[[pool]]
name = "farm"
health_interval = "200ms"
health_rise = 1
resolve_interval = "200ms"

[[pool.backend]]
address = "farm.test:%d"
`, port), dnsSrv.Resolver())
	proxyAddr := d.srv.Addrs()[0].String()
	addrA, addrB, addrDead := a.Addr, b.Addr, "127.0.0.4:"+strconv.Itoa(port)

	s1 := login(t, proxyAddr)
	defer s1.Quit()
	if v, ok := backendByAddr(d, addrA); !ok || v.Backend.Active() != 1 {
		t.Fatalf("session 1 is not on %s: %+v", addrA, d.reg.Backends())
	}

	dnsSrv.Set(t, "farm.test", "A 127.0.0.3", "A 127.0.0.4")
	waitFor(t, "B up, A removed", func() bool {
		va, okA := backendByAddr(d, addrA)
		vb, okB := backendByAddr(d, addrB)
		return okA && va.Removed && okB && vb.Backend.Healthy()
	})
	if v, ok := backendByAddr(d, addrDead); !ok || v.Backend.Healthy() {
		t.Fatalf("the address with nothing listening is not known and down: %+v", v)
	}
	for i := range 4 {
		c := login(t, proxyAddr)
		if got := retrSum(t, c, "f.bin"); got != want {
			t.Fatalf("session %d: sha256 mismatch", i)
		}
		c.Quit()
	}
	vb, _ := backendByAddr(d, addrB)
	vd, _ := backendByAddr(d, addrDead)
	va, _ := backendByAddr(d, addrA)
	if vb.Backend.Total() != 4 || vd.Backend.Total() != 0 || va.Backend.Total() != 1 {
		t.Fatalf("sessions: A %d, B %d, dead %d; want 1, 4, 0", va.Backend.Total(), vb.Backend.Total(), vd.Backend.Total())
	}
	// The session that started on A runs on, counted on A, and transfers intact.
	if got := retrSum(t, s1, "f.bin"); got != want {
		t.Fatal("session on the removed backend: sha256 mismatch")
	}
	if va.Backend.State(va.Removed) != balancer.StateRemoved || va.Backend.Active() != 1 {
		t.Fatalf("A: state %s, %d sessions", va.Backend.State(va.Removed), va.Backend.Active())
	}
	s1.Quit()
	waitFor(t, "A forgotten after its last session", func() bool { _, ok := backendByAddr(d, addrA); return !ok })

	// A failing DNS server: the last good answer stays, the failure is counted and logged.
	dnsSrv.Fail("farm.test")
	waitFor(t, "failed lookups counted", func() bool { return d.disc.Failures() >= 2 })
	c := login(t, proxyAddr)
	if got := retrSum(t, c, "f.bin"); got != want {
		t.Fatal("during the DNS failure: sha256 mismatch")
	}
	c.Quit()
	if _, ok := backendByAddr(d, addrB); !ok {
		t.Fatal("a failed lookup dropped B")
	}
	var m bytes.Buffer
	d.metrics.WritePrometheus(&m)
	if !bytes.Contains(m.Bytes(), []byte("ftpsproxy_dns_lookup_failures_total ")) || bytes.Contains(m.Bytes(), []byte("ftpsproxy_dns_lookup_failures_total 0\n")) {
		t.Fatalf("metric missing or zero:\n%s", m.String())
	}
	if !bytes.Contains([]byte(logs.String()), []byte("DNS lookup failed")) {
		t.Fatal("failure not logged")
	}
}

// TestDNSDiscoverySRV: a pool with only pool.srv takes its backends from the SRV records;
// sessions go to the best priority while it has a backend up, and to the next one when that
// backend's server dies.
func TestDNSDiscoverySRV(t *testing.T) {
	dnsSrv := dnstest.Start(t)
	port := peers.FreePort(t)
	a := peers.StartVsftpd(t, peers.Options{Addr: "127.0.0.2:" + strconv.Itoa(port)})
	b := peers.StartVsftpd(t, peers.Options{Addr: "127.0.0.3:" + strconv.Itoa(port)})
	data := make([]byte, 64<<10)
	rand.Read(data)
	want := sha256.Sum256(data)
	a.WriteFile(t, "f.bin", data)
	b.WriteFile(t, "f.bin", data)
	p := strconv.Itoa(port)
	dnsSrv.Set(t, "_ftp._tcp.farm.test", "SRV 10 5 "+p+" a.farm.test.", "SRV 20 5 "+p+" b.farm.test.")
	dnsSrv.Set(t, "a.farm.test", "A 127.0.0.2")
	dnsSrv.Set(t, "b.farm.test", "A 127.0.0.3")
	d, _ := startDaemon(t, testListen(t)+`
[[pool]]
name = "farm"
srv = "_ftp._tcp.farm.test"
health_interval = "200ms"
health_fall = 1
`, dnsSrv.Resolver())
	proxyAddr := d.srv.Addrs()[0].String()
	session := func() {
		t.Helper()
		c := login(t, proxyAddr)
		defer c.Quit()
		if retrSum(t, c, "f.bin") != want {
			t.Fatal("sha256 mismatch")
		}
	}
	for range 3 {
		session()
	}
	va, _ := backendByAddr(d, a.Addr)
	vb, _ := backendByAddr(d, b.Addr)
	if va.Backend == nil || vb.Backend == nil || va.Backend.Total() != 3 || vb.Backend.Total() != 0 {
		t.Fatalf("with both up, sessions on priority 10 and 20: %+v", d.reg.Backends())
	}
	a.Stop()
	waitFor(t, "A down", func() bool { return !va.Backend.Healthy() })
	for range 2 {
		session()
	}
	if vb.Backend.Total() != 2 {
		t.Fatalf("with priority 10 down, priority 20 got %d sessions, want 2", vb.Backend.Total())
	}
}
