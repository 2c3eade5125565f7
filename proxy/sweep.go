package proxy

import (
	"sync"
	"time"
)

// The idle sweep (Server.sweepIdle) looks, once an interval, at what may need it: the waits
// parked since its previous look, which it wakes so that their goroutines go away (idle.go),
// and the owners away past their idle deadline, which it calls back. A session silent for a
// while has no goroutine and no wait: it is in the sweep's books by its idle deadline alone,
// in a heap. A sweep so costs the sessions that have a goroutine and the deadlines that are
// due, not every session held: looking at all of them, a sweep at 5,000 idle sessions held
// the server's lock (which every session start and end takes) 0.4–1.8 ms, four times a
// second.

// sweepSet is what the sweep looks at. Its lock is a leaf: it is taken under a session's
// idle and owner locks, and the sweep takes none of those while it holds it.
type sweepSet struct {
	mu      sync.Mutex
	present []*session // the sessions not wholly away: a goroutine of theirs may wait
	due     []dueOwner // the owners away, a min-heap by idle deadline

	// The sweep goroutine's copies of what to look at, kept between sweeps.
	look, late []*session
}

// dueOwner is an owner away until its idle deadline (ownerAway.leftWith), kept as the time
// after epoch on the monotonic clock: 16 bytes an idle session instead of 32.
type dueOwner struct {
	at time.Duration
	s  *session
}

// sweepSlot is a session's place in its server's sweepSet, under the set's lock. Indexes are
// one more than the position, so that the zero value is in neither list.
type sweepSlot struct {
	present int  // in sweepSet.present
	due     int  // in sweepSet.due
	away    int  // its goroutines given up to the poller: the client reader, the owner
	ended   bool // removed for good
}

// add puts a new session in the set: its goroutines are there.
func (set *sweepSet) add(s *session) {
	set.mu.Lock()
	set.addPresent(s)
	set.mu.Unlock()
}

// remove takes an ended session out for good.
func (set *sweepSet) remove(s *session) {
	set.mu.Lock()
	defer set.mu.Unlock()
	s.sweep.ended = true
	set.removePresent(s)
	if s.sweep.due > 0 {
		set.removeDue(s.sweep.due - 1)
	}
}

// reader records that the client reader gave its wait up to the poller (away), or that one
// runs again.
func (set *sweepSet) reader(s *session, away bool) {
	set.mu.Lock()
	defer set.mu.Unlock()
	if away {
		set.goneLocked(s)
	} else {
		set.backLocked(s)
	}
}

// ownerAway records that the owner gave its goroutine up until deadline at the latest;
// ownerBack that it runs again.
func (set *sweepSet) ownerAway(s *session, deadline time.Time) {
	set.mu.Lock()
	defer set.mu.Unlock()
	set.goneLocked(s)
	if s.sweep.ended || s.sweep.due > 0 {
		return
	}
	set.due = append(set.due, dueOwner{at: deadline.Sub(epoch), s: s})
	s.sweep.due = len(set.due)
	set.up(len(set.due) - 1)
}

func (set *sweepSet) ownerBack(s *session) {
	set.mu.Lock()
	defer set.mu.Unlock()
	if s.sweep.due > 0 {
		set.removeDue(s.sweep.due - 1)
	}
	set.backLocked(s)
}

func (set *sweepSet) goneLocked(s *session) {
	if s.sweep.away++; s.sweep.away == 2 {
		set.removePresent(s)
	}
}

func (set *sweepSet) backLocked(s *session) {
	if s.sweep.away == 2 {
		set.addPresent(s)
	}
	s.sweep.away = max(s.sweep.away-1, 0)
}

func (set *sweepSet) addPresent(s *session) {
	if s.sweep.ended || s.sweep.present > 0 {
		return
	}
	set.present = append(set.present, s)
	s.sweep.present = len(set.present)
}

func (set *sweepSet) removePresent(s *session) {
	i := s.sweep.present - 1
	if i < 0 {
		return
	}
	last := len(set.present) - 1
	if i != last {
		set.present[i] = set.present[last]
		set.present[i].sweep.present = i + 1
	}
	set.present[last] = nil
	set.present = set.present[:last]
	s.sweep.present = 0
}

// collect returns the sessions to look at (present now) and the owners whose idle deadline
// has passed, which it takes out of the heap. The slices are the set's own: the sweep
// goroutine uses them until its next collect, and clears them (done).
func (set *sweepSet) collect(now time.Time) (look, late []*session) {
	set.mu.Lock()
	defer set.mu.Unlock()
	set.look = append(set.look[:0], set.present...)
	set.late = set.late[:0]
	for at := now.Sub(epoch); len(set.due) > 0 && set.due[0].at <= at; {
		set.late = append(set.late, set.due[0].s)
		set.removeDue(0)
	}
	return set.look, set.late
}

// done drops the sweep's references to the sessions it looked at, so that an ended one is
// not kept until the next sweep overwrites it.
func (set *sweepSet) done() {
	clear(set.look)
	clear(set.late)
}

// counts reports how many sessions the sweep looks at and how many owners wait in its heap
// (for tests).
func (set *sweepSet) counts() (present, due int) {
	set.mu.Lock()
	defer set.mu.Unlock()
	return len(set.present), len(set.due)
}

// The heap of owners away, by deadline: the earliest at the root.

func (set *sweepSet) removeDue(i int) {
	last := len(set.due) - 1
	set.due[i].s.sweep.due = 0
	if i != last {
		set.due[i] = set.due[last]
		set.due[i].s.sweep.due = i + 1
	}
	set.due[last] = dueOwner{}
	set.due = set.due[:last]
	if i != last {
		set.down(i)
		set.up(i)
	}
}

func (set *sweepSet) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if set.due[i].at >= set.due[parent].at {
			return
		}
		set.swap(i, parent)
		i = parent
	}
}

func (set *sweepSet) down(i int) {
	n := len(set.due)
	for {
		least := i
		if l := 2*i + 1; l < n && set.due[l].at < set.due[least].at {
			least = l
		}
		if r := 2*i + 2; r < n && set.due[r].at < set.due[least].at {
			least = r
		}
		if least == i {
			return
		}
		set.swap(i, least)
		i = least
	}
}

func (set *sweepSet) swap(i, j int) {
	set.due[i], set.due[j] = set.due[j], set.due[i]
	set.due[i].s.sweep.due = i + 1
	set.due[j].s.sweep.due = j + 1
}

// sweepIdle, once an interval until the server stops for good, wakes the client readers
// and the owners that have been parked since the previous sweep, and calls back the owners
// away past their idle deadline.
func (s *Server) sweepIdle() {
	tick := time.NewTicker(idleSweepEvery)
	defer tick.Stop()
	for {
		var now time.Time
		select {
		case <-s.hardCtx.Done():
			return
		case now = <-tick.C:
		}
		look, late := s.sweeps.collect(now)
		for _, sess := range look {
			sess.cw.sweep()
			sess.bw.sweep()
		}
		for _, sess := range late {
			sess.ownerDue(now)
		}
		s.sweeps.done()
	}
}
