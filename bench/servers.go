package main

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The servers: vsftpd (the backend, plain, plus a second instance with its own TLS for the
// "direct" FTPS reference), ftpsproxy, ProFTPD mod_proxy, and the two bare relays. All on
// loopback:
//
//	127.0.0.2  vsftpd (control + passive range), vsftpd-tls
//	127.0.0.1  ftpsproxy, mod_proxy, the plain relay (same ports as vsftpd, mirrored)
//	127.0.0.3  the TLS relay (same ports as vsftpd, mirrored)

const (
	peersPrefix   = "/opt/ftpsproxy-peers"
	vsftpdBinary  = peersPrefix + "/vsftpd/usr/sbin/vsftpd"
	proftpdBinary = peersPrefix + "/proftpd/usr/sbin/proftpd"
	proftpdMods   = peersPrefix + "/proftpd/usr/lib/proftpd"
	installScript = "scripts/install-test-peers.sh"
	testUser      = "ftptest"
	testPassword  = "ftptest-Pass1"
	vsftpdPAM     = "ftpsproxy-vsftpd" // written by installScript

	ipBackend  = "127.0.0.2"
	ipFront    = "127.0.0.1"
	ipTLSRelay = "127.0.0.3"
)

// portPlan is every port the benchmark listens on. The ports lie above the kernel's
// ephemeral range (so no outgoing connection takes one meanwhile) and away from the test
// peers' 10000-32767.
type portPlan struct {
	vsftpd, vsftpdTLS int
	vsPasv, vsTLSPasv [2]int
	fpPlain, fpTLS    int
	fpImplicit        int // ftpsproxy's implicit TLS listener (handshake phase)
	fpRange           [2]int
	fpRSAImplicit     int    // the second ftpsproxy, RSA certificate, implicit listener only
	fpRSARange        [2]int // its data ports (never used: it only greets)
	mpPlain, mpTLS    int
	mpPasv, mpTLSPasv [2]int
	mpImpEC, mpImpRSA int // mod_proxy + mod_tls, implicit, ECDSA and RSA certificate
	mpImpPasv         [2]int
	termEC, termRSA   int // the bare TLS terminators (on ipTLSRelay)
}

func planPorts() (portPlan, error) {
	lo := 61000
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if hi, err := strconv.Atoi(f[1]); err == nil && hi+1 > lo && hi < 64000 {
				lo = hi + 1
			}
		}
	}
	const need = 1 + 200 + 1 + 60 + 3 + 400 + 1 + 10 + 2 + 200 + 60 + 2 + 10 + 2
	if 65535-lo < need {
		return portPlan{}, fmt.Errorf("not enough ports above the ephemeral range (%d-65535)", lo)
	}
	for range 50 {
		base := lo + rand.IntN(65535-lo-need)
		p := portPlan{}
		next := base
		take := func(n int) [2]int { r := [2]int{next, next + n - 1}; next += n; return r }
		p.vsftpd = take(1)[0]
		p.vsPasv = take(200)
		p.vsftpdTLS = take(1)[0]
		p.vsTLSPasv = take(60)
		p.fpPlain, p.fpTLS, p.fpImplicit = take(1)[0], take(1)[0], take(1)[0]
		p.fpRange = take(400)
		p.fpRSAImplicit = take(1)[0]
		p.fpRSARange = take(10)
		p.mpPlain, p.mpTLS = take(1)[0], take(1)[0]
		p.mpPasv = take(200)
		p.mpTLSPasv = take(60)
		p.mpImpEC, p.mpImpRSA = take(1)[0], take(1)[0]
		p.mpImpPasv = take(10)
		p.termEC, p.termRSA = take(1)[0], take(1)[0]
		if bindableRange(base, next-base) {
			return p, nil
		}
	}
	return portPlan{}, fmt.Errorf("no free block of %d ports above %d", need, lo)
}

func bindableRange(first, n int) bool {
	for _, ip := range []string{ipFront, ipBackend, ipTLSRelay} {
		for p := first; p < first+n; p++ {
			ln, err := net.Listen("tcp4", net.JoinHostPort(ip, strconv.Itoa(p)))
			if err != nil {
				return false
			}
			ln.Close()
		}
	}
	return true
}

func portList(ctrl int, r [2]int) []int {
	ps := []int{ctrl}
	for p := r[0]; p <= r[1]; p++ {
		ps = append(ps, p)
	}
	return ps
}

// account is the test user's ids.
type account struct{ uid, gid int }

// vsftpdConf is the backend's configuration. Anonymous logins are mapped to the test user
// (ftp_username) and need no password check; local logins go through PAM.
func vsftpdConf(w *workdir, ip string, port int, pasv [2]int, tlsOn bool) string {
	var c strings.Builder
	set := func(k string, v any) { fmt.Fprintf(&c, "%s=%v\n", k, v) }
	set("listen", "YES")
	set("listen_ipv6", "NO")
	set("listen_address", ip)
	set("listen_port", port)
	set("background", "NO")
	set("seccomp_sandbox", "NO")
	set("isolate", "NO")
	set("isolate_network", "NO")
	set("secure_chroot_dir", w.empty)
	set("local_enable", "YES")
	set("pam_service_name", vsftpdPAM)
	set("local_root", w.root)
	set("chroot_local_user", "YES")
	set("allow_writeable_chroot", "YES")
	set("anonymous_enable", "YES")
	set("no_anon_password", "NO") // 331 then PASS: mod_proxy refuses commands after a 230 to USER
	set("ftp_username", testUser)
	set("anon_root", w.root)
	set("anon_upload_enable", "YES")
	set("anon_other_write_enable", "YES")
	set("anon_umask", "022")
	set("write_enable", "YES")
	set("local_umask", "022")
	set("userlist_enable", "NO")
	set("tcp_wrappers", "NO")
	set("pasv_enable", "YES")
	set("pasv_min_port", pasv[0])
	set("pasv_max_port", pasv[1])
	set("port_enable", "YES")
	set("connect_from_port_20", "NO")
	set("max_clients", 0)
	set("max_per_ip", 0)
	set("delay_failed_login", 0)
	set("idle_session_timeout", 3600)
	set("data_connection_timeout", 600)
	set("syslog_enable", "NO")
	set("xferlog_enable", "NO")
	if tlsOn {
		set("ssl_enable", "YES")
		set("rsa_cert_file", w.cert)
		set("rsa_private_key_file", w.key)
		set("ssl_ciphers", "HIGH")
		set("ssl_request_cert", "NO")
		set("require_ssl_reuse", "NO")
		set("allow_anon_ssl", "YES")
		set("force_anon_logins_ssl", "NO")
		set("force_anon_data_ssl", "NO")
		set("force_local_logins_ssl", "NO")
		set("force_local_data_ssl", "NO")
	} else {
		set("ssl_enable", "NO")
	}
	return c.String()
}

// tls12Conf caps OpenSSL at TLS 1.2 for vsftpd 3.0.3, which has no switch of its own.
const tls12Conf = `openssl_conf = default_conf
[default_conf]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
MinProtocol = TLSv1.2
MaxProtocol = TLSv1.2
CipherString = DEFAULT:@SECLEVEL=2
`

func serverEnv(extra ...string) []string {
	return append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"}, extra...)
}

func startVsftpd(w *workdir, name string, port int, pasv [2]int, tlsOn bool) (*proc, string, error) {
	conf := vsftpdConf(w, ipBackend, port, pasv, tlsOn)
	path := w.etc(name + ".conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return nil, "", err
	}
	cmd := exec.Command(vsftpdBinary, path)
	cmd.Env = serverEnv()
	if tlsOn {
		oc := w.etc("openssl-tls12.cnf")
		if err := os.WriteFile(oc, []byte(tls12Conf), 0o644); err != nil {
			return nil, "", err
		}
		cmd.Env = serverEnv("OPENSSL_CONF=" + oc)
	}
	cmd.Dir = w.dir
	p, err := startProc(name, cmd, w.etc(name+".log"))
	if err != nil {
		return nil, "", err
	}
	return p, conf, awaitGreeting(p, net.JoinHostPort(ipBackend, strconv.Itoa(port)), false)
}

// proftpdConf is mod_proxy as a reverse proxy in front of the plain vsftpd: the main server
// for plain FTP and a <VirtualHost> on a second port with mod_tls toward clients (explicit
// FTPS, the backend leg stays plain).
func proftpdConf(w *workdir, pp portPlan, maxInstances int) string {
	var c strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&c, format+"\n", args...) }
	backend := fmt.Sprintf("ftp://%s:%d", ipBackend, pp.vsftpd)
	proxy := func(indent string) {
		line(indent + `ProxyEngine on`)
		line(indent + `ProxyRole reverse`)
		line(indent+`ProxyReverseServers %s`, backend)
		// The default, RoundRobin, keeps its state in the ProxyTables SQLite database; under 32
		// concurrent logins "database is locked" then fails sessions. Random reads no state.
		line(indent + `ProxyReverseConnectPolicy Random`)
		// The backend's 227 names the backend's own address: PASV works as is.
		line(indent + `ProxyDataTransferPolicy PASV`)
		line(indent + `ProxyTLSEngine off`)
	}
	line(`ServerType standalone`)
	line(`ServerName "ftpsproxy-bench mod_proxy"`)
	line(`UseIPv6 off`) // with it on, backend data sockets are AF_INET6 and connect fails with EINVAL
	line(`DefaultAddress %s`, ipFront)
	line(`Port %d`, pp.mpPlain)
	line(`SocketBindTight on`)
	line(`User nobody`)
	line(`Group nogroup`)
	line(`PidFile %s`, w.etc("proftpd.pid"))
	line(`ScoreboardFile %s`, w.etc("proftpd.scoreboard"))
	line(`DelayEngine off`)
	line(`ControlsEngine off`)
	line(`WtmpLog off`)
	line(`UseReverseDNS off`)
	line(`SystemLog %s`, w.etc("proftpd-system.log"))
	line(`TransferLog NONE`)
	line(`MaxInstances %d`, maxInstances)
	line(`TimeoutIdle 3600`)
	line(`PassivePorts %d %d`, pp.mpPasv[0], pp.mpPasv[1])
	line(`ModulePath %s`, proftpdMods)
	line(`LoadModule mod_proxy.c`)
	line(`LoadModule mod_tls.c`)
	line(`ProxyTables %s`, w.etc("proxy-tables"))
	if os.Getenv("BENCH_PROXYLOG") != "" {
		line(`ProxyLog %s`, w.etc("proxy.log"))
	}
	proxy("")
	line(`TLSEngine off`)
	line(``)
	line(`<VirtualHost %s>`, ipFront)
	line(`  Port %d`, pp.mpTLS)
	line(`  PassivePorts %d %d`, pp.mpTLSPasv[0], pp.mpTLSPasv[1])
	line(`  TimeoutIdle 3600`)
	proxy("  ")
	line(`  TLSEngine on`)
	line(`  TLSProtocol TLSv1.2 TLSv1.3`)
	line(`  TLSECCertificateFile %s`, w.cert)
	line(`  TLSECCertificateKeyFile %s`, w.key)
	line(`  TLSVerifyClient off`)
	line(`  TLSRenegotiate none`)
	line(`  TLSRequired off`)
	line(`  TLSOptions NoSessionReuseRequired`)
	line(`</VirtualHost>`)
	// The handshake phase: implicit TLS (TLS from the first byte, like the other paths of that
	// phase), one virtual host per certificate type. Session tickets on, so resumption can
	// be measured: the ticket keys are made once in the master, so every forked session
	// process can open the tickets of the others.
	for _, v := range []struct {
		port      int
		cert, key string
		kind      string
	}{{pp.mpImpEC, w.cert, w.key, "EC"}, {pp.mpImpRSA, w.rsaCert, w.rsaKey, "RSA"}} {
		line(``)
		line(`<VirtualHost %s>`, ipFront)
		line(`  Port %d`, v.port)
		line(`  PassivePorts %d %d`, pp.mpImpPasv[0], pp.mpImpPasv[1])
		line(`  TimeoutIdle 3600`)
		proxy("  ")
		line(`  TLSEngine on`)
		line(`  TLSProtocol TLSv1.2 TLSv1.3`)
		line(`  TLS%sCertificateFile %s`, v.kind, v.cert)
		line(`  TLS%sCertificateKeyFile %s`, v.kind, v.key)
		line(`  TLSVerifyClient off`)
		line(`  TLSRenegotiate none`)
		line(`  TLSRequired on`)
		line(`  TLSSessionTickets on`)
		line(`  TLSOptions UseImplicitSSL NoSessionReuseRequired`)
		line(`</VirtualHost>`)
	}
	return c.String()
}

func startProftpd(w *workdir, pp portPlan, maxInstances int) (*proc, string, error) {
	conf := proftpdConf(w, pp, maxInstances)
	path := w.etc("proftpd.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, "", err
	}
	if err := os.MkdirAll(w.etc("proxy-tables"), 0o777); err != nil {
		return nil, "", err
	}
	os.Chmod(w.etc("proxy-tables"), 0o777)
	cmd := exec.Command(proftpdBinary, "-n", "-c", path)
	cmd.Env = serverEnv()
	cmd.Dir = w.dir
	p, err := startProc("mod_proxy", cmd, w.etc("proftpd.log"))
	if err != nil {
		return nil, "", err
	}
	return p, conf, awaitGreeting(p, net.JoinHostPort(ipFront, strconv.Itoa(pp.mpPlain)), false)
}

// fpInstance is one ftpsproxy process: its listeners (0: none), data ports and certificate.
// The benchmark runs the main one (plain, explicit and implicit listeners, ECDSA) and, for the
// handshake phase, a second one with an RSA certificate and only an implicit listener: the
// [tls] certificate is per process, and a second process keeps both certificate types
// measurable in the same round without restarting the main one.
type fpInstance struct {
	name                      string // process name, and the base of its config and log files
	plain, explicit, implicit int
	dataRange                 [2]int
	cert, key                 string
}

func mainFtpsproxy(w *workdir, pp portPlan) fpInstance {
	return fpInstance{name: "ftpsproxy", plain: pp.fpPlain, explicit: pp.fpTLS, implicit: pp.fpImplicit,
		dataRange: pp.fpRange, cert: w.cert, key: w.key}
}

func rsaFtpsproxy(w *workdir, pp portPlan) fpInstance {
	return fpInstance{name: "ftpsproxy-rsa", implicit: pp.fpRSAImplicit, dataRange: pp.fpRSARange, cert: w.rsaCert, key: w.rsaKey}
}

// ftpsproxyConf is ftpsproxy in front of the plain vsftpd: a plain listener, an explicit
// FTPS one and an implicit one (as inst says), limits opened up for the load, health checks
// off (a check is one more vsftpd fork every few seconds; it cannot change the numbers, only
// make them noisier).
func ftpsproxyConf(inst fpInstance, pp portPlan, logLevel string) string {
	var c strings.Builder
	fmt.Fprintf(&c, "# ftpsproxy configuration used by the benchmark (%s)\n", inst.name)
	for _, l := range []struct {
		name, mode string
		port       int
	}{{"plain", "none", inst.plain}, {"ftps", "explicit", inst.explicit}, {"implicit", "implicit", inst.implicit}} {
		if l.port != 0 {
			fmt.Fprintf(&c, "[[listener]]\nname = %q\naddress = \"%s:%d\"\ntls = %q\n\n", l.name, ipFront, l.port, l.mode)
		}
	}
	fmt.Fprintf(&c, `[tls]
cert_file = %[1]q
key_file = %[2]q

[data]
port_range = "%[3]d-%[4]d"
connect_timeout = "30s"

[[pool]]
name = "bench"
policy = "round_robin"
health_interval = "0s"

[[pool.backend]]
address = "%[5]s:%[6]d"

[limits]
max_sessions = 0
max_sessions_per_ip = 0
logins_per_minute = 0
attempts_per_minute = 0
idle_timeout = "1h"
login_timeout = "60s"

[log]
level = %[7]q
`, inst.cert, inst.key, inst.dataRange[0], inst.dataRange[1], ipBackend, pp.vsftpd, logLevel)
	return c.String()
}

func startFtpsproxy(w *workdir, bin string, inst fpInstance, pp portPlan, logLevel string) (*proc, string, error) {
	conf := ftpsproxyConf(inst, pp, logLevel)
	path := w.etc(inst.name + ".toml")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, "", err
	}
	cmd := exec.Command(bin, "-config", path)
	cmd.Dir = w.dir
	p, err := startProc(inst.name, cmd, w.etc(inst.name+".log"))
	if err != nil {
		return nil, "", err
	}
	if inst.plain != 0 {
		return p, conf, awaitGreeting(p, net.JoinHostPort(ipFront, strconv.Itoa(inst.plain)), false)
	}
	return p, conf, awaitGreeting(p, net.JoinHostPort(ipFront, strconv.Itoa(inst.implicit)), true)
}

// buildFtpsproxy builds cmd/ftpsproxy (no -race) from the module this benchmark is in.
func buildFtpsproxy(out string) error {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(gomod))
	if mod == "" || mod == os.DevNull {
		return fmt.Errorf("not inside the ftpsproxy module (run from the repository, or pass -ftpsproxy BIN)")
	}
	cmd := exec.Command("go", "build", "-o", out, "./cmd/ftpsproxy")
	cmd.Dir = filepath.Dir(mod)
	b, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build ./cmd/ftpsproxy: %v\n%s", err, b)
	}
	return nil
}

// awaitGreeting polls addr until it greets with 220 (inside TLS when implicit).
func awaitGreeting(p *proc, addr string, implicit bool) error {
	deadline := time.Now().Add(15 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("%s exited at start: %v\n%s", p.name, p.err, p.logTail())
		}
		if last = probeGreeting(addr, implicit); last == nil {
			return nil
		}
		time.Sleep(30 * time.Millisecond)
	}
	return fmt.Errorf("%s: no 220 from %s: %v\n%s", p.name, addr, last, p.logTail())
}

func probeGreeting(addr string, implicit bool) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if implicit {
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true}) // only checks that it greets
		if err := tc.Handshake(); err != nil {
			return err
		}
		c = tc
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "220") {
		return fmt.Errorf("greeting %q", strings.TrimSpace(line))
	}
	c.Write([]byte("QUIT\r\n"))
	return nil
}
