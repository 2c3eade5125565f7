package e2e

import (
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

// The announce layout: a LAN client and an internet client, each in its own namespace and
// able to reach only its own side of the proxy, which publishes its passive ports through
// an nftables DNAT (as Docker -p or a Kubernetes NodePort does): announced port = bound
// port + 10000, and the bound ports themselves are closed to the outside.
//
//	lan 198.51.100.2 ── 198.51.100.1 proxy 203.0.113.1 ── 203.0.113.2 wan
//	                    (vsftpd on the proxy's loopback)
//
// The LAN client must get 198.51.100.1 in 227 (data.public_address_override), the internet
// client data.public_address 203.0.113.1: each would fail with the other's address.
const (
	edgeLANClient = "198.51.100.2"
	edgeLANProxy  = "198.51.100.1"
	edgeWANClient = "203.0.113.2"
	edgeWANProxy  = "203.0.113.1"
	edgeFirst     = 20000 // bound passive ports 20000-20039
	edgePorts     = 40
	edgeOffset    = 10000
)

var edgeLeftover = regexp.MustCompile(`^edge-(\d+)-(lan|wan|proxy)$`)

type edgeLayout struct{ lan, wan, proxy string }

// setupEdgeNS builds the namespaces and the DNAT; t.Cleanup deletes them.
func setupEdgeNS(t *testing.T) edgeLayout {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "list").CombinedOutput(); err != nil {
		t.Fatalf("ip netns is unavailable: %v\n%s", err, out)
	} else {
		for _, line := range strings.Split(string(out), "\n") {
			name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
			if m := edgeLeftover.FindStringSubmatch(name); m != nil {
				if pid, _ := strconv.Atoi(m[1]); pid != os.Getpid() && syscall.Kill(pid, 0) == syscall.ESRCH {
					exec.Command("ip", "netns", "del", name).Run()
				}
			}
		}
	}
	p := fmt.Sprintf("edge-%d-", os.Getpid())
	l := edgeLayout{lan: p + "lan", wan: p + "wan", proxy: p + "proxy"}
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	}
	for _, ns := range []string{l.lan, l.wan, l.proxy} {
		exec.Command("ip", "netns", "del", ns).Run()
		run("ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		run("ip", "-n", ns, "link", "set", "lo", "up")
	}
	for _, side := range []struct{ ns, dev, client, proxy string }{
		{l.lan, "to-lan", edgeLANClient, edgeLANProxy},
		{l.wan, "to-wan", edgeWANClient, edgeWANProxy},
	} {
		run("ip", "-n", l.proxy, "link", "add", side.dev, "type", "veth", "peer", "name", "eth0", "netns", side.ns)
		run("ip", "-n", side.ns, "addr", "add", side.client+"/24", "dev", "eth0")
		run("ip", "-n", l.proxy, "addr", "add", side.proxy+"/24", "dev", side.dev)
		run("ip", "-n", side.ns, "link", "set", "eth0", "up")
		run("ip", "-n", l.proxy, "link", "set", side.dev, "up")
	}
	run("ip", "netns", "exec", l.proxy, "sysctl", "-q", "-w", "net.ipv4.ip_forward=0")
	var m []string
	for i := range edgePorts {
		for _, a := range []string{edgeLANProxy, edgeWANProxy} {
			m = append(m, fmt.Sprintf("%s . %d : %s . %d", a, edgeFirst+edgeOffset+i, a, edgeFirst+i))
		}
	}
	rules := fmt.Sprintf(`table ip edge {
	chain pre {
		type nat hook prerouting priority dstnat; policy accept;
		tcp dport %d-%d dnat ip to ip daddr . tcp dport map { %s }
	}
	chain in {
		type filter hook input priority filter; policy accept;
		iifname "lo" accept
		tcp dport %[4]d-%[5]d ct status dnat accept
		tcp dport %[4]d-%[5]d reject with tcp reset
	}
}
`, edgeFirst+edgeOffset, edgeFirst+edgeOffset+edgePorts-1, strings.Join(m, ", "), edgeFirst, edgeFirst+edgePorts-1)
	nft := exec.Command("ip", "netns", "exec", l.proxy, "nft", "-f", "-")
	nft.Stdin = strings.NewReader(rules)
	if out, err := nft.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v\n%s\n%s", err, out, rules)
	}
	return l
}

// TestEdgeAnnounceNetNS: curl and lftp in PASV and EPSV, plain and over TLS (AUTH TLS, PROT
// P), from the LAN and the internet side, uploads and downloads sha256-checked, through the DNAT that maps announced ports onto
// bound ones; the raw 227/229 replies carry the expected address and offset ports.
func TestEdgeAnnounceNetNS(t *testing.T) {
	l := setupEdgeNS(t)
	vs := peers.StartVsftpd(t, peers.Options{NetNS: l.proxy, Addr: "127.0.0.1:2101", PasvPorts: [2]int{41000, 41019}})
	certFile, keyFile, _ := proxyCertFor(t, edgeLANProxy, edgeWANProxy) // clients verify it by IP
	cfg := fmt.Sprintf(`[[listener]]
address = "0.0.0.0:2121"
tls = "explicit"
pool = "farm"

[tls]
cert_file = %q
key_file = %q

[data]
public_address = %q
port_range = "%d-%d"
announce_port_offset = %d
connect_timeout = "5s"

[[data.public_address_override]]
cidr = "198.51.100.0/24"
address = %q
`, certFile, keyFile, edgeWANProxy, edgeFirst, edgeFirst+edgePorts-1, edgeOffset, edgeLANProxy) + edgeFarm(vs.Addr)
	p := startNSProxy(t, l.proxy, cfg, 1)
	mustReach(t, l.lan, edgeLANProxy, 2121)
	mustReach(t, l.wan, edgeWANProxy, 2121)
	mustNotReach(t, l.lan, edgeWANProxy, 2121)
	mustNotReach(t, l.wan, edgeLANProxy, 2121)

	sides := []struct{ name, ns, proxy, pasv string }{
		{"lan", l.lan, edgeLANProxy, "198,51,100,1,"},
		{"wan", l.wan, edgeWANProxy, "203,0,113,1,"},
	}
	for _, s := range sides {
		t.Run(s.name+"/replies", func(t *testing.T) {
			url := "ftp://" + s.proxy + ":2121/"
			user := peers.User + ":" + peers.Password
			out, err := nsRun(natCtx(t), s.ns, nil, "curl", "-sS", "--fail", "-v", "--disable-epsv", "--no-ftp-skip-pasv-ip", "--user", user, url)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			i := strings.Index(out, "< 227 Entering Passive Mode (")
			if i < 0 || !strings.HasPrefix(out[i+len("< 227 Entering Passive Mode ("):], s.pasv) {
				t.Fatalf("227 does not announce %s:\n%s", s.pasv, out)
			}
			var a, b, c, d, p1, p2 int
			fmt.Sscanf(out[i:], "< 227 Entering Passive Mode (%d,%d,%d,%d,%d,%d)", &a, &b, &c, &d, &p1, &p2)
			if port := p1*256 + p2; port < edgeFirst+edgeOffset || port >= edgeFirst+edgeOffset+edgePorts {
				t.Fatalf("227 announces port %d, want bound + %d", port, edgeOffset)
			}
			out, err = nsRun(natCtx(t), s.ns, nil, "curl", "-sS", "--fail", "-v", "--user", user, url)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			var port int
			j := strings.Index(out, "< 229 Entering Extended Passive Mode (|||")
			if j >= 0 {
				fmt.Sscanf(out[j+len("< 229 Entering Extended Passive Mode (|||"):], "%d|", &port)
			}
			if port < edgeFirst+edgeOffset || port >= edgeFirst+edgeOffset+edgePorts {
				t.Fatalf("229 announces port %d, want bound + %d:\n%s", port, edgeOffset, out)
			}
		})
		tg := natTarget{ns: s.ns, addr: s.proxy + ":2121", srv: vs, tag: s.name, size: 512 << 10}
		for _, m := range []string{"pasv", "epsv"} {
			t.Run(s.name+"/curl/"+m, func(t *testing.T) { natCurl(t, tg, m) })
			t.Run(s.name+"/lftp/"+m, func(t *testing.T) { natLftp(t, tg, m) })
			t.Run(s.name+"/curl-tls/"+m, func(t *testing.T) { edgeCurlTLS(t, tg, m, certFile) })
			t.Run(s.name+"/lftp-tls/"+m, func(t *testing.T) { edgeLftpTLS(t, tg, m, certFile) })
		}
	}
	// The bound ports are closed from outside (reset): only the DNAT leads to them.
	if out, err := tcpGreeting(t, l.lan, edgeLANProxy, edgeFirst); err == nil {
		t.Fatalf("bound port %d reachable without the DNAT: %q", edgeFirst, out)
	}
	time.Sleep(100 * time.Millisecond)
	for _, line := range strings.Split(p.logs.String(), "\n") {
		if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
			t.Errorf("proxy: %s", line)
		}
	}
}

// edgeCurlTLS: upload and download with curl over AUTH TLS and PROT P, verifying the
// proxy's certificate; mode pasv trusts the 227 address.
func edgeCurlTLS(t *testing.T, tg natTarget, mode, caFile string) {
	args := []string{"-sS", "--fail", "--max-time", "50", "--ssl-reqd", "--cacert", caFile, "--user", peers.User + ":" + peers.Password}
	if mode == "pasv" {
		args = append(args, "--disable-epsv", "--no-ftp-skip-pasv-ip")
	}
	tmp := t.TempDir()
	src, data := randomData(t, tmp, "src", tg.size)
	dst := filepath.Join(tmp, "down")
	d := "cutls-" + mode + "-" + tg.tag
	url := "ftp://" + tg.addr + "/" + d + "/up.bin"
	for _, a := range [][]string{{"--ftp-create-dirs", "-T", src, url}, {"-o", dst, url}} {
		if out, err := nsRun(natCtx(t), tg.ns, nil, "curl", append(append([]string{}, args...), a...)...); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}
	tg.checkAtRest(t, d+"/up.bin", data)
	if fileSum(t, dst) != sum(data) {
		t.Fatal("curl download differs")
	}
}

// edgeLftpTLS: the same with lftp (GnuTLS).
func edgeLftpTLS(t *testing.T, tg natTarget, mode, caFile string) {
	tmp := t.TempDir()
	src, data := randomData(t, tmp, "src", tg.size)
	dst := filepath.Join(tmp, "down")
	d := "lftls-" + mode + "-" + tg.tag
	epsv := map[string]string{"pasv": "no", "epsv": "yes"}[mode]
	script := fmt.Sprintf(`set ftp:ssl-force yes
set ftp:ssl-protect-data yes
set ssl:ca-file %s
set ftp:passive-mode on
set ftp:prefer-epsv %s
set ftp:fix-pasv-address no
open -u %s,%s ftp://%s
mkdir %s
cd %s
put %s -o up.bin
get up.bin -o %s
`, caFile, epsv, peers.User, peers.Password, tg.addr, d, d, src, dst)
	f := filepath.Join(tmp, "script.lftp")
	if err := os.WriteFile(f, []byte(peers.LftpPrelude+script), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"HOME=" + tmp, "LFTP_HOME=" + tmp, "XDG_CONFIG_HOME=" + tmp, "XDG_DATA_HOME=" + tmp, "XDG_CACHE_HOME=" + tmp}
	if out, err := nsRun(natCtx(t), tg.ns, env, "lftp", "-f", f); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	tg.checkAtRest(t, d+"/up.bin", data)
	if fileSum(t, dst) != sum(data) {
		t.Fatal("lftp download differs")
	}
}
