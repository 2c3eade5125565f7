package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ftpsproxy/ftpsproxy/admin"
	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/cluster"
	"github.com/ftpsproxy/ftpsproxy/config"
	"github.com/ftpsproxy/ftpsproxy/proxy"
)

// proc is the running process: the proxy, its admin server, and what a reload replaces.
type proc struct {
	path    string
	logs    *logOutput
	log     *slog.Logger
	file    *config.File // the config in force
	rt      *runtime
	reg     *balancer.Registry
	srv     *proxy.Server
	src     *admin.ProxySource
	metrics *admin.Metrics
	api     *admin.API
	adm     *admin.Server // nil when [admin] address is empty
	xfer    *admin.TransferLog
	up      *upgrader
	// disc resolves backends' host names and pools' SRV names; rediscovered asks the loop to
	// apply a changed answer. resolver, when set before start, is the one disc asks (tests
	// point it at their DNS server; nil: the system's, /etc/resolv.conf).
	disc         *balancer.Discovery
	rediscovered chan struct{}
	resolver     balancer.Resolver
	// shared is the [cluster] state in Redis and limiter the login limiter on it; nil
	// without [cluster] redis_url. Built once: a reload keeps them.
	shared  *cluster.Cluster
	limiter *cluster.Limiter
}

// serve runs the proxy until a signal ends it.
func serve(path, pidFile string, f *config.File, logs *logOutput, log *slog.Logger) int {
	logWarnings(f, log)
	up, err := newUpgrader(pidFile, log)
	if err != nil {
		log.Error("cannot start", "err", err)
		return exitConfig
	}
	defer up.stop()
	d := &proc{path: path, logs: logs, log: log, file: f, up: up, reg: &balancer.Registry{}, metrics: admin.NewMetrics()}
	d.metrics.SetBuildInfo(version)
	// Signals are caught before the listeners accept: one sent as soon as a client can
	// connect (a reload, an upgrade) waits for the loop instead of being lost or fatal.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(sigs)
	if err := d.start(); err != nil {
		log.Error("cannot start", "err", err)
		d.closeAll()
		return exitConfig
	}
	return d.loop(sigs)
}

// start builds the config, binds every listener (inherited ones after an upgrade) and serves.
func (d *proc) start() error {
	d.disc = balancer.NewDiscovery(d.resolver, d.log)
	d.disc.OnFailure = d.metrics.Set().NewCounter("ftpsproxy_dns_lookup_failures_total").Inc
	d.rediscovered = make(chan struct{}, 1)
	if err := d.startCluster(); err != nil {
		return err
	}
	rt, err := build(d.file, d.log, nil, d.env())
	if err != nil {
		return fmt.Errorf("config refused: %w", err)
	}
	d.rt = rt
	d.reg.Carry(rt.cfg.Pools)
	d.reg.Commit(rt.cfg.Pools)
	d.up.takeAdminState(d.reg)
	if err := d.openTransferLog(d.file.Log.TransferLog); err != nil {
		return err
	}
	if d.srv, err = proxy.New(rt.cfg, d.log, d.metrics); err != nil {
		return fmt.Errorf("config refused: %w", err)
	}
	d.srv.SetListenFunc(d.up.listen)
	if err := d.srv.Listen(context.Background()); err != nil {
		return err
	}
	d.src = admin.ServerSource(d.srv)
	d.src.Registry = d.reg
	d.api = &admin.API{Registry: d.reg, Sessions: d.srv, Level: &d.logs.level, Log: d.log}
	d.api.SetToken(d.file.Admin.Token)
	d.metrics.SetSource(d.src)
	if err := d.startAdmin(d.file.Admin.Address); err != nil {
		return err
	}
	rt.startHealth(d.srv, d.log)
	d.startDiscovery(rt)
	rt.startDirectory()
	for _, a := range d.srv.Addrs() {
		d.log.Info("listening", "address", a.String(), "version", version)
	}
	return nil
}

// closeAll releases what a failed start bound.
func (d *proc) closeAll() {
	if d.shared != nil {
		d.shared.Close()
	}
	if d.srv != nil {
		d.srv.Close()
	}
	if d.adm != nil {
		d.adm.Shutdown(context.Background())
	}
	if d.rt != nil && d.rt.acme != nil {
		d.rt.acme.Close()
	}
	if d.xfer != nil {
		d.xfer.Close()
	}
}

// loop serves until SIGINT/SIGTERM or a completed upgrade, handling reloads (SIGHUP),
// transfer-log reopening (SIGUSR1) and upgrades (SIGUSR2) meanwhile.
func (d *proc) loop(sigs <-chan os.Signal) int {
	served := make(chan error, 1)
	go func() { served <- d.srv.Serve() }()
	if err := d.up.ready(); err != nil {
		d.log.Error("upgrade: cannot signal readiness", "err", err)
	}
	d.log.Info("ready", "pid", os.Getpid(), "upgraded", d.up.inherited())
	for {
		select {
		case err := <-served:
			if err != nil {
				d.log.Error("serve failed", "err", err)
				return exitConfig
			}
			return exitOK
		case <-d.up.exit():
			d.srv.StopAccepting()
			d.stopAdmin()
			d.settle()
			return d.shutdown("upgraded")
		case <-d.rediscovered:
			d.applyDiscovery()
		case sig := <-sigs:
			switch sig {
			case syscall.SIGHUP:
				notifyReloading(d.log)
				d.reopenTransferLog()
				d.metrics.Reloaded(d.reload())
				notifyReady(d.log)
			case syscall.SIGUSR1:
				d.reopenTransferLog()
			case syscall.SIGUSR2:
				go d.up.upgrade(d.reg)
			default:
				return d.shutdown(sig.String())
			}
		}
	}
}

// settle lets the sessions of an upgraded process go on after it stopped accepting until they
// are quiet (upgradeQuiet without a command) or upgradeSettle has passed, so a client in the
// middle of a short exchange finishes it.
func (d *proc) settle() {
	deadline := time.Now().Add(upgradeSettle)
	for !d.srv.Quiet(upgradeQuiet) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
}

// shutdown drains as SPEC §7 says: stop accepting, the shutdown 421 to idle sessions,
// transfers finish within shutdown_grace, then everything closes.
func (d *proc) shutdown(why string) int {
	grace := d.file.Limits.ShutdownGrace
	d.log.Info("shutting down", "signal", why, "grace_s", grace.Seconds(), "sessions", d.srv.Sessions())
	notifyStopping(d.log)
	d.src.Draining.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	err := d.srv.Shutdown(ctx)
	cancel()
	d.stopAdmin()
	d.rt.stopHealth()
	d.rt.stopDisc()
	if d.shared != nil {
		d.shared.Close()
	}
	if d.rt.acme != nil {
		d.rt.acme.Close()
	}
	if d.xfer != nil {
		d.xfer.Close()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		d.log.Warn("grace period over: remaining sessions closed")
	}
	d.log.Info("stopped")
	return exitOK
}

// startAdmin serves the admin listener at addr ("" : none).
func (d *proc) startAdmin(addr string) error {
	adm, err := d.newAdmin(addr)
	if err != nil || adm == nil {
		return err
	}
	d.adm = adm
	d.log.Info("admin listening", "address", adm.Addr().String())
	return nil
}

// newAdmin binds and starts an admin server at addr serving the proxy's status, metrics and
// API; nil when addr is empty. A start and a reload that moves [admin] address build it alike.
func (d *proc) newAdmin(addr string) (*admin.Server, error) {
	if addr == "" {
		return nil, nil
	}
	adm := admin.NewServer(addr, d.src, d.metrics, d.log)
	adm.Version, adm.Listen, adm.ClusterStatus = version, d.up.listen, d.clusterStatus()
	adm.HandleAPI(d.api)
	if err := adm.Start(); err != nil {
		return nil, err
	}
	return adm, nil
}

// stopAdmin stops the admin server, letting requests in flight finish for a moment.
func (d *proc) stopAdmin() {
	if d.adm == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	d.adm.Shutdown(ctx)
	cancel()
	d.adm = nil
}

// openTransferLog opens [log] transfer_log at path ("" : off) and makes it the metrics'.
func (d *proc) openTransferLog(path string) error {
	x, err := d.newTransferLog(path)
	if err != nil {
		return err
	}
	d.xfer = x
	d.metrics.SetTransferLog(x)
	return nil
}

// newTransferLog opens the transfer log at path, its write errors logged; nil when path is
// empty. A start and a reload that changes [log] transfer_log open it alike.
func (d *proc) newTransferLog(path string) (*admin.TransferLog, error) {
	if path == "" {
		return nil, nil
	}
	x, err := admin.OpenTransferLog(path)
	if err != nil {
		return nil, fmt.Errorf("log.transfer_log: %w", err)
	}
	x.LogErrorsTo(d.log)
	return x, nil
}

func (d *proc) reopenTransferLog() {
	if d.xfer != nil {
		if err := d.xfer.Reopen(); err != nil {
			d.log.Error("transfer log not reopened", "err", err)
		}
	}
}
