package tlsterm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"
	"golang.org/x/time/rate"

	"github.com/ftpsproxy/ftpsproxy/internal/logthrottle"
)

// OnDemandOptions ([tls.acme.on_demand]) lets the proxy obtain a certificate during the
// first handshake that names a domain it has none for: hosting providers add customer
// domains without touching the proxy. Only names that Allow matches or that the Ask service
// approves are issued, and issuance is rate-limited, because a client chooses the SNI and
// the CA limits how many certificates an account may get.
type OnDemandOptions struct {
	Allow []string `toml:"allow"` // globs on the server name, "*" within one label: "*.customers.example"
	// Ask is a URL asked with GET ?domain=NAME for names Allow does not match; 200 permits.
	Ask       string `toml:"ask"`
	PerMinute int    `toml:"per_minute"` // issuance attempts per minute; 0: DefaultOnDemandPerMinute
	Burst     int    `toml:"burst"`      // 0: DefaultOnDemandBurst
}

// DefaultOnDemandOptions returns the [tls.acme.on_demand] settings a config file gets for the
// keys it leaves out (not enabled: no allow, no ask).
func DefaultOnDemandOptions() OnDemandOptions {
	return OnDemandOptions{PerMinute: DefaultOnDemandPerMinute, Burst: DefaultOnDemandBurst}
}

// Enabled reports whether on-demand issuance is configured (allow or ask set).
func (o OnDemandOptions) Enabled() bool { return len(o.Allow) > 0 || o.Ask != "" }

// Defaults of the on-demand rate limit: enough for a new customer's first connections,
// far below Let's Encrypt's 300 new orders per 3 hours.
const (
	DefaultOnDemandPerMinute = 10
	DefaultOnDemandBurst     = 5
	askTimeout               = 5 * time.Second
	maxServerName            = 253
)

// Errors of the on-demand decision, wrapped with the name.
var (
	ErrNotPermitted = errors.New("acme on demand: name not permitted")
	ErrRateLimited  = errors.New("acme on demand: issuance rate limit reached")
)

func (o OnDemandOptions) perMinute() int {
	if o.PerMinute > 0 {
		return o.PerMinute
	}
	return DefaultOnDemandPerMinute
}

func (o OnDemandOptions) burst() int {
	if o.Burst > 0 {
		return o.Burst
	}
	return DefaultOnDemandBurst
}

// Validate checks the globs and the ask URL.
func (o OnDemandOptions) Validate() error {
	if len(o.Allow) == 0 && o.Ask == "" {
		return errors.New("on_demand needs allow or ask: without them any name a client sends would be issued")
	}
	for _, g := range o.Allow {
		if _, err := path.Match(g, ""); err != nil {
			return fmt.Errorf("on_demand.allow %q: %w", g, err)
		}
	}
	if o.Ask != "" {
		u, err := url.Parse(o.Ask)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("on_demand.ask %q is not an http(s) URL", o.Ask)
		}
	}
	return nil
}

// onDemand is certmagic's OnDemand decision for one ACME source.
type onDemand struct {
	opts    OnDemandOptions
	managed map[string]bool // tls.acme.domains: certmagic asks the decision for them too
	issue   *rate.Limiter   // issuance attempts
	asks    *rate.Limiter   // queries to the ask service (names outside Allow)
	client  *http.Client
}

func newOnDemand(o OnDemandOptions, managed []string) *onDemand {
	per := rate.Limit(float64(o.perMinute()) / 60)
	m := make(map[string]bool, len(managed))
	for _, d := range managed {
		m[strings.ToLower(d)] = true
	}
	return &onDemand{
		opts:    o,
		managed: m,
		issue:   rate.NewLimiter(per, o.burst()),
		// Names outside Allow come from whoever connects: the ask service gets a bounded
		// share of them too (ten times the issuance rate).
		asks:   rate.NewLimiter(per*10, o.burst()*10),
		client: &http.Client{Timeout: askTimeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
	}
}

// config is certmagic's OnDemand setting with d's decision, logging each outcome through
// lt: the name is the client's SNI, and a flood of made-up names must not flood the log.
func (d *onDemand) config(log *slog.Logger, lt *logthrottle.Throttle) *certmagic.OnDemandConfig {
	return &certmagic.OnDemandConfig{DecisionFunc: func(ctx context.Context, name string) error {
		err := d.decide(ctx, name)
		if err != nil {
			lt.Warn(log, "acme on-demand certificate refused", "domain", shortName(name), "err", err)
		} else {
			lt.Info(log, "acme on-demand certificate permitted", "domain", name)
		}
		return err
	}}
}

// decide permits name or says why not: the managed domains always, others by permission
// first (so refused names spend no issuance token), then the rate limit.
func (d *onDemand) decide(ctx context.Context, name string) error {
	name = strings.ToLower(name)
	if d.managed[name] {
		return nil
	}
	if err := d.permitted(ctx, name); err != nil {
		return err
	}
	if !d.issue.Allow() {
		return fmt.Errorf("%w: %s", ErrRateLimited, name)
	}
	return nil
}

func (d *onDemand) permitted(ctx context.Context, name string) error {
	if name == "" || len(name) > maxServerName || strings.ContainsAny(name, "*/?#@ ") {
		return fmt.Errorf("%w: %q", ErrNotPermitted, shortName(name))
	}
	for _, g := range d.opts.Allow {
		if labelMatch(g, name) {
			return nil
		}
	}
	if d.opts.Ask == "" {
		return fmt.Errorf("%w: %s", ErrNotPermitted, name)
	}
	if !d.asks.Allow() {
		return fmt.Errorf("%w: %s (ask rate)", ErrRateLimited, name)
	}
	return d.ask(ctx, name)
}

// shortName cuts a refused name to maxServerName bytes for an error or a log line: a
// client's SNI may be far longer than any DNS name.
func shortName(name string) string {
	if len(name) > maxServerName {
		return name[:maxServerName] + "…"
	}
	return name
}

// labelMatch matches a glob against a server name label by label: "*" stands for one whole
// label or part of one, never for several ("*.example" does not match "a.b.example", as a
// wildcard certificate would not).
func labelMatch(glob, name string) bool {
	if strings.Count(glob, ".") != strings.Count(name, ".") {
		return false // a character class such as "[+-0]" could still match the dot
	}
	ok, _ := path.Match(strings.ReplaceAll(strings.ToLower(glob), ".", "/"), strings.ReplaceAll(name, ".", "/"))
	return ok
}

// ask queries the ask service; only a 200 permits (a redirect, an error or a timeout refuse).
func (d *onDemand) ask(ctx context.Context, name string) error {
	u, err := url.Parse(d.opts.Ask)
	if err != nil {
		return err
	}
	q := u.Query()
	q.Set("domain", name)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %s: ask: %v", ErrNotPermitted, name, err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: %s: ask answered %s", ErrNotPermitted, name, resp.Status)
	}
	return nil
}
