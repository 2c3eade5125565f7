package proxy_test

// Corpus cases on the control channel's framing: line ends, lengths, Telnet commands,
// framing attacks on every verb, and attempts to smuggle a second command.

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ftpsproxy/ftpsproxy/proxy"
)

func framingCases() []corpusCase {
	var cs []corpusCase
	pre := func(name string, steps ...corpusStep) {
		cs = append(cs, corpusCase{cat: "framing", name: "pre/" + name, env: "plain", steps: steps})
	}
	post := func(name string, relayed []string, steps ...corpusStep) {
		cs = append(cs, corpusCase{cat: "framing", name: "post/" + name, env: "plain", login: true, steps: steps, relayed: relayed})
	}
	pre("bare-lf", step("NOOP\n", proxy.ReplyBadLine))
	pre("bare-lf-user-not-set", step("USER {U}\nPASS pw\r\n", proxy.ReplyBadLine, proxy.ReplyUserFirst))
	pre("lone-lf", step("\n", proxy.ReplyBadLine))
	pre("empty", step("\r\n", proxy.ReplyUnknownCmd))
	pre("three-empty", step("\r\n\r\n\r\n", proxy.ReplyUnknownCmd, proxy.ReplyUnknownCmd, proxy.ReplyUnknownCmd))
	pre("space-only", step(" \r\n", proxy.ReplyUnknownCmd))
	pre("lone-cr-then-crlf", step("\r\r\n", proxy.ReplyBadChar))
	pre("bare-cr-separator", step("NOOP\rNOOP\r\n", proxy.ReplyBadChar))
	pre("nul-only", step("\x00\r\n", proxy.ReplyBadChar))
	pre("nul-after-verb", step("NOOP\x00\r\n", proxy.ReplyBadChar))
	pre("nul-before-verb", step("\x00NOOP\r\n", proxy.ReplyBadChar))
	pre("crlf-split-across-writes", step("NOOP\r"), corpusStep{pause: 50 * time.Millisecond, send: "\n", want: []string{proxy.ReplyNoop}})
	var slow []corpusStep
	for _, b := range []byte("SYST\r\n") {
		slow = append(slow, corpusStep{pause: 5 * time.Millisecond, send: string(b)})
	}
	slow[len(slow)-1].want = []string{proxy.ReplySyst}
	pre("byte-by-byte", slow...)
	for _, n := range []int{4094, 4095, 4096} {
		pre(fmt.Sprintf("len-%d-accepted", n), step(lineOfLength("NOOP ", n), proxy.ReplyNoop))
	}
	for _, n := range []int{4097, 4098, 4100, 8192, 10000, 65536, 1 << 20} {
		pre(fmt.Sprintf("len-%d-refused", n), step(lineOfLength("NOOP ", n), proxy.ReplyLineTooLong))
	}
	pre("overlong-then-valid", step(strings.Repeat("x", 5000)+"\r\nNOOP\r\n", proxy.ReplyLineTooLong, proxy.ReplyNoop))
	pre("overlong-bare-lf", step(strings.Repeat("x", 5000)+"\n", proxy.ReplyLineTooLong))
	pre("overlong-user-not-set", step("USER "+strings.Repeat("u", 4200)+"\r\nPASS pw\r\n", proxy.ReplyLineTooLong, proxy.ReplyUserFirst))
	pre("overlong-cr-inside", step(strings.Repeat("x", 3000)+"\r"+strings.Repeat("y", 3000)+"\r\n", proxy.ReplyLineTooLong))
	pre("non-utf8-verb", step("\xc3\x28OOP\r\n", proxy.ReplyUnknownCmd))
	pre("del-in-verb", step("NOOP\x7f\r\n", proxy.ReplyUnknownCmd))
	cs = append(cs, corpusCase{cat: "framing", name: "pre/non-utf8-user", env: "plain", user: "h\x80\xfe\xc3\x28-nonutf8"})
	cs = append(cs, corpusCase{cat: "framing", name: "pre/user-4089-bytes", env: "plain", user: "u" + strings.Repeat("x", 4088)})
	for i, pw := range []string{" lead", "trail ", "a  b", "\x80\xfe", strings.Repeat("p", 4089), "%0d%0aDELE x", "\t"} {
		cs = append(cs, corpusCase{cat: "framing", name: fmt.Sprintf("pre/password-relayed-%d", i), env: "plain", run: func(x *caseRun) {
			x.client = dialExact(x.t, x.env.addr())
			x.client.expect(greeting)
			x.exchange("USER {U}\r\nPASS "+pw+"\r\n", proxy.ReplyUserOK, "230 rec welcome")
			x.noopInSync()
			got := x.env.backend.find(x.user).snapshot()
			if len(got) != 3 || got[1] != "PASS "+pw+"\r\n" {
				x.t.Fatalf("backend received %q", printableAll(got))
			}
		}})
	}
	cs = append(cs, corpusCase{cat: "framing", name: "pre/opts-utf8-told-to-backend", env: "plain",
		steps: []corpusStep{step("OPTS UTF8 ON\r\n", proxy.ReplyUTF8)}, relayed: []string{"OPTS UTF8 ON"}})

	post("bare-lf", nil, step("PWD\n", proxy.ReplyBadLine))
	post("lone-lf", nil, step("\n", proxy.ReplyBadLine))
	post("empty", nil, step("\r\n", proxy.ReplyUnknownCmd))
	post("space-only", nil, step("  \r\n", proxy.ReplyUnknownCmd))
	post("bare-cr-separator", nil, step("PWD\rCWD /\r\n", proxy.ReplyBadChar))
	post("nul-after-verb", nil, step("PWD\x00\r\n", proxy.ReplyBadChar))
	post("crlf-split-across-writes", []string{"PWD"}, step("PWD\r"), corpusStep{pause: 50 * time.Millisecond, send: "\n", want: []string{`257 "/" rec`}})
	slow = nil
	for _, b := range []byte("SITE ECHO slow\r\n") {
		slow = append(slow, corpusStep{pause: 3 * time.Millisecond, send: string(b)})
	}
	slow[len(slow)-1].want = []string{"200 echo slow"}
	post("byte-by-byte", []string{"SITE ECHO slow"}, slow...)
	for _, n := range []int{4094, 4095, 4096} {
		l := lineOfLength("MKD ", n)
		arg := l[4 : len(l)-2]
		post(fmt.Sprintf("len-%d-relayed", n), []string{"MKD " + arg}, step(l, `257 "`+arg+`" rec created`))
	}
	for _, n := range []int{4097, 4098, 8192, 10000, 65536, 1 << 20} {
		post(fmt.Sprintf("len-%d-refused", n), nil, step(lineOfLength("MKD ", n), proxy.ReplyLineTooLong))
	}
	post("overlong-then-valid", []string{"SITE ECHO after"}, step("MKD "+strings.Repeat("x", 5000)+"\r\nSITE ECHO after\r\n", proxy.ReplyLineTooLong, "200 echo after"))
	post("overlong-command-at-boundary", nil, step("MKD "+strings.Repeat("x", 4092)+"DELE "+smuggledMarker+"\r\n", proxy.ReplyLineTooLong))
	// A line refused for its bare LF does not swallow the CRLF line after it: that one is a
	// command of its own (and the LF line's payload never reaches the backend).
	post("bare-lf-line-then-crlf-line", []string{"DELE b"}, step("MKD "+smuggledMarker+"\nDELE b\r\n", proxy.ReplyBadLine, "250 rec deleted"))
	post("lf-at-4096-then-crlf-line", []string{"DELE b"}, step("MKD "+strings.Repeat("x", 4091)+"\nDELE b\r\n", proxy.ReplyBadLine, "250 rec deleted"))
	post("lf-at-4097-then-crlf-line", []string{"DELE b"}, step("MKD "+strings.Repeat("x", 4092)+"\nDELE b\r\n", proxy.ReplyLineTooLong, "250 rec deleted"))
	for i, arg := range []string{"\xc3\x28", "\x80\x81\xfe", "\xed\xa0\x80", "a\xe2\x80\xa8b", "a\xc2\x85b", "a\x0bb\x0cc", "a\x1b[2Jb", "a\tb", "a\x01\x02\x7fb"} {
		post(fmt.Sprintf("arg-bytes-relayed-%d", i), []string{"MKD " + arg}, step("MKD "+arg+"\r\n", `257 "`+arg+`" rec created`))
	}
	post("non-utf8-verb", nil, step("\xc3\xa9TR x\r\n", proxy.ReplyUnknownCmd))
	return cs
}

func telnetCases() []corpusCase {
	var cs []corpusCase
	post := func(name string, relayed []string, steps ...corpusStep) {
		cs = append(cs, corpusCase{cat: "telnet", name: "post/" + name, env: "plain", login: true, steps: steps, relayed: relayed})
	}
	pre := func(name string, selfLogin bool, steps ...corpusStep) {
		cs = append(cs, corpusCase{cat: "telnet", name: "pre/" + name, env: "plain", steps: steps, selfLogin: selfLogin})
	}
	post("ip-synch-noop", []string{"NOOP"}, step("\xff\xf4\xff\xf2NOOP\r\n", "200 rec NOOP"))
	post("ip-synch-abor-idle", []string{"ABOR"}, step("\xff\xf4\xff\xf2ABOR\r\n", "226 rec abor"))
	post("ip-only-abor", []string{"ABOR"}, step("\xff\xf4ABOR\r\n", "226 rec abor"))
	for _, neg := range []string{"\xff\xfb\x01", "\xff\xfc\x01", "\xff\xfd\x03", "\xff\xfe\x03"} {
		post(fmt.Sprintf("negotiation-%x", neg[1]), []string{"PWD"}, step(neg+"PWD\r\n", `257 "/" rec`))
	}
	post("iac-at-line-end", []string{"PWD"}, step("PWD\xff\r\n", `257 "/" rec`))
	post("iac-will-at-line-end", []string{"PWD"}, step("PWD\xff\xfb\r\n", `257 "/" rec`))
	post("iac-nop-inside-verb", []string{"PWD"}, step("P\xff\xf1WD\r\n", `257 "/" rec`))
	post("iac-ip-inside-arg", []string{"MKD ab"}, step("MKD a\xff\xf4b\r\n", `257 "ab" rec created`))
	post("doubled-iac-in-verb", nil, step("PWD\xff\xff\r\n", proxy.ReplyUnknownCmd))
	post("iac-ip-alone", nil, step("\xff\xf4\r\n", proxy.ReplyUnknownCmd))
	post("iac-alone", nil, step("\xff\r\n", proxy.ReplyUnknownCmd))
	post("iac-plain-byte", nil, step("\xffZZPWD\r\n", proxy.ReplyUnknownCmd))
	post("iac-nul", nil, step("\xff\x00PWD\r\n", proxy.ReplyBadChar))
	post("iac-cr-inside", nil, step("PWD\xff\r"+smuggledMarker+"\r\n", proxy.ReplyBadChar))
	post("subnegotiation", nil, step("\xff\xfa\x18\x01\xff\xf0PWD\r\n", proxy.ReplyUnknownCmd))
	post("synch-out-of-band", []string{"NOOP"}, corpusStep{send: "\xff\xf4\xff", urgent: []byte{0xf2}}, step("NOOP\r\n", "200 rec NOOP"))
	post("ip-synch-many", []string{"PWD"}, step(strings.Repeat("\xff\xf4\xff\xf2", 500)+"PWD\r\n", `257 "/" rec`))
	// A doubled IAC in an argument is one 0xFF data byte. RFC 854 wants it doubled again on the
	// way out; SPEC does not say. Either form is accepted, anything else is not.
	cs = append(cs, corpusCase{cat: "telnet", name: "post/doubled-iac-in-arg", env: "plain", run: func(x *caseRun) {
		x.client = dialExact(x.t, x.env.addr())
		x.client.expect(greeting)
		x.login()
		first := x.exchange("MKD a\xff\xffb\r\n", "257 *")
		x.noopInSync()
		got := x.env.backend.find(x.user).snapshot()
		if len(got) != 4 || (got[2] != "MKD a\xffb\r\n" && got[2] != "MKD a\xff\xffb\r\n") {
			x.t.Fatalf("backend received %q", got)
		}
		if first != `257 "a`+strings.TrimPrefix(strings.TrimSuffix(got[2], "\r\n"), "MKD a")+`" rec created` {
			x.t.Fatalf("reply %q not relayed as sent", first)
		}
	}})
	pre("ip-synch-noop", false, step("\xff\xf4\xff\xf2NOOP\r\n", proxy.ReplyNoop))
	pre("ip-before-user", true, step("\xff\xf4USER {U}\r\n", proxy.ReplyUserOK), step("PASS pw\r\n", "230 rec welcome"))
	pre("nop-inside-user", true, step("US\xff\xf1ER {U}\r\n", proxy.ReplyUserOK), step("PASS pw\r\n", "230 rec welcome"))
	pre("ip-after-user-name", true, step("USER {U}\xff\xf4\r\n", proxy.ReplyUserOK), step("PASS pw\r\n", "230 rec welcome"))
	pre("will-before-syst", false, step("\xff\xfb\x18SYST\r\n", proxy.ReplySyst))
	pre("iac-cr-in-user", false, step("USER {U}\xff\r"+smuggledMarker+"\r\n", proxy.ReplyBadChar), step("PASS pw\r\n", proxy.ReplyUserFirst))
	return cs
}

func framingAttackCases() []corpusCase {
	var cs []corpusCase
	for _, inj := range framingAttacks {
		for _, v := range allVerbs {
			for _, post := range []bool{false, true} {
				phase := "pre"
				if post {
					phase = "post"
				}
				cs = append(cs, corpusCase{cat: "injection", name: phase + "/" + inj.name + "/" + v, env: "plain", login: post,
					steps: []corpusStep{{send: inj.line(v), want: inj.wants}}})
			}
		}
	}
	return cs
}

func smugglingCases() []corpusCase {
	var cs []corpusCase
	post := func(name string, relayed []string, steps ...corpusStep) {
		cs = append(cs, corpusCase{cat: "smuggling", name: "post/" + name, env: "plain", login: true, steps: steps, relayed: relayed})
	}
	post("percent-encoded-crlf", []string{"MKD a%0d%0aDELE b"}, step("MKD a%0d%0aDELE b\r\n", `257 "a%0d%0aDELE b" rec created`))
	post("unicode-line-separator", []string{"MKD a\xe2\x80\xa8DELE b"}, step("MKD a\xe2\x80\xa8DELE b\r\n", "257 *"))
	post("nel", []string{"MKD a\xc2\x85DELE b"}, step("MKD a\xc2\x85DELE b\r\n", "257 *"))
	post("two-verbs-one-line", []string{"PWD DELE b"}, step("PWD DELE b\r\n", `257 "/" rec`))
	post("cr-then-command", nil, step("MKD a\rDELE "+smuggledMarker+"\r\n", proxy.ReplyBadChar))
	post("nul-then-command", nil, step("MKD a\x00\r\nDELE "+smuggledMarker+"\x00\r\n", proxy.ReplyBadChar, proxy.ReplyBadChar))
	var echo20 string
	var want20, rel20 []string
	for i := range 20 {
		echo20 += fmt.Sprintf("SITE ECHO %d\r\n", i)
		want20 = append(want20, fmt.Sprintf("200 echo %d", i))
		rel20 = append(rel20, fmt.Sprintf("SITE ECHO %d", i))
	}
	post("pipelined-20-in-order", rel20, corpusStep{send: echo20, want: want20})
	var echo60 string
	var want60, rel60 []string
	for i := range 60 {
		echo60 += fmt.Sprintf("SITE ECHO p%d\r\n", i)
		want60 = append(want60, fmt.Sprintf("200 echo p%d", i))
		rel60 = append(rel60, fmt.Sprintf("SITE ECHO p%d", i))
	}
	post("pipelined-60-past-the-queue", rel60, corpusStep{send: echo60, want: want60})
	post("pipelined-local-and-relayed", []string{"SITE ECHO 1", "SITE ECHO 2", "SITE ECHO 3"},
		step("PBSZ 0\r\nSITE ECHO 1\r\nAUTH TLS\r\nSITE ECHO 2\r\nPASV\r\nSITE ECHO 3\r\n",
			proxy.ReplyPbszEarly, "200 echo 1", proxy.ReplyAuthNone, "200 echo 2", "227 Entering Passive Mode (127,0,0,1,*", "200 echo 3"))
	post("pipelined-with-bad-lines", []string{"SITE ECHO 1", "SITE ECHO 2"},
		step("SITE ECHO 1\r\nBAD\x00\r\nSITE ECHO 2\r\n\r\nSITE ECHO "+smuggledMarker+"\n SITE ECHO "+smuggledMarker+"\r\n",
			"200 echo 1", proxy.ReplyBadChar, "200 echo 2", proxy.ReplyUnknownCmd, proxy.ReplyBadLine, proxy.ReplyUnknownCmd))
	post("pipelined-user-pass-after-login", nil, step("USER x\r\nPASS y\r\n", proxy.ReplyLoggedIn, proxy.ReplyLoggedIn))
	cs = append(cs, corpusCase{cat: "smuggling", name: "post/pipelined-after-quit", env: "plain", login: true,
		steps:  []corpusStep{step("SITE ECHO 1\r\nQUIT\r\nDELE "+smuggledMarker+"\r\n", "200 echo 1")},
		closes: true, final: "221 rec bye\r\n", relayed: []string{"SITE ECHO 1", "QUIT"}})
	cs = append(cs, corpusCase{cat: "smuggling", name: "pre/pipelined-login-and-commands", env: "plain", selfLogin: true,
		steps:   []corpusStep{step("USER {U}\r\nPASS pw\r\nPWD\r\nCWD /\r\nSITE ECHO p\r\n", proxy.ReplyUserOK, "230 rec welcome", `257 "/" rec`, "250 rec cwd", "200 echo p")},
		relayed: []string{"PWD", "CWD /", "SITE ECHO p"}})
	cs = append(cs, corpusCase{cat: "smuggling", name: "pre/pipelined-local-commands", env: "plain",
		steps: []corpusStep{step("AUTH TLS\r\nPBSZ 0\r\nPROT P\r\nHOST a.example\r\nFEAT\r\nSYST\r\nCLNT x\r\nOPTS UTF8 ON\r\nHELP\r\nNOOP\r\n",
			proxy.ReplyAuthNone, proxy.ReplyPbszEarly, proxy.ReplyProtEarly, proxy.ReplyHostOK, featPreLogin, proxy.ReplySyst, proxy.ReplyClnt, proxy.ReplyUTF8, helpPreLogin, proxy.ReplyNoop)},
		relayed: []string{"OPTS UTF8 ON"}})
	cs = append(cs, corpusCase{cat: "smuggling", name: "pre/pipelined-failed-login", env: "plain", run: func(x *caseRun) {
		x.client = dialExact(x.t, x.env.addr())
		x.client.expect(greeting)
		x.exchange("USER {U}\r\nPASS bad\r\nPWD\r\nDELE "+smuggledMarker+"\r\n", proxy.ReplyUserOK, proxy.ReplyLoginBad, proxy.ReplyNotLoggedIn, proxy.ReplyNotLoggedIn)
		first := x.env.backend.find(x.user)
		if first == nil {
			x.t.Fatal("no backend session for the failed login")
		}
		select {
		case <-first.done:
		case <-time.After(3 * time.Second):
			x.t.Fatal("backend leg of a failed login still open")
		}
		if got := first.snapshot(); len(got) != 2 || got[0] != "USER "+x.user+"\r\n" || got[1] != "PASS bad\r\n" {
			x.t.Fatalf("failed login: backend received %q", got)
		}
		x.login()
		x.noopInSync()
		x.backendSaw(nil, true)
	}})
	cs = append(cs, corpusCase{cat: "smuggling", name: "post/pipelined-during-transfer", env: "plain", run: func(x *caseRun) {
		x.client = dialExact(x.t, x.env.addr())
		x.client.expect(greeting)
		x.login()
		dc := pasvConnect(x)
		x.exchange("RETR f\r\nSITE ECHO during\r\n", "150 rec opening")
		got, _ := io.ReadAll(dc)
		x.client.expect("226 rec done")
		x.client.expect("200 echo during")
		if string(got) != recPayload("RETR", "f") {
			x.t.Fatalf("data %q", got)
		}
		x.noopInSync()
		x.backendSaw([]string{"PASV", "RETR f", "SITE ECHO during"}, true)
	}})
	// QUIT sent while a transfer runs takes effect after it, and nothing sent after QUIT is
	// read (the client reader stops at QUIT).
	cs = append(cs, corpusCase{cat: "smuggling", name: "post/quit-during-transfer", env: "plain", run: func(x *caseRun) {
		x.client = dialExact(x.t, x.env.addr())
		x.client.expect(greeting)
		x.login()
		dc := pasvConnect(x)
		x.exchange("RETR f\r\nQUIT\r\nDELE "+smuggledMarker+"\r\n", "150 rec opening")
		got, _ := io.ReadAll(dc)
		if string(got) != recPayload("RETR", "f") {
			x.t.Fatalf("data %q", got)
		}
		x.client.expect("226 rec done")
		x.client.expectClose("221 rec bye\r\n")
		x.backendSaw([]string{"PASV", "RETR f", "QUIT"}, false)
		x.backendClosed()
	}})
	return cs
}
