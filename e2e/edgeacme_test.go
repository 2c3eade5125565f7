package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/internal/pebble"
	"github.com/ftpsproxy/ftpsproxy/internal/peers"
)

// sClientVerify runs openssl s_client with AUTH TLS and SNI name, verifying the chain against
// rootFile and the name; it returns s_client's output and whether verification passed.
func sClientVerify(t *testing.T, addr, name, rootFile string) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sc := exec.CommandContext(ctx, "openssl", "s_client", "-connect", addr, "-starttls", "ftp",
		"-servername", name, "-CAfile", rootFile, "-verify_hostname", name, "-verify_return_error", "-showcerts")
	sc.Stdin = strings.NewReader("")
	out, err := sc.CombinedOutput()
	return string(out), err == nil && strings.Contains(string(out), "Verify return code: 0 (ok)")
}

// TestEdgeACMEOnDemand runs the binary with [tls.acme] for one domain and on-demand issuance
// for a second (allow list) and a third (the ask service says yes) against pebble: openssl
// s_client verifies a chain to pebble's root for each of the three names; the ask service's
// "no" and the rate limit leave other names without a certificate; curl transfers through
// an on-demand name, verifying it on control and data connections.
func TestEdgeACMEOnDemand(t *testing.T) {
	ca := pebble.Start(t, pebble.Options{})
	vs := peers.StartVsftpd(t, peers.Options{})
	rootFile := filepath.Join(t.TempDir(), "root.pem")
	if err := os.WriteFile(rootFile, ca.IssuerRootPEM(t), 0o644); err != nil {
		t.Fatal(err)
	}
	ask := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("domain") != "c.test.example" {
			http.Error(w, "not a customer", http.StatusForbidden)
		}
	}))
	defer ask.Close()
	listen := freeAddr(t)
	cfg := fmt.Sprintf(`[[listener]]
address = %q
tls = "explicit"
pool = "farm"

[tls.acme]
domains = ["a.test.example"]
email = "ops@test.example"
ca = %q
ca_root = %q
storage = %q
http_address = %q

[tls.acme.on_demand]
allow = ["b.test.example", "*.burst.example"]
ask = %q
per_minute = 1
burst = 2

[data]
port_range = %q
connect_timeout = "10s"
`, listen, ca.Directory, ca.MinicaRoot, t.TempDir(), ca.HTTPAddress, ask.URL, freeRange(t, 20)) + edgeFarm(vs.Addr)
	p := startProxy(t, cfg)
	for _, name := range []string{"a.test.example", "b.test.example", "c.test.example"} {
		if out, ok := sClientVerify(t, listen, name, rootFile); !ok {
			t.Fatalf("%s: no verified chain:\n%s", name, out)
		}
	}
	if n := ca.Orders(); n != 3 {
		t.Fatalf("pebble saw %d orders, want 3", n)
	}
	// Refused by the ask service; then allowed but over the burst of 2 issuances.
	for _, name := range []string{"d.test.example", "x.burst.example"} {
		if out, ok := sClientVerify(t, listen, name, rootFile); ok {
			t.Fatalf("%s: a verified certificate was served:\n%s", name, out)
		}
	}
	if n := ca.Orders(); n != 3 {
		t.Fatalf("pebble saw %d orders after refused names, want 3", n)
	}
	logs := p.logs.String()
	for _, want := range []string{"ask answered 403 Forbidden", "issuance rate limit reached", `msg="acme on-demand certificate permitted" domain=c.test.example`} {
		if !strings.Contains(logs, want) {
			t.Errorf("proxy log lacks %q", want)
		}
	}

	_, port, _ := net.SplitHostPort(listen)
	tmp := t.TempDir()
	src, data := randomData(t, tmp, "src", 256<<10)
	dst := filepath.Join(tmp, "down")
	url := "ftp://c.test.example:" + port + "/ondemand.bin"
	args := []string{"--resolve", "c.test.example:" + port + ":127.0.0.1", "--cacert", rootFile, "--ssl-reqd", "--user", peers.User + ":" + peers.Password}
	for _, a := range [][]string{{"-T", src, url}, {"-o", dst, url}} {
		if out, err := peers.Curl(edgeCtx(t), append(append([]string{}, args...), a...)...); err != nil {
			t.Fatalf("curl: %v\n%s", err, out)
		}
	}
	if fileSum(t, dst) != sum(data) {
		t.Fatal("transfer corrupted")
	}
}
