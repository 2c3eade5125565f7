// Package proxy is the FTP/FTPS proxy itself: it accepts client control connections on its
// listeners, answers the pre-login commands (AUTH, PBSZ, PROT, FEAT, HOST, USER…) on its
// own, picks and logs in to a backend at PASS, then relays every command re-serialised from
// its parsed form and every reply framed whole, while owning both data legs (its own passive
// ports and PORT/EPRT checks toward the client, passive or active toward the backend). It
// refuses clients by address (listener and route allow/deny lists, access.go) and checks a
// client certificate's name against USER (clientcert.go). At PASS it asks the user
// directory, when one is configured, before [[route]] (directory.go): it may map the
// credentials, and only ever resolves to a configured pool or backend.
//
// It does not parse addresses (package nat), build TLS configurations (tlsterm), choose
// backends (balancer), read the user directory or call its services (package directory),
// or count anything (an Observer does).
//
// Usage:
//
//	srv, err := proxy.New(cfg, logger, observer)
//	if err := srv.Listen(ctx); err != nil { … }
//	go srv.Serve()
//	…
//	srv.Reload(newCfg)          // SIGHUP
//	srv.Shutdown(graceCtx)      // SIGTERM: drain, then close
//
// Each client connection is one session owned by one goroutine (session.Run). A reader
// goroutine feeds it parsed commands over a channel and wakes it; the owner reads the
// backend's replies itself (relay.go, wake.go), except during a transfer, when a second
// reader feeds them over a channel, so ABOR, a backend's 421, the deadlines and a drain are
// seen while a transfer runs.
package proxy
