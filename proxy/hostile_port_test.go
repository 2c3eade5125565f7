package proxy_test

// Corpus cases on PORT/EPRT/EPSV arguments and on the targets the proxy may dial.

import (
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ftpsproxy/ftpsproxy/proxy"
)

func portSyntaxCases() []corpusCase {
	var cs []corpusCase
	add := func(cmd, want string) {
		cs = append(cs, corpusCase{cat: "port-syntax", name: strconv.Quote(cmd), env: "plain", login: true, steps: []corpusStep{step(cmd+"\r\n", want)}})
	}
	for _, a := range []string{"127,0,0,1,256,1", "127,0,0,256,4,1", "256,0,0,1,4,1", "-1,0,0,1,4,1", "127,0,0,1,-4,1", "127,0,0,1,+4,1",
		"127,0,0,1,4", "127,0,0,1", "127", "", ",", ",,,,,", "127,0,0,1,4,1,5", "127,0,0,1,0,0", "127.0.0.1,4,1", "0x7f,0,0,1,4,1",
		"127,0,0,1,4,1;", "127,,0,1,4,1", "1270,0,0,1,4,1", "0127,0,0,1,4,1", "127,0,0,1,0004,1", "127, 0,0,1,4,1", "127,0,0,1,4,1 x",
		"999999999999999999999,0,0,1,4,1", "127,0,0,1,65535", "127,0,0,1,4,1,", "\xd9\xa1\xd9\xa2\xd9\xa7,0,0,1,4,1", "127,0,0,1,4,1|",
		"127,0,0,1,4,1\x01", "a,b,c,d,e,f"} {
		add("PORT "+a, proxy.ReplyPortBad)
	}
	add("PORT 127,0,0,1,04,01", proxy.ReplyPortOK) // leading zeros within three digits
	add("PORT  127,0,0,1,4,1", proxy.ReplyPortOK)  // surrounding spaces are trimmed
	for _, a := range []string{"|1|127.0.0.1|0|", "|1|127.0.0.1|65536|", "|1|127.0.0.1|70000|", "|1|127.0.0.1|-1|", "|1|127.0.0.1|+1025|",
		"|1|127.0.0.1|", "|1|127.0.0.1|1025", "|1|127.0.0.1|1025||", "|1|127.0.0.1|1025|x", "|2|127.0.0.1|1025|", "|1|::1|1025|",
		"|123456|127.0.0.1|1025|", "|a|127.0.0.1|1025|", "||127.0.0.1|1025|", "|1||1025|", "|1|127.0.0.1||", "|1|127.0.0.1|abc|",
		"|1|127.0.0.1%lo|1025|", "|2|fe80::1%eth0|1025|", "|1|127.0.0.1|001025x|", "\x7f1\x7f127.0.0.1\x7f1025\x7f", ".1.127.0.0.1.1025.",
		"|1|127.0.0.1|1025|1|", "|1|127.000.000.001|1025|", "|1|0x7f.0.0.1|1025|", "|1|2130706433|1025|", "|1| 127.0.0.1|1025|",
		"|1|127.0.0.1|99999999999999999999|", "", "|", "||||", "|1|1.2.3.4.5|1025|"} {
		add("EPRT "+a, proxy.ReplyPortBad)
	}
	for _, a := range []string{"|3|127.0.0.1|1025|", "|0|127.0.0.1|1025|", "|99999|x|1|", "|4|127.0.0.1|1025|"} {
		add("EPRT "+a, proxy.ReplyEprtProto)
	}
	add("EPRT !1!127.0.0.1!1025!", proxy.ReplyPortOK)        // any delimiter in 33..126
	add("EPRT |2|::ffff:127.0.0.1|1025|", proxy.ReplyPortOK) // IPv4-mapped: the client's own address
	for _, a := range []string{"2", "3", "x", "1 2", "-1", "ALL x"} {
		add("EPSV "+a, proxy.ReplyEpsvProto)
	}
	add("EPSV 1", "229 Entering Extended Passive Mode (|||*")
	add("EPSV all", proxy.ReplyEpsvAll)
	add("PASV junk", "227 Entering Passive Mode (127,0,0,1,*")
	return cs
}

func portTargetCases() []corpusCase {
	var cs []corpusCase
	// refused checks a PORT/EPRT target is refused, that a following LIST has nothing to use,
	// and that nothing was dialled (the trap, when there is one, saw no connection).
	refused := func(name string, trapAddr string, cmd func(trap *net.TCPAddr) string) {
		cs = append(cs, corpusCase{cat: "port-target", name: name, env: "plain", run: func(x *caseRun) {
			var trap *net.TCPListener
			var ta *net.TCPAddr
			if trapAddr != "" {
				ln, err := net.Listen("tcp", trapAddr)
				if err != nil {
					x.t.Fatalf("cannot listen on %s: %v", trapAddr, err)
				}
				defer ln.Close()
				trap = ln.(*net.TCPListener)
				ta = ln.Addr().(*net.TCPAddr)
			}
			x.client = dialExact(x.t, x.env.addr())
			x.client.expect(greeting)
			x.login()
			x.exchange(cmd(ta)+"\r\n", proxy.ReplyPortRefused)
			x.exchange("LIST\r\n", proxy.ReplyNeedData)
			x.exchange("RETR x\r\n", proxy.ReplyNeedData)
			x.noopInSync()
			x.backendSaw(nil, true)
			if trap != nil {
				trap.SetDeadline(time.Now().Add(100 * time.Millisecond))
				if c, err := trap.Accept(); err == nil {
					c.Close()
					x.t.Fatal("the refused target was dialled")
				}
			}
		}})
	}
	portArg := func(ip string, port int) string {
		return strings.ReplaceAll(ip, ".", ",") + fmt.Sprintf(",%d,%d", port>>8, port&0xff)
	}
	trapPort := func(ip string) func(*net.TCPAddr) string {
		return func(a *net.TCPAddr) string { return "PORT " + portArg(ip, a.Port) }
	}
	trapEprt := func(f string) func(*net.TCPAddr) string {
		return func(a *net.TCPAddr) string { return fmt.Sprintf(f, a.Port) }
	}
	fixed := func(c string) func(*net.TCPAddr) string { return func(*net.TCPAddr) string { return c } }
	refused("port-127.0.0.2-other-loopback-host", "127.0.0.2:0", trapPort("127.0.0.2"))
	refused("eprt-127.0.0.2", "127.0.0.2:0", trapEprt("EPRT |1|127.0.0.2|%d|"))
	refused("eprt-mapped-127.0.0.2", "127.0.0.2:0", trapEprt("EPRT |2|::ffff:127.0.0.2|%d|"))
	refused("port-127.255.255.254", "", fixed("PORT 127,255,255,254,20,0"))
	for _, ip := range []string{"10.1.2.3", "8.8.8.8", "0.0.0.0", "255.255.255.255", "224.0.0.1", "169.254.169.254", "192.168.0.1"} {
		refused("port-foreign-"+ip, "", fixed("PORT "+portArg(ip, 5000)))
		refused("eprt-foreign-"+ip, "", fixed("EPRT |1|"+ip+"|5000|"))
	}
	refused("eprt-v6-loopback", "", fixed("EPRT |2|::1|5000|"))
	refused("eprt-v6-foreign", "", fixed("EPRT |2|2001:db8::1|5000|"))
	for _, p := range []int{1, 21, 22, 25, 80, 443, 1023} {
		refused(fmt.Sprintf("port-privileged-%d", p), "", fixed("PORT "+portArg("127.0.0.1", p)))
		refused(fmt.Sprintf("eprt-privileged-%d", p), "", fixed(fmt.Sprintf("EPRT |1|127.0.0.1|%d|", p)))
	}
	if os.Geteuid() == 0 {
		refused("port-privileged-1023-trap", "127.0.0.1:1023", trapPort("127.0.0.1"))
	}
	// The control case: a target that is allowed is dialled and used (so the trap can catch).
	cs = append(cs, corpusCase{cat: "port-target", name: "own-address-is-dialled", env: "plain", run: func(x *caseRun) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			x.t.Fatal(err)
		}
		defer ln.Close()
		x.client = dialExact(x.t, x.env.addr())
		x.client.expect(greeting)
		x.login()
		x.exchange("PORT "+portArg("127.0.0.1", ln.Addr().(*net.TCPAddr).Port)+"\r\n", proxy.ReplyPortOK)
		x.exchange("NLST\r\n", "150 rec opening")
		ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
		dc, err := ln.Accept()
		if err != nil {
			x.t.Fatal("the allowed target was not dialled")
		}
		got, _ := io.ReadAll(dc)
		dc.Close()
		x.client.expect("226 rec done")
		if string(got) != recPayload("NLST", "") {
			x.t.Fatalf("data %q", got)
		}
		x.noopInSync()
		x.backendSaw([]string{"PASV", "NLST"}, true)
	}})
	for _, p := range []string{"PORT 127,0,0,1,4,0", "EPRT |1|127.0.0.1|1024|"} {
		cs = append(cs, corpusCase{cat: "port-target", name: "boundary-1024-" + p[:4], env: "plain", login: true, steps: []corpusStep{step(p+"\r\n", proxy.ReplyPortOK)}})
	}
	// The proxy's own listener is on the client's own address here (both on 127.0.0.1), so SPEC
	// allows it. The transfer must still end with a final reply and leave the session usable.
	cs = append(cs, corpusCase{cat: "port-target", name: "proxy-own-listener", env: "plain", run: func(x *caseRun) {
		_, ps, _ := net.SplitHostPort(x.env.addr())
		pp, _ := strconv.Atoi(ps)
		x.client = dialExact(x.t, x.env.addr())
		x.client.expect(greeting)
		x.login()
		// A client on the proxy's own host must not make it dial its own listener (or
		// passive ports): refused like any other bounce, and nothing is dialled.
		x.exchange("PORT "+portArg("127.0.0.1", pp)+"\r\n", proxy.ReplyPortRefused)
		x.noopInSync()
	}})
	return cs
}
