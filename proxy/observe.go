package proxy

import (
	"net/netip"
	"time"
)

// Observer receives what operators count and log: metrics, the transfer log, the status page.
// Methods are called from session goroutines, must be safe for concurrent use and must not
// block. Labels passed here are bounded (listener, pool and backend names from the config,
// fixed outcome strings); client addresses and user names appear only in TransferRecord.
type Observer interface {
	SessionStarted(listener string)
	SessionEnded(listener, backend string)
	// SessionDuration reports how long a session ran, from accept to close (right after
	// SessionEnded).
	SessionDuration(d time.Duration)
	// BackendSession reports a session placed on a backend (after login succeeded).
	BackendSession(pool, backend string)
	// PoolPanic reports a session that found no healthy backend in pool and tries them all
	// anyway (the pool's panic mode).
	PoolPanic(pool string)
	// Login reports a PASS outcome: "ok", "failed" (530, also the failure that earns a ban),
	// "error" (backend trouble) or "rate_limited" (refused before any backend was asked: the
	// attempts cap, or the address is banned).
	Login(outcome string)
	// Closed421 reports a session ended with a 421 of cause.
	Closed421(cause Cause)
	// DataRefused reports a data connection refused: "foreign_peer" (passive connection from
	// another address) or "bounce" (PORT/EPRT to another address or a privileged port).
	DataRefused(reason string)
	// RateLimited reports a connection (at connect or USER) refused because its address is
	// banned. A PASS refused by a limit is reported by Login("rate_limited") instead, so no
	// event is counted twice.
	RateLimited()
	// PortsExhausted reports a PASV/EPSV refused because the port range was used up.
	PortsExhausted()
	// TLSHandshake reports a TLS handshake on side "client" or "backend".
	TLSHandshake(side string, err error)
	// Transfer reports one finished (or failed) transfer.
	Transfer(TransferRecord)
	// HealthCheck reports a connection that a trusted proxy opened with a PROXY v2 LOCAL
	// header (a load balancer's health check). It is not a session: SessionStarted and
	// SessionEnded are not called for it.
	HealthCheck(listener string)
	// DirectoryLookup reports a user directory step of a login: source "file", "url" or
	// "auth"; result "found", "not_found" or "error" ("allow", "deny" or "error" for auth);
	// cached when the lookup service's answer came from the cache.
	DirectoryLookup(source, result string, cached bool)
}

// TransferRecord describes one transfer, with what an xferlog line needs.
type TransferRecord struct {
	Start     time.Time
	Duration  time.Duration
	Client    netip.Addr
	User      string
	Listener  string
	Pool      string // the pool the backend was chosen from
	Backend   string
	Command   string // RETR, STOR, STOU, APPE, LIST, NLST, MLSD
	Path      string // the command's argument
	Bytes     int64
	Upload    bool // client to backend
	ASCII     bool // TYPE A in force
	TLS       bool // protected data connection toward the client
	Complete  bool // the backend's final reply was 2xx and the data pump had no error
	Aborted   bool // ABOR from the client
	ReplyCode int  // the backend's final reply code
	SessionID string
}

// nopObserver is used when the Config has none.
type nopObserver struct{}

func (nopObserver) SessionStarted(string)                {}
func (nopObserver) SessionEnded(string, string)          {}
func (nopObserver) SessionDuration(time.Duration)        {}
func (nopObserver) BackendSession(string, string)        {}
func (nopObserver) PoolPanic(string)                     {}
func (nopObserver) Login(string)                         {}
func (nopObserver) Closed421(Cause)                      {}
func (nopObserver) DataRefused(string)                   {}
func (nopObserver) PortsExhausted()                      {}
func (nopObserver) RateLimited()                         {}
func (nopObserver) TLSHandshake(string, error)           {}
func (nopObserver) Transfer(TransferRecord)              {}
func (nopObserver) DirectoryLookup(string, string, bool) {}
func (nopObserver) HealthCheck(string)                   {}
