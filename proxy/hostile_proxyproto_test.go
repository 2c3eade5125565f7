package proxy_test

// Corpus cases on PROXY protocol headers from trusted and untrusted peers.

import (
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/ftpsproxy/ftpsproxy/proxy"
	proxyproto "github.com/pires/go-proxyproto"
)

// proxyV2Header formats a PROXY v2 header by hand, so it can be made wrong on purpose.
func proxyV2Header(verCmd, fam byte, length int, body []byte) string {
	b := append([]byte{}, "\r\n\r\n\x00\r\nQUIT\n"...)
	b = append(b, verCmd, fam, byte(length>>8), byte(length))
	return string(append(b, body...))
}

func proxyV2IPv4Body(tlv []byte) []byte {
	b := []byte{198, 51, 100, 7, 127, 0, 0, 1, 0x9c, 0x40, 0, 21}
	return append(b, tlv...)
}

func proxyProtocolCases() []corpusCase {
	var cs []corpusCase
	// silent: the proxy must close without a greeting and without contacting a backend.
	silent := func(name, env, header string, closeWrite bool) {
		cs = append(cs, corpusCase{cat: "proxy-protocol", name: name, env: env, run: func(x *caseRun) {
			x.client = dialExact(x.t, x.env.addr())
			before := x.env.backend.count()
			x.client.send(header)
			if closeWrite {
				x.client.c.(*net.TCPConn).CloseWrite()
			}
			x.client.expectClose("")
			if x.env.backend.count() != before {
				x.t.Fatal("a backend was contacted")
			}
		}})
	}
	v1 := "PROXY TCP4 198.51.100.7 127.0.0.1 40000 21\r\n"
	v2, _ := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.IPv4(198, 51, 100, 7), Port: 40000}, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 21}).Format()
	silent("untrusted-v1", "pp-untrusted", v1+"USER "+smuggledMarker+"\r\n", false)
	silent("untrusted-v2", "pp-untrusted", string(v2)+"USER "+smuggledMarker+"\r\n", false)
	silent("untrusted-no-header", "pp-untrusted", "USER "+smuggledMarker+"\r\n", false)
	silent("no-header", "pp", "USER "+smuggledMarker+"\r\n", false)
	silent("no-header-tls", "pp", "\x16\x03\x01\x00\x05hello", false)
	for i, h := range []string{
		"PROXY TCP5 198.51.100.7 127.0.0.1 40000 21\r\n",
		"PROXY TCP4 198.51.100.7 127.0.0.1 40000\r\n",
		"PROXY TCP4 198.51.100.7 127.0.0.1 40000 21 9\r\n",
		"PROXY TCP4 ::1 ::1 40000 21\r\n",
		"PROXY TCP6 198.51.100.7 127.0.0.1 40000 21\r\n",
		"PROXY TCP4 198.51.100.7 127.0.0.1 -1 21\r\n",
		"PROXY TCP4 198.51.100.7 127.0.0.1 65536 21\r\n",
		"PROXY TCP4 198.51.100.7 127.0.0.1 40000 0x15\r\n",
		"PROXY TCP4 256.51.100.7 127.0.0.1 40000 21\r\n",
		"PROXY TCP4 198.51.100 127.0.0.1 40000 21\r\n",
		"PROXY tcp4 198.51.100.7 127.0.0.1 40000 21\r\n",
		"PROXY  TCP4 198.51.100.7 127.0.0.1 40000 21\r\n",
		"PROXY TCP4 198.51.100.7 127.0.0.1 40000 21\n",
		"PROXY TCP4 198.51.100.7 127.0.0.1 40000 21\r\r\n",
		"PROXY TCP4 198.51.100.7\x00 127.0.0.1 40000 21\r\n",
		"PROXYX TCP4 198.51.100.7 127.0.0.1 40000 21\r\n",
		"PROXY\r\n",
		"PROXY TCP4 " + strings.Repeat("1", 200) + "\r\n",
		"PROXY TCP4 198.51.100.7 127.0.0.1 40000 21" + strings.Repeat(" ", 80) + "\r\n",
	} {
		silent(fmt.Sprintf("v1-bad-%d", i), "pp", h+"USER "+smuggledMarker+"\r\n", false)
	}
	silent("v1-truncated", "pp", "PROXY TCP4 198.51.100.7 ", true)
	silent("v1-signature-only", "pp", "PROXY", true)
	silent("v2-signature-only", "pp", "\r\n\r\n\x00\r\nQUIT\n", true)
	silent("v2-truncated-address", "pp", proxyV2Header(0x21, 0x11, 12, []byte{198, 51, 100}), true)
	silent("v2-length-beyond-data", "pp", proxyV2Header(0x21, 0x11, 0xffff, proxyV2IPv4Body(nil)), true)
	silent("v2-length-too-short-for-tcp4", "pp", proxyV2Header(0x21, 0x11, 4, []byte{198, 51, 100, 7})+"USER x\r\n", false)
	silent("v2-version-1", "pp", proxyV2Header(0x11, 0x11, 12, proxyV2IPv4Body(nil))+"USER x\r\n", false)
	silent("v2-version-3", "pp", proxyV2Header(0x31, 0x11, 12, proxyV2IPv4Body(nil))+"USER x\r\n", false)
	silent("v2-bad-command", "pp", proxyV2Header(0x2f, 0x11, 12, proxyV2IPv4Body(nil))+"USER x\r\n", false)
	silent("v2-bad-family", "pp", proxyV2Header(0x21, 0x13, 12, proxyV2IPv4Body(nil))+"USER x\r\n", false)
	silent("v2-unspec", "pp", proxyV2Header(0x21, 0x00, 0, nil)+"USER x\r\n", false)
	silent("v2-udp", "pp", proxyV2Header(0x21, 0x12, 12, proxyV2IPv4Body(nil))+"USER x\r\n", false)
	silent("v2-unix", "pp", proxyV2Header(0x21, 0x31, 216, make([]byte, 216))+"USER x\r\n", false)
	silent("v2-oversized", "pp", proxyV2Header(0x21, 0x11, 0xffff, append(proxyV2IPv4Body(nil), make([]byte, 0xffff-12)...))+"USER x\r\n", false)
	// Bad TLVs: a header whose TLV vector does not parse is malformed, and a malformed header
	// is refused (SPEC §3 proxy_protocol; readProxyHeader's contract).
	silent("v2-tlv-length-past-end", "pp", proxyV2Header(0x21, 0x11, 12+3+2, proxyV2IPv4Body([]byte{0x02, 0x00, 0x40, 'a', 'b'}))+"USER x\r\n", false)
	silent("v2-tlv-truncated-header", "pp", proxyV2Header(0x21, 0x11, 12+2, proxyV2IPv4Body([]byte{0x02, 0x00}))+"USER x\r\n", false)
	silent("v2-tlv-one-byte", "pp", proxyV2Header(0x21, 0x11, 12+1, proxyV2IPv4Body([]byte{0x20}))+"USER x\r\n", false)
	// go-proxyproto drops a header that does not arrive in one read.
	cs = append(cs, corpusCase{cat: "proxy-protocol", name: "v1-split", env: "pp", run: func(x *caseRun) {
		x.client = dialExact(x.t, x.env.addr())
		x.client.send("PROXY TCP4 198.51.")
		time.Sleep(100 * time.Millisecond)
		x.client.send("100.7 127.0.0.1 40000 21\r\nUSER " + smuggledMarker + "\r\n")
		x.client.expectClose("")
	}})
	// Accepted headers: the greeting follows, pipelined bytes are kept, and the header's source
	// is the client address for the PORT check.
	ok := func(name, header string, body func(x *caseRun)) {
		cs = append(cs, corpusCase{cat: "proxy-protocol", name: name, env: "pp", run: func(x *caseRun) {
			x.client = dialExact(x.t, x.env.addr())
			x.client.send(strings.ReplaceAll(header, "{U}", x.user))
			x.client.expect(greeting)
			body(x)
		}})
	}
	ok("v1-then-pipelined-user", v1+"USER {U}\r\n", func(x *caseRun) {
		x.client.send("USER " + x.user + "\r\n")
		x.client.expect(proxy.ReplyUserOK)
		x.client.expect(proxy.ReplyUserOK)
		x.exchange("PASS pw\r\n", "230 rec welcome")
		x.exchange("PORT 127,0,0,1,200,10\r\n", proxy.ReplyPortRefused)
		x.exchange("PORT 198,51,100,7,200,10\r\n", proxy.ReplyPortOK)
		x.exchange("EPRT |1|198.51.100.7|5000|\r\n", proxy.ReplyPortOK)
		x.noopInSync()
		x.backendSaw(nil, true)
	})
	ok("v2-valid-tlv", proxyV2Header(0x21, 0x11, 12+3+5, proxyV2IPv4Body([]byte{0x02, 0x00, 0x05, 'a', '.', 'e', 'x', 'y'})), func(x *caseRun) {
		x.login()
		x.exchange("PASV\r\n", "227 Entering Passive Mode (127,0,0,1,*")
		x.noopInSync()
		x.backendSaw(nil, true)
	})
	ok("v1-twice", v1+v1, func(x *caseRun) {
		x.client.expect(proxy.ReplyUnknownCmd)
		x.exchange("NOOP\r\n", proxy.ReplyNoop)
	})
	ok("v2-then-v1-as-command", string(v2)+v1, func(x *caseRun) {
		x.client.expect(proxy.ReplyUnknownCmd)
		x.exchange("NOOP\r\n", proxy.ReplyNoop)
	})
	return cs
}
