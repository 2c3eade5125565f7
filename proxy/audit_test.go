package proxy_test

// Issue 15 item 6: logs an auditor can use.

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/internal/peers"
	"github.com/ftpsproxy/ftpsproxy/proxy"
)

// logLine finds the first record with message msg whose attributes contain every one of
// attrs (each "key=value" as the text handler writes it), or fails.
func logLine(t *testing.T, p *testProxy, msg string, attrs ...string) string {
	t.Helper()
	var found string
	waitFor(t, 3*time.Second, func() bool {
		for _, l := range strings.Split(p.logs.String(), "\n") {
			if !strings.Contains(l, "msg="+quoteIfNeeded(msg)+" ") {
				continue
			}
			ok := true
			for _, a := range attrs {
				ok = ok && strings.Contains(l, " "+a)
			}
			if ok {
				found = l
				return true
			}
		}
		return false
	})
	return found
}

func quoteIfNeeded(s string) string {
	if strings.ContainsAny(s, " \"=") {
		return `"` + s + `"`
	}
	return s
}

// TestAuditFileOps: DELE, MKD, RMD, SITE CHMOD and RNFR+RNTO (one record) are logged at info
// with the backend's reply code, also when the backend refuses.
func TestAuditFileOps(t *testing.T) {
	p, _ := infoProxy(t, func(s *recSess, verb, arg string) bool {
		if arg == "locked" {
			s.reply("550 rec no")
			return true
		}
		return false
	})
	c := loginExact(t, p.addr, "auditor")
	for _, x := range [][2]string{
		{"DELE old.txt", "250 rec deleted"},
		{"MKD new dir", `257 "new dir" rec created`},
		{"RMD gone", "250 rec deleted"},
		{"SITE CHMOD 640 secret.txt", "200 rec SITE"},
		{"RNFR a.txt", "350 rec rnfr"},
		{"RNTO b.txt", "250 rec renamed"},
		{"RNFR locked", "550 rec no"},
		{"DELE locked", "550 rec no"},
		{"SITE HELP", "200 rec SITE"},
	} {
		c.send(x[0] + "\r\n")
		c.expect(x[1])
	}
	logLine(t, p, "file op", "user=auditor", "op=delete", "path=old.txt", "reply=250")
	logLine(t, p, "file op", "op=mkdir", `path="new dir"`, "reply=257")
	logLine(t, p, "file op", "op=rmdir", "path=gone", "reply=250")
	logLine(t, p, "file op", "op=chmod", "mode=640", "path=secret.txt", "reply=200")
	logLine(t, p, "file op", "op=rename", "from=a.txt", "to=b.txt", "reply=250")
	logLine(t, p, "file op", "op=rename", "from=locked", "reply=550")
	logLine(t, p, "file op", "op=delete", "path=locked", "reply=550")
	if n := strings.Count(p.logs.String(), `msg="file op"`); n != 7 {
		t.Fatalf("%d file op records, want 7 (RNFR+RNTO one, SITE HELP none):\n%s", n, p.logs.String())
	}
}

// TestAuditSessionTLS: "session start" and "session end" say whether and how the session
// used TLS (tls, cipher, sni, resumed), and durations are in seconds (duration_s).
func TestAuditSessionTLS(t *testing.T) {
	opt, cc := withTLS(t, proxy.TLSExplicit, false)
	p, _ := infoProxy(t, nil, opt)
	c := dialExact(t, p.addr)
	c.expect(greeting)
	c.send("AUTH TLS\r\n")
	c.expect(proxy.ReplyAuthOK("TLS"))
	c.startTLS(cc)
	c.send("USER tlsuser\r\nPASS " + corpusPassword + "\r\nQUIT\r\n")
	c.expect(proxy.ReplyUserOK)
	c.expect("230 rec welcome")
	c.expect("221 rec bye")
	logLine(t, p, "session start", "user=tlsuser", "tls=TLS1.3", "cipher=TLS_AES_128_GCM_SHA256", `sni=""`, "resumed=false") // an IP is never sent as SNI
	end := logLine(t, p, "session end", "user=tlsuser", "tls=TLS1.3", "end=quit")
	if !regexp.MustCompile(` duration_s=\d+(\.\d+)?(e-\d+)? `).MatchString(end) {
		t.Fatalf("no duration in seconds: %s", end)
	}
	plain := loginExact(t, p.addr, "plainuser")
	plain.send("QUIT\r\n")
	plain.expect("221 rec bye")
	logLine(t, p, "session start", "user=plainuser", "tls=none")
	logLine(t, p, "session end", "user=plainuser", "tls=none")
}

// TestAuditTLSFailureInWords: a real TLS 1.3 client (curl, OpenSSL) that rejects the proxy's
// certificate makes Go report "local error: tls: bad record MAC"; the log says what happened.
func TestAuditTLSFailureInWords(t *testing.T) {
	opt, _ := withTLS(t, proxy.TLSExplicit, false)
	p, _ := infoProxy(t, nil, opt)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := peers.Curl(ctx, "--ssl-reqd", "--tlsv1.3", "--user", "u:"+corpusPassword, "ftp://"+p.addr+"/")
	if err == nil {
		t.Fatalf("curl accepted an untrusted certificate:\n%s", out)
	}
	line := logLine(t, p, "client TLS handshake failed", "conn=control")
	if !strings.Contains(line, `reason="bad or refused certificate"`) {
		t.Fatalf("cause not in words: %s", line)
	}
	logLine(t, p, "session end", `end="client control TLS handshake failed (bad or refused certificate)`)
}
