package peers

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// User and Password are the test account that every server accepts. The
// system account is created by scripts/install-test-peers.sh (vsftpd logs in
// through PAM); pure-ftpd and ProFTPD get a virtual-user file mapped to its
// uid and gid.
const User, Password = "ftptest", "ftptest-Pass1"

// InstallScript is the script that installs everything this package needs.
const InstallScript = "scripts/install-test-peers.sh"

// Prefix is where InstallScript unpacks the servers.
const Prefix = "/opt/ftpsproxy-peers"

// TLSMode selects how a server offers TLS.
type TLSMode int

const (
	// TLSNone serves plain FTP only; AUTH TLS is refused.
	TLSNone TLSMode = iota
	// TLSExplicit offers AUTH TLS on the plain control port (RFC 4217).
	TLSExplicit
	// TLSImplicit starts TLS on connect (the "FTPS on 990" convention).
	TLSImplicit
)

// String returns the mode's name, for subtest names.
func (m TLSMode) String() string {
	switch m {
	case TLSNone:
		return "plain"
	case TLSExplicit:
		return "explicit"
	case TLSImplicit:
		return "implicit"
	}
	return "TLSMode(" + strconv.Itoa(int(m)) + ")"
}

// Options configures a server. The zero value is a plain FTP server on
// 127.0.0.1 at a free port with a free passive range of 20 ports.
type Options struct {
	// Addr is the control listener, "ip:port". The servers cannot report
	// a port they picked themselves, so an empty host means 127.0.0.1 and
	// an empty or zero port means FreePort. An auto-picked port that is
	// taken by the time the server binds it is picked again.
	Addr string
	// TLS selects plain, explicit or implicit FTPS.
	TLS TLSMode
	// CertFile and KeyFile are PEM files. With TLS on and both empty, a
	// self-signed RSA-2048 certificate for 127.0.0.1, ::1 and localhost is
	// generated (Server.CertFile then names it).
	CertFile, KeyFile string
	// RequireReuse makes the server refuse a data connection whose TLS
	// session does not resume the control connection's (vsftpd
	// require_ssl_reuse, ProFTPD's default). pure-ftpd cannot require it
	// and ignores this field.
	RequireReuse bool
	// ForceTLS refuses logins and transfers without TLS (vsftpd
	// force_local_logins_ssl and force_local_data_ssl, pure-ftpd --tls 3,
	// ProFTPD TLSRequired on). Without it, TLS is optional.
	ForceTLS bool
	// PasvPorts is the server's passive port range, inclusive. Zero means
	// FreePortRange(t, 20), or 100 ports for pure-ftpd, which admits at
	// most half as many sessions as it has passive ports ("421 10 users
	// (the maximum)" with 20).
	PasvPorts [2]int
	// PasvAddress is the IPv4 address the server announces in 227 replies
	// (vsftpd pasv_address, pure-ftpd --forcepassiveip, ProFTPD
	// MasqueradeAddress). Empty means the server's own address.
	PasvAddress string
	// MaxTLS12 caps the server at TLS 1.2. vsftpd 3.0.3 always runs
	// capped: it has no switch, and on TLS 1.3 it loses the tail of
	// uploads from clients that close without reading its session ticket
	// (every crypto/tls upload tried got "426 Failure reading network
	// stream").
	MaxTLS12 bool
	// NetNS runs the server in the named network namespace (one that
	// "ip netns add" made, under /run/netns): the command is prefixed with
	// "ip netns exec NAME", and the greeting is awaited from inside it.
	// Addr must then name the host explicitly (an address of that
	// namespace); the port may still be left to FreePort. Empty: the
	// caller's namespace, as before.
	NetNS string
}

// Server is a running server. Its fields are read-only.
type Server struct {
	// Name is "vsftpd", "pure-ftpd" or "proftpd".
	Name string
	// Addr is the control listener's "ip:port".
	Addr string
	// Root is the directory the test user sees as "/" (chrooted), owned by
	// the test user. Tests may read files here directly; to create one the
	// FTP user may also change, use WriteFile.
	Root string
	// CertFile is the server's certificate (PEM) when TLS is on.
	CertFile string
	// HasMLSD tells whether the server implements MLSD/MLST.
	HasMLSD bool
	// PasvPorts is the passive port range in use.
	PasvPorts [2]int
	// Dir holds the server's configuration and logs.
	Dir string

	logFiles []string
	proc     *process
}

// Signal sends sig to the server process and every process below it: the session processes
// it forked (vsftpd's call setsid, so its process group does not hold them). SIGSTOP freezes
// the server in the middle of a transfer, SIGCONT thaws it.
func (s *Server) Signal(sig syscall.Signal) error {
	if s.proc == nil {
		return errors.New("peers: server not running")
	}
	pids, err := descendants(s.proc.cmd.Process.Pid)
	if err != nil {
		return err
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return err
		}
	}
	return nil
}

// descendants returns root and every process below it, from /proc.
func descendants(root int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	parent := map[int]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid …; comm may hold spaces and parentheses.
		rest := string(stat[strings.LastIndexByte(string(stat), ')')+1:])
		f := strings.Fields(rest)
		if len(f) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(f[1]); err == nil {
			parent[pid] = ppid
		}
	}
	out := []int{root}
	for pid := range parent {
		for p := parent[pid]; p > 1; p = parent[p] {
			if p == root {
				out = append(out, pid)
				break
			}
		}
	}
	return out, nil
}

// Stop kills the server now, as a crash would (the whole process group: its sessions end
// too). Starting a server again on the same Addr is the way to bring it back.
func (s *Server) Stop() {
	if s.proc != nil {
		s.proc.stop()
	}
}

// Log returns the server's logs, each file under a header, for failure
// messages. It never fails: unreadable files are reported inline.
func (s *Server) Log() string {
	var b strings.Builder
	for _, f := range s.logFiles {
		data, err := os.ReadFile(f)
		switch {
		case errors.Is(err, os.ErrNotExist):
			continue
		case err != nil:
			fmt.Fprintf(&b, "==> %s: %v\n", f, err)
			continue
		case len(data) == 0:
			continue
		}
		fmt.Fprintf(&b, "==> %s <==\n%s", f, data)
		if data[len(data)-1] != '\n' {
			b.WriteByte('\n')
		}
	}
	if b.Len() == 0 {
		return "(no log output)\n"
	}
	return b.String()
}

// WriteFile creates name (slash-separated, relative to Root, parents made as
// needed) with data, owned by the test user as if it had been uploaded.
func (s *Server) WriteFile(t testing.TB, name string, data []byte) {
	t.Helper()
	acct := lookupAccount(t)
	path := filepath.Join(s.Root, filepath.FromSlash(name))
	if rel, err := filepath.Rel(s.Root, path); err != nil || rel == "." || strings.HasPrefix(rel, "..") {
		t.Fatalf("peers: WriteFile(%q): not a file below Root", name)
	}
	for dir := filepath.Dir(path); dir != s.Root; dir = filepath.Dir(dir) {
		defer os.Lchown(dir, acct.uid, acct.gid) // after MkdirAll made it
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatalf("peers: %v", err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatalf("peers: %v", err)
	}
	if err := os.Chown(path, acct.uid, acct.gid); err != nil {
		t.Fatalf("peers: %v", err)
	}
}

// CertPool returns a pool holding CertFile, for clients to trust.
func (s *Server) CertPool(t testing.TB) *x509.CertPool {
	t.Helper()
	if s.CertFile == "" {
		t.Fatalf("peers: %s runs without TLS: no certificate", s.Name)
	}
	pem, err := os.ReadFile(s.CertFile)
	if err != nil {
		t.Fatalf("peers: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("peers: no certificate in %s", s.CertFile)
	}
	return pool
}

// ClientTLSConfig returns a client configuration that trusts CertFile,
// verifies the name "localhost" (in the generated certificate), and has its
// own session cache, so that data connections resume the control
// connection's session as servers with RequireReuse demand.
func (s *Server) ClientTLSConfig(t testing.TB) *tls.Config {
	t.Helper()
	return &tls.Config{
		RootCAs:            s.CertPool(t),
		ServerName:         "localhost",
		ClientSessionCache: tls.NewLRUClientSessionCache(8),
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago and
// that this process has not handed out before. Like FreePortRange it avoids
// the kernel's ephemeral ports, which any outgoing connection may take
// between this check and the server's bind.
func FreePort(t testing.TB) int {
	t.Helper()
	return FreePortRange(t, 1)[0]
}

// FreePortRange returns n consecutive ports [first, last] on 127.0.0.1, each
// free a moment ago (checked by binding it) and not handed out by this
// process before. They come from 10000 up to the start of the kernel's
// ephemeral range (net.ipv4.ip_local_port_range, 32768 by default), outside
// the proxy's default passive range (defaultDataPorts): a config that keeps
// that default refuses a listener inside it.
func FreePortRange(t testing.TB, n int) [2]int {
	t.Helper()
	lo, hi := 10000, ephemeralStart()
	if n < 1 || n > (hi-lo)/4 {
		t.Fatalf("peers: FreePortRange(%d): want 1..%d ports", n, (hi-lo)/4)
	}
	for range 200 {
		first := lo + rand.IntN(hi-lo-n)
		if first+n-1 >= defaultDataPorts[0] && first <= defaultDataPorts[1] {
			continue
		}
		if bindable(first, n) && claimPorts(first, n) {
			return [2]int{first, first + n - 1}
		}
	}
	t.Fatalf("peers: FreePortRange(%d): no free range in %d-%d after 200 tries", n, lo, hi-1)
	return [2]int{}
}

// defaultDataPorts is the proxy's default data.port_range (proxy.DefaultPortRange; this
// package cannot import proxy: tlsterm's tests reach it through internal/pebble, and proxy
// imports tlsterm).
var defaultDataPorts = [2]int{20000, 20999}

// ephemeralStart returns the first port of the ephemeral range, or 32768.
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	p, err := strconv.Atoi(f[0])
	if err != nil || p < 12000 {
		return 32768 // too little room below: take the usual split and hope
	}
	return p
}

var (
	claimedMu sync.Mutex
	claimed   = map[int]bool{}
)

// claimPorts marks [first, first+n) as handed out, unless one already is.
func claimPorts(first, n int) bool {
	claimedMu.Lock()
	defer claimedMu.Unlock()
	for p := first; p < first+n; p++ {
		if claimed[p] {
			return false
		}
	}
	for p := first; p < first+n; p++ {
		claimed[p] = true
	}
	return true
}

func bindable(first, n int) bool {
	for p := first; p < first+n; p++ {
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			return false
		}
		ln.Close()
	}
	return true
}

// testAccount is the system account's ids, looked up once.
type testAccount struct{ uid, gid int }

var (
	accountOnce sync.Once
	account     testAccount
	accountErr  error
)

func lookupAccount(t testing.TB) testAccount {
	t.Helper()
	accountOnce.Do(func() {
		u, err := user.Lookup(User)
		if err != nil {
			accountErr = err
			return
		}
		account.uid, _ = strconv.Atoi(u.Uid)
		account.gid, _ = strconv.Atoi(u.Gid)
	})
	if accountErr != nil {
		t.Fatalf("peers: test account %q: %v: run %s as root", User, accountErr, InstallScript)
	}
	return account
}

// needBinary fails the test when an unpacked server binary is missing.
func needBinary(t testing.TB, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("peers: %v: run %s as root to install the test peers", err, InstallScript)
	}
	if os.Geteuid() != 0 {
		t.Fatalf("peers: the real FTP servers need root (they chroot and switch users); running as uid %d", os.Geteuid())
	}
}

// layout is one server's directories: dir for configuration and logs, root
// for the user's files.
type layout struct {
	dir, root string
}

func newLayout(t testing.TB, acct testAccount) layout {
	t.Helper()
	base := t.TempDir()
	// t.TempDir makes 0700 directories; the servers open the root after
	// switching to the test user, so every directory on the way must be
	// traversable.
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatalf("peers: %v", err)
		}
	}
	l := layout{dir: filepath.Join(base, "etc"), root: filepath.Join(base, "root")}
	for _, d := range []string{l.dir, l.root} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatalf("peers: %v", err)
		}
	}
	if err := os.Chown(l.root, acct.uid, acct.gid); err != nil {
		t.Fatalf("peers: %v", err)
	}
	return l
}

func (l layout) path(name string) string { return filepath.Join(l.dir, name) }

func writeFile(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatalf("peers: %v", err)
	}
}

// listenAddr resolves Options.Addr; auto tells whether the port was picked
// here (and may be picked again when the server fails to bind it).
func listenAddr(t testing.TB, addr string) (ip netip.Addr, port int, auto bool) {
	t.Helper()
	host, portStr := "", ""
	if addr != "" {
		var err error
		host, portStr, err = net.SplitHostPort(addr)
		if err != nil {
			t.Fatalf("peers: Options.Addr %q: %v", addr, err)
		}
	}
	ip = netip.MustParseAddr("127.0.0.1")
	if host != "" {
		var err error
		ip, err = netip.ParseAddr(host)
		if err != nil {
			t.Fatalf("peers: Options.Addr %q: the host must be an IP address: %v", addr, err)
		}
	}
	if portStr != "" && portStr != "0" {
		p, err := strconv.Atoi(portStr)
		if err != nil || p < 1 || p > 65535 {
			t.Fatalf("peers: Options.Addr %q: bad port", addr)
		}
		return ip, p, false
	}
	return ip, FreePort(t), true
}

// process is a started server process.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd.Wait returns
	err  error         // cmd.Wait's result, valid after done
}

// launch starts cmd in its own process group with stdin, stdout and stderr on
// the file outPath (vsftpd reports startup errors on fd 0).
func launch(cmd *exec.Cmd, outPath string) (*process, error) {
	out, err := os.OpenFile(outPath, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer out.Close() // the child has its own copies
	cmd.Stdin, cmd.Stdout, cmd.Stderr = out, out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go waitProcess(p)
	return p, nil
}

func waitProcess(p *process) {
	p.err = p.cmd.Wait()
	close(p.done)
}

// stop ends the process group: SIGTERM, then SIGKILL if it lingers. The
// servers fork one child per session into the same group, except vsftpd,
// whose session processes call setsid: those are killed first, found by
// parentage while the leader still lives (once it is gone they belong to
// init, and a session a test froze or left waiting would outlive the test).
func (p *process) stop() {
	pgid := p.cmd.Process.Pid
	if pids, err := descendants(pgid); err == nil {
		for _, pid := range pids[1:] {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		awaitGone(pids[1:], 5*time.Second)
	}
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	_ = syscall.Kill(-pgid, syscall.SIGCONT) // a server a test froze acts on the SIGTERM now
	select {
	case <-p.done:
	case <-time.After(3 * time.Second):
	}
	// Session children may outlive the leader; they are in the group too.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-p.done
}

// awaitGone waits until none of pids runs any more (gone, or a zombie nobody reaps), or
// timeout: a signal is delivered at once, but the process takes a moment to exit.
func awaitGone(pids []int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for _, pid := range pids {
		for !processGone(pid) && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// processGone reports whether pid has exited: no such process, or a zombie.
func processGone(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	return len(f) == 0 || f[0] == "Z" || f[0] == "X"
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// startTimeout bounds how long a server may take to greet; they take about
// 0.2 s.
const startTimeout = 15 * time.Second

// errExited reports that the server process ended before greeting.
var errExited = errors.New("server exited before greeting")

// awaitGreeting polls addr until it greets with 220 (inside TLS when implicit),
// the process exits, or the deadline passes.
func awaitGreeting(p *process, addr string, implicit bool, netns string) error {
	deadline := time.Now().Add(startTimeout)
	var last error
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("%w: %v", errExited, p.err)
		}
		if netns != "" {
			last = probeNetNS(netns, addr, implicit)
		} else {
			last = probe(addr, implicit)
		}
		if last == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("no 220 greeting from %s within %v: %w", addr, startTimeout, last)
}

func probe(addr string, implicit bool) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	if implicit {
		tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true}) // only checks that it greets
		if err := tc.Handshake(); err != nil {
			return fmt.Errorf("implicit TLS handshake: %w", err)
		}
		conn = tc
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return fmt.Errorf("reading greeting: %w", err)
	}
	if !strings.HasPrefix(line, "220") {
		return fmt.Errorf("greeting %q, want 220", strings.TrimSpace(line))
	}
	_, _ = conn.Write([]byte("QUIT\r\n"))
	return nil
}

// startSpec is what a Start function hands to run.
type startSpec struct {
	name     string
	implicit bool
	netns    string // Options.NetNS
	// build writes the configuration for the given control port and
	// returns the command and the file that gets its stdout/stderr.
	build func(port int) (*exec.Cmd, string)
}

// run starts the server, waits for its greeting, and registers its stop. When
// the port was picked automatically and the server dies (port taken by a
// racing process), it retries with a new port.
func run(t testing.TB, s *Server, ip netip.Addr, port int, autoPort bool, spec startSpec) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		s.Addr = netip.AddrPortFrom(ip, uint16(port)).String()
		cmd, outPath := spec.build(port)
		if spec.netns != "" {
			inNetNS(t, cmd, spec.netns)
		}
		p, err := launch(cmd, outPath)
		if err != nil {
			t.Fatalf("peers: starting %s: %v", spec.name, err)
		}
		err = awaitGreeting(p, s.Addr, spec.implicit, spec.netns)
		if err == nil {
			s.proc = p
			t.Cleanup(p.stop)
			return
		}
		p.stop()
		if autoPort && errors.Is(err, errExited) && attempt < 3 {
			t.Logf("peers: %s exited at start (attempt %d), retrying on a new port: %v", spec.name, attempt, err)
			port = FreePort(t)
			continue
		}
		t.Fatalf("peers: %s on %s did not start: %v\ncommand: %s\n%s", spec.name, s.Addr, err, cmd, s.Log())
	}
}

// pasvPorts resolves Options.PasvPorts, with n ports by default.
func pasvPorts(t testing.TB, o Options, n int) [2]int {
	t.Helper()
	if o.PasvPorts == [2]int{} {
		return FreePortRange(t, n)
	}
	if o.PasvPorts[0] < 1 || o.PasvPorts[1] < o.PasvPorts[0] || o.PasvPorts[1] > 65535 {
		t.Fatalf("peers: bad Options.PasvPorts %v", o.PasvPorts)
	}
	return o.PasvPorts
}

// pasvAddress validates Options.PasvAddress (IPv4: 227 carries only IPv4).
func pasvAddress(t testing.TB, o Options) string {
	t.Helper()
	if o.PasvAddress == "" {
		return ""
	}
	a, err := netip.ParseAddr(o.PasvAddress)
	if err != nil || !a.Is4() {
		t.Fatalf("peers: Options.PasvAddress %q: want an IPv4 address", o.PasvAddress)
	}
	return a.String()
}

// tls12Conf writes an OpenSSL configuration capping TLS at 1.2 and returns
// the environment entry that applies it: the servers read OPENSSL_CONF at
// startup, and neither vsftpd nor pure-ftpd has a protocol switch.
func tls12Conf(t testing.TB, l layout) string {
	t.Helper()
	path := l.path("openssl-tls12.cnf")
	writeFile(t, path, `openssl_conf = default_conf
[default_conf]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
MinProtocol = TLSv1.2
MaxProtocol = TLSv1.2
CipherString = DEFAULT:@SECLEVEL=2
`, 0o644)
	return "OPENSSL_CONF=" + path
}

// serverEnv is a small fixed environment, so that the caller's locale or
// OpenSSL settings do not leak into the servers.
func serverEnv(extra ...string) []string {
	return append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"}, extra...)
}
