package proxy_test

// Corpus cases on verbs (local, relayed, refused, malformed) and on command order.

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/ftpsproxy/ftpsproxy/proxy"
)

func verbCases() []corpusCase {
	var cs []corpusCase
	pre := func(name string, steps ...corpusStep) {
		cs = append(cs, corpusCase{cat: "verbs", name: "pre/" + name, env: "plain", steps: steps})
	}
	post := func(name string, relayed []string, steps ...corpusStep) {
		cs = append(cs, corpusCase{cat: "verbs", name: "post/" + name, env: "plain", login: true, steps: steps, relayed: relayed})
	}
	pre("unknown", step("XYZZ\r\n", proxy.ReplyNotLoggedIn))
	pre("unknown-with-arg", step("XYZZ "+smuggledMarker+"\r\n", proxy.ReplyNotLoggedIn))
	pre("lowercase-noop", step("noop\r\n", proxy.ReplyNoop))
	pre("mixed-case-syst", step("SySt\r\n", proxy.ReplySyst))
	pre("lowercase-feat", step("feat\r\n", featPreLogin))
	pre("help", step("HELP\r\n", helpPreLogin))
	pre("clnt", step("CLNT hostile/1.0\r\n", proxy.ReplyClnt))
	pre("opts-other", step("OPTS MLST type;\r\n", proxy.ReplyOptsBad))
	pre("rein", step("REIN\r\n", proxy.ReplyReinNo))
	pre("user-empty", step("USER\r\n", proxy.ReplyUserEmpty))
	pre("pass-before-user", step("PASS pw\r\n", proxy.ReplyUserFirst))
	cs = append(cs, corpusCase{cat: "verbs", name: "pre/lowercase-login", env: "plain", selfLogin: true,
		steps: []corpusStep{step("user {U}\r\n", proxy.ReplyUserOK), step("pass pw\r\n", "230 rec welcome")}})
	cs = append(cs, corpusCase{cat: "verbs", name: "pre/lowercase-quit", env: "plain", steps: []corpusStep{step("quit\r\n")}, closes: true, final: proxy.ReplyGoodbye + "\r\n"})
	for _, v := range []string{"NOOPS", "ABCDEFGHIJ", strings.Repeat("A", 100), "USERX {U}", "A", "AB", "NO OP", "123", "1234", "220 hi", "N0OP", "NOOP;", "NO-P", "PW/", " NOOP", "\tNOOP", "NOOP\tx", "\xef\xbc\xae\xef\xbc\xaf\xef\xbc\xaf\xef\xbc\xb0"} {
		pre("malformed-verb-"+strconv.Quote(v), step(v+"\r\n", proxy.ReplyUnknownCmd))
	}
	pre("http-request", step("GET / HTTP/1.1\r\nHost: x\r\n\r\n", proxy.ReplyNotLoggedIn, proxy.ReplyUnknownCmd, proxy.ReplyUnknownCmd))
	pre("smtp-helo", step("HELO x\r\n", proxy.ReplyNotLoggedIn))
	for _, v := range []string{"RETR x", "STOR x", "STOU", "APPE x", "LIST", "NLST", "MLSD", "MLST", "PWD", "XPWD", "CWD /", "CDUP", "DELE x",
		"MKD x", "RMD x", "SITE CHMOD 777 x", "PASV", "EPSV", "PORT 127,0,0,1,4,1", "EPRT |1|127.0.0.1|1025|", "REST 0", "RNFR a", "RNTO b",
		"TYPE I", "MODE S", "STRU F", "ALLO 1", "SIZE x", "MDTM x", "STAT", "ABOR", "ACCT x", "SMNT x", "LANG en", "LPRT 4,4,127,0,0,1,2,4,1"} {
		pre("needs-login-"+v, step(v+"\r\n", proxy.ReplyNotLoggedIn))
	}

	post("unknown", []string{"XYZZ"}, step("XYZZ\r\n", "502 rec not implemented"))
	post("unknown-with-args", []string{"XYZZ a b"}, step("XYZZ a b\r\n", "502 rec not implemented"))
	post("four-letter-unknown", []string{"PWDX"}, step("PWDX\r\n", "502 rec not implemented"))
	post("lowercase", []string{"PWD"}, step("pwd\r\n", `257 "/" rec`))
	post("mixed-case", []string{"MKD Dir"}, step("mKd Dir\r\n", `257 "Dir" rec created`))
	post("lowercase-site", []string{"SITE echo x"}, step("site echo x\r\n", "200 rec SITE"))
	post("trailing-space", []string{"PWD"}, step("PWD \r\n", `257 "/" rec`))
	post("double-space-kept", []string{"SITE  ECHO x"}, step("SITE  ECHO x\r\n", "200 rec SITE"))
	for _, v := range []string{"ABCDE", "A", "AB", "421 go away", "200 OK", " PWD", "\tPWD", "PWD\tx", "PW/", "N0OP", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2"} {
		post("malformed-verb-"+strconv.Quote(v), nil, step(v+"\r\n", proxy.ReplyUnknownCmd))
	}
	post("user-again", nil, step("USER other\r\n", proxy.ReplyLoggedIn))
	post("pass-again", nil, step("PASS other\r\n", proxy.ReplyLoggedIn))
	post("rein", nil, step("REIN\r\n", proxy.ReplyReinNo))
	post("adat", nil, step("ADAT x\r\n", proxy.ReplyAdat))
	for _, v := range []string{"MIC", "CONF", "ENC"} {
		post("protected-"+v, nil, step(v+" "+smuggledMarker+"\r\n", proxy.ReplyProtected))
	}
	post("ccc", nil, step("CCC\r\n", proxy.ReplyCCC))
	post("auth-plain-listener", nil, step("AUTH TLS\r\n", proxy.ReplyAuthNone))
	post("pbsz", nil, step("PBSZ 0\r\n", proxy.ReplyPbszEarly))
	post("prot", nil, step("PROT P\r\n", proxy.ReplyProtEarly))
	post("host-late", nil, step("HOST example.com\r\n", proxy.ReplyHostLate))
	post("lprt", nil, step("LPRT 4,4,127,0,0,1,2,4,1\r\n", proxy.ReplyAddrVerbRefused("LPRT")))
	post("lpsv", nil, step("LPSV\r\n", proxy.ReplyAddrVerbRefused("LPSV")))
	post("feat-rewritten", []string{"FEAT"}, step("FEAT\r\n", "raw:211-Features:\r\n EPRT\r\n EPSV\r\n MDTM\r\n SIZE\r\n211 End\r\n"))
	post("help-relayed", []string{"HELP"}, step("HELP\r\n", "214 rec help"))
	post("syst-relayed", []string{"SYST"}, step("SYST\r\n", "215 UNIX rec"))
	post("opts-relayed", []string{"OPTS UTF8 ON"}, step("OPTS UTF8 ON\r\n", "200 rec OPTS"))
	cs = append(cs, corpusCase{cat: "verbs", name: "post/quit", env: "plain", login: true, steps: []corpusStep{step("QUIT\r\n")},
		closes: true, final: "221 rec bye\r\n", relayed: []string{"QUIT"}})
	return cs
}

func orderCases() []corpusCase {
	var cs []corpusCase
	post := func(name string, relayed []string, steps ...corpusStep) {
		cs = append(cs, corpusCase{cat: "order", name: "post/" + name, env: "plain", login: true, steps: steps, relayed: relayed})
	}
	pre := func(name string, steps ...corpusStep) {
		cs = append(cs, corpusCase{cat: "order", name: "pre/" + name, env: "plain", steps: steps})
	}
	pre("pass-without-user", step("PASS pw\r\n", proxy.ReplyUserFirst))
	pre("pass-twice-without-user", step("PASS a\r\nPASS b\r\n", proxy.ReplyUserFirst, proxy.ReplyUserFirst))
	pre("host-after-user", step("USER {U}\r\n", proxy.ReplyUserOK), step("HOST a.example\r\n", proxy.ReplyHostLate))
	for _, h := range []string{"", "a b", "[::1]:21", "a_b", "a.example:21", strings.Repeat("a", 254), "a\x01b", "[1.2.3]", "ex@mple"} {
		pre("host-bad-"+strconv.Quote(h), step("HOST "+h+"\r\n", proxy.ReplyHostBad))
	}
	for _, h := range []string{"[::1]", "127.0.0.1", "FTP.Example.COM", "a-b.c"} {
		pre("host-ok-"+h, step("HOST "+h+"\r\n", proxy.ReplyHostOK))
	}
	pre("prot-before-pbsz", step("PROT P\r\n", proxy.ReplyProtEarly))
	pre("pbsz-before-auth", step("PBSZ 0\r\n", proxy.ReplyPbszEarly))
	pre("pbsz-then-prot-no-tls", step("PBSZ 0\r\nPROT P\r\n", proxy.ReplyPbszEarly, proxy.ReplyProtEarly))
	pre("ccc", step("CCC\r\n", proxy.ReplyCCC))
	pre("adat", step("ADAT x\r\n", proxy.ReplyAdat))
	pre("mic", step("MIC "+smuggledMarker+"\r\n", proxy.ReplyProtected))
	for _, v := range []string{"RETR x", "STOR x", "APPE x", "STOU", "LIST", "NLST", "MLSD"} {
		post("no-data-setup-"+v, nil, step(v+"\r\n", proxy.ReplyNeedData))
	}
	post("rest-then-non-transfer", []string{"REST 100", "PWD"}, step("REST 100\r\n", "350 rec rest"), step("PWD\r\n", `257 "/" rec`))
	post("rnto-without-rnfr", []string{"RNTO x"}, step("RNTO x\r\n", "503 rec RNFR first"))
	post("rnfr-rnto", []string{"RNFR a", "RNTO b"}, step("RNFR a\r\n", "350 rec rnfr"), step("RNTO b\r\n", "250 rec renamed"))
	post("rnfr-pwd-rnto", []string{"RNFR a", "PWD", "RNTO b"}, step("RNFR a\r\nPWD\r\nRNTO b\r\n", "350 rec rnfr", `257 "/" rec`, "503 rec RNFR first"))
	post("abor-without-transfer", []string{"ABOR"}, step("ABOR\r\n", "226 rec abor"))
	cs = append(cs, corpusCase{cat: "order", name: "post/pasv-then-port-to-nothing", env: "plain", run: func(x *caseRun) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			x.t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close() // nothing listens there now
		x.client = dialExact(x.t, x.env.addr())
		x.client.expect(greeting)
		x.login()
		x.exchange("PASV\r\n", "227 *")
		x.exchange(fmt.Sprintf("PORT 127,0,0,1,%d,%d\r\n", port>>8, port&0xff), proxy.ReplyPortOK)
		x.exchange("LIST\r\n", proxy.ReplyCantOpen)
		x.exchange("LIST\r\n", proxy.ReplyNeedData) // the PORT target is used once
		x.noopInSync()
		x.backendSaw(nil, true)
	}})
	post("epsv-all-then-others", nil, step("EPSV ALL\r\n", proxy.ReplyEpsvAll), step("PASV\r\n", proxy.ReplyEpsvAllOnly), step("PORT 127,0,0,1,4,1\r\n", proxy.ReplyEpsvAllOnly),
		step("EPRT |1|127.0.0.1|1025|\r\n", proxy.ReplyEpsvAllOnly), step("LPSV\r\n", proxy.ReplyEpsvAllOnly), step("EPSV\r\n", "229 *"))
	post("pasv-twice", nil, step("PASV\r\nPASV\r\nEPSV\r\n", "227 *", "227 *", "229 *"))
	return cs
}
