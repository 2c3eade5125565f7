// Command ftpsproxy is an FTP/FTPS reverse proxy and load balancer.
//
//	ftpsproxy -config FILE                  run until SIGINT/SIGTERM; SIGHUP reloads
//	ftpsproxy -config FILE -check [-strict] validate the config and exit
//	ftpsproxy demo                          a self-contained demo on 127.0.0.1:2121
//	ftpsproxy -version | -help
//
// This package holds the command line, signals and wiring only: the config file is read by
// package config, and run by proxy, balancer, tlsterm and admin.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ftpsproxy/ftpsproxy/admin"
	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/config"
	"github.com/ftpsproxy/ftpsproxy/directory"
	"github.com/ftpsproxy/ftpsproxy/proxy"
	"github.com/ftpsproxy/ftpsproxy/tlsterm"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// logWarnings logs what -check would warn about, so that a running proxy says it too (an
// expired certificate is served, but not silently).
func logWarnings(f *config.File, log *slog.Logger) {
	for _, w := range config.Warnings(f, config.System()) {
		log.Warn("config warning", "key", w.Key, "warning", w.Msg)
	}
}

// newLogger builds the process logger from [log].
func newLogger(c config.Log, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.Level.Slog()}
	if c.Format == config.FormatJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// runtime is what one config builds: the proxy config plus the health checkers' lifetime.
type runtime struct {
	cfg         proxy.Config
	tls         *tlsterm.Server
	tlsKey      string // the [tls] settings tls was built from
	acme        *tlsterm.ACME
	stopHealth  context.CancelFunc
	healthPools []*balancer.Pool
	dir         *directory.Directory
	dirKey      string             // the [directory] settings dir was built from
	stopDir     context.CancelFunc // ends dir's file watcher
}

// build turns a validated config file into the proxy's config. prev, when set, is the
// runtime being replaced by a reload: its TLS is kept when [tls] did not change.
func build(f *config.File, log *slog.Logger, prev *runtime) (*runtime, error) {
	rt := &runtime{}
	pc := proxy.Config{Data: f.Data, Limits: f.Limits, Routes: f.Routes}
	for _, l := range f.Listeners {
		pc.Listeners = append(pc.Listeners, proxy.ListenerConfig{
			Name: l.Name, Address: l.Address, TLS: l.TLS, Pool: l.Pool, Banner: l.Banner,
			ProxyProtocol: l.ProxyProtocol.On(), TrustedProxies: l.TrustedProxies,
			Access: proxy.AccessList{Allow: l.Allow, Deny: l.Deny},
		})
	}
	for i, p := range f.Pools {
		pool, err := buildPool(fmt.Sprintf("pool[%d]", i), p, log)
		if err != nil {
			return nil, err
		}
		pc.Pools = append(pc.Pools, pool)
	}
	if f.UsesTLS() {
		if err := rt.buildTLS(f, log, prev); err != nil {
			return nil, err
		}
		pc.TLS = rt.tls
		pc.RequireDataReuse = f.TLS.DataSessionReuse == config.ReuseRequired
		pc.ClientCertUser = f.TLS.ClientCertUser
	}
	if err := buildDirectory(f, &pc, rt, prev, log); err != nil {
		return nil, err
	}
	rt.cfg, rt.healthPools = pc, pc.Pools
	return rt, nil
}

// buildPool builds the pool at key ("pool[0]"), which its errors start with.
func buildPool(key string, p config.Pool, log *slog.Logger) (*balancer.Pool, error) {
	bp := balancer.PoolConfig{Name: p.Name, Policy: p.Policy, Health: p.Health()}
	for j, b := range p.Backends {
		var bt *tls.Config
		if b.TLS != balancer.TLSNone {
			var err error
			bt, err = tlsterm.BackendConfig(tlsterm.BackendOptions{
				Address: b.Address, ServerName: b.TLSServerName, Verify: b.TLSVerify,
				CAFile: b.CAFile, Legacy: b.TLSLegacy,
			})
			if err != nil {
				return nil, fmt.Errorf("%s.backend[%d]: %w", key, j, err)
			}
			if !b.TLSVerify {
				log.Warn("backend certificate is not verified (tls_verify = false)", "pool", p.Name, "backend", b.Address)
			}
		}
		bp.Backends = append(bp.Backends, balancer.BackendConfig{
			TLSConfig:      bt,
			Address:        b.Address,
			Weight:         b.Weight,
			MaxSessions:    b.MaxSessions,
			TLS:            b.TLS,
			ProxyProtocol:  b.ProxyProtocol,
			DataMode:       b.DataMode,
			FixPasvAddress: b.FixPasvAddress,
		})
	}
	pool, err := balancer.NewPool(bp)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return pool, nil
}

// buildTLS sets rt's client-facing TLS from [tls], keeping prev's when [tls] did not change.
func (rt *runtime) buildTLS(f *config.File, log *slog.Logger, prev *runtime) error {
	key := fmt.Sprintf("%+v", f.TLS)
	switch {
	case prev != nil && prev.tls != nil && prev.tlsKey == key:
		// Same settings: keep the config (and its ticket keys, so running sessions'
		// data connections still resume) and re-read certificate files.
		if err := prev.tls.Reload(); err != nil {
			return err
		}
		rt.tls, rt.acme = prev.tls, prev.acme
	case prev != nil && prev.acme != nil:
		return fmt.Errorf("tls: changing [tls] while ACME is in use needs a restart")
	default:
		srv, acme, err := newTLSServer(f, log)
		if err != nil {
			return err
		}
		rt.tls, rt.acme = srv, acme
	}
	rt.tlsKey = key
	return nil
}

// startHealth runs the pools' health checks until the runtime is replaced or the process ends.
func (rt *runtime) startHealth(log *slog.Logger) {
	ctx, cancel := context.WithCancel(context.Background())
	rt.stopHealth = cancel
	for _, p := range rt.healthPools {
		go p.Check(ctx, balancer.ProbeFTP, log)
	}
}

// serve runs the proxy until a signal ends it.
func serve(path string, f *config.File, log *slog.Logger) int {
	logWarnings(f, log)
	rt, err := build(f, log, nil)
	if err != nil {
		log.Error("config refused", "err", err)
		return exitConfig
	}
	defer func() {
		if rt.acme != nil {
			rt.acme.Close()
		}
	}()
	metrics := admin.NewMetrics()
	metrics.SetBuildInfo(version)
	var xfer *admin.TransferLog
	if f.Log.TransferLog != "" {
		if xfer, err = admin.OpenTransferLog(f.Log.TransferLog); err != nil {
			log.Error("cannot open the transfer log", "err", err)
			return exitConfig
		}
		defer xfer.Close()
		metrics.SetTransferLog(xfer)
	}
	srv, err := proxy.New(rt.cfg, log, metrics)
	if err != nil {
		log.Error("config refused", "err", err)
		return exitConfig
	}
	if err := srv.Listen(context.Background()); err != nil {
		log.Error("cannot listen", "err", err)
		return exitConfig
	}
	src := admin.ServerSource(srv)
	var adm *admin.Server
	if f.Admin.Address != "" {
		adm = admin.NewServer(f.Admin.Address, src, metrics, log)
		adm.Version = version
		if err := adm.Start(); err != nil {
			log.Error("cannot start the admin server", "err", err)
			srv.Close()
			return exitConfig
		}
		log.Info("admin listening", "address", adm.Addr().String())
	} else {
		metrics.SetSource(src)
	}
	rt.startHealth(log)
	rt.startDirectory()
	for _, a := range srv.Addrs() {
		log.Info("listening", "address", a.String(), "version", version)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	notifyReady(log)

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR1)
	defer signal.Stop(sigs)
	grace := f.Limits.ShutdownGrace
	for {
		select {
		case err := <-served:
			if err != nil {
				log.Error("serve failed", "err", err)
				return exitConfig
			}
			return exitOK
		case sig := <-sigs:
			if sig == syscall.SIGHUP || sig == syscall.SIGUSR1 {
				if xfer != nil {
					if err := xfer.Reopen(); err != nil {
						log.Error("transfer log not reopened", "err", err)
					}
				}
				if sig == syscall.SIGHUP {
					notifyReloading(log)
					prev := rt
					rt, grace = reload(path, srv, rt, grace, log)
					metrics.Reloaded(rt != prev)
					notifyReady(log)
				}
				continue
			}
			log.Info("shutting down", "signal", sig.String(), "grace", grace)
			notifyStopping(log)
			src.Draining.Store(true)
			ctx, cancel := context.WithTimeout(context.Background(), grace)
			err := srv.Shutdown(ctx)
			cancel()
			if adm != nil {
				actx, acancel := context.WithTimeout(context.Background(), 2*time.Second)
				adm.Shutdown(actx)
				acancel()
			}
			rt.stopHealth()
			if errors.Is(err, context.DeadlineExceeded) {
				log.Warn("grace period over: remaining sessions closed")
			}
			log.Info("stopped")
			return exitOK
		}
	}
}

// reload reads the config again and swaps it in; a bad config is refused and the old one
// stays in force.
func reload(path string, srv *proxy.Server, old *runtime, grace time.Duration, log *slog.Logger) (*runtime, time.Duration) {
	f, err := config.Load(path)
	if err != nil {
		log.Error("reload refused: config has problems; the old config stays in force", "err", err.Error())
		return old, grace
	}
	logWarnings(f, log)
	rt, err := build(f, log, old)
	if err == nil {
		err = srv.Reload(rt.cfg)
	}
	if err != nil {
		if rt != nil && rt.acme != nil && rt.acme != old.acme {
			rt.acme.Close() // built for the refused config only
		}
		log.Error("reload refused; the old config stays in force", "err", err)
		return old, grace
	}
	old.stopHealth()
	rt.startHealth(log)
	rt.stopDirectoryFor(old)
	rt.startDirectory()
	log.Info("config reloaded", "pools", len(rt.cfg.Pools), "routes", len(rt.cfg.Routes))
	return rt, f.Limits.ShutdownGrace
}

// newTLSServer builds the client-facing TLS from [tls]: certificate files or ACME.
func newTLSServer(f *config.File, log *slog.Logger) (*tlsterm.Server, *tlsterm.ACME, error) {
	minV := uint16(tls.VersionTLS12)
	if f.TLS.MinVersion == config.TLS13 {
		minV = tls.VersionTLS13
	}
	var acme *tlsterm.ACME
	t := &f.TLS
	opts := tlsterm.ServerOptions{
		CertFile: t.CertFile, KeyFile: t.KeyFile, MinVersion: minV,
		Certificates: t.Certificates, CertDir: t.CertDir, DefaultCertificate: t.DefaultCertificate,
		ClientAuth: t.ClientAuth, ClientCAFile: t.ClientCAFile,
	}
	if f.UsesACME() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		src, err := tlsterm.NewACME(ctx, f.TLS.ACME, log)
		if err != nil {
			return nil, nil, fmt.Errorf("tls.acme: %w", err)
		}
		opts.Source = src
		acme = src
	}
	srv, err := tlsterm.NewServer(opts)
	if err != nil {
		if acme != nil {
			acme.Close()
		}
		return nil, nil, fmt.Errorf("tls: %w", err)
	}
	return srv, acme, nil
}
