package admin

import (
	_ "embed"
	"fmt"
	"html/template"
	"strconv"
	"time"

	"github.com/ftpsproxy/ftpsproxy/balancer"
)

// recent421Shown is how many of the remembered 421s the status page lists.
const recent421Shown = 10

//go:embed status.html
var statusHTML string

var statusTemplate = template.Must(template.New("status").Parse(statusHTML))

// statusView is everything the status page shows, computed before rendering so the template
// holds no logic beyond loops and conditions.
type statusView struct {
	Version   string
	Now       string
	Uptime    string
	Refresh   int
	Accepting bool
	Healthy   bool
	Health    string

	Sessions  int
	Listeners []ListenerInfo
	Pools     []poolView

	PortsInUse int
	PortsSize  int
	PortRange  string
	PortsPct   int

	Cluster   string // the [cluster] state; "" without one
	ClusterUp bool

	Total421  uint64
	Causes    []CauseCount
	Recent421 []recentView
}

type poolView struct {
	Name     string
	Policy   string
	Up       int
	Backends []backendView
	Active   int
	Total    uint64
}

type backendView struct {
	Name      string // pool.backend.name; "" when not set
	State     string // up, down, draining, disabled or removed
	Marked    bool   // drained, disabled or removed: shown as a badge
	Removed   bool
	Since     string // when the state last changed, as "5m 3s ago"
	LastError string // the last health probe's error
	Bytes     string // payload bytes to and from the backend since start
	Address   string
	Up        bool
	Full      bool
	Active    int
	Max       string // "–" when unlimited
	LoadPct   int    // active/max, 0 when unlimited
	Total     uint64
	Weight    int
}

type recentView struct {
	Time  string
	Ago   string
	Cause string
}

func (s *Server) statusView(now time.Time) statusView {
	ok, reason := health(s.src)
	v := statusView{
		Version:   s.Version,
		Now:       now.Format("2006-01-02 15:04:05 MST"),
		Uptime:    formatDuration(s.m.Uptime()),
		Accepting: s.src.Accepting(),
		Healthy:   ok,
		Health:    reason,
		Sessions:  s.src.Sessions(),
		Listeners: s.src.Listeners(),
		Causes:    s.m.Counts421(),
	}
	if v.Version == "" {
		v.Version = "unknown"
	}
	if s.ClusterStatus != nil {
		v.Cluster, v.ClusterUp = s.ClusterStatus()
	}
	removed := removedBackends(s.src)
	for _, p := range s.src.Pools() {
		pv := poolView{Name: p.Name, Policy: p.Policy.String()}
		for _, b := range p.Backends {
			pv.add(s.backendView(p.Name, b, false, now))
		}
		s.addRemoved(&pv, p.Name, removed[p.Name], now)
		delete(removed, p.Name)
		v.Pools = append(v.Pools, pv)
	}
	for name, bs := range removed { // pools that left the config with sessions still running
		pv := poolView{Name: name + " (removed)", Policy: "–"}
		s.addRemoved(&pv, name, bs, now)
		v.Pools = append(v.Pools, pv)
	}
	r := s.src.PortRange()
	v.PortsInUse, v.PortsSize, v.PortRange = s.src.PortsInUse(), r.Len(), r.String()
	if v.PortsSize > 0 {
		v.PortsPct = min(100, v.PortsInUse*100/v.PortsSize)
	}
	for _, c := range v.Causes {
		v.Total421 += c.Count
	}
	for _, e := range s.m.Recent421(recent421Shown) {
		v.Recent421 = append(v.Recent421, recentView{
			Time:  e.Time.Format("2006-01-02 15:04:05"),
			Ago:   formatDuration(now.Sub(e.Time)) + " ago",
			Cause: e.Cause,
		})
	}
	return v
}

func (s *Server) backendView(pool string, b *balancer.Backend, removed bool, now time.Time) backendView {
	up, down := s.m.backendBytes(pool, b.String())
	bv := backendView{
		Bytes:     "↑ " + formatBytes(up) + " ↓ " + formatBytes(down),
		Name:      b.Config.Name,
		State:     b.State(removed),
		Removed:   removed,
		Since:     formatDuration(now.Sub(b.Since())) + " ago",
		LastError: b.LastError(),
		Address:   b.Config.Address,
		Up:        b.Healthy(),
		Full:      b.Full(),
		Active:    b.Active(),
		Max:       "–",
		Total:     b.Total(),
		Weight:    b.Config.Weight,
	}
	bv.Marked = bv.State != balancer.StateUp && bv.State != balancer.StateDown
	if m := b.Config.MaxSessions; m > 0 {
		bv.Max = strconv.Itoa(m)
		bv.LoadPct = min(100, bv.Active*100/m)
	}
	return bv
}

// add appends a backend's row and counts it in the pool's totals.
func (pv *poolView) add(bv backendView) {
	if bv.Up && !bv.Removed {
		pv.Up++
	}
	pv.Active += bv.Active
	pv.Total += bv.Total
	pv.Backends = append(pv.Backends, bv)
}

func (s *Server) addRemoved(pv *poolView, pool string, bs []*balancer.Backend, now time.Time) {
	for _, b := range bs {
		pv.add(s.backendView(pool, b, true, now))
	}
}

// backendBytes returns the payload bytes relayed to (up) and from (down) a backend since start.
func (m *Metrics) backendBytes(pool, backend string) (up, down uint64) {
	get := func(dir string) uint64 {
		return m.set.GetOrCreateCounter(series("ftpsproxy_backend_transfer_bytes_total", "pool", pool, "backend", backend, "direction", dir)).Get()
	}
	return get("upload"), get("download")
}

// formatBytes writes n in binary units: "512 B", "1.5 KiB", "3.2 GiB".
func formatBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// removedBackends returns, by pool, the backends that left the config but still run
// sessions, when src knows them (a BackendLister).
func removedBackends(src Source) map[string][]*balancer.Backend {
	out := map[string][]*balancer.Backend{}
	if bl, ok := src.(BackendLister); ok {
		for _, v := range bl.Backends() {
			if v.Removed {
				out[v.Pool] = append(out[v.Pool], v.Backend)
			}
		}
	}
	return out
}

// formatDuration writes d as "3d 4h 5m", "4h 5m 6s", "5m 6s" or "6s".
func formatDuration(d time.Duration) string {
	d = max(d, 0).Truncate(time.Second)
	days := d / (24 * time.Hour)
	d -= days * 24 * time.Hour
	h, m, sec := int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60
	switch {
	case days > 0:
		return fmt.Sprintf("%dd %dh %dm", days, h, m)
	case h > 0:
		return fmt.Sprintf("%dh %dm %ds", h, m, sec)
	case m > 0:
		return fmt.Sprintf("%dm %ds", m, sec)
	}
	return fmt.Sprintf("%ds", sec)
}
