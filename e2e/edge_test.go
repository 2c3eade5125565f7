package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/internal/peers"
	"github.com/ftpsproxy/ftpsproxy/internal/testpki"
)

// The hosting edge (issue 17): certificates by SNI, client certificates, allow/deny lists.
// The announced-port and per-network address tests are in edgens_test.go.

// edgeFarm is the pool "farm" of one backend and limits that never get in a test's way.
func edgeFarm(backend string) string {
	return fmt.Sprintf(`
[[pool]]
name = "farm"
policy = "round_robin"
health_interval = "0s"

[[pool.backend]]
address = %q

[limits]
max_sessions_per_ip = 500
logins_per_minute = 0
attempts_per_minute = 0

[log]
level = "debug"
`, backend)
}

// edgeProxyConfig is one explicit-FTPS listener in front of backend, with [tls] keys tlsKeys
// and extra keys for the listener (listenerKeys) and the rest of the file (extra).
func edgeProxyConfig(t *testing.T, listen, backend, listenerKeys, tlsKeys, extra string) string {
	return fmt.Sprintf(`[[listener]]
address = %q
tls = "explicit"
pool = "farm"
%s
[tls]
%s
[data]
port_range = %q
connect_timeout = "10s"
`, listen, listenerKeys, tlsKeys, freeRange(t, 40)) + edgeFarm(backend) + extra
}

// sClientLeaf runs openssl s_client with AUTH TLS against addr, with SNI name (none when
// empty), and returns the SHA-256 fingerprint of the certificate the proxy sent.
func sClientLeaf(t *testing.T, addr, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	args := []string{"s_client", "-connect", addr, "-starttls", "ftp"}
	if name == "" {
		args = append(args, "-noservername")
	} else {
		args = append(args, "-servername", name)
	}
	sc := exec.CommandContext(ctx, "openssl", args...)
	sc.Stdin = strings.NewReader("")
	pemOut, err := sc.Output()
	if err != nil {
		t.Fatalf("openssl s_client -servername %q: %v\n%s", name, err, pemOut)
	}
	x := exec.CommandContext(ctx, "openssl", "x509", "-noout", "-fingerprint", "-sha256")
	x.Stdin = strings.NewReader(string(pemOut))
	out, err := x.CombinedOutput()
	if err != nil {
		t.Fatalf("openssl x509 for %q: %v\n%s", name, err, out)
	}
	_, fp, _ := strings.Cut(strings.TrimSpace(string(out)), "=")
	return strings.ToLower(strings.ReplaceAll(fp, ":", ""))
}

// TestEdgeCertificatesBySNI serves 50 customer domains from a cert_dir (pairs and
// combined .pem files, some with wildcard SANs) plus a [[tls.certificate]]:
// openssl s_client sees the right certificate for every name and the default without SNI;
// a pair added then SIGHUP is served at once; curl verifying the name transfers through
// it; a broken pair is a -check error naming the file.
func TestEdgeCertificatesBySNI(t *testing.T) {
	ca := testpki.NewCA(t, "hoster CA")
	dir := t.TempDir()
	want := ca.WriteDomains(t, dir, 50, "ftp.customer%02d.example")
	def := ca.Server(t, 0, "ftp.hoster.example")
	def.WritePEM(t, dir, "hoster")
	extra := ca.Server(t, 0, "ftp.partner.example")
	extraCert, extraKey := extra.WritePair(t, t.TempDir(), "partner")
	want["ftp.partner.example"] = extra.Fingerprint()
	want[""] = def.Fingerprint()
	want["unknown.example"] = def.Fingerprint()

	vs := peers.StartVsftpd(t, peers.Options{})
	listen := freeAddr(t)
	cfg := edgeProxyConfig(t, listen, vs.Addr, "", fmt.Sprintf(`cert_dir = %q
default_certificate = "hoster"

[[tls.certificate]]
cert_file = %q
key_file = %q
`, dir, extraCert, extraKey), "")
	p := startProxy(t, cfg)
	start := time.Now()
	for name, fp := range want {
		if got := sClientLeaf(t, listen, name); got != fp {
			t.Errorf("SNI %q: got certificate %s, want %s", name, got, fp)
		}
	}
	t.Logf("%d s_client handshakes in %v", len(want), time.Since(start).Round(time.Millisecond))

	// A new customer: drop the pair in and SIGHUP.
	added := ca.Server(t, 0, "ftp.newcustomer.example")
	added.WritePair(t, dir, "ftp.newcustomer.example")
	if got := sClientLeaf(t, listen, "ftp.newcustomer.example"); got != def.Fingerprint() {
		t.Fatal("the new pair was served before the reload")
	}
	p.signal(syscall.SIGHUP)
	waitLog(t, p, "config reloaded")
	if got := sClientLeaf(t, listen, "ftp.newcustomer.example"); got != added.Fingerprint() {
		t.Fatal("the new pair is not served after SIGHUP")
	}

	// curl verifies the certificate against the name on control and data connections.
	caFile := ca.WriteCA(t, t.TempDir(), "ca.pem")
	_, port, _ := net.SplitHostPort(listen)
	tmp := t.TempDir()
	src, data := randomData(t, tmp, "src", 300<<10)
	for _, name := range []string{"ftp.customer07.example", "x.ftp.customer20.example", "ftp.newcustomer.example"} {
		url := "ftp://" + name + ":" + port + "/" + name + ".bin"
		args := []string{"--resolve", name + ":" + port + ":127.0.0.1", "--cacert", caFile, "--ssl-reqd", "--user", peers.User + ":" + peers.Password}
		dst := filepath.Join(tmp, name)
		for _, a := range [][]string{{"-T", src, url}, {"-o", dst, url}} {
			if out, err := peers.Curl(edgeCtx(t), append(append([]string{}, args...), a...)...); err != nil {
				t.Fatalf("curl %s: %v\n%s", name, err, out)
			}
		}
		if fileSum(t, dst) != sum(data) || fileSum(t, filepath.Join(vs.Root, name+".bin")) != sum(data) {
			t.Fatalf("%s: transfer corrupted", name)
		}
	}

	// A pair that does not load: -check names the file and exits 1.
	os.WriteFile(filepath.Join(dir, "ftp.broken.example.pem"), []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o600)
	check := exec.Command(binary, "-config", p.cfg, "-check")
	out, err := check.CombinedOutput()
	if code := check.ProcessState.ExitCode(); err == nil || code != 1 || !strings.Contains(string(out), "ftp.broken.example.pem") {
		t.Fatalf("-check with a broken pair: exit %d, %v\n%s", code, err, out)
	}
	// And a reload refuses it, keeping the certificates in use.
	p.signal(syscall.SIGHUP)
	waitLog(t, p, "reload refused")
	if got := sClientLeaf(t, listen, "ftp.customer33.example"); got != want["ftp.customer33.example"] {
		t.Fatal("a refused reload changed the certificates")
	}
}

func edgeCtx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

// TestEdgeClientCertificates: client_auth = "required" with client_cert_user = "cn" in front
// of vsftpd. curl --cert and lftp ssl:cert-file with a certificate for the test user
// transfer (sha256-checked); a certificate for another name gets 530; no certificate fails
// the handshake; the log records the reasons and the certificate subject.
func TestEdgeClientCertificates(t *testing.T) {
	ca := testpki.NewCA(t, "server CA")
	clients := testpki.NewCA(t, "client CA")
	dir := t.TempDir()
	serverCert, serverKey := ca.Server(t, 0, "localhost").WritePair(t, dir, "server")
	caFile := ca.WriteCA(t, dir, "server-ca.pem")
	clientCA := clients.WriteCA(t, dir, "client-ca.pem")
	userCert, userKey := clients.Client(t, peers.User, peers.User+"@example.com").WritePair(t, dir, "user")
	otherCert, otherKey := clients.Client(t, "mallory").WritePair(t, dir, "mallory")

	vs := peers.StartVsftpd(t, peers.Options{})
	listen := freeAddr(t)
	p := startProxy(t, edgeProxyConfig(t, listen, vs.Addr, "", fmt.Sprintf(`cert_file = %q
key_file = %q
client_auth = "required"
client_ca_file = %q
client_cert_user = "cn"
`, serverCert, serverKey, clientCA), ""))
	_, port, _ := net.SplitHostPort(listen)
	base := "ftp://localhost:" + port + "/"
	tmp := t.TempDir()
	src, data := randomData(t, tmp, "src", 512<<10)

	t.Run("curl with the user's certificate", func(t *testing.T) {
		args := []string{"--cacert", caFile, "--ssl-reqd", "--cert", userCert, "--key", userKey, "--user", peers.User + ":" + peers.Password}
		dst := filepath.Join(tmp, "curl-down")
		for _, mode := range []string{"--disable-epsv", "--ftp-pasv"} {
			for _, a := range [][]string{{"-T", src, base + "curl.bin"}, {"-o", dst, base + "curl.bin"}} {
				if out, err := peers.Curl(edgeCtx(t), append(append([]string{mode}, args...), a...)...); err != nil {
					t.Fatalf("curl %s: %v\n%s", mode, err, out)
				}
			}
			if fileSum(t, dst) != sum(data) || fileSum(t, filepath.Join(vs.Root, "curl.bin")) != sum(data) {
				t.Fatal("curl transfer corrupted")
			}
		}
	})
	t.Run("lftp with the user's certificate", func(t *testing.T) {
		dst := filepath.Join(tmp, "lftp-down")
		script := fmt.Sprintf(`set ftp:ssl-force yes
set ftp:ssl-protect-data yes
set ssl:ca-file %s
set ssl:cert-file %s
set ssl:key-file %s
open -u %s,%s ftp://localhost:%s
put %s -o lftp.bin
get lftp.bin -o %s
`, caFile, userCert, userKey, peers.User, peers.Password, port, src, dst)
		if out, err := peers.Lftp(edgeCtx(t), script); err != nil {
			t.Fatalf("lftp: %v\n%s", err, out)
		}
		if fileSum(t, dst) != sum(data) || fileSum(t, filepath.Join(vs.Root, "lftp.bin")) != sum(data) {
			t.Fatal("lftp transfer corrupted")
		}
	})
	t.Run("certificate of another user", func(t *testing.T) {
		out, err := peers.Curl(edgeCtx(t), "--cacert", caFile, "--ssl-reqd", "--cert", otherCert, "--key", otherKey,
			"--user", peers.User+":"+peers.Password, base)
		if err == nil || !strings.Contains(out, "530") {
			t.Fatalf("curl with mallory's certificate: %v\n%s", err, out)
		}
		script := fmt.Sprintf("set ftp:ssl-force yes\nset ssl:ca-file %s\nset ssl:cert-file %s\nset ssl:key-file %s\nopen -u %s,%s ftp://localhost:%s\nls\n",
			caFile, otherCert, otherKey, peers.User, peers.Password, port)
		if out, err := peers.Lftp(edgeCtx(t), script); err == nil || !strings.Contains(out, "530") {
			t.Fatalf("lftp with mallory's certificate: %v\n%s", err, out)
		}
	})
	t.Run("no certificate", func(t *testing.T) {
		out, err := peers.Curl(edgeCtx(t), "--cacert", caFile, "--ssl-reqd", "--user", peers.User+":"+peers.Password, base)
		if err == nil {
			t.Fatalf("curl without a certificate logged in:\n%s", out)
		}
	})
	wants := []string{
		`cert_subject="CN=ftptest,O=ftpsproxy tests"`,
		`msg="login refused by client certificate"`, `certificate CN \"mallory\" is not the user name`,
		`msg="client TLS handshake failed"`, "client didn't provide a certificate",
	}
	// The proxy logs a failed handshake after the client gave up, maybe after curl exited.
	deadline := time.Now().Add(5 * time.Second)
	for _, want := range wants {
		for !strings.Contains(p.logs.String(), want) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if !strings.Contains(p.logs.String(), want) {
			t.Errorf("proxy log lacks %s", want)
		}
	}
	if strings.Contains(vs.Log(), "mallory") {
		t.Error("vsftpd saw the refused session")
	}
}

// TestEdgeAllowDeny: listener.deny refuses 127.0.0.2 with the 421 before any backend is
// contacted (counted as denied in /metrics); route.deny refuses 127.0.0.3 for the test
// user's route; others transfer.
func TestEdgeAllowDeny(t *testing.T) {
	vs := peers.StartVsftpd(t, peers.Options{})
	listen, admin := freeAddr(t), freeAddr(t)
	cfg := plainProxyConfig(t, vs.Addr, "passive", fmt.Sprintf(`
[admin]
address = %q

[[route]]
user = %q
pool = "farm"
deny = ["127.0.0.3"]
`, admin, peers.User))
	cfg = strings.Replace(cfg, `tls = "none"`, "tls = \"none\"\nallow = [\"127.0.0.0/8\"]\ndeny = [\"127.0.0.2/32\"]", 1)
	cfg = strings.Replace(cfg, "address = \""+listenAddrOf(cfg)+"\"", "address = \""+listen+"\"", 1)
	p := startProxy(t, cfg)

	d := netDialer("127.0.0.2")
	c, err := d.Dial("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	c.Close()
	if err != nil || string(b) != "421 Service not available, closing control connection\r\n" {
		t.Fatalf("denied client got %q, %v", b, err)
	}
	// curl reports a 421 as "(28) Timeout was reached"; -v shows the reply itself.
	const denied = "< 421 Service not available, closing control connection"
	out, err := peers.Curl(edgeCtx(t), "-v", "--interface", "127.0.0.2", "--user", peers.User+":"+peers.Password, "ftp://"+listen+"/")
	if err == nil || !strings.Contains(out, denied) || strings.Contains(out, "< 220") {
		t.Fatalf("curl from a denied address: %v\n%s", err, out)
	}
	out, err = peers.Curl(edgeCtx(t), "-v", "--interface", "127.0.0.3", "--user", peers.User+":"+peers.Password, "ftp://"+listen+"/")
	if err == nil || !strings.Contains(out, denied) {
		t.Fatalf("curl from an address the route denies: %v\n%s", err, out)
	}
	tmp := t.TempDir()
	src, data := randomData(t, tmp, "src", 256<<10)
	dst := filepath.Join(tmp, "down")
	for _, a := range [][]string{{"-T", src, "ftp://" + listen + "/ok.bin"}, {"-o", dst, "ftp://" + listen + "/ok.bin"}} {
		if out, err := peers.Curl(edgeCtx(t), append([]string{"--interface", "127.0.0.4", "--user", peers.User + ":" + peers.Password}, a...)...); err != nil {
			t.Fatalf("curl from an allowed address: %v\n%s", err, out)
		}
	}
	if fileSum(t, dst) != sum(data) {
		t.Fatal("transfer corrupted")
	}
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(m), `ftpsproxy_closed_421_total{cause="denied"} 3`) {
		t.Fatalf("metrics do not count 3 denied sessions:\n%s", m)
	}
	if n := strings.Count(vs.Log(), "127.0.0.2"); n != 0 {
		t.Fatalf("vsftpd saw the denied client %d times", n)
	}
	logs := p.logs.String()
	if !strings.Contains(logs, `msg="client refused"`) || !strings.Contains(logs, "reason=route.allow/deny") {
		t.Fatalf("refusals not logged:\n%s", logs)
	}
}
