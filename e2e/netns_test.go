package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/internal/peers"
)

// The NAT layout: three network namespaces joined by two veth pairs, RFC 5737 addresses,
// no default routes, so the client really cannot reach a backend and every address mistake
// in a 227/PORT shows up as a failed transfer (on loopback every address works).
//
//	client 198.51.100.2 ── 198.51.100.1 proxy 203.0.113.1 ── 203.0.113.2, .3 farm
//
// vsftpd announces 10.9.9.9 in its 227 replies, as a server behind NAT would: an address
// that neither the client nor the proxy can reach.
const (
	nsClientIP   = "198.51.100.2"
	nsProxyFront = "198.51.100.1" // the proxy's listener and public_address
	nsProxyBack  = "203.0.113.1"
	nsFarmIP     = "203.0.113.2"
	nsFarmIP2    = "203.0.113.3"
	nsNATAddr    = "10.9.9.9" // vsftpd's announced passive address
)

// nsPrefix names this process's namespaces; leftovers of dead processes are removed.
const nsPrefix = "fpx-"

var nsLeftover = regexp.MustCompile(`^fpx-(\d+)-(client|proxy|farm)$`)

type natLayout struct{ client, proxy, farm string }

// setupNAT builds the three namespaces; t.Cleanup deletes them, failed or not.
func setupNAT(t *testing.T) natLayout {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("the NAT layout needs ip (iproute2): %v", err)
	}
	if out, err := exec.Command("ip", "netns", "list").CombinedOutput(); err != nil {
		t.Fatalf("ip netns is unavailable: %v\n%s", err, out)
	} else {
		for _, line := range strings.Split(string(out), "\n") {
			name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
			m := nsLeftover.FindStringSubmatch(name)
			if m == nil {
				continue
			}
			if pid, _ := strconv.Atoi(m[1]); pid != os.Getpid() && syscall.Kill(pid, 0) == syscall.ESRCH {
				t.Logf("deleting leftover namespace %s", name)
				exec.Command("ip", "netns", "del", name).Run()
			}
		}
	}
	p := fmt.Sprintf("%s%d-", nsPrefix, os.Getpid())
	l := natLayout{client: p + "client", proxy: p + "proxy", farm: p + "farm"}
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	for _, ns := range []string{l.client, l.proxy, l.farm} {
		exec.Command("ip", "netns", "del", ns).Run() // ours from an earlier test in this process
		ip("netns", "add", ns)
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v\n%s", ns, err, out)
			}
		})
		ip("-n", ns, "link", "set", "lo", "up")
	}
	// Created in the proxy namespace with the peer in the other one: no name is ever
	// visible in the root namespace, so concurrent runs cannot collide.
	ip("-n", l.proxy, "link", "add", "to-client", "type", "veth", "peer", "name", "eth0", "netns", l.client)
	ip("-n", l.proxy, "link", "add", "to-farm", "type", "veth", "peer", "name", "eth0", "netns", l.farm)
	ip("-n", l.client, "addr", "add", nsClientIP+"/24", "dev", "eth0")
	ip("-n", l.proxy, "addr", "add", nsProxyFront+"/24", "dev", "to-client")
	ip("-n", l.proxy, "addr", "add", nsProxyBack+"/24", "dev", "to-farm")
	ip("-n", l.farm, "addr", "add", nsFarmIP+"/24", "dev", "eth0")
	ip("-n", l.farm, "addr", "add", nsFarmIP2+"/24", "dev", "eth0")
	ip("-n", l.client, "link", "set", "eth0", "up")
	ip("-n", l.farm, "link", "set", "eth0", "up")
	ip("-n", l.proxy, "link", "set", "to-client", "up")
	ip("-n", l.proxy, "link", "set", "to-farm", "up")
	// No forwarding either: even a client route toward the farm would lead nowhere.
	ip("netns", "exec", l.proxy, "sysctl", "-q", "-w", "net.ipv4.ip_forward=0")
	for _, ns := range []string{l.client, l.proxy, l.farm} {
		out, err := exec.Command("ip", "-n", ns, "route", "show", "default").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "" {
			t.Fatalf("namespace %s has a default route (%v): %s", ns, err, out)
		}
	}
	return l
}

// nsCommand is name (looked up in PATH here) with args under "ip netns exec ns", in its
// own process group, killed with the group when ctx ends.
func nsCommand(ctx context.Context, ns string, env []string, name string, args ...string) (*exec.Cmd, error) {
	path, err := exec.LookPath(name)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, path}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	return cmd, nil
}

// nsRun runs a command in ns and returns its combined output.
func nsRun(ctx context.Context, ns string, env []string, name string, args ...string) (string, error) {
	cmd, err := nsCommand(ctx, ns, env, name, args...)
	if err != nil {
		return "", err
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	if err != nil {
		err = fmt.Errorf("ip netns exec %s %s %s: %w", ns, name, strings.Join(args, " "), err)
	}
	return out.String(), err
}

// tcpGreeting connects from ns to host:port (bash /dev/tcp, 2 s at most) and returns the
// first line the peer sends; err when the connection cannot be made.
func tcpGreeting(t *testing.T, ns, host string, port int) (string, error) {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return nsRun(c, ns, nil, "timeout", "3", "bash", "-c",
		`exec 3<>"/dev/tcp/$0/$1" || exit 1; IFS= read -r -t 2 line <&3; printf '%s' "$line"`, host, strconv.Itoa(port))
}

func mustReach(t *testing.T, ns, host string, port int) {
	t.Helper()
	out, err := tcpGreeting(t, ns, host, port)
	if err != nil || !strings.HasPrefix(out, "220") {
		t.Fatalf("%s cannot reach %s:%d: %v %q", ns, host, port, err, out)
	}
}

func mustNotReach(t *testing.T, ns, host string, port int) {
	t.Helper()
	out, err := tcpGreeting(t, ns, host, port)
	if err == nil {
		t.Fatalf("%s reaches %s:%d (%q): the layout does not isolate", ns, host, port, out)
	}
	if !strings.Contains(out, "unreachable") {
		t.Fatalf("%s to %s:%d failed for another reason than no route: %v\n%s", ns, host, port, err, out)
	}
}

// nsProxy is ftpsproxy running in the proxy namespace.
type nsProxy struct {
	cmd    *exec.Cmd
	logs   *syncBuffer
	exited chan struct{}
}

// startNSProxy runs the binary in ns with cfg until the test ends and waits until it logs
// listening once per listener.
func startNSProxy(t *testing.T, ns, cfg string, listeners int) *nsProxy {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ftpsproxy.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &nsProxy{logs: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command("ip", "netns", "exec", ns, binary, "-config", path)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM) // ip execs the binary: same pid
		select {
		case <-p.exited:
		case <-time.After(15 * time.Second):
			syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.exited
		}
		if t.Failed() {
			t.Logf("ftpsproxy (%s) log:\n%s", ns, tail(p.logs.String(), 300))
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for strings.Count(p.logs.String(), "msg=listening") < listeners {
		select {
		case <-p.exited:
			t.Fatalf("ftpsproxy exited with %v:\n%s", p.cmd.ProcessState, p.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("ftpsproxy not listening:\n%s", p.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return p
}

// natProxyConfig: one listener per backend on the proxy's client side, each with a pool of
// one backend on the farm side.
type natBackend struct {
	port    int // listener port on nsProxyFront
	addr    string
	mode    string // data_mode
	fixPasv bool
}

func natProxyConfig(portRange string, backends []natBackend) string {
	var b strings.Builder
	for i, be := range backends {
		fmt.Fprintf(&b, "[[listener]]\naddress = \"%s:%d\"\ntls = \"none\"\npool = \"p%d\"\n\n", nsProxyFront, be.port, i)
	}
	fmt.Fprintf(&b, `[data]
public_address = %q
port_range = %q
allow_active = true
connect_timeout = "3s"

[limits]
max_sessions_per_ip = 500
logins_per_minute = 0
attempts_per_minute = 0

[log]
level = "debug"

`, nsProxyFront, portRange)
	for i, be := range backends {
		fmt.Fprintf(&b, "[[pool]]\nname = \"p%d\"\npolicy = \"round_robin\"\nhealth_interval = \"0s\"\n\n", i)
		fmt.Fprintf(&b, "[[pool.backend]]\naddress = %q\ndata_mode = %q\n", be.addr, be.mode)
		if !be.fixPasv {
			b.WriteString("fix_pasv_address = false\n")
		}
		b.WriteString("\n")
	}
	return b.String()
}

// natTarget is one proxied server as the client namespace sees it.
type natTarget struct {
	ns   string // client namespace
	addr string // proxy listener
	srv  *peers.Server
	tag  string // makes directory names unique per backend data mode
	size int
}

func natCtx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

// checkAtRest compares the uploaded file in the server's root with the original.
func (tg natTarget) checkAtRest(t *testing.T, name string, data []byte) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(tg.srv.Root, name))
	if err != nil {
		t.Fatalf("%s: uploaded file: %v\n%s", tg.srv.Name, err, tg.srv.Log())
	}
	if sum(b) != sum(data) {
		t.Fatalf("%s: %s at rest differs (%d bytes, want %d)", tg.srv.Name, name, len(b), len(data))
	}
}

// natCurl: upload then download with curl. mode pasv trusts the 227 address; epsv is
// curl's default; port and eprt are active mode.
func natCurl(t *testing.T, tg natTarget, mode string) {
	args := []string{"-sS", "--fail", "--max-time", "50", "--user", peers.User + ":" + peers.Password}
	switch mode {
	case "pasv":
		args = append(args, "--disable-epsv", "--no-ftp-skip-pasv-ip")
	case "port":
		args = append(args, "--ftp-port", nsClientIP, "--disable-eprt")
	case "eprt":
		args = append(args, "--ftp-port", nsClientIP)
	}
	tmp := t.TempDir()
	src, data := randomData(t, tmp, "src", tg.size)
	dst := filepath.Join(tmp, "down")
	d := "cu-" + mode + "-" + tg.tag
	url := "ftp://" + tg.addr + "/" + d + "/up.bin"
	for _, a := range [][]string{{"--ftp-create-dirs", "-T", src, url}, {"-o", dst, url}} {
		if out, err := nsRun(natCtx(t), tg.ns, nil, "curl", append(append([]string{}, args...), a...)...); err != nil {
			t.Fatalf("%v\n%s\n%s", err, out, tg.srv.Log())
		}
	}
	tg.checkAtRest(t, d+"/up.bin", data)
	if fileSum(t, dst) != sum(data) {
		t.Fatal("curl download differs")
	}
}

// natLftp: upload then download with lftp. mode pasv trusts the 227 address.
func natLftp(t *testing.T, tg natTarget, mode string) {
	tmp := t.TempDir()
	src, data := randomData(t, tmp, "src", tg.size)
	dst := filepath.Join(tmp, "down")
	d := "lf-" + mode + "-" + tg.tag
	var s strings.Builder
	s.WriteString(peers.LftpPrelude)
	s.WriteString("set ftp:ssl-allow no\n")
	switch mode {
	case "pasv":
		s.WriteString("set ftp:passive-mode on\nset ftp:prefer-epsv no\nset ftp:fix-pasv-address no\n")
	case "epsv":
		s.WriteString("set ftp:passive-mode on\nset ftp:prefer-epsv yes\n")
	case "port":
		s.WriteString("set ftp:passive-mode off\n")
	}
	fmt.Fprintf(&s, "open -u %s,%s ftp://%s\n", peers.User, peers.Password, tg.addr)
	fmt.Fprintf(&s, "mkdir %[1]s\ncd %[1]s\nput %[2]s -o up.bin\nget up.bin -o %[3]s\n", d, src, dst)
	script := filepath.Join(tmp, "script.lftp")
	if err := os.WriteFile(script, []byte(s.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"HOME=" + tmp, "LFTP_HOME=" + tmp, "XDG_CONFIG_HOME=" + tmp, "XDG_DATA_HOME=" + tmp, "XDG_CACHE_HOME=" + tmp}
	if out, err := nsRun(natCtx(t), tg.ns, env, "lftp", "-f", script); err != nil {
		t.Fatalf("%v\n%s\n%s", err, out, tg.srv.Log())
	}
	tg.checkAtRest(t, d+"/up.bin", data)
	if fileSum(t, dst) != sum(data) {
		t.Fatal("lftp download differs")
	}
}

// natFtplibUpDown stores and retrieves one file with ftplib trusting the 227 address; the
// suite below deletes what it uploads, so this is the check of an upload at rest.
const natFtplibUpDown = `import ftplib, hashlib, io, sys
host, port, user, pw, mode, local, d = sys.argv[1:8]
f = ftplib.FTP()
f.connect(host, int(port), timeout=30)
f.trust_server_pasv_ipv4_address = True
f.login(user, pw)
if mode == "port":
    f.set_pasv(False)
elif mode == "epsv":
    def makepasv():
        _, p = ftplib.parse229(f.sendcmd("EPSV"), f.sock.getpeername())
        return f.sock.getpeername()[0], p
    f.makepasv = makepasv
f.mkd(d)
f.storbinary("STOR " + d + "/up.bin", open(local, "rb"))
buf = io.BytesIO()
f.retrbinary("RETR " + d + "/up.bin", buf.write)
print(hashlib.sha256(buf.getvalue()).hexdigest())
f.quit()
`

// natFtplib runs suite.py (every operation) and the up/down script above.
func natFtplib(t *testing.T, tg natTarget, mode string) {
	tmp := t.TempDir()
	src, data := randomData(t, tmp, "src", tg.size)
	host, port, _ := strings.Cut(tg.addr, ":")
	script := filepath.Join(tmp, "updown.py")
	if err := os.WriteFile(script, []byte(natFtplibUpDown), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"PYTHONDONTWRITEBYTECODE=1"}
	d := "py-" + mode + "-" + tg.tag
	out, err := nsRun(natCtx(t), tg.ns, env, "python3", script, host, port, peers.User, peers.Password, mode, src, d)
	if err != nil {
		t.Fatalf("%v\n%s\n%s", err, out, tg.srv.Log())
	}
	tg.checkAtRest(t, d+"/up.bin", data)
	if got := strings.TrimSpace(out); got != sum(data) {
		t.Fatalf("ftplib download sha256 %q, want %s", got, sum(data))
	}

	suite, err := filepath.Abs("suite.py")
	if err != nil {
		t.Fatal(err)
	}
	mlsd := "0"
	if tg.srv.HasMLSD {
		mlsd = "1"
	}
	out, err = nsRun(natCtx(t), tg.ns, env, "python3", suite, host, port, peers.User, peers.Password, mode, "none", "", src, mlsd)
	if err != nil {
		t.Fatalf("suite.py: %v\n%s\n%s", err, out, tg.srv.Log())
	}
	var res struct {
		Retr     string `json:"retr"`
		RestRetr string `json:"rest_retr"`
		Appe     string `json:"appe"`
		Size     int    `json:"size"`
		Quit     string `json:"quit"`
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Fatalf("suite.py output: %v\n%s", err, out)
	}
	if res.Retr != sum(data) || res.RestRetr != sum(data[1000:]) || res.Appe != sum(data) || res.Size != len(data) || res.Quit != "221" {
		t.Fatalf("suite.py results: %+v", res)
	}
}

// natNoFix is the fix_pasv_address = false session: a download whose backend leg must
// dial the announced, unreachable address. Prints the error reply, then NOOP's.
const natNoFix = `import ftplib, sys
host, port, user, pw = sys.argv[1:5]
f = ftplib.FTP()
f.connect(host, int(port), timeout=30)
f.trust_server_pasv_ipv4_address = True
f.login(user, pw)
try:
    f.retrbinary("RETR seed.bin", lambda b: None)
    print("TRANSFER OK")
except ftplib.all_errors as e:
    print("ERR", e)
print("NOOP", f.voidcmd("NOOP")[:3])
f.quit()
`

// TestNATLayout runs the proxy between a client and a server farm in separate network
// namespaces: the client reaches only the proxy, vsftpd announces an unreachable NAT
// address, and every client trusts the 227 address it gets. Upload and download with
// ftplib, curl and lftp in PASV, EPSV and PORT modes, against vsftpd, pure-ftpd and
// ProFTPD, with the proxy's backend leg passive and active.
func TestNATLayout(t *testing.T) {
	start := time.Now()
	l := setupNAT(t)

	vs := peers.StartVsftpd(t, peers.Options{NetNS: l.farm, Addr: nsFarmIP + ":2101", PasvAddress: nsNATAddr, PasvPorts: [2]int{40000, 40039}})
	pure := peers.StartPureFTPd(t, peers.Options{NetNS: l.farm, Addr: nsFarmIP + ":2102", PasvPorts: [2]int{40100, 40199}})
	pro := peers.StartProFTPD(t, peers.Options{NetNS: l.farm, Addr: nsFarmIP2 + ":2103", PasvPorts: [2]int{40200, 40239}})
	seed := bytes.Repeat([]byte("seed"), 1024)
	vs.WriteFile(t, "seed.bin", seed)
	t.Logf("namespaces and servers up in %v", time.Since(start).Round(time.Millisecond))

	t.Run("reachability", func(t *testing.T) {
		mustReach(t, l.proxy, nsFarmIP, 2101)
		mustReach(t, l.proxy, nsFarmIP, 2102)
		mustReach(t, l.proxy, nsFarmIP2, 2103)
		mustNotReach(t, l.client, nsFarmIP, 2101)
		mustNotReach(t, l.client, nsFarmIP2, 2103)
		mustNotReach(t, l.client, nsNATAddr, 2101)
		mustNotReach(t, l.proxy, nsNATAddr, 40000)
		mustNotReach(t, l.farm, nsClientIP, 22)
		// The client's host answers the proxy (nothing listens: refused, not unreachable).
		if out, err := tcpGreeting(t, l.proxy, nsClientIP, 9); err == nil || !strings.Contains(out, "refused") {
			t.Fatalf("proxy to client: %v %q, want connection refused", err, out)
		}
	})
	t.Run("direct-client-fails", func(t *testing.T) {
		// Without the proxy the client cannot even begin: no route to the farm, nor to the
		// address vsftpd would announce.
		out, err := nsRun(natCtx(t), l.client, nil, "curl", "-sS", "--fail", "--max-time", "10",
			"--disable-epsv", "--no-ftp-skip-pasv-ip", "--user", peers.User+":"+peers.Password,
			"ftp://"+nsFarmIP+":2101/")
		if err == nil {
			t.Fatalf("curl straight to vsftpd from the client namespace worked:\n%s", out)
		}
		t.Logf("as expected: %s", strings.TrimSpace(out))
	})
	if t.Failed() {
		t.FailNow()
	}

	for i, mode := range []string{"passive", "active"} {
		t.Run("backend-"+mode, func(t *testing.T) {
			base := 2121 + 10*i
			backends := []natBackend{
				{port: base, addr: vs.Addr, mode: mode, fixPasv: true},
				{port: base + 1, addr: pure.Addr, mode: mode, fixPasv: true},
				{port: base + 2, addr: pro.Addr, mode: mode, fixPasv: true},
			}
			if mode == "passive" {
				backends = append(backends, natBackend{port: base + 3, addr: vs.Addr, mode: "passive", fixPasv: false})
			}
			rng := fmt.Sprintf("%d-%d", 20000+1000*i, 20000+1000*i+199) // below the ephemeral range, as -check wants
			p := startNSProxy(t, l.proxy, natProxyConfig(rng, backends), len(backends))
			mustReach(t, l.client, nsProxyFront, base)
			t.Run("clients", func(t *testing.T) { // returns when all its parallel subtests did
				for j, srv := range []*peers.Server{vs, pure, pro} {
					tg := natTarget{ns: l.client, addr: fmt.Sprintf("%s:%d", nsProxyFront, base+j), srv: srv, tag: mode[:1], size: 1 << 20}
					for _, m := range []string{"pasv", "epsv", "port"} {
						t.Run(srv.Name+"/ftplib/"+m, func(t *testing.T) { t.Parallel(); natFtplib(t, tg, m) })
						t.Run(srv.Name+"/lftp/"+m, func(t *testing.T) { t.Parallel(); natLftp(t, tg, m) })
					}
					for _, m := range []string{"pasv", "epsv", "port", "eprt"} {
						t.Run(srv.Name+"/curl/"+m, func(t *testing.T) { t.Parallel(); natCurl(t, tg, m) })
					}
				}
			})
			// Every client data mode reached the proxy, and nothing went wrong on the way
			// (a data connection from a wrong address, a failed backend leg, ...).
			logs := p.logs.String()
			for _, c := range []string{"cmd=PASV", "cmd=EPSV", `cmd="PORT `, `cmd="EPRT `} {
				if !strings.Contains(logs, c) {
					t.Errorf("the proxy never saw %s", c)
				}
			}
			for _, line := range strings.Split(logs, "\n") {
				if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
					t.Errorf("proxy: %s", line)
				}
			}
			if mode != "passive" {
				return
			}
			// The rewrite was needed: vsftpd did announce its NAT address to the proxy.
			if !strings.Contains(vs.Log(), "227 Entering Passive Mode (10,9,9,9,") {
				t.Errorf("vsftpd never announced %s:\n%s", nsNATAddr, tail(vs.Log(), 40))
			}
			t.Run("fix_pasv_address=false", func(t *testing.T) {
				script := filepath.Join(t.TempDir(), "nofix.py")
				if err := os.WriteFile(script, []byte(natNoFix), 0o644); err != nil {
					t.Fatal(err)
				}
				out, err := nsRun(natCtx(t), l.client, nil, "python3", script, nsProxyFront, strconv.Itoa(base+3), peers.User, peers.Password)
				if err != nil {
					t.Fatalf("%v\n%s", err, out)
				}
				if !strings.Contains(out, "ERR 425") || !strings.Contains(out, "NOOP 200") {
					t.Fatalf("want a 425 for the transfer and the session going on, got:\n%s", out)
				}
				if !strings.Contains(p.logs.String(), "dial backend data "+nsNATAddr+":") {
					t.Fatalf("the proxy did not dial the announced %s:\n%s", nsNATAddr, tail(p.logs.String(), 40))
				}
			})
		})
	}
	t.Logf("TestNATLayout took %v", time.Since(start).Round(time.Millisecond))
}
