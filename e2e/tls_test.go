package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ftpsproxy/ftpsproxy/internal/peers"
	"github.com/ftpsproxy/ftpsproxy/tlsterm"
)

// proxyCert writes a self-signed certificate for 127.0.0.1 and returns the file paths and a
// client config trusting it.
func proxyCert(t testing.TB) (certFile, keyFile string, cc *tls.Config) {
	t.Helper()
	return proxyCertFor(t, "127.0.0.1", "localhost")
}

// proxyCertFor is proxyCert for other hosts (the first is the client config's ServerName).
func proxyCertFor(t testing.TB, hosts ...string) (certFile, keyFile string, cc *tls.Config) {
	t.Helper()
	cert, certPEM, err := tlsterm.SelfSigned(hosts...)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, certPEM, 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return certFile, keyFile, &tls.Config{RootCAs: pool, ServerName: hosts[0], ClientSessionCache: tls.NewLRUClientSessionCache(8)}
}

// tlsProxy runs a proxy with one listener per client TLS mode in front of backend s, whose
// leg uses backendTLS. It returns the listeners' addresses by mode.
type tlsProxy struct {
	*proxyProc
	addrs  map[string]string
	caFile string
	cc     *tls.Config
}

func startTLSProxy(t *testing.T, s *peers.Server, backendTLS string, modes []string, extra string) *tlsProxy {
	t.Helper()
	certFile, keyFile, cc := proxyCert(t)
	var b strings.Builder
	addrs := map[string]string{}
	for _, m := range modes {
		addrs[m] = freeAddr(t)
		fmt.Fprintf(&b, "[[listener]]\naddress = %q\ntls = %q\npool = \"farm\"\n\n", addrs[m], m)
	}
	fmt.Fprintf(&b, `[tls]
cert_file = %q
key_file = %q
%s
[data]
port_range = %q
connect_timeout = "10s"

[[pool]]
name = "farm"
policy = "round_robin"
health_interval = "0s"

[[pool.backend]]
address = %q
tls = %q
tls_verify = true
ca_file = %q
tls_server_name = "localhost"

[limits]
max_sessions_per_ip = 500
logins_per_minute = 0
attempts_per_minute = 0

[log]
level = "debug"
`, certFile, keyFile, extra, freeRange(t, 40), s.Addr, backendTLS, s.CertFile)
	p := startProxy(t, b.String())
	return &tlsProxy{proxyProc: p, addrs: addrs, caFile: certFile, cc: cc}
}

func peerTLS(mode string) peers.TLSMode {
	switch mode {
	case "explicit":
		return peers.TLSExplicit
	case "implicit":
		return peers.TLSImplicit
	}
	return peers.TLSNone
}

// TestTLSMatrix runs the client suites over protected control and data connections for the
// legs explicit→none, required→none, implicit→none, explicit→explicit, none→explicit and
// implicit→implicit, against every real server that has the backend mode. Backends that can
// require data-session reuse (vsftpd require_ssl_reuse, ProFTPD mod_tls) do.
func TestTLSMatrix(t *testing.T) {
	legs := []struct {
		backend string
		clients []string // listener modes
	}{
		{"none", []string{"explicit", "required", "implicit"}},
		{"explicit", []string{"explicit", "none"}},
		{"implicit", []string{"implicit"}},
	}
	for _, srv := range servers {
		for _, leg := range legs {
			if leg.backend == "implicit" && srv.name == "pure-ftpd" {
				continue // pure-ftpd has no implicit FTPS
			}
			t.Run(srv.name+"/backend-"+leg.backend, func(t *testing.T) {
				s := srv.start(t, peers.Options{TLS: peerTLS(leg.backend), RequireReuse: leg.backend != "none", ForceTLS: leg.backend != "none"})
				p := startTLSProxy(t, s, leg.backend, leg.clients, "")
				for _, mode := range leg.clients {
					clientTLS := mode
					if mode == "required" {
						clientTLS = "explicit"
					}
					tg := target{addr: p.addrs[mode], root: s.Root, hasMLSD: s.HasMLSD, tls: clientTLS, caFile: p.caFile, tlsConf: p.cc, fileSize: 1 << 20}
					t.Run(mode+"/go/epsv", func(t *testing.T) { goSuite(t, tg, true) })
					t.Run(mode+"/go/pasv", func(t *testing.T) { goSuite(t, tg, false) })
					t.Run(mode+"/curl/epsv", func(t *testing.T) { curlSuite(t, tg, "epsv") })
					if clientTLS == "none" {
						t.Run(mode+"/curl/port", func(t *testing.T) { curlSuite(t, tg, "port") })
					}
					t.Run(mode+"/lftp/epsv", func(t *testing.T) { lftpSuite(t, tg, "epsv") })
					t.Run(mode+"/lftp/port", func(t *testing.T) { lftpSuite(t, tg, "port") })
					t.Run(mode+"/ftplib/pasv", func(t *testing.T) { ftplibSuite(t, tg, "pasv") })
					t.Run(mode+"/ftplib/port", func(t *testing.T) { ftplibSuite(t, tg, "port") })
				}
				big := target{addr: p.addrs[leg.clients[0]], root: s.Root, tls: leg.clients[0], caFile: p.caFile, tlsConf: p.cc, fileSize: 100 << 20}
				if big.tls == "required" {
					big.tls = "explicit"
				}
				t.Run(leg.clients[0]+"/go/100MiB", func(t *testing.T) { goSuite(t, big, true) })
				noPassword(t, p.proxyProc)
			})
		}
	}
}

// TestTLS13Uploads: 20 curl uploads of 10 MiB over a TLS 1.3 PROT P data channel arrive
// whole, both to a plain backend and to a TLS 1.3 backend (ProFTPD, reuse required; the proxy
// half-closes and drains before closing). The proxy sends no session ticket on upload data
// connections, because an unread ticket can turn a client's close into a reset that cuts the
// upload (NOTES.md); on this machine curl did not lose data even with tickets sent, so this
// test guards the outcome rather than proving that cause.
func TestTLS13Uploads(t *testing.T) {
	for _, backend := range []string{"none", "explicit"} {
		t.Run("backend-"+backend, func(t *testing.T) {
			s := peers.StartProFTPD(t, peers.Options{TLS: peerTLS(backend), RequireReuse: backend != "none"})
			p := startTLSProxy(t, s, backend, []string{"explicit"}, `min_version = "1.3"`)
			tmp := t.TempDir()
			src, data := randomData(t, tmp, "src", 10<<20)
			truncated := 0
			for i := range 20 {
				name := fmt.Sprintf("up%02d.bin", i)
				out, err := peers.Curl(ctx(t), "--ssl-reqd", "--tlsv1.3", "--cacert", p.caFile,
					"--user", peers.User+":"+peers.Password, "-T", src, "ftp://"+p.addrs["explicit"]+"/"+name)
				if err != nil {
					t.Fatalf("upload %d: %v\n%s", i, err, out)
				}
				if fileSum(t, filepath.Join(s.Root, name)) != sum(data) {
					truncated++
				}
			}
			if truncated != 0 {
				t.Fatalf("%d of 20 uploads arrived damaged", truncated)
			}
			logs := p.logs.String()
			if !strings.Contains(logs, `msg="client TLS established"`) || !strings.Contains(logs, `tls_version="TLS 1.3"`) {
				t.Fatal("the client leg did not run TLS 1.3")
			}
			if backend != "none" && !strings.Contains(logs, `msg="backend TLS established"`) {
				t.Fatal("no backend TLS in the logs")
			}
		})
	}
}

// stockFtplib is Python's ftplib.FTP_TLS as shipped: its data connections do not resume the
// control connection's TLS session.
const stockFtplib = `
import ftplib, hashlib, io, ssl, sys
host, port, cafile, local = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=cafile)
ctx.check_hostname = False
f = ftplib.FTP_TLS(context=ctx)
f.connect(host, port, timeout=30)
f.auth()
f.login(sys.argv[5], sys.argv[6])
f.prot_p()
data = open(local, "rb").read()
try:
    f.storbinary("STOR stock.bin", io.BytesIO(data))
    buf = io.BytesIO()
    f.retrbinary("RETR stock.bin", buf.write)
    print("ok", hashlib.sha256(buf.getvalue()).hexdigest())
except ftplib.error_perm as e:
    print("refused", str(e)[:3])
    print("noop", f.voidcmd("NOOP")[:3])
except (ssl.SSLError, OSError):
    # The proxy closed the refused data connection; its final reply is still to be read.
    try:
        f.getresp()
        print("refused none")
    except ftplib.error_perm as e:
        print("refused", str(e)[:3])
    print("noop", f.voidcmd("NOOP")[:3])
`

// TestDataSessionReuse: with data_session_reuse = "required", curl and lftp (which resume the
// control session on data connections) transfer, and stock ftplib (which does not) gets 522
// while its session goes on; with "optional", stock ftplib transfers.
func TestDataSessionReuse(t *testing.T) {
	s := peers.StartVsftpd(t, peers.Options{})
	for _, reuse := range []string{"required", "optional"} {
		t.Run(reuse, func(t *testing.T) {
			p := startTLSProxy(t, s, "none", []string{"explicit"}, fmt.Sprintf("data_session_reuse = %q", reuse))
			tg := target{addr: p.addrs["explicit"], root: s.Root, tls: "explicit", caFile: p.caFile, tlsConf: p.cc, fileSize: 1 << 20}
			if reuse == "required" {
				t.Run("curl", func(t *testing.T) { curlSuite(t, tg, "epsv") })
				t.Run("lftp", func(t *testing.T) { lftpSuite(t, tg, "epsv") })
			}
			src, data := randomData(t, t.TempDir(), "src", 256<<10)
			host, port, _ := strings.Cut(tg.addr, ":")
			out, err := peers.Python(ctx(t), stockFtplib, host, port, p.caFile, src, peers.User, peers.Password)
			if err != nil {
				t.Fatalf("ftplib: %v\n%s", err, out)
			}
			switch reuse {
			case "required":
				if !strings.Contains(out, "refused 522") || !strings.Contains(out, "noop 200") {
					t.Fatalf("stock ftplib with reuse required: %q", out)
				}
				if _, err := os.Stat(filepath.Join(s.Root, "stock.bin")); !os.IsNotExist(err) {
					t.Fatal("a refused upload reached the backend")
				}
			case "optional":
				if strings.TrimSpace(out) != "ok "+sum(data) {
					t.Fatalf("stock ftplib with reuse optional: %q", out)
				}
			}
		})
	}
}
