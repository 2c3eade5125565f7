// Package idlepoll tells when an idle connection becomes readable, so that no goroutine has
// to wait in its read: a session whose client has said nothing for a while gives its reader
// goroutine up, and a Watch starts a new one when the client speaks (or leaves).
//
// A Watch is one-shot: its function runs once, on the poller's goroutine, when the socket
// has bytes to read, its peer closed it, or it failed; arming it again is a new Watch. The
// poller only looks at the socket: bytes a reader above it (bufio, crypto/tls) holds are
// invisible to it, so the caller arms a watch only after a read of its own found nothing.
//
// It does not read, write or close connections, and it does not replace Go's network
// poller: the connection stays in it, and the reader that the watch starts reads through
// it as before. Linux only (epoll); elsewhere Default is nil and callers keep a goroutine
// in the read.
//
//	p := idlepoll.Default()
//	var w idlepoll.Watch
//	err := p.Arm(conn, &w, func() { go readMore() })
//	...
//	p.Disarm(&w) // the function has not run and will not
package idlepoll
