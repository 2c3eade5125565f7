// Package admin is what operators see of a running proxy: Prometheus metrics, the xferlog
// transfer log, and the admin HTTP server with its status page, /metrics and /healthz.
//
// Metrics implements proxy.Observer on its own metrics.Set; backend load and health are read
// from the pools at scrape time, so a reload that swaps pools needs no bookkeeping here.
// TransferLog writes one wu-ftpd/ProFTPD xferlog line per file transfer and reopens its file
// for log rotation. Server serves the three routes from a Source, which ProxySource adapts from
// a *proxy.Server; with HandleAPI also the JSON API under /api/v1/ (API: backends and their
// administrative drain/disable/enable, sessions and closing one, the log level).
//
// It authenticates only the API's writes (a bearer token; bind the admin address to a trusted
// network for the rest), keeps no history beyond the last 50 421s, and labels no metric with a
// client address or a user name.
//
// Usage:
//
//	m := admin.NewMetrics()
//	tl, err := admin.OpenTransferLog("/var/log/ftpsproxy/xferlog") // optional
//	m.SetTransferLog(tl)
//	srv, err := proxy.New(cfg, log, m)
//	// … srv.Listen(ctx) …
//	src := admin.ServerSource(srv)
//	as := admin.NewServer("127.0.0.1:9100", src, m, log)
//	as.Version = version
//	api := &admin.API{Registry: reg, Sessions: srv, Level: &levelVar, Log: log}
//	api.SetToken(token)
//	as.HandleAPI(api)
//	err = as.Start()
//	// on SIGHUP/SIGUSR1: tl.Reopen(); on SIGTERM: src.Draining.Store(true), as.Shutdown(ctx)
package admin
