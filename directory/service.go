package directory

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// lookupRequest is the body POSTed to the lookup service.
type lookupRequest struct {
	User     string `json:"user"`
	ClientIP string `json:"client_ip"`
	Listener string `json:"listener"`
	SNI      string `json:"sni"`
	Host     string `json:"host"`
}

// serviceAnswer is the body the lookup and authentication services answer with.
type serviceAnswer struct {
	Allow           *bool  `json:"allow"`
	Pool            string `json:"pool"`
	Backend         string `json:"backend"`
	BackendUser     string `json:"backend_user"`
	BackendPassword string `json:"backend_password"`
}

// target returns the answer's pool or backend, and an error when it names both or a bad name.
func (a *serviceAnswer) target() (string, Kind, error) {
	switch {
	case a.Pool != "" && a.Backend != "":
		return "", 0, errors.New("answer names both a pool and a backend")
	case a.Pool != "":
		return a.Pool, KindPool, checkName(a.Pool, true)
	case a.Backend != "":
		return a.Backend, KindBackend, checkName(a.Backend, true)
	}
	return "", KindAny, nil
}

// post sends body as JSON to u and returns the status and at most maxBody bytes of answer.
func (d *Directory) post(ctx context.Context, u string, body any) (int, []byte, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return 0, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, d.cfg.timeout())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(b))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := d.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("reading the answer: %w", err)
	}
	if len(data) > maxBody {
		return resp.StatusCode, nil, fmt.Errorf("answer longer than %d bytes", maxBody)
	}
	return resp.StatusCode, data, nil
}

// decode parses a service's JSON answer.
func decode(data []byte) (serviceAnswer, error) {
	var a serviceAnswer
	if err := json.Unmarshal(data, &a); err != nil {
		return serviceAnswer{}, fmt.Errorf("answer is not JSON: %w", err)
	}
	if err := checkOptional(a.BackendUser); err != nil {
		return serviceAnswer{}, fmt.Errorf("backend_user: %w", err)
	}
	if err := checkOptional(a.BackendPassword); err != nil {
		return serviceAnswer{}, errors.New("backend_password: bad characters or too long")
	}
	return a, nil
}

// checkOptional accepts a credential of at most MaxUser bytes without control characters: one
// carrying CR or LF would inject a command toward the backend.
func checkOptional(s string) error {
	if len(s) > MaxUser {
		return fmt.Errorf("%w: longer than %d bytes", ErrField, MaxUser)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return fmt.Errorf("%w: control character at %d", ErrField, i)
		}
	}
	return nil
}

// askLookup calls the lookup service once.
func (d *Directory) askLookup(ctx context.Context, q Query) (Answer, bool, error) {
	ip := ""
	if q.ClientIP.IsValid() {
		ip = q.ClientIP.String()
	}
	status, data, err := d.post(ctx, d.cfg.URL, lookupRequest{User: q.User, ClientIP: ip, Listener: q.Listener, SNI: q.SNI, Host: q.Host})
	if err != nil {
		return Answer{}, false, err
	}
	switch status {
	case http.StatusNotFound:
		return Answer{}, false, nil
	case http.StatusOK:
	default:
		return Answer{}, false, fmt.Errorf("status %d", status)
	}
	a, err := decode(data)
	if err != nil {
		return Answer{}, false, err
	}
	t, k, err := a.target()
	if err == nil && t == "" {
		err = errors.New(`answer names neither "pool" nor "backend"`)
	}
	if err != nil {
		return Answer{}, false, err
	}
	return Answer{Target: t, Kind: k, BackendUser: a.BackendUser}, true, nil
}

// lookupURL answers from the cache or asks the service, one request per user name at a
// time: concurrent logins of one user wait for the same answer. The cache is keyed by the
// user name as sent (with its @domain when there is one), not by HOST or SNI, which clients
// fill in differently (lftp sends the address it dialled): the service is asked once per
// user per TTL, so its answer must not depend on the other fields.
func (d *Directory) lookupURL(ctx context.Context, q Query) (Answer, bool, error) {
	key := q.User
	e, c, leader := d.cache.join(key, time.Now())
	if c == nil {
		e.ans.Source, e.ans.Cached = "url", true
		return e.ans, e.found, nil
	}
	if leader {
		// Detached from the leader's session: its client hanging up must not fail the
		// logins waiting for the same answer. post bounds it with the timeout.
		c.ans, c.found, c.err = d.askLookup(context.WithoutCancel(ctx), q)
		d.cache.leave(key, c, time.Now().Add(d.cfg.cacheTTL()))
	} else {
		select {
		case <-c.done:
		case <-ctx.Done():
			return Answer{Source: "url"}, false, fmt.Errorf("%w: %w", ErrLookup, ctx.Err())
		}
	}
	if c.err != nil {
		return Answer{Source: "url"}, false, fmt.Errorf("%w: %w", ErrLookup, c.err)
	}
	ans := c.ans
	ans.Source, ans.Cached = "url", !leader
	return ans, c.found, nil
}

// cache holds lookup answers until they expire, at most max of them, and the requests in
// flight. When full it drops the expired entries, then arbitrary ones (a flood of unknown
// names must not grow memory).
type cache struct {
	max    int
	mu     sync.Mutex
	m      map[string]cached
	flight map[string]*call
}

type cached struct {
	ans   Answer
	found bool
	exp   time.Time
}

// call is one request in flight; done is closed when its fields are set.
type call struct {
	done  chan struct{}
	ans   Answer
	found bool
	err   error
}

func newCache(max int) *cache {
	return &cache{max: max, m: make(map[string]cached), flight: make(map[string]*call)}
}

// join returns the cached answer of key when it has not expired (and a nil call), else the
// call in flight for key, or a new one with leader set. Checking both under one lock means a
// login arriving as an answer lands either sees the answer or waits for it, never asks again.
func (c *cache) join(key string, now time.Time) (cached, *call, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[key]; ok && !now.After(e.exp) {
		return e, nil, false
	}
	if f, ok := c.flight[key]; ok {
		return cached{}, f, false
	}
	f := &call{done: make(chan struct{})}
	c.flight[key] = f
	return cached{}, f, true
}

// leave ends the leader's call: a successful answer is cached until exp, and the waiters
// are woken. A failure is not cached, so the next login asks again.
func (c *cache) leave(key string, f *call, exp time.Time) {
	c.mu.Lock()
	delete(c.flight, key)
	if f.err == nil {
		c.putLocked(key, cached{ans: f.ans, found: f.found, exp: exp})
	}
	c.mu.Unlock()
	close(f.done)
}

// putLocked stores e, making room first when the cache is full. c.mu is held.
func (c *cache) putLocked(key string, e cached) {
	if len(c.m) >= c.max {
		now := time.Now()
		for k, e := range c.m {
			if now.After(e.exp) {
				delete(c.m, k)
			}
		}
		for k := range c.m {
			if len(c.m) < c.max*9/10 {
				break
			}
			delete(c.m, k)
		}
	}
	c.m[key] = e
}

// AuthRequest is what the authentication service is told about a login.
type AuthRequest struct {
	User              string `json:"user"`
	Password          string `json:"password"`
	ClientIP          string `json:"client_ip"`
	TLS               bool   `json:"tls"`
	ClientCertSubject string `json:"client_cert_subject"`
}

// AuthAnswer is the authentication service's decision.
type AuthAnswer struct {
	Allow           bool
	BackendUser     string
	BackendPassword string
	Target          string // optional pool or backend
	Kind            Kind
}

// ErrAuth wraps every failure of the authentication service: the login is then refused
// with 421, never let through.
var ErrAuth = errors.New("authentication service failed")

// HasAuth reports whether an authentication service is configured.
func (d *Directory) HasAuth() bool { return d.cfg.AuthURL != "" }

// Authenticate asks the authentication service about a login. A 200 with "allow": true
// allows; any 2xx with "allow": false, a 401 or a 403 denies; anything else is an error
// wrapping ErrAuth. Answers are never cached: they depend on the password.
func (d *Directory) Authenticate(ctx context.Context, r AuthRequest) (AuthAnswer, error) {
	status, data, err := d.post(ctx, d.cfg.AuthURL, r)
	if err != nil {
		return AuthAnswer{}, fmt.Errorf("%w: %w", ErrAuth, err)
	}
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return AuthAnswer{}, nil
	case status < 200 || status > 299:
		return AuthAnswer{}, fmt.Errorf("%w: status %d", ErrAuth, status)
	}
	a, err := decode(data)
	if err == nil && a.Allow == nil {
		err = errors.New(`answer has no "allow"`)
	}
	if err != nil {
		return AuthAnswer{}, fmt.Errorf("%w: %w", ErrAuth, err)
	}
	if !*a.Allow {
		return AuthAnswer{}, nil
	}
	if status != http.StatusOK {
		return AuthAnswer{}, fmt.Errorf("%w: allow with status %d, want 200", ErrAuth, status)
	}
	t, k, err := a.target()
	if err != nil {
		return AuthAnswer{}, fmt.Errorf("%w: %w", ErrAuth, err)
	}
	return AuthAnswer{Allow: true, BackendUser: a.BackendUser, BackendPassword: a.BackendPassword, Target: t, Kind: k}, nil
}
