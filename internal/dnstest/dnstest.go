// Package dnstest runs a real DNS server (github.com/miekg/dns) on loopback for tests, with
// answers a test changes while it runs, and a *net.Resolver that asks it.
package dnstest

import (
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
)

// Server is an authoritative DNS server over UDP and TCP on 127.0.0.1 answering from a
// table of records the test sets.
type Server struct {
	Addr string // ip:port, UDP and TCP

	mu      sync.Mutex
	records map[string][]dns.RR // by lower-case FQDN
	fail    map[string]int      // rcode to answer for a name instead of its records
	queries atomic.Int64
}

// Start starts a server on 127.0.0.1 at a free port; t.Cleanup stops it.
func Start(t testing.TB) *Server {
	t.Helper()
	pc, ln, err := listenBoth()
	if err != nil {
		t.Fatalf("dnstest: %v", err)
	}
	return Serve(t, pc, ln)
}

// Serve starts a server on sockets the caller bound (on port 53 of another network
// namespace, say); t.Cleanup stops it.
func Serve(t testing.TB, pc net.PacketConn, ln net.Listener) *Server {
	s := &Server{records: map[string][]dns.RR{}, fail: map[string]int{}, Addr: pc.LocalAddr().String()}
	udp := &dns.Server{PacketConn: pc, Handler: s}
	tcp := &dns.Server{Listener: ln, Handler: s}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	t.Cleanup(func() {
		udp.Shutdown()
		tcp.Shutdown()
	})
	return s
}

// listenBoth binds UDP and TCP on one free port of 127.0.0.1, trying again when the TCP
// port of the UDP port picked is taken.
func listenBoth() (net.PacketConn, net.Listener, error) {
	var err error
	for range 20 {
		var pc net.PacketConn
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			return nil, nil, err
		}
		ln, lerr := net.Listen("tcp", pc.LocalAddr().String())
		if lerr == nil {
			return pc, ln, nil
		}
		pc.Close()
		err = lerr
	}
	return nil, nil, err
}

// Set replaces the records of name with rrs, each in zone-file syntax without the owner
// ("A 10.0.0.1", "AAAA ::1", "SRV 10 5 21 ftp1.farm.test."); no rrs: the name has none.
func (s *Server) Set(t testing.TB, name string, rrs ...string) {
	t.Helper()
	fqdn := dns.Fqdn(strings.ToLower(name))
	var out []dns.RR
	for _, r := range rrs {
		rr, err := dns.NewRR(fqdn + " 1 IN " + r)
		if err != nil {
			t.Fatalf("dnstest: %q: %v", r, err)
		}
		out = append(out, rr)
	}
	s.mu.Lock()
	s.records[fqdn] = out
	delete(s.fail, fqdn)
	s.mu.Unlock()
}

// Fail makes every question about name answered with SERVFAIL until Set is called again.
func (s *Server) Fail(name string) {
	s.mu.Lock()
	s.fail[dns.Fqdn(strings.ToLower(name))] = dns.RcodeServerFailure
	s.mu.Unlock()
}

// Queries returns how many questions the server answered.
func (s *Server) Queries() int64 { return s.queries.Load() }

// ServeDNS implements dns.Handler: the records of the question's name and type, NXDOMAIN for
// a name never set.
func (s *Server) ServeDNS(w dns.ResponseWriter, q *dns.Msg) {
	s.queries.Add(1)
	m := new(dns.Msg)
	m.SetReply(q)
	m.Authoritative = true
	if len(q.Question) == 1 {
		qn := strings.ToLower(q.Question[0].Name)
		s.mu.Lock()
		rrs, known := s.records[qn]
		rcode, failing := s.fail[qn]
		s.mu.Unlock()
		switch {
		case failing:
			m.Rcode = rcode
		case !known:
			m.Rcode = dns.RcodeNameError
		}
		for _, rr := range rrs {
			if rr.Header().Rrtype == q.Question[0].Qtype {
				m.Answer = append(m.Answer, rr)
			}
		}
	}
	if w.LocalAddr().Network() == "udp" {
		// As a real server does: what does not fit the client's buffer is cut, with TC set,
		// and the client asks again over TCP.
		size := dns.MinMsgSize
		if opt := q.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
		}
		m.Truncate(size)
	}
	w.WriteMsg(m)
}

// Resolver returns a pure-Go resolver that sends every question to s.
func (s *Server) Resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, s.Addr)
	}}
}
