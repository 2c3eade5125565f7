package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/directory"
	"github.com/ftpsproxy/ftpsproxy/internal/logthrottle"
	"github.com/ftpsproxy/ftpsproxy/nat"
	"github.com/ftpsproxy/ftpsproxy/tlsterm"
	"golang.org/x/sys/unix"
)

// ListenerConfig describes one client-facing listener.
type ListenerConfig struct {
	Name    string
	Address string // host:port
	TLS     TLSMode
	Pool    string // pool used when no route matches
	Banner  string // text of the 220 greeting
	// ProxyProtocol requires a PROXY v1/v2 header, accepted only from TrustedProxies.
	ProxyProtocol  bool
	TrustedProxies []netip.Prefix
	// Access refuses clients by their real address (listener.allow/deny).
	Access AccessList
}

func (l *ListenerConfig) name() string {
	if l.Name != "" {
		return l.Name
	}
	return l.Address
}

// DataConfig configures the data channel toward clients. It is also the [data] table of the
// config file (the toml tags name the keys; package config decodes and validates them).
type DataConfig struct {
	PublicAddress  netip.Addr    `toml:"public_address"`  // announced in 227; invalid: the control connection's local address
	PortRange      nat.PortRange `toml:"port_range"`      // the proxy's own passive ports
	AllowActive    bool          `toml:"allow_active"`    // accept PORT/EPRT
	ConnectTimeout time.Duration `toml:"connect_timeout"` // to accept or dial a data connection, either leg
	// AnnouncePortOffset is added to the bound passive port in 227/229 replies
	// (data.announce_port_offset), for NodePorts and port maps.
	AnnouncePortOffset int `toml:"announce_port_offset"`
	// AddressOverrides announce another address in 227 to clients of some networks
	// ([[data.public_address_override]]); first match wins.
	AddressOverrides []nat.AddressOverride `toml:"public_address_override"`
}

// Limits bounds sessions and their timeouts. It is also the [limits] table of the config
// file; DefaultLimits holds the file's defaults. Zero session limits mean unlimited, zero
// LoginsPerMinute turns the login limit off, zero timeouts fall back to the defaults.
type Limits struct {
	MaxSessions      int `toml:"max_sessions"`
	MaxSessionsPerIP int `toml:"max_sessions_per_ip"`
	// LoginsPerMinute and LoginBurst count failed logins per client IP; past them the
	// address is banned for BanTime, doubled with each ban up to MaxBanTime. 0: off (no
	// bans, no tarpit). AttemptsPerMinute caps all login attempts per client IP; 0: off.
	LoginsPerMinute   int           `toml:"logins_per_minute"`
	LoginBurst        int           `toml:"login_burst"` // 0 in code: DefaultLoginBurst
	AttemptsPerMinute int           `toml:"attempts_per_minute"`
	BanTime           time.Duration `toml:"ban_time"`     // 0 in code: DefaultBanTime
	MaxBanTime        time.Duration `toml:"max_ban_time"` // 0 in code: DefaultMaxBanTime
	IdleTimeout       time.Duration `toml:"idle_timeout"`
	LoginTimeout      time.Duration `toml:"login_timeout"`
	ShutdownGrace     time.Duration `toml:"shutdown_grace"`  // read by the command's signal handling
	BackendTimeout    time.Duration `toml:"backend_timeout"` // TCP connect, per backend tried; each USER/PASS exchange
	// GreetingTimeout bounds what follows a backend's connect up to a ready control
	// connection: PROXY header, TLS, the 120/220 greeting, AUTH TLS.
	GreetingTimeout time.Duration `toml:"greeting_timeout"`
	TLSHandshake    time.Duration `toml:"tls_handshake_timeout"` // each TLS handshake, either side
	// DataTimeout ends a transfer when no byte has moved on its data connections, in either
	// direction, for this long; it is also the deadline for the backend's final reply once
	// the data has ended (zero: DefaultDataTimeout).
	DataTimeout time.Duration `toml:"data_timeout"`
}

// Route sends sessions whose USER (and/or HOST) matches to a pool. Globs use path.Match.
// It is also one [[route]] of the config file.
type Route struct {
	User string `toml:"user"`
	Host string `toml:"host"`
	Pool string `toml:"pool"`
	// Allow and Deny restrict the route to client networks (route.allow/deny, deny wins): a
	// client that matches the route but is refused gets the 421 of cause denied.
	Allow []netip.Prefix `toml:"allow"`
	Deny  []netip.Prefix `toml:"deny"`
}

// Config is everything a Server runs with. Listeners are fixed for the life of a Server; the
// rest can be swapped by Reload.
type Config struct {
	Listeners []ListenerConfig
	Data      DataConfig
	Pools     []*balancer.Pool
	Routes    []Route
	Limits    Limits
	// TLS is the client-side TLS, shared by control and data connections so session
	// tickets resume. Required when a listener's TLS is not none.
	TLS *tlsterm.Server
	// OwnAddrs are the proxy's sockets other than its FTP listeners and passive ports (the
	// admin and ACME HTTP addresses, as configured or bound): PORT/EPRT to one is refused like
	// any bounce. An unspecified address stands for every address of this host.
	OwnAddrs []netip.AddrPort
	// LoginLimiter, when set, replaces the in-memory login limiter built from Limits (for a
	// limiter shared by several proxies). It is fixed for the life of the Server.
	LoginLimiter LoginLimiter
	// RequireDataReuse refuses (522) a protected data connection that does not resume its
	// control connection's TLS session (tls.data_session_reuse = "required").
	RequireDataReuse bool
	// ClientCertUser requires the client certificate's name to equal USER
	// (tls.client_cert_user); the certificate policy itself is in TLS.
	ClientCertUser tlsterm.ClientCertUser
	// Directory, when set, chooses backends per user before [[route]] (and may authenticate
	// logins itself); see choose.
	Directory *directory.Directory
}

func (c *Config) pool(name string) *balancer.Pool {
	for _, p := range c.Pools {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// route returns the pool for a session: the first matching route, else the listener's pool
// (and then a nil *Route).
func (c *Config) route(lc *ListenerConfig, user, host string) (*balancer.Pool, string, *Route) {
	for i, r := range c.Routes {
		if r.User != "" {
			if ok, _ := path.Match(r.User, user); !ok {
				continue
			}
		}
		if r.Host != "" {
			if ok, _ := path.Match(r.Host, host); !ok {
				continue
			}
		}
		return c.pool(r.Pool), "route[" + strconv.Itoa(i) + "]", &c.Routes[i]
	}
	return c.pool(lc.Pool), "listener", nil
}

// Fixed timeouts (the configurable ones have their defaults in settings.go).
const (
	writeTimeout      = 30 * time.Second
	lingerTimeout     = 5 * time.Second
	abortReplyTimeout = 10 * time.Second
)

func (s *session) connectTimeout() time.Duration {
	return orDefault(s.cfg.Data.ConnectTimeout, DefaultConnectTimeout)
}

func (s *session) dataTimeout() time.Duration {
	return orDefault(s.cfg.Limits.DataTimeout, DefaultDataTimeout)
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Server accepts client sessions on its listeners and proxies them to backend pools.
type Server struct {
	log   *slog.Logger
	obs   Observer
	cfg   atomic.Pointer[Config]
	alloc *nat.Allocator

	lmu       sync.Mutex // guards listeners, serving and listen
	listeners []*listener
	listen    ListenFunc
	serving   bool
	acceptWG  sync.WaitGroup

	mu       sync.Mutex
	sessions map[string]*session // the running sessions, by id (admin API)
	perIP    map[netip.Addr]int
	wg       sync.WaitGroup

	sweeps sweepSet // what the idle sweep looks at (sweep.go)

	// limitLog rate-limits the log lines an outsider can cause, per cause (refused clients
	// included, see access.go). A nil one, in a Server literal of a test, lets all through.
	limitLog *logthrottle.Throttle

	logins LoginLimiter // Config.LoginLimiter, else the in-memory one

	drain      <-chan struct{} // closed when Shutdown starts
	drainCtx   context.Context
	startDrain context.CancelFunc
	hardCtx    context.Context
	hardStop   context.CancelFunc
	nextID     atomic.Uint64
	stopOnce   sync.Once

	// Foreign counts data connections refused because they came from the wrong peer. The
	// same events reach the Observer as DataRefused("foreign_peer"); this counter is for
	// callers that run a Server without an Observer, tests among them.
	Foreign atomic.Uint64
}

// ListenFunc binds a listening socket, such as net.Listen or tableflip's Upgrader.Listen,
// which returns a socket inherited from the process being upgraded when it has one.
type ListenFunc func(network, addr string) (net.Listener, error)

// SetListenFunc makes Listen and Reload bind listeners with f. Call it before Listen.
func (s *Server) SetListenFunc(f ListenFunc) {
	s.lmu.Lock()
	s.listen = f
	s.lmu.Unlock()
}

// bind opens a listener on address with the ListenFunc, or net.ListenConfig without one.
// lmu must be held.
func (s *Server) bind(ctx context.Context, address string) (net.Listener, error) {
	if s.listen != nil {
		return s.listen("tcp", address)
	}
	return ControlListenConfig().Listen(ctx, "tcp", address)
}

// Control connections keep TCP keep-alive with Go's default settings (probes after 15 s idle,
// every 15 s, 9 of them): a client behind NAT keeps its control connection through a long
// transfer, and a vanished peer is noticed without waiting for the idle timeout.
const (
	ctrlKeepAliveIdle     = 15 // seconds
	ctrlKeepAliveInterval = 15 // seconds
	ctrlKeepAliveCount    = 9
)

// ControlListenConfig returns the configuration for a listening socket whose connections are
// control connections (the client listeners; the admin and ACME listeners are bound the same
// way). The keep-alive settings are set once on the listening socket, before it listens, and
// Linux copies them to every connection it accepts; Go's own keep-alive setup, four
// setsockopt calls per accepted connection, is off (KeepAlive -1). A listener inherited from
// an older process through an upgrade has Go's per-connection setup with the same values.
func ControlListenConfig() *net.ListenConfig {
	return &net.ListenConfig{
		KeepAlive: -1,
		Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				for _, o := range [...]struct{ level, opt, val int }{
					{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
					{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, ctrlKeepAliveIdle},
					{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, ctrlKeepAliveInterval},
					{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, ctrlKeepAliveCount},
				} {
					if serr = unix.SetsockoptInt(int(fd), o.level, o.opt, o.val); serr != nil {
						return
					}
				}
			})
			if err != nil {
				return err
			}
			if serr != nil {
				return fmt.Errorf("keep-alive on the listening socket: %w", serr)
			}
			return nil
		},
	}
}

// Unbind stops a listener for good (removed by a reload). The socket is shut down before it
// is closed: a copy of it kept for an upgrade (tableflip holds a duplicate of every listening
// socket) would otherwise go on completing handshakes that nobody accepts. Never use it for
// a socket a new process has inherited: it stops the socket in every process.
func Unbind(ln net.Listener) {
	if sc, ok := ln.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			rc.Control(func(fd uintptr) { syscall.Shutdown(int(fd), syscall.SHUT_RDWR) })
		}
	}
	ln.Close()
}

// listener is one bound client-facing address. Its settings live in the Config (looked up
// by address at each connection), so a reload can change them.
type listener struct {
	address string
	ln      net.Listener
	last    *ListenerConfig // the settings it was bound with, for a session racing its removal
	removed atomic.Bool     // by a reload: its accept loop ends on the next error
}

// listener returns the settings of the listener bound at address.
func (c *Config) listener(address string) *ListenerConfig {
	for i := range c.Listeners {
		if c.Listeners[i].Address == address {
			return &c.Listeners[i]
		}
	}
	return nil
}

// New validates cfg and returns a Server that is not yet listening. log and obs may be nil.
func New(cfg Config, log *slog.Logger, obs Observer) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if obs == nil {
		obs = nopObserver{}
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Server{
		log:      log,
		limitLog: logthrottle.New(log, logthrottle.Options{}),
		obs:      obs,
		sessions: make(map[string]*session),
		perIP:    make(map[netip.Addr]int),
	}
	s.drainCtx, s.startDrain = context.WithCancel(context.Background())
	s.drain = s.drainCtx.Done()
	s.hardCtx, s.hardStop = context.WithCancel(context.Background())
	context.AfterFunc(s.hardCtx, s.interruptAll)
	s.alloc = nat.NewAllocator(cfg.Data.PortRange, func(peer netip.AddrPort) {
		s.Foreign.Add(1)
		s.obs.DataRefused("foreign_peer")
		s.limitLog.Warn(s.log, "data connection from a foreign address refused", "peer", peer.String())
	})
	s.cfg.Store(&cfg)
	s.logins = cfg.LoginLimiter
	if s.logins == nil {
		// Built even with the limits off, so a reload can turn them on.
		s.logins = newMemLimiter(cfg.Limits)
	}
	return s, nil
}

func (c *Config) validate() error {
	if len(c.Listeners) == 0 {
		return errors.New("proxy: no listeners")
	}
	for _, l := range c.Listeners {
		if c.pool(l.Pool) == nil {
			return fmt.Errorf("proxy: listener %s: unknown pool %q", l.Address, l.Pool)
		}
		if l.TLS.Enabled() && c.TLS == nil {
			return fmt.Errorf("proxy: listener %s: tls %q needs a certificate", l.Address, l.TLS)
		}
	}
	if err := c.Data.announcer().Validate(c.Data.PortRange); err != nil {
		return fmt.Errorf("proxy: data: %w", err)
	}
	for i, r := range c.Routes {
		if c.pool(r.Pool) == nil {
			return fmt.Errorf("proxy: route[%d]: unknown pool %q", i, r.Pool)
		}
	}
	return nil
}

// Reload swaps in a new config for sessions that start from now on: listeners added are
// bound (all or none), listeners removed stop accepting, and the settings of the others,
// pools, routes, limits and the passive port range change at once (transfers already set up
// keep their ports). Sessions already running keep their backend and
// their settings.
func (s *Server) Reload(cfg Config) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	s.lmu.Lock()
	defer s.lmu.Unlock()
	var added []*listener
	for i := range cfg.Listeners {
		l := &cfg.Listeners[i]
		if s.bound(l.Address) != nil {
			continue
		}
		ln, err := s.bind(context.Background(), l.Address)
		if err != nil {
			for _, a := range added {
				Unbind(a.ln)
			}
			return fmt.Errorf("listen %s: %w", l.Address, err)
		}
		added = append(added, &listener{address: l.Address, ln: ln, last: l})
	}
	old := s.cfg.Load()
	if c, ok := s.logins.(Configurable); ok && cfg.Limits != old.Limits {
		c.Configure(cfg.Limits)
	}
	s.cfg.Store(&cfg)
	s.alloc.SetRange(cfg.Data.PortRange) // running transfers keep their leases
	kept := s.listeners[:0]
	for _, l := range s.listeners {
		if nl := cfg.listener(l.address); nl != nil {
			l.last = nl
			kept = append(kept, l)
		} else {
			s.log.Info("listener removed", "address", l.address)
			l.removed.Store(true)
			Unbind(l.ln)
		}
	}
	s.listeners = kept
	for _, l := range added {
		s.listeners = append(s.listeners, l)
		s.log.Info("listener added", "address", l.ln.Addr().String())
		if s.serving {
			s.startAccept(l)
		}
	}
	return nil
}

// bound returns the listener bound at address, if any. lmu must be held.
func (s *Server) bound(address string) *listener {
	for _, l := range s.listeners {
		if l.address == address {
			return l
		}
	}
	return nil
}

// Config returns the config in force.
func (s *Server) Config() *Config { return s.cfg.Load() }

// Allocator returns the passive data-port allocator (for status and metrics).
func (s *Server) Allocator() *nat.Allocator { return s.alloc }

// Listen binds every listener. Call Serve afterwards.
func (s *Server) Listen(ctx context.Context) error {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	cfg := s.cfg.Load()
	for i := range cfg.Listeners {
		l := &cfg.Listeners[i]
		ln, err := s.bind(ctx, l.Address)
		if err != nil {
			for _, b := range s.listeners {
				b.ln.Close()
			}
			s.listeners = nil
			return fmt.Errorf("listen %s: %w", l.Address, err)
		}
		s.listeners = append(s.listeners, &listener{address: l.Address, ln: ln, last: l})
	}
	return nil
}

// Addrs returns the bound listener addresses, in config order.
func (s *Server) Addrs() []net.Addr {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	out := make([]net.Addr, len(s.listeners))
	for i, l := range s.listeners {
		out[i] = l.ln.Addr()
	}
	return out
}

// Serve accepts sessions until Shutdown, on the listeners bound by Listen and those a Reload
// adds. It returns nil after a shutdown.
func (s *Server) Serve() error {
	s.lmu.Lock()
	s.serving = true
	for _, l := range s.listeners {
		s.startAccept(l)
	}
	s.lmu.Unlock()
	go s.sweepIdle()
	<-s.drain
	s.acceptWG.Wait()
	return nil
}

func (s *Server) startAccept(l *listener) {
	s.acceptWG.Add(1)
	go func() {
		defer s.acceptWG.Done()
		s.acceptLoop(l)
	}()
}

func (s *Server) acceptLoop(l *listener) error {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			select {
			case <-s.drain:
				return nil
			default:
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			if errors.Is(err, net.ErrClosed) || l.removed.Load() {
				return nil
			}
			s.log.Error("accept failed", "listener", l.address, "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		s.wg.Add(1)
		go s.serveConn(l, c)
	}
}

func (s *Server) serveConn(l *listener, c net.Conn) {
	sess := s.track(l, c)
	if sess.Run() {
		return // the session is idle with no goroutine; the one that takes it on ends it
	}
	s.endConn(sess)
}

// endConn is the last of a session: it leaves the server's books.
func (s *Server) endConn(sess *session) {
	s.untrack(sess)
	s.wg.Done()
}

// track registers a new session.
func (s *Server) track(l *listener, c net.Conn) *session {
	sess := newSession(s, l, c)
	s.mu.Lock()
	s.sessions[sess.id] = sess
	s.mu.Unlock()
	s.sweeps.add(sess)
	return sess
}

// untrack removes an ended session and reports it. The sweep's books let it go first, so a
// caller that sees the session count drop sees them without it too.
func (s *Server) untrack(sess *session) {
	s.sweeps.remove(sess)
	s.mu.Lock()
	delete(s.sessions, sess.id)
	s.mu.Unlock()
	backend := ""
	if sess.backend != nil {
		backend = sess.backend.String()
	}
	if sess.counted {
		s.obs.SessionEnded(sess.lc.name(), backend)
		s.obs.SessionDuration(time.Since(sess.live.since))
	}
}

// admit counts a new session against the global and per-IP limits. It returns false when a
// limit is reached; a true result needs one leave.
func (s *Server) admit(ip netip.Addr, lim Limits) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if lim.MaxSessions > 0 && len(s.sessions) > lim.MaxSessions {
		return false
	}
	if lim.MaxSessionsPerIP > 0 && s.perIP[ip] >= lim.MaxSessionsPerIP {
		return false
	}
	s.perIP[ip]++
	return true
}

func (s *Server) leave(ip netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perIP[ip]--; s.perIP[ip] <= 0 {
		delete(s.perIP, ip)
	}
}

// Sessions returns the number of sessions running.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

func (s *Server) closeListeners() {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	for _, l := range s.listeners {
		l.ln.Close()
	}
}

// StopAccepting closes the listeners without starting a drain: sessions already accepted go
// on as usual. After an upgrade the old process calls it once the new one serves the same
// (inherited) sockets, so closing its copies refuses nobody; Shutdown follows.
func (s *Server) StopAccepting() { s.closeListeners() }

// Shutdown stops accepting, sends the shutdown 421 to idle sessions, lets running transfers
// finish, and returns when every session has ended. When ctx ends first, it closes every
// session at once and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() {
		s.beginDrain()
		s.closeListeners()
	})
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		s.hardStop()
		s.limitLog.Close()
		return nil
	case <-ctx.Done():
		s.hardStop()
		<-done
		s.limitLog.Close()
		return ctx.Err()
	}
}

// beginDrain starts the drain, closes the passive sockets kept for reuse, and wakes the idle
// sessions, whose owners wait in a backend read (connWait) or are away (ownerAway), so they
// see it. A session that parks later, or goes away, checks the drain first.
func (s *Server) beginDrain() {
	s.startDrain()
	s.alloc.StopReusing() // the ports as a process taking over expects them
	s.mu.Lock()
	for _, sess := range s.sessions {
		sess.wakeOwner()
	}
	s.mu.Unlock()
}

// interruptAll is the server's end (hardStop) for every session it holds: it ends their
// contexts and interrupts their waits. A session tracked later sees hardCtx ended in begin.
func (s *Server) interruptAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sess := range s.sessions {
		sess.done()
	}
}

// Close ends every session at once.
func (s *Server) Close() error {
	s.stopOnce.Do(func() {
		s.beginDrain()
		s.closeListeners()
	})
	s.hardStop()
	s.wg.Wait()
	s.limitLog.Close()
	return nil
}
