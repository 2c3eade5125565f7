package pebble

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/internal/peers"
)

const (
	// Module and Version are the pebble release that is installed and run.
	Module  = "github.com/letsencrypt/pebble/v2"
	Version = "v2.10.1"
)

// Options configures Start. The zero value picks free loopback ports for everything.
type Options struct {
	// HTTPPort is the port pebble's HTTP-01 validation connects to (on 127.0.0.1, where
	// the DNS sends every name): the port of the ACME client's challenge server. Zero
	// means a free port, which Env.HTTPPort then reports.
	HTTPPort int
}

// Env is a running pebble with its DNS server. Its fields are read-only.
type Env struct {
	// Directory is the ACME directory URL, https://127.0.0.1:PORT/dir.
	Directory string
	// Mgmt is the base URL of pebble's management API, https://127.0.0.1:PORT.
	Mgmt string
	// MinicaRoot is the PEM file of the root of pebble's own HTTPS certificate: what an
	// ACME client must trust to talk to Directory (certmagic's TrustedRoots, the proxy's
	// tls.acme.ca_root). It lies in the read-only module cache.
	MinicaRoot string
	// HTTPPort is where pebble validates HTTP-01, and HTTPAddress is 127.0.0.1:HTTPPort.
	HTTPPort    int
	HTTPAddress string
	// DNSPort is pebble-challtestsrv's DNS server on 127.0.0.1 (UDP and TCP).
	DNSPort int
	// Client is an HTTP client that trusts MinicaRoot.
	Client *http.Client

	out *lockedBuffer
}

// Log is the output of pebble and pebble-challtestsrv so far.
func (e *Env) Log() string { return e.out.String() }

// Orders is the number of orders pebble has created so far.
func (e *Env) Orders() int { return strings.Count(e.out.String(), "Added order") }

// Get fetches url (pebble's API or management API) and fails the test unless it
// answers 200.
func (e *Env) Get(t testing.TB, url string) []byte {
	t.Helper()
	resp, err := e.Client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v", url, resp.Status, err)
	}
	return b
}

// IssuerRootPEM is the root of the certificates pebble issues (management endpoint
// /roots/0). Pebble makes a new one on every start.
func (e *Env) IssuerRootPEM(t testing.TB) []byte {
	t.Helper()
	return e.Get(t, e.Mgmt+"/roots/0")
}

// IssuerRoots is a pool with the root of the certificates pebble issues, for a TLS
// client verifying a server certificate obtained from this pebble.
func (e *Env) IssuerRoots(t testing.TB) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(e.IssuerRootPEM(t)) {
		t.Fatalf("no PEM certificate at %s/roots/0", e.Mgmt)
	}
	return pool
}

// Resolver resolves through pebble-challtestsrv's DNS (every name: 127.0.0.1).
func (e *Env) Resolver() *net.Resolver {
	addr := fmt.Sprintf("127.0.0.1:%d", e.DNSPort)
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", addr)
	}}
}

// Start runs pebble and pebble-challtestsrv on free loopback ports until the test ends,
// and waits until the DNS answers and the ACME directory is served. On a failed test the
// tail of their log is printed.
func Start(t testing.TB, o Options) *Env {
	t.Helper()
	pebbleBin, challBin := binaries(t)
	modDir := moduleDir(t)

	dnsPort := freeUDPTCPPort(t)
	httpPort := o.HTTPPort
	if httpPort == 0 {
		httpPort = freePort(t)
	}
	acmeAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	mgmtAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	e := &Env{
		Directory:   "https://" + acmeAddr + "/dir",
		Mgmt:        "https://" + mgmtAddr,
		MinicaRoot:  filepath.Join(modDir, "test", "certs", "pebble.minica.pem"),
		HTTPPort:    httpPort,
		HTTPAddress: fmt.Sprintf("127.0.0.1:%d", httpPort),
		DNSPort:     dnsPort,
		out:         &lockedBuffer{},
	}

	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":                  acmeAddr,
		"managementListenAddress":        mgmtAddr,
		"certificate":                    filepath.Join(modDir, "test", "certs", "localhost", "cert.pem"),
		"privateKey":                     filepath.Join(modDir, "test", "certs", "localhost", "key.pem"),
		"httpPort":                       httpPort,
		"tlsPort":                        freePort(t), // nobody answers TLS-ALPN-01 there
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"retryAfter":                     map[string]int{"authz": 1, "order": 1},
		"keyAlgorithm":                   "ecdsa",
		"profiles": map[string]any{
			"default": map[string]any{"description": "90 days", "validityPeriod": 90 * 24 * 3600},
		},
	}}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(t.TempDir(), "pebble-config.json")
	if err := os.WriteFile(cfgFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pebble log:\n%s", tail(e.out.String(), 100))
		}
	})

	// Only the DNS part of the challenge test server: A queries answer 127.0.0.1, AAAA
	// nothing (pebble dials the first address it gets, and AAAA comes first).
	startProcess(t, e.out, challBin,
		"-dnsserver", fmt.Sprintf("127.0.0.1:%d", dnsPort),
		"-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
		"-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "",
		"-management", fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	startProcess(t, e.out, pebbleBin, "-config", cfgFile,
		"-dnsserver", fmt.Sprintf("127.0.0.1:%d", dnsPort))

	rootPEM, err := os.ReadFile(e.MinicaRoot)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(rootPEM) {
		t.Fatalf("no PEM certificate in %s", e.MinicaRoot)
	}
	e.Client = &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	t.Cleanup(e.Client.CloseIdleConnections)

	// Ready when the DNS answers and the directory is served.
	r := e.Resolver()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		addrs, err := r.LookupHost(ctx, "ready.test.example")
		cancel()
		if err == nil && len(addrs) > 0 && addrs[0] == "127.0.0.1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble-challtestsrv DNS not answering: %v %v\n%s", addrs, err, e.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for {
		resp, err := e.Client.Get(e.Directory)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble not serving %s: %v\n%s", e.Directory, err, e.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return e
}

// startProcess runs a helper until the test ends, its output into out.
func startProcess(t testing.TB, out io.Writer, bin string, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
}

// binaries returns pebble and pebble-challtestsrv, installed with `go install` into a
// cache directory the first time and reused afterwards. They are installed into a
// directory of their own and renamed into place, so test binaries installing at the same
// time (go test runs packages in parallel) never see a half-written file.
func binaries(t testing.TB) (pebble, challtestsrv string) {
	t.Helper()
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	dir := filepath.Join(base, "ftpsproxy-test-bin", "pebble-"+Version)
	pebble = filepath.Join(dir, "pebble")
	challtestsrv = filepath.Join(dir, "pebble-challtestsrv")
	if isFile(pebble) && isFile(challtestsrv) {
		return pebble, challtestsrv
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp, err := os.MkdirTemp(dir, "install-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	t0 := time.Now()
	goTool(t, []string{"GOBIN=" + tmp}, "install",
		Module+"/cmd/pebble@"+Version,
		Module+"/cmd/pebble-challtestsrv@"+Version)
	for _, name := range []string{"pebble", "pebble-challtestsrv"} {
		if err := os.Rename(filepath.Join(tmp, name), filepath.Join(dir, name)); err != nil {
			t.Fatalf("go install did not produce %s: %v", name, err)
		}
	}
	t.Logf("installed pebble %s into %s in %v", Version, dir, time.Since(t0).Round(time.Millisecond))
	return pebble, challtestsrv
}

// moduleDir returns pebble's module directory (its test certificates), downloading the
// module if needed, outside this module so go.mod is not touched.
func moduleDir(t testing.TB) string {
	t.Helper()
	out := goTool(t, nil, "mod", "download", "-json", Module+"@"+Version)
	var m struct{ Dir, Error string }
	if err := json.Unmarshal(out, &m); err != nil || m.Dir == "" {
		t.Fatalf("locating %s@%s: %v %s\n%s", Module, Version, err, m.Error, out)
	}
	return m.Dir
}

// goTool runs the go command in an empty directory (no go.mod in scope).
func goTool(t testing.TB, env []string, args ...string) []byte {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("pebble: the go command is needed to install pebble: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off", "GOTOOLCHAIN=local")
	cmd.Env = append(cmd.Env, env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cannot get pebble: go %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return out
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// freePort is peers.FreePort: a port no other helper of this test process was given
// (bind(:0) hands the same port out again at once on current kernels).
func freePort(t testing.TB) int {
	t.Helper()
	return peers.FreePort(t)
}

// freeUDPTCPPort returns a loopback port free for both UDP and TCP (a DNS server binds both).
func freeUDPTCPPort(t testing.TB) int {
	t.Helper()
	for range 20 {
		port := peers.FreePort(t)
		pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			pc.Close()
			return port
		}
	}
	t.Fatal("no port free for both UDP and TCP")
	return 0
}

func tail(s string, lines int) string {
	ls := strings.Split(s, "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
