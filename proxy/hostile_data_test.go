package proxy_test

// Corpus cases on the data channel (SPEC §5) and on IPv6 control connections.

import (
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/proxy"
)

// dataChannelCases covers SPEC §5 on the data channel.
func dataChannelCases(cs *[]corpusCase) {
	add := func(name string, mkEnv func(*testing.T) *corpusEnv, run func(x *caseRun)) {
		*cs = append(*cs, corpusCase{cat: "data", name: name, env: "plain", mkEnv: mkEnv, run: run})
	}
	start := func(x *caseRun) {
		x.client = dialExact(x.t, x.env.addr())
		x.client.expect(greeting)
		x.login()
	}
	// A connection from another address is refused and counted; the proxy keeps waiting for
	// the client until connect_timeout, then 425; the backend is never asked for anything.
	add("foreign-peer-then-timeout", nil, func(x *caseRun) {
		start(x)
		line := x.exchange("PASV\r\n", "227 *")
		port, _ := port227(line)
		before := x.env.proxy.srv.Foreign.Load()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 5 * time.Second}
		bad, err := d.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			x.t.Fatal(err)
		}
		defer bad.Close()
		t0 := time.Now()
		x.exchange("RETR f\r\n", proxy.ReplyCantOpen)
		if el := time.Since(t0); el < 1500*time.Millisecond || el > 5*time.Second {
			x.t.Fatalf("425 after %v, want after connect_timeout (2s)", el)
		}
		bad.SetReadDeadline(time.Now().Add(time.Second))
		if n, err := bad.Read(make([]byte, 1)); err == nil {
			x.t.Fatalf("the foreign peer read %d bytes", n)
		}
		if got := x.env.proxy.srv.Foreign.Load() - before; got != 1 {
			x.t.Fatalf("foreign connections counted: %d, want 1", got)
		}
		x.noopInSync()
		x.backendSaw(nil, true)
	})
	// A passive port takes one connection: of two made before RETR, one carries the data and
	// the other is closed without a byte.
	add("passive-port-accepts-once", nil, func(x *caseRun) {
		start(x)
		line := x.exchange("PASV\r\n", "227 *")
		port, _ := port227(line)
		var dcs [2]net.Conn
		for i := range dcs {
			c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 5*time.Second)
			if err != nil {
				x.t.Fatal(err)
			}
			defer c.Close()
			dcs[i] = c
		}
		x.exchange("RETR once\r\n", "150 rec opening")
		var got [2]string
		var wg sync.WaitGroup
		for i, c := range dcs {
			wg.Go(func() {
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				b, _ := io.ReadAll(c)
				got[i] = string(b)
			})
		}
		wg.Wait()
		x.client.expect("226 rec done")
		want := recPayload("RETR", "once")
		if !(got[0] == want && got[1] == "" || got[0] == "" && got[1] == want) {
			x.t.Fatalf("data on the two connections: %q", got)
		}
		if c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second); err == nil {
			c.SetReadDeadline(time.Now().Add(time.Second))
			n, _ := c.Read(make([]byte, 1))
			c.Close()
			if n > 0 {
				x.t.Fatal("a used passive port still serves data")
			}
		}
		x.noopInSync()
		x.backendSaw([]string{"PASV", "RETR once"}, true)
	})
	// SPEC §5: the backend's final reply reaches the client only after the data relay toward
	// the client has finished, even when the backend sends 226 before its data.
	early := hostileEnv(func(s *recSess, v, arg string) bool {
		if v != "RETR" {
			return false
		}
		dc := s.acceptData()
		if dc == nil {
			return true
		}
		s.raw("226 rec done early\r\n")
		for range 5 {
			io.WriteString(dc, strings.Repeat("d", 1000))
			time.Sleep(100 * time.Millisecond)
		}
		dc.Close()
		return true
	}, "127.0.0.1:0")
	add("226-before-data", early, func(x *caseRun) {
		start(x)
		dc := pasvConnect(x)
		x.exchange("RETR f\r\n", "150 rec opening", "226 rec done early")
		dc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		got, err := io.ReadAll(dc)
		if err != nil || len(got) != 5000 {
			x.t.Fatalf("226 arrived before the data was complete: %d bytes then %v", len(got), err)
		}
		x.noopInSync()
		x.backendSaw([]string{"PASV", "RETR f"}, true)
	})
	// SPEC §5: ABOR (with or without Telnet IP/Synch) tears down both data legs and relays the
	// backend's 426/226 in order. The backend receives a plain re-serialised ABOR.
	abor := hostileEnv(func(s *recSess, v, arg string) bool {
		if v != "RETR" {
			return false
		}
		dc := s.acceptData()
		if dc == nil {
			return true
		}
		io.WriteString(dc, strings.Repeat("a", 64<<10))
		s.readLine() // waits for the ABOR
		dc.Close()
		s.raw("426 rec transfer aborted\r\n226 rec abor ok\r\n")
		return true
	}, "127.0.0.1:0")
	for _, pre := range []string{"", "\xff\xf4\xff\xf2", "urgent"} {
		name := "abor-mid-transfer-" + map[string]string{"": "plain", "\xff\xf4\xff\xf2": "iac-ip-dm", "urgent": "iac-ip-synch-oob"}[pre]
		add(name, abor, func(x *caseRun) {
			start(x)
			dc := pasvConnect(x)
			x.exchange("RETR big\r\n", "150 rec opening")
			if _, err := io.ReadFull(dc, make([]byte, 1000)); err != nil {
				x.t.Fatal(err)
			}
			switch pre {
			case "urgent":
				x.client.send("\xff\xf4\xff")
				sendUrgent(x.t, x.client.c, []byte{0xf2})
			default:
				x.client.send(pre)
			}
			x.exchange("ABOR\r\n", "426 rec transfer aborted", "226 rec abor ok")
			dc.SetReadDeadline(time.Now().Add(3 * time.Second))
			if _, err := io.Copy(io.Discard, dc); err != nil && !errors.Is(err, syscall.ECONNRESET) {
				x.t.Fatalf("client data leg not torn down: %v", err)
			}
			x.noopInSync()
			x.backendSaw([]string{"PASV", "RETR big", "ABOR"}, true)
		})
	}
	// A backend that asks for an account: 332 is relayed, only ACCT is taken meanwhile.
	acct := hostileEnv(func(s *recSess, v, arg string) bool {
		switch v {
		case "PASS":
			s.reply("332 rec need account")
		case "ACCT":
			s.reply("230 rec account ok")
		default:
			return false
		}
		return true
	}, "127.0.0.1:0")
	*cs = append(*cs, corpusCase{cat: "order", name: "pre/332-then-acct", mkEnv: acct, run: func(x *caseRun) {
		x.client = dialExact(x.t, x.env.addr())
		x.client.expect(greeting)
		x.exchange("USER {U}\r\nPASS pw\r\n", proxy.ReplyUserOK, "332 rec need account")
		x.exchange("PWD\r\nDELE "+smuggledMarker+"\r\n", proxy.ReplyAcctExpected, proxy.ReplyAcctExpected)
		x.exchange("ACCT a\x00"+smuggledMarker+"\r\n", proxy.ReplyBadChar)
		x.exchange("ACCT acc 1\r\n", "230 rec account ok")
		x.noopInSync()
		x.backendSaw([]string{"ACCT acc 1"}, true)
	}})
}

func ipv6Cases() []corpusCase {
	var cs []corpusCase
	post := func(name string, steps ...corpusStep) {
		cs = append(cs, corpusCase{cat: "ipv6", name: name, env: "v6", login: true, steps: steps})
	}
	post("pasv-refused", step("PASV\r\n", proxy.ReplyPasvV6))
	post("epsv", step("EPSV\r\n", "229 Entering Extended Passive Mode (|||*"))
	post("epsv-2", step("EPSV 2\r\n", "229 Entering Extended Passive Mode (|||*"))
	post("epsv-1", step("EPSV 1\r\n", proxy.ReplyEpsvProto6))
	post("eprt-own", step("EPRT |2|::1|5000|\r\n", proxy.ReplyPortOK))
	post("eprt-v4", step("EPRT |1|127.0.0.1|5000|\r\n", proxy.ReplyPortRefused))
	post("eprt-other-v6", step("EPRT |2|::2|5000|\r\n", proxy.ReplyPortRefused))
	post("eprt-privileged", step("EPRT |2|::1|21|\r\n", proxy.ReplyPortRefused))
	post("port-v4", step("PORT 127,0,0,1,20,0\r\n", proxy.ReplyPortRefused))
	post("eprt-zone", step("EPRT |2|::1%lo|5000|\r\n", proxy.ReplyPortBad))
	cs = append(cs, corpusCase{cat: "ipv6", name: "transfer", env: "v6", run: func(x *caseRun) {
		x.client = dialExact(x.t, x.env.addr())
		x.client.expect(greeting)
		x.login()
		line := x.exchange("EPSV\r\n", "229 *")
		port := line[strings.Index(line, "|||")+3 : strings.LastIndex(line, "|")]
		dc, err := net.Dial("tcp", net.JoinHostPort("::1", port))
		if err != nil {
			x.t.Fatal(err)
		}
		defer dc.Close()
		x.exchange("RETR v6\r\n", "150 rec opening")
		got, _ := io.ReadAll(dc)
		x.client.expect("226 rec done")
		if string(got) != recPayload("RETR", "v6") {
			x.t.Fatalf("data %q", got)
		}
		x.noopInSync()
		x.backendSaw([]string{"EPSV", "RETR v6"}, true)
	}})
	return cs
}
