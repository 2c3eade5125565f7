package proxy_test

// Corpus cases with a hostile backend: overlong, malformed, endless and unsolicited replies,
// in the login phase, after login and around transfers.

import (
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ftpsproxy/ftpsproxy/proxy"
)

func hostileBackendCases(ipv6 bool) []corpusCase {
	var cs []corpusCase
	// lost: the backend's answer to PWD ends the session with exactly one 421 line.
	lost := func(name string, hook recHook, final string) {
		cs = append(cs, corpusCase{cat: "backend", name: name, mkEnv: hostileEnv(hook, "127.0.0.1:0"), login: true,
			steps: []corpusStep{step("PWD\r\n")}, closes: true, final: final, relayed: []string{"PWD"}})
	}
	// relayed: the backend's answer to PWD reaches the client byte for byte, and the session
	// goes on.
	relayed := func(name string, rawReply string) {
		cs = append(cs, corpusCase{cat: "backend", name: name, mkEnv: hostileEnv(onVerb("PWD", rawReply, false), "127.0.0.1:0"), login: true,
			steps: []corpusStep{step("PWD\r\n", "raw:"+rawReply)}, relayed: []string{"PWD"}})
	}
	lost("overlong-reply-line-8193", onVerb("PWD", "257 "+strings.Repeat("x", 8193-6)+"\r\n", false), line421NoBackend)
	lost("overlong-reply-line-100k", onVerb("PWD", "257 "+strings.Repeat("x", 100000)+"\r\n", false), line421NoBackend)
	lost("overlong-line-in-multiline", onVerb("PWD", "257-a\r\n"+strings.Repeat("x", 9000)+"\r\n257 b\r\n", false), line421NoBackend)
	relayed("reply-line-8192-exactly", "257 "+strings.Repeat("x", 8192-6)+"\r\n")
	lost("endless-multiline", func(s *recSess, v, _ string) bool {
		if v != "PWD" {
			return false
		}
		writeEndlessly(s, "257-start\r\n", strings.Repeat(" more lines of an endless reply\r\n", 2000))
		s.quit = true
		return true
	}, line421NoBackend)
	lost("endless-line-no-lf", func(s *recSess, v, _ string) bool {
		if v != "PWD" {
			return false
		}
		writeEndlessly(s, "257 ", strings.Repeat("x", 65536))
		s.quit = true
		return true
	}, line421NoBackend)
	lost("multiline-over-1mib", onVerb("PWD", "257-start\r\n"+strings.Repeat(" 0123456789012345678901234567890123456789\r\n", 26000)+"257 end\r\n", false), line421NoBackend)
	relayed("multiline-just-under-1mib", "211-start\r\n"+strings.Repeat(" 0123456789012345678901234567890123456789\r\n", 24000)+"211 end\r\n")
	for _, r := range []string{"abc\r\n", "99 x\r\n", "2000 x\r\n", "20\r\n", "\r\n", "200x\r\n", "-200 x\r\n", "2 0 x\r\n", "099 x\r\n", "\x00\x00\x00 x\r\n", "２００ x\r\n"} {
		lost("malformed-code-"+strconv.Quote(r), onVerb("PWD", r, false), line421NoBackend)
	}
	for _, r := range []string{"631 protected\r\n", "632-conf\r\n632 end\r\n", "633 enc\r\n", "600 x\r\n", "699 x\r\n"} {
		lost("6xx-"+strconv.Quote(r), onVerb("PWD", r, false), line421NoBackend)
	}
	lost("421-relayed", onVerb("PWD", "421 backend going away\r\n", true), "421 backend going away\r\n")
	// SPEC §4: "exactly one `421 <text>` line, never inside a multi-line reply". A line that
	// starts "421-" opens a multi-line reply that never ends, so the one line must be "421 ...".
	for _, r := range []string{"421-backend\r\n going\r\n421 away\r\n", "421-backend\r\n"} {
		cs = append(cs, corpusCase{cat: "backend", name: "421-multiline-as-one-line-" + strconv.Quote(r), mkEnv: hostileEnv(onVerb("PWD", r, true), "127.0.0.1:0"), run: func(x *caseRun) {
			x.client = dialExact(x.t, x.env.addr())
			x.client.expect(greeting)
			x.login()
			x.client.send("PWD\r\n")
			x.client.c.SetReadDeadline(time.Now().Add(3 * time.Second))
			rest, err := io.ReadAll(x.client.r)
			if err != nil && !errors.Is(err, syscall.ECONNRESET) {
				x.t.Fatalf("not closed: %q %v", rest, err)
			}
			line, ok := strings.CutSuffix(string(rest), "\r\n")
			if !ok || !strings.HasPrefix(line, "421 ") || strings.ContainsAny(line, "\r\n") {
				x.t.Fatalf("got %q, want exactly one \"421 <text>\" line then close", rest)
			}
			x.backendSaw([]string{"PWD"}, false)
		}})
	}
	lost("closes-mid-multiline", onVerb("PWD", "257-partial\r\n more\r\n", true), line421NoBackend)
	lost("closes-mid-line", onVerb("PWD", "25", true), line421NoBackend)
	lost("closes-without-reply", onVerb("PWD", "", true), line421NoBackend)
	relayed("bare-lf-reply-kept", "257 \"/\" lf\n")
	relayed("nul-in-reply-text-kept", "257 \"/\x00\" nul\r\n")
	relayed("multiline-with-inner-421", "211-status\r\n421 not the end\r\n211 end\r\n")
	relayed("multiline-other-code-inside", "211-a\r\n212 b\r\n211 c\r\n")
	relayed("code-only-line", "200\r\n")
	cs = append(cs, corpusCase{cat: "backend", name: "1xx-flood-then-final", mkEnv: hostileEnv(onVerb("PWD", strings.Repeat("150 flood\r\n", 10000)+"257 done\r\n", false), "127.0.0.1:0"),
		login: true, steps: []corpusStep{{send: "PWD\r\n", want: append(repeated("150 flood", 10000), "257 done")}}, relayed: []string{"PWD"}})
	cs = append(cs, corpusCase{cat: "backend", name: "slow-drip-reply", mkEnv: hostileEnv(func(s *recSess, v, _ string) bool {
		if v != "PWD" {
			return false
		}
		for _, b := range []byte("257 \"/\" slow\r\n") {
			s.raw(string(b))
			time.Sleep(5 * time.Millisecond)
		}
		return true
	}, "127.0.0.1:0"), login: true, steps: []corpusStep{step("PWD\r\n", `257 "/" slow`)}, relayed: []string{"PWD"}})
	cs = append(cs, corpusCase{cat: "backend", name: "unsolicited-reply-dropped", mkEnv: hostileEnv(onVerb("CWD", "250 ok\r\n200 stray "+smuggledMarker+"\r\n", false), "127.0.0.1:0"),
		login: true, steps: []corpusStep{step("CWD /\r\n", "250 ok"), {pause: 200 * time.Millisecond, send: "PWD\r\n", want: []string{`257 "/" rec`}}},
		relayed: []string{"CWD /", "PWD"}})
	cs = append(cs, corpusCase{cat: "backend", name: "unsolicited-421", mkEnv: hostileEnv(onVerb("CWD", "250 ok\r\n421 stray shutdown\r\n", true), "127.0.0.1:0"),
		login: true, steps: []corpusStep{step("CWD /\r\n", "250 ok")}, closes: true, final: "421 stray shutdown\r\n", relayed: []string{"CWD /"}})
	cs = append(cs, corpusCase{cat: "backend", name: "unsolicited-6xx", mkEnv: hostileEnv(onVerb("CWD", "250 ok\r\n631 stray\r\n", false), "127.0.0.1:0"),
		login: true, steps: []corpusStep{step("CWD /\r\n", "250 ok")}, closes: true, final: line421NoBackend, relayed: []string{"CWD /"}})
	cs = append(cs, corpusCase{cat: "backend", name: "endless-1xx-after-command", mkEnv: hostileEnv(func(s *recSess, v, _ string) bool {
		if v != "STAT" {
			return false
		}
		writeEndlessly(s, "", strings.Repeat("150 flood\r\n", 1000))
		s.quit = true
		return true
	}, "127.0.0.1:0"), run: func(x *caseRun) {
		x.client = dialExact(x.t, x.env.addr())
		x.client.expect(greeting)
		x.login()
		x.client.send("STAT\r\n")
		for range 5000 {
			x.client.expect("150 flood")
		}
		x.client.c.Close()
		x.backendClosed()
	}})

	// Login-phase hostility: the client only ever sees the one 421 line.
	loginFails := func(name string, hook recHook, final string) {
		cs = append(cs, corpusCase{cat: "backend", name: name, mkEnv: hostileEnv(hook, "127.0.0.1:0"), run: func(x *caseRun) {
			x.client = dialExact(x.t, x.env.addr())
			x.client.expect(greeting)
			x.exchange("USER {U}\r\n", proxy.ReplyUserOK)
			start := time.Now()
			x.client.send("PASS " + corpusPassword + "\r\n")
			x.client.expectClose(final)
			if d := time.Since(start); d > 4*time.Second {
				x.t.Fatalf("421 took %v", d)
			}
			x.allBackendClosed()
		}})
	}
	greetWith := func(raw string) recHook {
		return func(s *recSess, v, _ string) bool {
			if v != "" {
				return false
			}
			s.raw(raw)
			return true
		}
	}
	loginFails("greeting-overlong", greetWith("220 "+strings.Repeat("x", 9000)+"\r\n"), line421NoBackend)
	loginFails("greeting-6xx", greetWith("631 hello\r\n"), line421NoBackend)
	loginFails("greeting-garbage", greetWith("SSH-2.0-OpenSSH_9.6\r\n"), line421NoBackend)
	loginFails("greeting-421", greetWith("421 too busy\r\n"), line421NoBackend)
	loginFails("greeting-530", greetWith("530 go away\r\n"), line421NoBackend)
	loginFails("greeting-none", greetWith(""), line421NoBackend)
	loginFails("greeting-endless-120", func(s *recSess, v, _ string) bool {
		if v != "" {
			return false
		}
		go func() {
			for range 200 {
				if _, err := io.WriteString(s.c, "120 ready soon\r\n"); err != nil {
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
		return true
	}, line421NoBackend)
	loginFails("greeting-endless-multiline", func(s *recSess, v, _ string) bool {
		if v != "" {
			return false
		}
		go writeEndlessly(s, "220-hello\r\n", strings.Repeat(" and more\r\n", 1000))
		return true
	}, line421NoBackend)
	loginFails("user-6xx", onVerb("USER", "631 who\r\n", false), line421NoBackend)
	loginFails("pass-6xx", onVerb("PASS", "632 what\r\n", false), line421NoBackend)
	loginFails("user-421", onVerb("USER", "421 not now\r\n", true), "421 not now\r\n")
	loginFails("pass-421", onVerb("PASS", "421 not now either\r\n", true), "421 not now either\r\n")
	loginFails("pass-closes", onVerb("PASS", "", true), line421NoBackend)
	loginFails("pass-endless-1xx", func(s *recSess, v, _ string) bool {
		if v != "PASS" {
			return false
		}
		for range 300 {
			if _, err := io.WriteString(s.c, "150 wait\r\n"); err != nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		s.quit = true
		return true
	}, line421NoBackend)
	cs = append(cs, corpusCase{cat: "backend", name: "extra-line-before-user-reply", mkEnv: hostileEnv(onVerb("USER", "200 extra\r\n331 pass\r\n", false), "127.0.0.1:0"),
		run: func(x *caseRun) {
			x.client = dialExact(x.t, x.env.addr())
			x.client.expect(greeting)
			x.exchange("USER {U}\r\nPASS pw\r\n", proxy.ReplyUserOK, proxy.ReplyLoginBad)
			x.exchange("NOOP\r\n", proxy.ReplyNoop)
		}})

	// Transfer-phase hostility. xfer runs PASV + RETR against a backend whose answer to its
	// own PASV is scripted.
	xfer := func(name string, hook recHook, listen string, want []string, final string, closes bool, relayed []string) {
		cs = append(cs, corpusCase{cat: "backend", name: name, mkEnv: hostileEnv(hook, listen), run: func(x *caseRun) {
			x.client = dialExact(x.t, x.env.addr())
			x.client.expect(greeting)
			x.login()
			dc := pasvConnect(x)
			x.exchange("RETR f\r\n", want...)
			if closes {
				x.client.expectClose(final)
				x.backendSaw(relayed, false)
				x.backendClosed()
			} else {
				x.noopInSync()
				x.backendSaw(relayed, true)
			}
			dc.SetReadDeadline(time.Now().Add(3 * time.Second))
			if _, err := io.ReadAll(dc); err != nil {
				x.t.Fatalf("client data connection not closed: %v", err)
			}
		}})
	}
	pasvReply := func(r string) recHook { return onVerb("PASV", r, false) }
	for _, r := range []string{"227 garbage\r\n", "227 Entering Passive Mode (127,0,0,1,0,0).\r\n", "227 Entering Passive Mode (127,0,0,1,300,1).\r\n",
		"227 Entering Passive Mode (127,0,0,1,1).\r\n", "227 Entering Passive Mode (127,0,0,1,-1,5).\r\n", "227 Entering Passive Mode (127,0,0,1,255,255,1).\r\n",
		"227 Entering Passive Mode (1270,0,0,1,4,1).\r\n", "227\r\n", "227-multi\r\n227 (garbage)\r\n", "227 Entering Passive Mode (127,0,0,1,4,\x001).\r\n",
		"227 Entering Passive Mode (127,0,0,1,1,1).\r\n", "229 Entering Extended Passive Mode (|||6446|)\r\n", "500 no passive\r\n", "200 sure\r\n"} {
		xfer("pasv-reply-"+strconv.Quote(r), pasvReply(r), "127.0.0.1:0", []string{proxy.ReplyCantOpen}, "", false, []string{"PASV"})
	}
	xfer("pasv-reply-421", pasvReply("421 leaving\r\n"), "127.0.0.1:0", nil, "421 leaving\r\n", true, []string{"PASV"})
	xfer("pasv-reply-6xx", pasvReply("631 x\r\n"), "127.0.0.1:0", nil, line421NoBackend, true, []string{"PASV"})
	xfer("pasv-no-reply-close", onVerb("PASV", "", true), "127.0.0.1:0", nil, line421NoBackend, true, []string{"PASV"})
	// A backend that stops answering must not hold a session whose client has gone: when the
	// client leaves, both legs are closed and the data port is returned (SPEC §4 "421 is one
	// policy": the session's end closes the client connection and its backend leg).
	silentThenVanish := func(name, verb string, body func(x *caseRun)) {
		cs = append(cs, corpusCase{cat: "backend", name: name, mkEnv: hostileEnv(onVerb(verb, "", false), "127.0.0.1:0"), run: func(x *caseRun) {
			x.client = dialExact(x.t, x.env.addr())
			x.client.expect(greeting)
			x.login()
			body(x)
			time.Sleep(100 * time.Millisecond)
			x.client.c.(*net.TCPConn).SetLinger(0)
			x.client.c.Close()
			x.backendClosed()
			waitFor(x.t, 3*time.Second, func() bool { return x.env.proxy.srv.Sessions() == 0 && x.env.proxy.srv.Allocator().InUse() == 0 })
		}})
	}
	silentThenVanish("silent-on-pwd-client-vanishes", "PWD", func(x *caseRun) { x.client.send("PWD\r\n") })
	silentThenVanish("silent-on-pasv-client-vanishes", "PASV", func(x *caseRun) {
		dc := pasvConnect(x)
		x.client.send("RETR f\r\n")
		time.Sleep(100 * time.Millisecond)
		dc.Close()
	})
	silentThenVanish("silent-on-retr-client-vanishes", "RETR", func(x *caseRun) {
		dc := pasvConnect(x)
		x.client.send("RETR f\r\n")
		time.Sleep(100 * time.Millisecond)
		dc.Close()
	})
	xfer("150-then-close", onVerb("RETR", "150 here it comes\r\n", true), "127.0.0.1:0",
		[]string{"150 here it comes", proxy.ReplyAborted}, line421NoBackend, true, []string{"PASV", "RETR f"})
	xfer("150-then-6xx", onVerb("RETR", "150 here it comes\r\n631 x\r\n", false), "127.0.0.1:0",
		[]string{"150 here it comes", proxy.ReplyAborted}, line421NoBackend, true, []string{"PASV", "RETR f"})
	// SPEC §5: "A backend lost during a transfer: the client gets 426, then the 421 policy".
	// A backend that sends 421 mid-transfer is going away with the transfer unfinished.
	xfer("150-then-421", onVerb("RETR", "150 here it comes\r\n421 going down\r\n", true), "127.0.0.1:0",
		[]string{"150 here it comes", proxy.ReplyAborted}, "421 going down\r\n", true, []string{"PASV", "RETR f"})
	xfer("retr-reply-421", onVerb("RETR", "421 no\r\n", true), "127.0.0.1:0", nil, "421 no\r\n", true, []string{"PASV", "RETR f"})
	xfer("retr-1xx-flood", func(s *recSess, v, arg string) bool {
		if v != "RETR" {
			return false
		}
		dc := s.acceptData()
		s.raw(strings.Repeat("150 more\r\n", 1000))
		io.WriteString(dc, "data")
		dc.Close()
		s.reply("226 rec done")
		return true
	}, "127.0.0.1:0", append([]string{"150 rec opening"}, append(repeated("150 more", 1000), "226 rec done")...), "", false, []string{"PASV", "RETR f"})
	if ipv6 {
		for _, r := range []string{"229 (|||0|)\r\n", "229 (|||70000|)\r\n", "229 garbage\r\n", "229 (|||abc|)\r\n", "229 (||||)\r\n",
			"229 (|1|::1|5000|)\r\n", "229 (|||-1|)\r\n", "229 Entering Extended Passive Mode (|||1|)\r\n", "227 (127,0,0,1,4,1)\r\n"} {
			xfer("epsv-reply-"+strconv.Quote(r), onVerb("EPSV", r, false), "[::1]:0", []string{proxy.ReplyCantOpen}, "", false, []string{"EPSV"})
		}
	}
	dataChannelCases(&cs)
	// FEAT from a hostile backend: only the proxy's rewrite reaches the client.
	cs = append(cs, corpusCase{cat: "backend", name: "feat-rewritten", mkEnv: hostileEnv(onVerb("FEAT",
		"211-Features\r\n AUTH TLS\r\n AUTH SSL\r\n PBSZ\r\n PROT\r\n CCC\r\n EPSV\r\n EPRT\r\n HOST\r\n SSCN\r\n LPSV\r\n MLST type*;size*;\r\n  UTF8  \r\n\r\n211 End\r\n", false), "127.0.0.1:0"),
		login: true, relayed: []string{"FEAT"},
		steps: []corpusStep{step("FEAT\r\n", "raw:211-Features:\r\n EPRT\r\n EPSV\r\n MLST type*;size*;\r\n UTF8\r\n211 End\r\n")}})
	cs = append(cs, corpusCase{cat: "backend", name: "feat-refused", mkEnv: hostileEnv(onVerb("FEAT", "500 what\r\n", false), "127.0.0.1:0"),
		login: true, relayed: []string{"FEAT"}, steps: []corpusStep{step("FEAT\r\n", featPreLogin)}})
	return cs
}
