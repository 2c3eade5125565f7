// Package tlsterm owns TLS for ftpsproxy: the client-facing server config (certificates from
// files chosen by SNI — many pairs, a directory, a default — or ACME, also on demand for
// permitted names; client certificates; ALPN "ftp", TLS 1.2+), the binding of data-channel
// TLS sessions (and certificate) to their control session, and the backend-facing client
// configs with one session cache per proxied session so servers that require data-channel
// session reuse accept the proxy.
//
// It does not speak FTP: the AUTH TLS exchange, PROT levels and when to handshake are the
// proxy package's business.
//
// Usage:
//
//	srv, _ := tlsterm.NewServer(tlsterm.ServerOptions{CertFile: "cert.pem", KeyFile: "key.pem"})
//	b := srv.NewBinding()                         // one per client session
//	ctrl := tls.Server(conn, b.Control())         // AUTH TLS or implicit
//	data := tls.Server(dconn, b.Data(upload, requireReuse)) // PROT P data connection
//	data.Handshake(); b.Resumed(data)             // did it resume this control session?
package tlsterm
