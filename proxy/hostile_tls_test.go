package proxy_test

// Corpus cases on TLS toward the client (RFC 4217 order, handshakes, listener modes).

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/ftpsproxy/ftpsproxy/proxy"
)

func tlsCases() []corpusCase {
	var cs []corpusCase
	add := func(name, env string, run func(x *caseRun)) {
		cs = append(cs, corpusCase{cat: "tls", name: name, env: env, run: run})
	}
	greet := func(x *caseRun) {
		x.client = dialExact(x.t, x.env.addr())
		x.client.expect(greeting)
	}
	upgrade := func(x *caseRun) {
		greet(x)
		x.exchange("AUTH TLS\r\n", proxy.ReplyAuthOK("TLS"))
		x.client.startTLS(x.env.cc)
	}
	handshake := 500 * time.Millisecond
	add("pipelined-after-auth", "explicit", func(x *caseRun) {
		greet(x)
		x.client.send("AUTH TLS\r\nUSER " + smuggledMarker + "\r\n")
		x.client.expectClose("")
	})
	add("plaintext-after-234", "explicit", func(x *caseRun) {
		greet(x)
		x.exchange("AUTH TLS\r\n", proxy.ReplyAuthOK("TLS"))
		x.client.send("USER " + smuggledMarker + "\r\nPASS x\r\n")
		x.client.expectTLSClose(handshake + time.Second)
	})
	for i, g := range []string{"\x16\x03\x01\x00\x05hello", "\x80\x2e\x01\x00\x02\x00\x15\x00\x00\x00\x10", "GET / HTTP/1.1\r\n\r\n",
		"\x16\x03\x03\xff\xff" + strings.Repeat("A", 100), "\x15\x03\x03\x00\x02\x02\x28", "\x17\x03\x03\x00\x05hello", strings.Repeat("\x00", 64)} {
		add(fmt.Sprintf("garbage-after-234-%d", i), "explicit", func(x *caseRun) {
			greet(x)
			x.exchange("AUTH TLS\r\n", proxy.ReplyAuthOK("TLS"))
			x.client.send(g)
			x.client.expectTLSClose(handshake + time.Second)
		})
	}
	add("stalled-handshake", "explicit", func(x *caseRun) {
		greet(x)
		x.exchange("AUTH TLS\r\n", proxy.ReplyAuthOK("TLS"))
		x.client.send("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03") // a ClientHello that never completes
		x.client.expectTLSClose(handshake + time.Second)
	})
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		add("old-tls-version-"+tls.VersionName(v), "explicit", func(x *caseRun) {
			greet(x)
			x.exchange("AUTH TLS\r\n", proxy.ReplyAuthOK("TLS"))
			cc := x.env.cc.Clone()
			cc.MinVersion, cc.MaxVersion = v, v
			tc := tls.Client(x.client.c, cc)
			tc.SetDeadline(time.Now().Add(5 * time.Second))
			if err := tc.Handshake(); err == nil {
				x.t.Fatalf("%s handshake accepted", tls.VersionName(v))
			}
			x.noBackendContacted()
		})
	}
	add("client-hello-on-plain-control", "explicit", func(x *caseRun) {
		greet(x)
		tc := tls.Client(x.client.c, x.env.cc)
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err == nil {
			x.t.Fatal("handshake without AUTH accepted")
		}
	})
	add("client-hello-bytes-on-plain-control", "explicit", func(x *caseRun) {
		greet(x)
		x.client.send("\x16\x03\x01\x00\xa0\x01\x00\x00\x9c\x03\x03")
		x.client.expectClose("")
	})
	for _, m := range []string{"TLS", "SSL", "TLS-C", "TLS-P", "tls", " TLS "} {
		add("auth-"+strconv.Quote(m), "explicit", func(x *caseRun) {
			greet(x)
			mech := strings.ToUpper(strings.TrimSpace(m))
			x.exchange("AUTH "+m+"\r\n", proxy.ReplyAuthOK(mech))
			x.client.startTLS(x.env.cc)
			x.login()
			x.noopInSync()
			x.backendSaw(nil, true)
		})
	}
	for _, m := range []string{"GSSAPI", "KERBEROS_V4", "", "TLS " + smuggledMarker, "TLS\x01", "X509"} {
		add("auth-mechanism-"+strconv.Quote(m), "explicit", func(x *caseRun) {
			greet(x)
			x.exchange("AUTH "+m+"\r\n", proxy.ReplyAuthMech)
			x.exchange("NOOP\r\n", proxy.ReplyNoop)
		})
	}
	add("double-auth", "explicit", func(x *caseRun) {
		upgrade(x)
		x.exchange("AUTH TLS\r\nAUTH SSL\r\n", proxy.ReplyAuthTwice, proxy.ReplyAuthTwice)
		x.login()
		x.exchange("AUTH TLS\r\n", proxy.ReplyAuthTwice)
		x.noopInSync()
		x.backendSaw(nil, true)
	})
	add("auth-resets-user", "explicit", func(x *caseRun) {
		greet(x)
		x.exchange("USER {U}\r\n", proxy.ReplyUserOK)
		x.exchange("AUTH TLS\r\n", proxy.ReplyAuthOK("TLS"))
		x.client.startTLS(x.env.cc)
		x.exchange("PASS pw\r\n", proxy.ReplyUserFirst)
		x.noBackendContacted()
	})
	add("pbsz-prot-order", "explicit", func(x *caseRun) {
		greet(x)
		x.exchange("PROT P\r\nPBSZ 0\r\n", proxy.ReplyProtEarly, proxy.ReplyPbszEarly)
		x.exchange("AUTH TLS\r\n", proxy.ReplyAuthOK("TLS"))
		x.client.startTLS(x.env.cc)
		x.exchange("PROT P\r\n", proxy.ReplyProtEarly)
		for _, a := range []string{"", "abc", "-1", "99999999999", "1 2", "0x0"} {
			x.exchange("PBSZ "+a+"\r\n", proxy.ReplyPbszBad)
		}
		x.exchange("PROT P\r\n", proxy.ReplyProtEarly)
		x.exchange("PBSZ 1024\r\n", proxy.ReplyPbszOK)
		x.exchange("PBSZ 0\r\n", proxy.ReplyPbszOK)
		x.exchange("PROT S\r\nPROT E\r\nPROT X\r\nPROT\r\n", proxy.ReplyProtLevel, proxy.ReplyProtLevel, proxy.ReplyProtUnknown, proxy.ReplyProtUnknown)
		x.exchange("PROT c\r\n", proxy.ReplyProtC)
		x.exchange("PROT P\r\n", proxy.ReplyProtP)
		x.exchange("CCC\r\nADAT x\r\nMIC x\r\nCONF x\r\nENC x\r\n", proxy.ReplyCCC, proxy.ReplyAdat, proxy.ReplyProtected, proxy.ReplyProtected, proxy.ReplyProtected)
		x.login()
		x.exchange("PBSZ 0\r\nPROT C\r\nPROT P\r\nCCC\r\nMIC "+smuggledMarker+"\r\n", proxy.ReplyPbszOK, proxy.ReplyProtC, proxy.ReplyProtP, proxy.ReplyCCC, proxy.ReplyProtected)
		x.noopInSync()
		x.backendSaw(nil, true)
	})
	add("pre-login-feat-offers-tls", "explicit", func(x *caseRun) {
		greet(x)
		x.exchange("FEAT\r\n", featPreLoginTLS)
	})
	add("post-login-feat-offers-tls", "explicit", func(x *caseRun) {
		upgrade(x)
		x.login()
		x.exchange("FEAT\r\n", "raw:211-Features:\r\n AUTH TLS\r\n PBSZ\r\n PROT\r\n EPRT\r\n EPSV\r\n MDTM\r\n SIZE\r\n211 End\r\n")
		x.noopInSync()
		x.backendSaw([]string{"FEAT"}, true)
	})
	add("prot-p-plaintext-data", "explicit", func(x *caseRun) {
		upgrade(x)
		x.exchange("PBSZ 0\r\nPROT P\r\n", proxy.ReplyPbszOK, proxy.ReplyProtP)
		x.login()
		dc := pasvConnect(x)
		x.exchange("RETR f\r\n", proxy.ReplyProt150)
		io.WriteString(dc, "this is not TLS\r\n")
		x.client.expect(proxy.ReplyDataTLSFailed)
		x.noopInSync()
		x.backendSaw(nil, true)
	})
	add("prot-p-silent-data", "explicit", func(x *caseRun) {
		upgrade(x)
		x.exchange("PBSZ 0\r\nPROT P\r\n", proxy.ReplyPbszOK, proxy.ReplyProtP)
		x.login()
		pasvConnect(x)
		start := time.Now()
		x.exchange("LIST\r\n", proxy.ReplyProt150, proxy.ReplyDataTLSFailed)
		if d := time.Since(start); d > handshake+2*time.Second {
			x.t.Fatalf("stalled data handshake held the session %v", d)
		}
		x.noopInSync()
		x.backendSaw(nil, true)
	})
	add("required-user-before-auth", "required", func(x *caseRun) {
		greet(x)
		x.exchange("USER {U}\r\n", proxy.ReplyTLSRequired)
		x.exchange("PASS pw\r\n", proxy.ReplyUserFirst)
		x.noBackendContacted()
		x.exchange("AUTH TLS\r\n", proxy.ReplyAuthOK("TLS"))
		x.client.startTLS(x.env.cc)
		x.login()
		x.exchange("LIST\r\nRETR x\r\nSTOR x\r\n", proxy.ReplyDataTLS, proxy.ReplyDataTLS, proxy.ReplyDataTLS)
		x.exchange("PBSZ 0\r\nPROT C\r\nLIST\r\n", proxy.ReplyPbszOK, proxy.ReplyProtRequired, proxy.ReplyDataTLS)
		x.noopInSync()
		x.backendSaw(nil, true)
	})
	add("required-pipelined-user-pass", "required", func(x *caseRun) {
		greet(x)
		x.exchange("USER {U}\r\nPASS pw\r\nPWD\r\n", proxy.ReplyTLSRequired, proxy.ReplyUserFirst, proxy.ReplyNotLoggedIn)
		x.noBackendContacted()
	})
	add("implicit-plaintext-first", "implicit", func(x *caseRun) {
		x.client = dialExact(x.t, x.env.addr())
		x.client.send("USER " + smuggledMarker + "\r\nPASS x\r\n")
		x.client.expectTLSClose(handshake + time.Second)
	})
	add("implicit-http", "implicit", func(x *caseRun) {
		x.client = dialExact(x.t, x.env.addr())
		x.client.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		x.client.expectTLSClose(handshake + time.Second)
	})
	add("implicit-silent", "implicit", func(x *caseRun) {
		x.client = dialExact(x.t, x.env.addr())
		x.client.expectTLSClose(handshake + time.Second)
	})
	add("implicit-ok-then-auth", "implicit", func(x *caseRun) {
		x.client = dialExact(x.t, x.env.addr())
		tc := tls.Client(x.client.c, x.env.cc)
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			x.t.Fatal(err)
		}
		x.client.c, x.client.r = tc, bufio.NewReader(tc)
		x.client.expect(greeting)
		x.exchange("AUTH TLS\r\n", proxy.ReplyAuthTwice)
		x.login()
		x.noopInSync()
		x.backendSaw(nil, true)
	})
	return cs
}
