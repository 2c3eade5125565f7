package logthrottle

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// record is one JSON log line.
type record struct {
	Msg        string `json:"msg"`
	Cause      string `json:"cause"`
	Suppressed int    `json:"suppressed"`
	N          int    `json:"n"`
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) records(t *testing.T) []record {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []record
	dec := json.NewDecoder(bytes.NewReader(s.b.Bytes()))
	for dec.More() {
		var r record
		if err := dec.Decode(&r); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// flood logs from each cause as fast as it can for d, and returns how many events each
// cause had.
func flood(th *Throttle, log *slog.Logger, causes []string, d time.Duration) map[string]int {
	var mu sync.Mutex
	events := map[string]int{}
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	for _, c := range causes {
		wg.Go(func() {
			n := 0
			for time.Now().Before(end) {
				n++
				th.Warn(log, c, "n", n)
			}
			mu.Lock()
			events[c] = n
			mu.Unlock()
		})
	}
	wg.Wait()
	th.Close()
	return events
}

// TestOneCauseFlood: a flood of one cause for 2 s yields at most 10 lines per second plus one
// "suppressed N similar" line per second, and the lines logged plus the counts in the
// summaries add up to every event.
func TestOneCauseFlood(t *testing.T) {
	var buf syncBuf
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	th := New(log, Options{})
	events := flood(th, log, []string{"data connection from a foreign address refused"}, 2*time.Second)
	logged, summaries, counted := 0, 0, 0
	for _, r := range buf.records(t) {
		if r.Cause != "" {
			summaries++
			counted += r.Suppressed
			if r.Msg != fmt.Sprintf("suppressed %d similar", r.Suppressed) {
				t.Fatalf("summary %q", r.Msg)
			}
			continue
		}
		logged++
	}
	total := events["data connection from a foreign address refused"]
	t.Logf("%d events in 2 s: %d lines, %d summaries", total, logged, summaries)
	if total < 1000 {
		t.Fatalf("only %d events: the flood did not flood", total)
	}
	// 2 s at 10/s after a burst of 10; summaries once a second (and one at Close).
	if logged > 10+2*10+1 || summaries > 3 {
		t.Fatalf("%d lines and %d summaries in 2 s, want at most 31 and 3", logged, summaries)
	}
	if logged+counted != total {
		t.Fatalf("logged %d + suppressed %d != %d events", logged, counted, total)
	}
}

// TestManyCausesFlood: 30 causes flooding at once yield at most 100 lines per second in all
// (summaries included, one per cause and second at most).
func TestManyCausesFlood(t *testing.T) {
	var buf syncBuf
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	th := New(log, Options{})
	var causes []string
	for i := range 30 {
		causes = append(causes, fmt.Sprintf("cause %d", i))
	}
	events := flood(th, log, causes, 2*time.Second)
	lines, summaries := 0, 0
	seen := map[string]int{}
	for _, r := range buf.records(t) {
		if r.Cause != "" {
			summaries++
			seen[r.Cause] += r.Suppressed
		} else {
			lines++
			seen[r.Msg]++
		}
	}
	for c, n := range events {
		if seen[c] != n {
			t.Fatalf("%s: %d events, %d logged or counted", c, n, seen[c])
		}
	}
	t.Logf("30 causes for 2 s: %d lines, %d summaries", lines, summaries)
	// Lines and summaries share the total: 100 at once and 100 per second after, plus the
	// summaries written at Close (one per cause at most).
	if lines+summaries > 100+2*100+30 || summaries == 0 {
		t.Fatalf("%d lines, %d summaries", lines, summaries)
	}
}

// TestQuietCauseUnaffected: a cause that logs rarely is never suppressed, whatever floods
// beside it within the total, and lines below the logger's level are not counted at all.
func TestQuietCauseUnaffected(t *testing.T) {
	var buf syncBuf
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	th := New(log, Options{PerCause: 5, Total: 50, Interval: 100 * time.Millisecond})
	for i := range 20 {
		th.Warn(log, "flood", "n", i)
		if i%10 == 0 {
			if !th.Log(log, slog.LevelInfo, "quiet") {
				t.Fatal("a quiet cause was suppressed")
			}
		}
		if th.Log(log, slog.LevelDebug, "debug") {
			t.Fatal("a debug line was logged at info level")
		}
	}
	time.Sleep(300 * time.Millisecond) // the summary of "flood" is due after 100 ms
	var sum *record
	for _, r := range buf.records(t) {
		if r.Cause != "" {
			sum = &r
		}
	}
	if sum == nil || sum.Cause != "flood" || sum.Suppressed != 15 {
		t.Fatalf("summary %+v, want 15 of flood", sum)
	}
	var nilT *Throttle
	if !nilT.Log(log, slog.LevelWarn, "x") {
		t.Fatal("a nil Throttle must let lines through")
	}
	th.Close()
}
