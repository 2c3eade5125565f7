package e2e

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/internal/peers"
)

// Paths the package installs (dist/nfpm.yaml).
const (
	debBinary = "/usr/bin/ftpsproxy"
	debUnit   = "/lib/systemd/system/ftpsproxy.service"
	debConfig = "/etc/ftpsproxy/ftpsproxy.toml"
	debCert   = "/etc/ftpsproxy/tls/selfsigned.crt"
	debKey    = "/etc/ftpsproxy/tls/selfsigned.key"
)

// capNetBindService is bit 10 of the capability sets in /proc/PID/status.
const capNetBindService = 1 << 10

// TestDebPackage builds the .deb with dist/build-deb.sh (nfpm), installs it with dpkg -i,
// checks what the maintainer scripts made (system user, conffile, key readable by the
// ftpsproxy group only), runs -check on the installed config, verifies the unit with
// systemd-analyze, then runs the installed binary as the ftpsproxy user with
// CAP_NET_BIND_SERVICE as its only capability (setpriv, as the unit's
// AmbientCapabilities does) on a port below 1024, with the package's self-signed
// certificate, in front of a real vsftpd: curl uploads and downloads over explicit FTPS,
// checked by sha256. Finally dpkg --purge removes binary, config and user.
func TestDebPackage(t *testing.T) {
	for _, tool := range []string{"dpkg", "setpriv", "curl", "openssl", "systemd-analyze", "logrotate"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found (scripts/install-test-peers.sh installs the test tools): %v", tool, err)
		}
	}
	if os.Geteuid() != 0 {
		t.Fatal("TestDebPackage installs a package: run as root (scripts/test.sh does)")
	}
	deb := buildDeb(t)
	run(t, "dpkg", "-i", deb)
	t.Cleanup(func() { purgeDeb(t) })

	checkInstalled(t)
	out := runAs(t, "root", debBinary, "-config", debConfig, "-check")
	if !strings.Contains(out, "OK") {
		t.Fatalf("-check on the installed config: %s", out)
	}
	// The service user must be able to read the config and the key the unit gives it.
	runAs(t, "ftpsproxy", debBinary, "-config", debConfig, "-check")
	if out := run(t, "systemd-analyze", "verify", debUnit); strings.TrimSpace(out) != "" {
		t.Fatalf("systemd-analyze verify %s is not clean:\n%s", debUnit, out)
	}
	// logrotate parses the snippet (debug mode: nothing is rotated).
	if out := run(t, "logrotate", "--debug", "/etc/logrotate.d/ftpsproxy"); strings.Contains(out, "error") {
		t.Fatalf("logrotate --debug on the snippet:\n%s", out)
	}
	if out := run(t, debBinary, "-version"); !strings.HasPrefix(out, "ftpsproxy ") {
		t.Fatalf("-version of the installed binary: %q", out)
	}
	serveAsServiceUser(t)
}

// buildDeb runs dist/build-deb.sh into a temporary directory and returns the .deb's path.
func buildDeb(t *testing.T) string {
	t.Helper()
	out := t.TempDir()
	cmd := exec.Command("../dist/build-deb.sh", out)
	cmd.Env = append(os.Environ(), "VERSION=0.0.0~e2e")
	var stderr syncBuffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("dist/build-deb.sh: %v\n%s", err, stderr.String())
	}
	deb := strings.TrimSpace(string(b))
	if filepath.Base(deb) != "ftpsproxy_0.0.0~e2e_"+runtimeArch(t)+".deb" {
		t.Fatalf("dist/build-deb.sh printed %q", deb)
	}
	return deb
}

func runtimeArch(t *testing.T) string {
	return strings.TrimSpace(run(t, "dpkg", "--print-architecture"))
}

// checkInstalled checks the files, user and permissions the package and its postinst made.
func checkInstalled(t *testing.T) {
	t.Helper()
	u, err := user.Lookup("ftpsproxy")
	if err != nil {
		t.Fatalf("postinst made no ftpsproxy user: %v", err)
	}
	if pw := run(t, "getent", "passwd", "ftpsproxy"); !strings.HasSuffix(strings.TrimSpace(pw), ":/usr/sbin/nologin") {
		t.Fatalf("ftpsproxy user has a login shell: %q", pw)
	}
	if uid, _ := strconv.Atoi(u.Uid); uid == 0 || uid >= 1000 {
		t.Fatalf("ftpsproxy uid %d is not a system uid", uid)
	}
	if cf := run(t, "dpkg-query", "-W", "-f=${Conffiles}", "ftpsproxy"); !strings.Contains(cf, debConfig) ||
		!strings.Contains(cf, "/etc/logrotate.d/ftpsproxy") {
		t.Fatalf("conffiles: %q", cf)
	}
	for path, want := range map[string]string{
		debBinary:            "755 root root",
		debUnit:              "644 root root",
		debConfig:            "640 root ftpsproxy",
		debKey:               "640 root ftpsproxy",
		debCert:              "644 root ftpsproxy",
		"/var/lib/ftpsproxy": "750 ftpsproxy ftpsproxy",
		"/var/log/ftpsproxy": "750 ftpsproxy ftpsproxy",
	} {
		if got := strings.TrimSpace(run(t, "stat", "-c", "%a %U %G", path)); got != want {
			t.Errorf("%s: mode and owner %q, want %q", path, got, want)
		}
	}
}

// serveAsServiceUser runs the installed binary as the unit would and logs in through it.
func serveAsServiceUser(t *testing.T) {
	t.Helper()
	backend := peers.StartVsftpd(t, peers.Options{})
	port := freePrivilegedPort(t)
	dir := worldReadableDir(t)
	cfg := filepath.Join(dir, "ftpsproxy.toml")
	adminAddr := freeAddr(t)
	os.WriteFile(cfg, []byte(explicitTLSConfig(t, fmt.Sprintf("127.0.0.1:%d", port), debCert, debKey, backend.Addr,
		fmt.Sprintf("[log]\ntransfer_log = \"/var/log/ftpsproxy/xferlog\"\n[admin]\naddress = %q\n", adminAddr))), 0o644)

	p := &proxyProc{t: t, cfg: cfg, logs: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command("setpriv", "--reuid=ftpsproxy", "--regid=ftpsproxy", "--init-groups",
		"--inh-caps=-all,+net_bind_service", "--ambient-caps=-all,+net_bind_service",
		"--bounding-set=-all,+net_bind_service", "--no-new-privs", "--",
		debBinary, "-config", cfg)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); p.code = p.cmd.ProcessState.ExitCode(); close(p.exited) }()
	defer func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill()
			<-p.exited
		}
	}()
	p.addr = fmt.Sprintf("127.0.0.1:%d", port)
	waitListening(t, p)
	checkProcessCreds(t, p.cmd.Process.Pid)

	name := certName(t)
	up, data := randomData(t, t.TempDir(), "deb-up.bin", 256<<10)
	base := []string{"--ssl-reqd", "--cacert", debCert, "--resolve", fmt.Sprintf("%s:%d:127.0.0.1", name, port),
		"--user", peers.User + ":" + peers.Password, "--max-time", "30"}
	url := fmt.Sprintf("ftp://%s:%d/deb-up.bin", name, port)
	ctx := context.Background()
	if out, err := peers.Curl(ctx, append(base, "-T", up, url)...); err != nil {
		t.Fatalf("curl upload through the packaged proxy: %v\n%s\n%s", err, out, p.logs.String())
	}
	got := filepath.Join(t.TempDir(), "down.bin")
	if out, err := peers.Curl(ctx, append(base, "-o", got, url)...); err != nil {
		t.Fatalf("curl download through the packaged proxy: %v\n%s\n%s", err, out, p.logs.String())
	}
	if fileSum(t, filepath.Join(backend.Root, "deb-up.bin")) != sum(data) || fileSum(t, got) != sum(data) {
		t.Fatal("sha256 mismatch through the packaged proxy")
	}
	// The packaged build carries its version and commit into ftpsproxy_build_info.
	commit := strings.TrimSpace(run(t, "git", "rev-parse", "--short=12", "HEAD"))
	if _, body := scrapeNames(t, "http://"+adminAddr+"/metrics"); !strings.Contains(body,
		fmt.Sprintf(`ftpsproxy_build_info{version="0.0.0~e2e",commit=%q,goversion=`, commit)) {
		t.Errorf("build info of the packaged binary (commit %s):\n%s", commit, grepLines(body, "build_info"))
	}

	// What the logrotate snippet's postrotate does after renaming the log: SIGUSR1 reopens it.
	xfer := "/var/log/ftpsproxy/xferlog"
	if err := os.Rename(xfer, xfer+".1"); err != nil {
		t.Fatal(err)
	}
	p.cmd.Process.Signal(syscall.SIGUSR1)
	waitFor(t, 5*time.Second, func() bool { _, err := os.Stat(xfer); return err == nil }) // reopen creates it
	if out, err := peers.Curl(ctx, append(base, "-o", got, url)...); err != nil || fileSum(t, got) != sum(data) {
		t.Fatalf("download after SIGUSR1: %v\n%s", err, out)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		t.Fatal("the packaged proxy did not stop on SIGTERM")
	}
	if p.code != 0 {
		t.Fatalf("the packaged proxy exited %d:\n%s", p.code, p.logs.String())
	}
	if xl, err := os.ReadFile(xfer + ".1"); err != nil || strings.Count(string(xl), "deb-up.bin") != 2 {
		t.Fatalf("transfer log written as the ftpsproxy user before rotation: %v %q", err, xl)
	}
	if xl, err := os.ReadFile(xfer); err != nil || strings.Count(string(xl), "deb-up.bin") != 1 {
		t.Fatalf("transfer log reopened after SIGUSR1: %v %q", err, xl)
	}
}

// explicitTLSConfig is a proxy config with one explicit-FTPS listener on listen, the given
// certificate, and pool "farm" of one backend without health checks; extra is appended.
func explicitTLSConfig(t *testing.T, listen, certFile, keyFile, backend, extra string) string {
	return fmt.Sprintf(`
[[listener]]
address = %q
tls = "explicit"

[tls]
cert_file = %q
key_file = %q

[data]
port_range = %q

[[pool]]
name = "farm"
health_interval = "0s"

[[pool.backend]]
address = %q

`, listen, certFile, keyFile, freeRange(t, 20), backend) + extra
}

// waitListening waits until p accepts on p.addr, failing if it exits first.
func waitListening(t *testing.T, p *proxyProc) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", p.addr, time.Second); err == nil {
			c.Close()
			return
		}
		select {
		case <-p.exited:
			t.Fatalf("the packaged proxy exited with %d:\n%s", p.code, p.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the packaged proxy is not listening on %s:\n%s", p.addr, p.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkProcessCreds reads /proc/PID/status of the proxy (setpriv execs it: same pid) and
// checks it runs as ftpsproxy with CAP_NET_BIND_SERVICE as its only capability.
func checkProcessCreds(t *testing.T, pid int) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	u, _ := user.Lookup("ftpsproxy")
	fields := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			fields[k] = strings.TrimSpace(v)
		}
	}
	if uids := strings.Fields(fields["Uid"]); len(uids) != 4 || uids[0] != u.Uid || uids[1] != u.Uid {
		t.Fatalf("proxy runs with Uid %q, want %s", fields["Uid"], u.Uid)
	}
	for _, set := range []string{"CapEff", "CapPrm", "CapBnd", "CapAmb"} {
		v, err := strconv.ParseUint(fields[set], 16, 64)
		if err != nil || v != capNetBindService {
			t.Fatalf("%s = %q, want only CAP_NET_BIND_SERVICE (%x)", set, fields[set], capNetBindService)
		}
	}
	if fields["NoNewPrivs"] != "1" {
		t.Fatalf("NoNewPrivs = %q", fields["NoNewPrivs"])
	}
}

// certName is the DNS name in the certificate postinst generated.
func certName(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(debCert)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM block", debCert)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil || len(c.DNSNames) == 0 {
		t.Fatalf("%s: %v, names %v", debCert, err, c)
	}
	return c.DNSNames[0]
}

// freePrivilegedPort returns a port below 1024 on 127.0.0.1 that root could bind a moment
// ago (tests never use fixed ports). It starts at 1000: the proxy package's hostile corpus,
// which runs in parallel with e2e, binds 127.0.0.1:1023 as a trap for PORT to a privileged
// port.
func freePrivilegedPort(t *testing.T) int {
	t.Helper()
	for p := 1000; p >= 600; p-- {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err == nil {
			ln.Close()
			return p
		}
	}
	t.Fatal("no free port in 600-1000")
	return 0
}

// worldReadableDir is a temporary directory the ftpsproxy user can read.
func worldReadableDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ftpsproxy-deb-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// purgeDeb removes the package with its config and user, and checks they are gone.
func purgeDeb(t *testing.T) {
	run(t, "dpkg", "--purge", "ftpsproxy")
	for _, p := range []string{debBinary, debUnit, "/etc/ftpsproxy", "/var/lib/ftpsproxy", "/etc/logrotate.d/ftpsproxy"} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s still exists after dpkg --purge", p)
		}
	}
	if _, err := user.Lookup("ftpsproxy"); err == nil {
		t.Error("user ftpsproxy still exists after dpkg --purge")
	}
}

// run runs a command and returns its combined output, failing the test on error.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// runAs runs a command as account (through setpriv, with no capabilities for a non-root
// account) and returns its combined output, failing the test on error.
func runAs(t *testing.T, account string, name string, args ...string) string {
	t.Helper()
	if account == "root" {
		return run(t, name, args...)
	}
	return run(t, "setpriv", append([]string{"--reuid=" + account, "--regid=" + account, "--init-groups",
		"--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--", name}, args...)...)
}
