package admin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/proxy"
)

// Timeouts of the admin HTTP server: scrapes and status pages are small, so anything slower
// is a stuck or hostile client.
const (
	adminReadHeaderTimeout = 5 * time.Second
	adminReadTimeout       = 10 * time.Second
	adminWriteTimeout      = 30 * time.Second
	adminIdleTimeout       = 60 * time.Second
	adminMaxHeaderBytes    = 16 << 10
)

// Server is the admin HTTP server of [admin] address: the status page at /, Prometheus
// metrics at /metrics, a load-balancer health check at /healthz and, with HandleAPI, the
// JSON API. Only the API's writes are authenticated (a bearer token); bind it to a trusted
// address.
type Server struct {
	// Version is shown on the status page; set it before Start.
	Version string
	// ClusterStatus, when set, says on the status page how the shared state ([cluster]
	// Redis) fares: up, or unreachable since when with local limits only. Set it before Start.
	ClusterStatus func() (status string, up bool)
	// Listen, when set, binds the address in Start (tableflip's Upgrader.Listen hands a
	// socket over from the process being upgraded); nil: net.Listen.
	Listen func(network, addr string) (net.Listener, error)

	addr string
	src  Source
	m    *Metrics
	log  *slog.Logger
	http *http.Server
	mux  *http.ServeMux

	mu sync.Mutex
	ln net.Listener
}

// NewServer returns a server for addr (host:port) that is not yet listening. It makes m read
// its scrape-time gauges from src. m and log may be nil.
func NewServer(addr string, src Source, m *Metrics, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = NewMetrics()
	}
	m.SetSource(src)
	mux := http.NewServeMux()
	s := &Server{addr: addr, src: src, m: m, log: log, mux: mux}
	mux.HandleFunc("GET /{$}", s.handleStatus)
	mux.HandleFunc("GET /metrics", s.handleMetrics)
	mux.HandleFunc("GET /healthz", s.handleHealthz)
	mux.HandleFunc("GET /healthz/{pool}", s.handleHealthzPool)
	s.http = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: adminReadHeaderTimeout,
		ReadTimeout:       adminReadTimeout,
		WriteTimeout:      adminWriteTimeout,
		IdleTimeout:       adminIdleTimeout,
		MaxHeaderBytes:    adminMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return s
}

// HandleAPI serves a's JSON API under /api/v1/. Call it before Start.
func (s *Server) HandleAPI(a *API) { a.Register(s.mux) }

// Start binds the address and serves in the background. It returns the bind error, if any.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return errors.New("admin: already started")
	}
	listen := s.Listen
	if listen == nil {
		listen = net.Listen
	}
	ln, err := listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("admin: listen %s: %w", s.addr, err)
	}
	s.ln = ln
	go s.serve(ln)
	return nil
}

func (s *Server) serve(ln net.Listener) {
	if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		s.log.Error("admin server stopped", "address", ln.Addr().String(), "err", err)
	}
}

// Addr returns the bound address, or nil before Start.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Unbind stops the listening socket for good, in every process holding a copy of it (see
// proxy.Unbind): for an admin address a reload moved, not for one an upgrade handed over.
// Shutdown follows.
func (s *Server) Unbind() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		proxy.Unbind(s.ln)
	}
}

// Shutdown stops the server, letting requests in flight finish until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.http.Shutdown(ctx)
}

// handleMetrics serves the Prometheus text format: this proxy's Set, then the Go runtime and
// process metrics the library writes.
func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	var b bytes.Buffer
	s.m.WritePrometheus(&b)
	metrics.WriteProcessMetrics(&b)
	metrics.WriteFDMetrics(&b)
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	fillHelp(w, b.Bytes())
}

// handleHealthz answers 200 while the proxy accepts sessions and at least one pool can serve
// (has a healthy backend), else 503. The body's first line is the reason: "ok", "ok;
// degraded: ..." naming the pools that cannot serve, "draining", or the pools' problems.
func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	code := http.StatusOK
	ok, reason := health(s.src)
	if !ok {
		code = http.StatusServiceUnavailable
	}
	writeHealth(w, code, reason)
}

// handleHealthzPool answers /healthz/{pool}: 200 while the proxy accepts sessions and the
// pool has a healthy backend, 503 when not, 404 for a pool not in the config in force. A
// load balancer in front of several proxies can check the pool it routes to.
func (s *Server) handleHealthzPool(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("pool")
	for _, p := range s.src.Pools() {
		if p.Name != name {
			continue
		}
		switch {
		case !s.src.Accepting():
			writeHealth(w, http.StatusServiceUnavailable, "draining")
		case poolServes(p):
			writeHealth(w, http.StatusOK, "ok")
		default:
			writeHealth(w, http.StatusServiceUnavailable, poolDown(p))
		}
		return
	}
	writeHealth(w, http.StatusNotFound, "unknown pool "+strconv.Quote(name))
}

func writeHealth(w http.ResponseWriter, code int, reason string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	fmt.Fprintln(w, reason)
}

// health reports whether src can serve new sessions (accepting, and at least one pool with a
// healthy backend), with the reason: the pools that cannot serve are named either way.
func health(src Source) (bool, string) {
	if !src.Accepting() {
		return false, "draining"
	}
	var down []string
	serving := 0
	for _, p := range src.Pools() {
		if poolServes(p) {
			serving++
		} else {
			down = append(down, poolDown(p))
		}
	}
	switch {
	case serving == 0 && len(down) == 0:
		return false, "no pool"
	case serving == 0:
		return false, strings.Join(down, "; ")
	case len(down) > 0:
		return true, "ok; degraded: " + strings.Join(down, "; ")
	}
	return true, "ok"
}

// poolServes reports whether p has a healthy backend. A backend at max_sessions still counts:
// being full is load, not failure, and a health check that failed on load would take the
// whole proxy out of a load balancer exactly when it is busiest.
func poolServes(p *balancer.Pool) bool {
	for _, b := range p.Backends {
		if b.Healthy() {
			return true
		}
	}
	return false
}

func poolDown(p *balancer.Pool) string {
	return "pool " + strconv.Quote(p.Name) + ": no healthy backend"
}

// handleStatus renders the status page. ?refresh=N (1–3600) adds a meta refresh.
func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	v := s.statusView(time.Now())
	if n, err := strconv.Atoi(r.URL.Query().Get("refresh")); err == nil && n >= 1 && n <= 3600 {
		v.Refresh = n
	}
	var b bytes.Buffer
	if err := statusTemplate.Execute(&b, v); err != nil {
		s.log.Error("admin: status page", "err", err)
		http.Error(w, "status page failed", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	w.Write(b.Bytes())
}
