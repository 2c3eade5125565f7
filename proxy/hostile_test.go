package proxy_test

// The hostile-input corpus: several hundred exact byte sequences sent through a real proxy
// to a recording fake backend. Every case checks the exact reply (or a clean close) and the
// exact list of lines the backend received, so nothing smuggled, answered locally or refused
// can reach a backend unnoticed. Expected replies are the production reply table's
// (proxy/replies.go, exported to these tests by export_test.go).
//
// The corpus is split by category: hostile_lines_test.go (framing, Telnet, framing attacks on
// every verb, smuggling), hostile_verbs_test.go (verbs and command order),
// hostile_port_test.go (PORT/EPRT syntax and targets), hostile_tls_test.go,
// hostile_proxyproto_test.go, hostile_backend_test.go (a hostile backend),
// hostile_data_test.go (data channel, IPv6). The recording backend is in
// hostile_recorder_test.go, the byte-exact client and the case runner in
// hostile_client_test.go and hostile_runner_test.go.
//
//	go test -count=1 -run Hostile ./proxy/            (prints "hostile: N cases, F failures")
//	go test -count=1 -run 'Hostile/port-syntax' ./proxy/

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/proxy"
)

// greeting is the 220 of the harness's listeners (startProxy sets the banner).
const greeting = "220 FTP proxy ready"

// featPreLogin and featPreLoginTLS are the proxy's own FEAT before login: behaviour (which
// features are offered), not a text of the reply table.
const (
	featPreLogin    = "raw:211-Features:\r\n EPRT\r\n EPSV\r\n HOST\r\n UTF8\r\n211 End\r\n"
	featPreLoginTLS = "raw:211-Features:\r\n AUTH TLS\r\n PBSZ\r\n PROT\r\n EPRT\r\n EPSV\r\n HOST\r\n UTF8\r\n211 End\r\n"
	helpPreLogin    = "raw:" + proxy.ReplyHelpPreLogin
)

// line421NoBackend is the 421 that ends a session whose backend failed, with its CRLF.
var line421NoBackend = proxy.Line421(proxy.CauseNoBackend) + "\r\n"

const (
	corpusPassword = "pw"
	smuggledMarker = "ZQX" // part of every payload that must never reach a backend
)

// allVerbs is every verb of RFC 959, 2228, 2389, 2428, 3659, 4217 and 7151, plus the X-forms.
var allVerbs = []string{
	"USER", "PASS", "ACCT", "CWD", "CDUP", "SMNT", "QUIT", "REIN", "PORT", "PASV", "TYPE", "STRU",
	"MODE", "RETR", "STOR", "STOU", "APPE", "ALLO", "REST", "RNFR", "RNTO", "ABOR", "DELE", "RMD",
	"MKD", "PWD", "LIST", "NLST", "SITE", "SYST", "STAT", "HELP", "NOOP", "FEAT", "OPTS", "AUTH",
	"ADAT", "PBSZ", "PROT", "CCC", "MIC", "CONF", "ENC", "EPRT", "EPSV", "LPRT", "LPSV", "MDTM",
	"SIZE", "MLST", "MLSD", "HOST", "CLNT", "LANG", "XPWD", "XMKD", "XRMD", "XCWD", "XCUP",
}

// framingAttacks are the framing attacks applied to every verb. Each must be refused with its
// 500 and never reach the backend.
var framingAttacks = []struct {
	name  string
	line  func(verb string) string
	wants []string
}{
	{"cr-in-arg", func(v string) string { return v + " a\r" + smuggledMarker + " x\r\n" }, []string{proxy.ReplyBadChar}},
	{"nul-in-arg", func(v string) string { return v + " a\x00" + smuggledMarker + "\r\n" }, []string{proxy.ReplyBadChar}},
	{"bare-lf", func(v string) string { return v + " " + smuggledMarker + "\n" }, []string{proxy.ReplyBadLine}},
	{"cr-cr-lf", func(v string) string { return v + " " + smuggledMarker + "\r\r\n" }, []string{proxy.ReplyBadChar}},
	{"lf-then-crlf", func(v string) string { return v + " " + smuggledMarker + "\n\r\n" }, []string{proxy.ReplyBadLine, proxy.ReplyUnknownCmd}},
	{"overlong", func(v string) string { return v + " " + strings.Repeat("x", 4100) + smuggledMarker + "\r\n" }, []string{proxy.ReplyLineTooLong}},
}

// hostileCorpus is every case, category by category.
func hostileCorpus(ipv6 bool) []corpusCase {
	var cs []corpusCase
	add := func(c ...corpusCase) { cs = append(cs, c...) }
	add(framingCases()...)
	add(telnetCases()...)
	add(verbCases()...)
	add(framingAttackCases()...)
	add(smugglingCases()...)
	add(portSyntaxCases()...)
	add(portTargetCases()...)
	add(orderCases()...)
	add(tlsCases()...)
	add(proxyProtocolCases()...)
	add(hostileBackendCases(ipv6)...)
	if ipv6 {
		add(ipv6Cases()...)
	}
	return cs
}

// lineOfLength is prefix padded with x to total bytes, CRLF included.
func lineOfLength(prefix string, total int) string {
	return prefix + strings.Repeat("x", total-len(prefix)-2) + "\r\n"
}

// TestHostileCorpus runs every case of the corpus, each in its own client session, and
// prints a one-line summary.
func TestHostileCorpus(t *testing.T) {
	ipv6 := ipv6Available()
	short := func(c *proxy.Config, _ *balancer.PoolConfig) {
		c.Limits.TLSHandshake = 500 * time.Millisecond
		c.Limits.BackendTimeout = 2 * time.Second
		c.Data.ConnectTimeout = 2 * time.Second
		// The default shared range of the harness (below the ephemeral ports) is kept.
	}
	envs := map[string]*corpusEnv{}
	var backends []*recBackend
	mk := func(name, listen string, opts ...proxyOpt) *corpusEnv {
		be := startRecBackend(t, listen, nil)
		backends = append(backends, be)
		e := &corpusEnv{name: name, backend: be}
		opts = append([]proxyOpt{short}, opts...)
		e.proxy = startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)}, opts...)
		envs[name] = e
		return e
	}
	mk("plain", "127.0.0.1:0")
	for _, mode := range []proxy.TLSMode{proxy.TLSExplicit, proxy.TLSRequired, proxy.TLSImplicit} {
		opt, cc := withTLS(t, mode, false)
		mk(mode.String(), "127.0.0.1:0", opt).cc = cc
	}
	mk("pp", "127.0.0.1:0", withProxyProtocol("127.0.0.1/32"))
	mk("pp-untrusted", "127.0.0.1:0", withProxyProtocol("10.0.0.0/8"))
	if ipv6 {
		mk("v6", "[::1]:0", func(c *proxy.Config, _ *balancer.PoolConfig) { c.Listeners[0].Address = "[::1]:0" })
	}

	cases := hostileCorpus(ipv6)
	byCat := map[string][2]int{}
	seen := map[string]bool{}
	failures, total := 0, 0
	start := time.Now()
	for i := range cases {
		c := &cases[i]
		name := c.cat + "/" + c.name
		if seen[name] {
			t.Fatalf("duplicate case name %q", name)
		}
		seen[name] = true
		user := c.user
		if user == "" {
			user = fmt.Sprintf("h%04d", i)
		}
		ran := false
		ok := t.Run(name, func(t *testing.T) {
			ran = true
			env := envs[c.env]
			if c.mkEnv != nil {
				env = c.mkEnv(t)
				backends = append(backends, env.backend)
			}
			if env == nil {
				t.Fatalf("no environment %q", c.env)
			}
			runCorpusCase(t, c, env, user)
		})
		if !ran {
			continue // filtered out by -run
		}
		total++
		n := byCat[c.cat]
		n[0]++
		if !ok {
			n[1]++
			failures++
		}
		byCat[c.cat] = n
	}

	// Nothing smuggled ever reached any backend, and every line a backend received was one
	// CRLF-terminated command with no other CR, LF or NUL.
	for _, be := range backends {
		for _, l := range be.allLines() {
			body, ok := strings.CutSuffix(l, "\r\n")
			if strings.Contains(l, smuggledMarker) || !ok || strings.ContainsAny(body, "\r\n\x00") {
				t.Errorf("backend received %q", printable(l))
			}
		}
	}
	// The proxies are still serving.
	for _, name := range []string{"plain", "pp"} {
		e := envs[name]
		c, err := net.DialTimeout("tcp", e.addr(), 5*time.Second)
		if err != nil {
			t.Fatalf("%s proxy gone: %v", name, err)
		}
		if name == "pp" {
			io.WriteString(c, "PROXY TCP4 198.51.100.9 127.0.0.1 40000 21\r\n")
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if line != greeting+"\r\n" {
			t.Errorf("%s proxy greets %q after the corpus", name, line)
		}
	}

	var cats []string
	for c := range byCat {
		cats = append(cats, c)
	}
	sort.Strings(cats)
	var parts []string
	for _, c := range cats {
		parts = append(parts, fmt.Sprintf("%s=%d", c, byCat[c][0]))
	}
	fmt.Printf("hostile: %d cases, %d failures (%s) in %v\n", total, failures, strings.Join(parts, " "), time.Since(start).Round(time.Millisecond))
	for _, c := range cats {
		if byCat[c][1] > 0 {
			fmt.Printf("hostile: %s: %d of %d failed\n", c, byCat[c][1], byCat[c][0])
		}
	}
}
