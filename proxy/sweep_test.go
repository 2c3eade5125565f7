package proxy

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSweepSet drives the idle sweep's books through random hand-overs, returns, deadlines
// passing and sessions ending, against a plain model: a session is looked at unless both its
// goroutines are away, an owner away is due once its deadline has passed, and an ended
// session is in neither list.
func TestSweepSet(t *testing.T) {
	type model struct {
		readerAway, ownerAway, ended bool
		deadline                     time.Time
	}
	rng := rand.New(rand.NewPCG(7, 11))
	var set sweepSet
	const n = 200
	sessions := make([]*session, n)
	m := make([]model, n)
	for i := range sessions {
		sessions[i] = &session{id: strconv.Itoa(i)}
		set.add(sessions[i])
	}
	now := time.Unix(1000, 0)
	for step := range 20000 {
		i := rng.IntN(n)
		s, st := sessions[i], &m[i]
		switch op := rng.IntN(10); {
		case st.ended:
		case op < 3:
			if st.readerAway {
				set.reader(s, false)
			} else {
				set.reader(s, true)
			}
			st.readerAway = !st.readerAway
		case op < 6:
			if st.ownerAway {
				set.ownerBack(s)
			} else {
				st.deadline = now.Add(time.Duration(rng.IntN(5000)) * time.Millisecond)
				set.ownerAway(s, st.deadline)
			}
			st.ownerAway = !st.ownerAway
		case op < 7 && step%50 == 0:
			set.remove(s)
			st.ended = true
		default:
			now = now.Add(time.Duration(rng.IntN(100)) * time.Millisecond)
			look, late := set.collect(now)
			var wantLook, wantLate []*session
			for j, x := range m {
				if x.ended {
					continue
				}
				if !x.readerAway || !x.ownerAway {
					wantLook = append(wantLook, sessions[j])
				}
				if x.ownerAway && !now.Before(x.deadline) {
					wantLate = append(wantLate, sessions[j])
					// Taken out of the heap: the sweep calls the owner back (ownerDue),
					// whose return (ownerBack) the model sees now.
					set.ownerBack(sessions[j])
					m[j].ownerAway = false
				}
			}
			if !sameSessions(look, wantLook) {
				t.Fatalf("step %d: the sweep looks at %d sessions, want %d", step, len(look), len(wantLook))
			}
			if !sameSessions(late, wantLate) {
				t.Fatalf("step %d: %d owners due, want %d", step, len(late), len(wantLate))
			}
			set.done()
		}
	}
	for i, s := range sessions {
		if !m[i].ended {
			set.remove(s)
		}
	}
	if present, due := set.counts(); present != 0 || due != 0 {
		t.Fatalf("after every session ended: %d looked at, %d due; want none", present, due)
	}
}

func sameSessions(a, b []*session) bool {
	byID := func(x, y *session) int { return strings.Compare(x.id, y.id) }
	a, b = slices.Clone(a), slices.Clone(b)
	slices.SortFunc(a, byID)
	slices.SortFunc(b, byID)
	return slices.Equal(a, b)
}
