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
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/ftpsproxy/ftpsproxy/admin"
	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/cluster"
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

// ownAddrs are the admin and ACME HTTP addresses, which no PORT/EPRT may target. A host
// that does not resolve is left out (the listener will not bind there either).
func ownAddrs(f *config.File) []netip.AddrPort {
	var out []netip.AddrPort
	add := func(addr string) {
		ta, err := net.ResolveTCPAddr("tcp", addr)
		if addr == "" || err != nil {
			return
		}
		if ta.IP == nil {
			out = append(out, netip.AddrPortFrom(netip.IPv6Unspecified(), uint16(ta.Port)))
			return
		}
		out = append(out, ta.AddrPort())
	}
	add(f.Admin.Address)
	if f.UsesACME() {
		add(f.TLS.ACME.HTTPAddress)
	}
	return out
}

// runtime is what one config builds: the proxy config plus the lifetime of the health
// checkers and of DNS discovery.
type runtime struct {
	cfg        proxy.Config
	tls        *tlsterm.Server
	tlsKey     string // the [tls] settings tls was built from
	acme       *tlsterm.ACME
	stopHealth context.CancelFunc
	dir        *directory.Directory
	dirKey     string             // the [directory] settings dir was built from
	stopDir    context.CancelFunc // ends dir's file watcher
	// poolCfgs are the pools as configured, host names and SRV names unresolved: the pools
	// in cfg are built from them and the discovery's answers.
	poolCfgs []balancer.PoolConfig
	stopDisc context.CancelFunc
}

// buildEnv is what build takes from the running process. Its zero value suits a one-off
// build (demo, tests): sockets bound directly, a fresh DNS discovery on the system resolver,
// nothing shared with other instances.
type buildEnv struct {
	listen  proxy.ListenFunc
	disc    *balancer.Discovery // resolves the pools' host names and SRV names
	shared  *cluster.Cluster    // [cluster]: shared max_sessions
	limiter proxy.LoginLimiter  // [cluster]: the shared login limiter
}

// build turns a validated config file into the proxy's config. prev, when set, is the
// runtime being replaced by a reload: its TLS is kept when [tls] did not change.
func build(f *config.File, log *slog.Logger, prev *runtime, env buildEnv) (*runtime, error) {
	rt := &runtime{stopDisc: func() {}}
	pc := proxy.Config{Data: f.Data, Limits: f.Limits, Routes: f.Routes, OwnAddrs: ownAddrs(f)}
	for _, l := range f.Listeners {
		pc.Listeners = append(pc.Listeners, proxy.ListenerConfig{
			Name: l.Name, Address: l.Address, TLS: l.TLS, Pool: l.Pool, Banner: l.Banner,
			ProxyProtocol: l.ProxyProtocol.On(), TrustedProxies: l.TrustedProxies,
			Access: proxy.AccessList{Allow: l.Allow, Deny: l.Deny},
		})
	}
	if err := rt.buildPools(f, &pc, log, env); err != nil {
		return nil, err
	}
	if f.UsesTLS() {
		if err := rt.buildTLS(f, log, prev, env.listen); err != nil {
			return nil, err
		}
		pc.TLS = rt.tls
		pc.RequireDataReuse = f.TLS.DataSessionReuse == config.ReuseRequired
		pc.ClientCertUser = f.TLS.ClientCertUser
	}
	if err := buildDirectory(f, &pc, rt, prev, log); err != nil {
		return nil, err
	}
	rt.cfg = pc
	return rt, nil
}

// buildPools builds pc's pools: their configs as written (rt.poolCfgs), with [cluster]'s
// shared max_sessions, then the pools with the DNS discovery's answers in place of host
// names and SRV names.
func (rt *runtime) buildPools(f *config.File, pc *proxy.Config, log *slog.Logger, env buildEnv) error {
	for i, p := range f.Pools {
		bp, err := buildPool(fmt.Sprintf("pool[%d]", i), p, log)
		if err != nil {
			return err
		}
		if env.shared != nil {
			for j := range bp.Backends {
				bp.Backends[j].Slots = env.shared.Slots().For(bp.Name)
			}
		}
		rt.poolCfgs = append(rt.poolCfgs, bp)
	}
	pc.LoginLimiter = env.limiter
	disc := env.disc
	if disc == nil {
		disc = balancer.NewDiscovery(nil, log)
	}
	disc.Resolve(context.Background(), rt.poolCfgs, true)
	pools, err := discoveredPools(disc, rt.poolCfgs)
	pc.Pools = pools
	return err
}

// buildPool builds the config of the pool at key ("pool[0]"), which its errors start with.
func buildPool(key string, p config.Pool, log *slog.Logger) (balancer.PoolConfig, error) {
	bp := balancer.PoolConfig{Name: p.Name, Policy: p.Policy, Health: p.Health(), SRV: p.SRV, ResolveInterval: p.ResolveInterval,
		Panic: &p.Panic}
	for j, b := range p.Backends {
		var bt *tls.Config
		if b.TLS != balancer.TLSNone {
			var err error
			bt, err = tlsterm.BackendConfig(tlsterm.BackendOptions{
				Address: b.Address, ServerName: b.TLSServerName, Verify: b.TLSVerify,
				CAFile: b.CAFile, Legacy: b.TLSLegacy,
			})
			if err != nil {
				return bp, fmt.Errorf("%s.backend[%d]: %w", key, j, err)
			}
			if !b.TLSVerify {
				log.Warn("backend certificate is not verified (tls_verify = false)", "pool", p.Name, "backend", b.Address)
			}
		}
		bp.Backends = append(bp.Backends, balancer.BackendConfig{
			Name:           b.Name,
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
	return bp, nil
}

// buildTLS sets rt's client-facing TLS from [tls], keeping prev's when [tls] did not change.
func (rt *runtime) buildTLS(f *config.File, log *slog.Logger, prev *runtime, listen proxy.ListenFunc) error {
	server := f.TLS
	server.DataSessionReuse = "" // a proxy setting, applied on every reload
	key := fmt.Sprintf("%+v", server)
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
		srv, acme, err := newTLSServer(f, log, listen)
		if err != nil {
			return err
		}
		rt.tls, rt.acme = srv, acme
	}
	rt.tlsKey = key
	return nil
}

// startHealth runs the pools' health checks until the runtime is replaced or the process
// ends. The probe is the proxy's own way to reach a backend (srv.ProbeBackend).
func (rt *runtime) startHealth(srv *proxy.Server, log *slog.Logger) {
	ctx, cancel := context.WithCancel(context.Background())
	rt.stopHealth = cancel
	for _, p := range rt.cfg.Pools {
		go p.Check(ctx, balancer.RecordProbes(srv.ProbeBackend), log)
	}
}

// newTLSServer builds the client-facing TLS from [tls]: certificate files or ACME.
func newTLSServer(f *config.File, log *slog.Logger, listen proxy.ListenFunc) (*tlsterm.Server, *tlsterm.ACME, error) {
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
		ao := f.TLS.ACME
		ao.Listen = listen
		src, err := tlsterm.NewACME(ctx, ao, log)
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

// reload reads the config again and applies every key: pools, backends (their state carried
// over), routes, limits, listeners, [data], TLS files, [log], the admin address and token,
// the transfer log, [directory]. Keys that cannot change in a running process ([cluster], and
// [tls] while ACME is in use: keepRestartOnly) keep their old value with a warning each. A bad
// config, or one that cannot be bound, is refused and the old one stays in force.
func (d *proc) reload() bool {
	f, err := config.Load(d.path)
	if err != nil {
		d.log.Error("reload refused: config has problems; the old config stays in force", "err", err.Error())
		return false
	}
	logWarnings(f, d.log)
	keepRestartOnly(d.file, f, d.log)
	st, err := d.prepare(f)
	if err != nil {
		st.discard(d.rt, d.xfer)
		d.log.Error("reload refused; the old config stays in force", "err", err)
		return false
	}
	old := d.file
	d.reg.Commit(st.rt.cfg.Pools)
	d.rt.stopHealth()
	d.rt.stopDisc()
	st.rt.startHealth(d.srv, d.log)
	d.startDiscovery(st.rt)
	st.rt.stopDirectoryFor(d.rt)
	st.rt.startDirectory()
	d.rt, d.file = st.rt, f
	d.logs.apply(f.Log)
	d.api.SetToken(f.Admin.Token)
	if st.adminMoved {
		if d.adm != nil {
			d.adm.Unbind()
		}
		d.stopAdmin()
		d.adm = st.adm
		if d.adm != nil {
			d.log.Info("admin listening", "address", d.adm.Addr().String())
		}
	}
	if st.xfer != d.xfer {
		d.metrics.SetTransferLog(st.xfer)
		if d.xfer != nil {
			d.xfer.Close()
		}
		d.xfer = st.xfer
	}
	d.log.Info("config reloaded", reloadAttrs(old, f, st.changes)...)
	return true
}

// staged is what a reload binds and opens before it commits: all of it is released when the
// reload is refused.
type staged struct {
	rt         *runtime
	changes    balancer.Changes
	adm        *admin.Server // the admin server on a new address
	adminMoved bool
	xfer       *admin.TransferLog
}

// prepare builds f and binds or opens everything it needs, then swaps the proxy's config.
// On error the caller discards the returned stage.
func (d *proc) prepare(f *config.File) (*staged, error) {
	st := &staged{xfer: d.xfer}
	rt, err := build(f, d.log, d.rt, d.env())
	if err != nil {
		return st, err
	}
	st.rt = rt
	if f.Log.TransferLog != d.file.Log.TransferLog {
		if st.xfer, err = d.newTransferLog(f.Log.TransferLog); err != nil {
			return st, err
		}
	}
	if f.Admin.Address != d.file.Admin.Address {
		st.adminMoved = true
		if st.adm, err = d.newAdmin(f.Admin.Address); err != nil {
			return st, err
		}
	}
	st.changes = d.reg.Carry(rt.cfg.Pools)
	return st, d.srv.Reload(rt.cfg)
}

// discard releases what a refused reload opened (not what it shares with the config in
// force: cur and its transfer log curX).
func (st *staged) discard(cur *runtime, curX *admin.TransferLog) {
	if st.xfer != nil && st.xfer != curX {
		st.xfer.Close()
	}
	if st.rt != nil && st.rt.acme != nil && st.rt.acme != cur.acme {
		st.rt.acme.Close()
	}
	if st.adm != nil {
		st.adm.Unbind() // tableflip keeps a copy of the socket: stop it there too
		st.adm.Shutdown(context.Background())
	}
}

// keepRestartOnly gives next the old value of every key that a running process cannot
// change, with one warning per changed key: [tls] while ACME is in use before or after (a
// second certmagic instance would contend for the same storage and HTTP-01 address).
func keepRestartOnly(cur, next *config.File, log *slog.Logger) {
	for _, k := range diffKeys("cluster", reflect.ValueOf(cur.Cluster), reflect.ValueOf(next.Cluster)) {
		log.Warn(k + ": changed; takes effect at restart")
	}
	next.Cluster = cur.Cluster
	if !cur.UsesACME() && !next.UsesACME() {
		return
	}
	for _, k := range diffKeys("tls", reflect.ValueOf(cur.TLS), reflect.ValueOf(next.TLS)) {
		if k == "tls.data_session_reuse" {
			continue // a proxy setting, not the certificate's
		}
		log.Warn(k + ": changed; takes effect at restart")
	}
	reuse := next.TLS.DataSessionReuse
	next.TLS = cur.TLS
	next.TLS.DataSessionReuse = reuse
}

// diffKeys returns the TOML paths (prefix.key…) of the fields that differ between a and b,
// two values of the same type: a struct with toml tags (a table) field by field, anything
// else (slices, addresses, port ranges) whole.
func diffKeys(prefix string, a, b reflect.Value) []string {
	if !isTable(a.Type()) {
		if reflect.DeepEqual(a.Interface(), b.Interface()) {
			return nil
		}
		return []string{prefix}
	}
	var out []string
	for i := range a.NumField() {
		tag, _, _ := strings.Cut(a.Type().Field(i).Tag.Get("toml"), ",")
		if tag == "" || tag == "-" {
			continue
		}
		out = append(out, diffKeys(prefix+"."+tag, a.Field(i), b.Field(i))...)
	}
	return out
}

// isTable reports whether t is a struct with toml-tagged fields.
func isTable(t reflect.Type) bool {
	if t.Kind() != reflect.Struct {
		return false
	}
	for i := range t.NumField() {
		if t.Field(i).Tag.Get("toml") != "" {
			return true
		}
	}
	return false
}

// reloadAttrs says what a reload changed: listeners, pools and backends added, removed and
// changed, and the other keys changed.
func reloadAttrs(old, next *config.File, ch balancer.Changes) []any {
	var la, lr, lc []string
	for _, l := range next.Listeners {
		i := slices.IndexFunc(old.Listeners, func(o config.Listener) bool { return o.Address == l.Address })
		switch {
		case i < 0:
			la = append(la, l.Address)
		case !reflect.DeepEqual(old.Listeners[i], l):
			lc = append(lc, l.Address)
		}
	}
	for _, o := range old.Listeners {
		if !slices.ContainsFunc(next.Listeners, func(l config.Listener) bool { return l.Address == o.Address }) {
			lr = append(lr, o.Address)
		}
	}
	var keys []string
	for _, t := range []struct {
		name string
		a, b any
	}{
		{"tls", old.TLS, next.TLS}, {"data", old.Data, next.Data}, {"limits", old.Limits, next.Limits},
		{"log", old.Log, next.Log}, {"admin", old.Admin, next.Admin}, {"route", old.Routes, next.Routes},
		{"directory", old.Directory, next.Directory},
	} {
		keys = append(keys, diffKeys(t.name, reflect.ValueOf(t.a), reflect.ValueOf(t.b))...)
	}
	var attrs []any
	for _, kv := range []struct {
		key  string
		list []string
	}{
		{"listeners_added", la}, {"listeners_removed", lr}, {"listeners_changed", lc},
		{"pools_added", ch.PoolsAdded}, {"pools_removed", ch.PoolsRemoved}, {"pools_changed", ch.PoolsChanged},
		{"backends_added", ch.BackendsAdded}, {"backends_removed", ch.BackendsRemoved}, {"backends_changed", ch.BackendsChanged},
		{"keys_changed", keys},
	} {
		if len(kv.list) > 0 {
			attrs = append(attrs, kv.key, strings.Join(kv.list, ","))
		}
	}
	if len(attrs) == 0 {
		attrs = append(attrs, "changes", "none")
	}
	return attrs
}
