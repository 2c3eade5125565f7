package balancer

import (
	"testing"
	"time"
)

func regPool(t *testing.T, name string, interval time.Duration, bcs ...BackendConfig) *Pool {
	t.Helper()
	p, err := NewPool(PoolConfig{Name: name, Policy: LeastConn, Backends: bcs, Health: HealthConfig{Interval: interval}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// reloadTo carries r's state into pools and commits them, as a SIGHUP does.
func reloadTo(r *Registry, pools ...*Pool) Changes {
	ch := r.Carry(pools)
	r.Commit(pools)
	return ch
}

func TestRegistryCarriesSessionsAndMaxSessions(t *testing.T) {
	var r Registry
	old := regPool(t, "p", 0, BackendConfig{Address: "10.0.0.1:21", MaxSessions: 1})
	reloadTo(&r, old)
	ob := old.Backends[0]
	if !ob.Acquire() {
		t.Fatal("first session refused")
	}
	ob.SetAdmin(AdminDraining)
	nw := regPool(t, "p", 0, BackendConfig{Address: "10.0.0.1:21", MaxSessions: 1})
	ch := reloadTo(&r, nw)
	nb := nw.Backends[0]
	if nb.Active() != 1 || nb.Total() != 1 {
		t.Fatalf("after reload: active %d total %d, want 1 1", nb.Active(), nb.Total())
	}
	if nb.Acquire() {
		t.Fatal("max_sessions = 1 with one session running: a second was admitted after the reload")
	}
	if nb.Admin() != AdminDraining || nb.State(false) != StateDraining {
		t.Fatalf("admin state lost: %v", nb.State(false))
	}
	if !ch.Empty() {
		t.Fatalf("same config reported changes: %+v", ch)
	}
	ob.Release() // the session that started before the reload ends
	if nb.Active() != 0 {
		t.Fatalf("release on the old backend not seen by the new one: %d", nb.Active())
	}
}

func TestRegistryRemovedKeepsSessions(t *testing.T) {
	var r Registry
	old := regPool(t, "p", 0, BackendConfig{Address: "10.0.0.1:21"}, BackendConfig{Address: "10.0.0.2:21"})
	reloadTo(&r, old)
	gone := old.Backends[1]
	gone.Acquire()
	gone.Acquire()
	ch := reloadTo(&r, regPool(t, "p", 0, BackendConfig{Address: "10.0.0.1:21"}))
	if len(ch.BackendsRemoved) != 1 || ch.BackendsRemoved[0] != "p/10.0.0.2:21" {
		t.Fatalf("changes: %+v", ch)
	}
	rem := r.Removed()
	if len(rem) != 1 || rem[0].Backend.Active() != 2 || rem[0].Backend.State(rem[0].Removed) != StateRemoved {
		t.Fatalf("removed backends: %+v", rem)
	}
	if n := len(r.Backends()); n != 2 {
		t.Fatalf("Backends lists %d, want 2 (one in force, one removed)", n)
	}
	gone.Release()
	gone.Release()
	if rem := r.Removed(); len(rem) != 0 {
		t.Fatalf("a removed backend without sessions is still listed: %+v", rem)
	}
}

func TestRegistryAddedWaitsForProbe(t *testing.T) {
	var r Registry
	reloadTo(&r, regPool(t, "p", time.Second, BackendConfig{Address: "10.0.0.1:21"}))
	nw := regPool(t, "p", time.Second, BackendConfig{Address: "10.0.0.1:21"}, BackendConfig{Address: "10.0.0.2:21"})
	ch := reloadTo(&r, nw)
	if len(ch.BackendsAdded) != 1 {
		t.Fatalf("changes: %+v", ch)
	}
	added := nw.Backends[1]
	if added.Available() || !nw.Backends[0].Available() {
		t.Fatal("a backend added by a reload is available before any probe")
	}
	if nw.Report(added, false); added.Healthy() {
		t.Fatal("up after a failed probe")
	}
	nw.Report(added, true)
	nw.Report(added, true)
	if !added.Healthy() {
		t.Fatal("not up after successful probes")
	}
	// Without health checks an added backend is up at once.
	off := regPool(t, "q", 0, BackendConfig{Address: "10.0.0.3:21"})
	reloadTo(&r, nw, off)
	if !off.Backends[0].Available() {
		t.Fatal("with health checks off, an added backend is not up")
	}
}

func TestRegistryFirstProbeSuffices(t *testing.T) {
	var r Registry
	reloadTo(&r, regPool(t, "p", time.Second, BackendConfig{Address: "10.0.0.1:21"}))
	nw := regPool(t, "p", time.Second, BackendConfig{Address: "10.0.0.2:21"})
	reloadTo(&r, nw)
	if nw.Report(nw.Backends[0], true); !nw.Backends[0].Healthy() {
		t.Fatal("one successful probe does not bring an added backend up")
	}
}

func TestRegistryNameIsIdentity(t *testing.T) {
	var r Registry
	old := regPool(t, "p", 0, BackendConfig{Name: "ftp1", Address: "10.0.0.1:21"})
	reloadTo(&r, old)
	old.Backends[0].Acquire()
	nw := regPool(t, "p", 0, BackendConfig{Name: "ftp1", Address: "10.0.0.9:21"})
	ch := reloadTo(&r, nw)
	if nw.Backends[0].Active() != 1 || len(ch.BackendsChanged) != 1 || ch.BackendsChanged[0] != "p/ftp1" {
		t.Fatalf("renamed address: active %d, changes %+v", nw.Backends[0].Active(), ch)
	}
	if nw.Backends[0].String() != "ftp1" {
		t.Fatalf("label %q, want the name", nw.Backends[0].String())
	}
	if r.Find("p", "ftp1") != nw.Backends[0] || r.Find("p", "10.0.0.9:21") != nw.Backends[0] || r.Find("p", "x") != nil || r.Find("q", "ftp1") != nil {
		t.Fatal("Find by name or address")
	}
	// A pool change on the same name is a different backend.
	other := regPool(t, "q", 0, BackendConfig{Name: "ftp1", Address: "10.0.0.9:21"})
	reloadTo(&r, other)
	if other.Backends[0].Active() != 0 {
		t.Fatal("a backend of another pool inherited the count")
	}
}

func TestAdminStateExcludes(t *testing.T) {
	p := regPool(t, "p", 0, BackendConfig{Address: "10.0.0.1:21"}, BackendConfig{Address: "10.0.0.2:21", MaxSessions: 1})
	p.Backends[0].SetAdmin(AdminDisabled)
	if got := p.Order(Client{}); len(got) != 1 || got[0] != p.Backends[1] {
		t.Fatalf("order with a disabled backend: %v", got)
	}
	p.Backends[1].Acquire()
	if !p.AllFull() {
		t.Fatal("the only enabled backend is full: AllFull should say so")
	}
	if !p.Backends[0].SetAdmin(AdminEnabled) || p.Backends[0].SetAdmin(AdminEnabled) {
		t.Fatal("SetAdmin reports changes wrongly")
	}
}
