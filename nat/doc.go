// Package nat translates FTP data-connection addresses and owns the proxy's passive data ports.
//
// It parses and formats the address forms FTP puts on the control connection — the 227 and 229
// passive replies (RFC 959, RFC 2428) and the PORT and EPRT arguments — as
// pure functions on net/netip values, chooses the address and port to announce in a passive
// reply (PassiveAddr; Announce for per-network overrides and an announced port offset), and
// allocates listening ports from a configured range (Allocator), each lease
// accepting exactly one data connection and only from the client's own IP.
//
// It does not read or write control connections, resolve names, dial backends, decide which
// reply code an error maps to, or run relays: those belong to package proxy. The parsers never
// do I/O, never use regular expressions and never panic; the allocator's only I/O is binding,
// listening and accepting on its own sockets, which it keeps bound between the leases of a port.
//
// Usage:
//
//	alloc := nat.NewAllocator(nat.PortRange{First: 50000, Last: 50999}, onForeign)
//	lease, err := alloc.Reserve(ctx, localIP, clientIP) // at PASV: the port is bound now
//	if errors.Is(err, nat.ErrPortsExhausted) { /* 425 */ }
//	defer lease.Release()
//	line, err := nat.Format227(netip.AddrPortFrom(nat.PassiveAddr(public, localIP), lease.Port()))
//	// … send line, then at RETR/STOR/LIST:
//	conn, err := lease.Accept(ctx) // *net.TCPConn from clientIP only
//
//	backendData, err := nat.Parse227(replyText) // text after "227 "
package nat
