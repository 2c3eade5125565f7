package admin

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/proxy"
)

// apiMaxBody bounds a request body of the API (the only one is {"level": "..."}).
const apiMaxBody = 4 << 10

// SessionControl is the running proxy as the API's session endpoints see it.
type SessionControl interface {
	SessionList() []proxy.SessionInfo
	CloseSession(id string) bool
}

var _ SessionControl = (*proxy.Server)(nil)

// API is the JSON API under /api/v1/ (SPEC §8): backends with their state and the
// administrator's drain/disable/enable, sessions and closing one, and the log level. Reads
// are open like the status page; writes need "Authorization: Bearer <token>" and are refused
// (403) while no token is set (admin.token_file).
type API struct {
	Registry *balancer.Registry
	Sessions SessionControl
	Level    *slog.LevelVar // the process log level; nil: PUT log/level answers 404
	Log      *slog.Logger

	token atomic.Pointer[string]
}

// SetToken sets the bearer token writes need; "" turns writes off.
func (a *API) SetToken(tok string) { a.token.Store(&tok) }

// BackendJSON is one backend in GET /api/v1/backends.
type BackendJSON struct {
	Pool        string    `json:"pool"`
	Name        string    `json:"name"` // pool.backend.name, else the address
	Address     string    `json:"address"`
	State       string    `json:"state"` // up, down, draining, disabled, removed
	Healthy     bool      `json:"healthy"`
	Admin       string    `json:"admin"` // enabled, draining, disabled
	Sessions    int       `json:"sessions"`
	MaxSessions int       `json:"max_sessions"`
	Total       uint64    `json:"total_sessions"`
	LastError   string    `json:"last_error"`
	LastProbe   time.Time `json:"last_probe,omitzero"`
	Since       time.Time `json:"since"`
}

// SessionJSON is one session in GET /api/v1/sessions.
type SessionJSON struct {
	ID       string    `json:"id"`
	Client   string    `json:"client"`
	User     string    `json:"user"`
	Pool     string    `json:"pool"`
	Backend  string    `json:"backend"`
	Since    time.Time `json:"since"`
	BytesIn  int64     `json:"bytes_in"`
	BytesOut int64     `json:"bytes_out"`
	Command  string    `json:"command"`
}

// Register adds the API's routes to mux.
func (a *API) Register(mux *http.ServeMux) {
	mux.HandleFunc("/api/v1/backends", a.method(http.MethodGet, a.listBackends))
	mux.HandleFunc("/api/v1/backends/{pool}/{backend}/{action}", a.method(http.MethodPost, a.write(a.setBackend)))
	mux.HandleFunc("/api/v1/sessions", a.method(http.MethodGet, a.listSessions))
	mux.HandleFunc("/api/v1/sessions/{id}/close", a.method(http.MethodPost, a.write(a.closeSession)))
	mux.HandleFunc("/api/v1/log/level", a.method(http.MethodPut, a.write(a.setLevel)))
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		apiError(w, http.StatusNotFound, "no such endpoint")
	})
}

// method answers 405 (JSON) to other methods than m.
func (a *API) method(m string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != m {
			w.Header().Set("Allow", m)
			apiError(w, http.StatusMethodNotAllowed, "use "+m)
			return
		}
		h(w, r)
	}
}

// write checks the bearer token before h.
func (a *API) write(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok := ""
		if p := a.token.Load(); p != nil {
			tok = *p
		}
		if tok == "" {
			apiError(w, http.StatusForbidden, "writes are off: set admin.token_file")
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(tok)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="ftpsproxy"`)
			apiError(w, http.StatusUnauthorized, "missing or wrong bearer token")
			return
		}
		h(w, r)
	}
}

func (a *API) listBackends(w http.ResponseWriter, r *http.Request) {
	out := []BackendJSON{}
	if a.Registry != nil {
		for _, v := range a.Registry.Backends() {
			out = append(out, backendJSON(v))
		}
	}
	apiJSON(w, http.StatusOK, out)
}

func backendJSON(v balancer.BackendView) BackendJSON {
	b := v.Backend
	return BackendJSON{
		Pool: v.Pool, Name: b.Key(), Address: b.Config.Address, State: b.State(v.Removed),
		Healthy: b.Healthy(), Admin: b.Admin().String(), Sessions: b.Active(),
		MaxSessions: b.Config.MaxSessions, Total: b.Total(), LastError: b.LastError(),
		LastProbe: b.LastProbe(), Since: b.Since(),
	}
}

// adminActions maps the URL's action to the admin state it sets.
var adminActions = map[string]balancer.AdminState{
	"drain":   balancer.AdminDraining,
	"disable": balancer.AdminDisabled,
	"enable":  balancer.AdminEnabled,
}

func (a *API) setBackend(w http.ResponseWriter, r *http.Request) {
	st, ok := adminActions[r.PathValue("action")]
	if !ok {
		apiError(w, http.StatusNotFound, "unknown action "+quoteShort(r.PathValue("action"))+": use drain, disable or enable")
		return
	}
	pool, id := r.PathValue("pool"), r.PathValue("backend")
	var b *balancer.Backend
	if a.Registry != nil {
		b = a.Registry.Find(pool, id)
	}
	if b == nil {
		apiError(w, http.StatusNotFound, "no backend "+quoteShort(id)+" in pool "+quoteShort(pool))
		return
	}
	if b.SetAdmin(st) {
		a.logger().Warn("backend state set by the admin API", "pool", pool, "backend", b.String(), "admin", st.String(), "sessions", b.Active())
	}
	apiJSON(w, http.StatusOK, backendJSON(balancer.BackendView{Pool: pool, Backend: b}))
}

func (a *API) listSessions(w http.ResponseWriter, r *http.Request) {
	out := []SessionJSON{}
	if a.Sessions != nil {
		for _, s := range a.Sessions.SessionList() {
			out = append(out, SessionJSON{
				ID: s.ID, Client: s.Client, User: s.User, Pool: s.Pool, Backend: s.Backend,
				Since: s.Since, BytesIn: s.BytesIn, BytesOut: s.BytesOut, Command: s.Command,
			})
		}
	}
	apiJSON(w, http.StatusOK, out)
}

func (a *API) closeSession(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if a.Sessions == nil || !a.Sessions.CloseSession(id) {
		apiError(w, http.StatusNotFound, "no session "+quoteShort(id))
		return
	}
	a.logger().Warn("session closed by the admin API", "session", id)
	apiJSON(w, http.StatusOK, map[string]string{"closed": id})
}

// logLevels are the [log] level names.
var logLevels = map[string]slog.Level{
	"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError,
}

func (a *API) setLevel(w http.ResponseWriter, r *http.Request) {
	if a.Level == nil {
		apiError(w, http.StatusNotFound, "the log level cannot be changed here")
		return
	}
	var req struct {
		Level *string `json:"level"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, apiMaxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			apiError(w, http.StatusRequestEntityTooLarge, "body too large")
			return
		}
		apiError(w, http.StatusBadRequest, `body must be {"level": "debug|info|warn|error"}`)
		return
	}
	if req.Level == nil {
		apiError(w, http.StatusBadRequest, `missing "level"`)
		return
	}
	lv, ok := logLevels[*req.Level]
	if !ok {
		apiError(w, http.StatusBadRequest, "unknown level "+quoteShort(*req.Level)+": use debug, info, warn or error")
		return
	}
	a.Level.Set(lv)
	a.logger().Warn("log level set by the admin API", "level", *req.Level)
	apiJSON(w, http.StatusOK, map[string]string{"level": *req.Level})
}

func (a *API) logger() *slog.Logger {
	if a.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return a.Log
}

// quoteShort quotes s for an error message, cut to 64 bytes: the input is the client's.
func quoteShort(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	b, _ := json.Marshal(s)
	return string(b)
}

func apiError(w http.ResponseWriter, code int, msg string) {
	apiJSON(w, code, map[string]string{"error": msg})
}

func apiJSON(w http.ResponseWriter, code int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
