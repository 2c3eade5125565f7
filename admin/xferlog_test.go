package admin

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/proxy"
)

// xferEntry is one parsed xferlog line.
type xferEntry struct {
	Time                                      time.Time
	Seconds                                   int64
	Host                                      string
	Size                                      int64
	Filename                                  string
	Type, Action, Direction, Access           string
	User, Service, AuthMethod, AuthUser, Done string
}

// parseXferlog splits a line into the 14 xferlog fields, the first being the 5-token time.
func parseXferlog(t testing.TB, line string) xferEntry {
	t.Helper()
	if strings.ContainsAny(line, "\r\n\t") {
		t.Fatalf("line contains CR, LF or TAB: %q", line)
	}
	f := strings.Fields(line)
	if len(f) != 18 {
		t.Fatalf("want 18 space-separated tokens (5 of time + 13), got %d: %q", len(f), line)
	}
	ts := strings.Join(f[:5], " ")
	tm, err := time.ParseInLocation("Mon Jan 2 15:04:05 2006", ts, time.Local)
	if err != nil {
		t.Fatalf("time %q: %v", ts, err)
	}
	if got := tm.Format(xferTimeLayout); !strings.HasPrefix(line, got+" ") {
		t.Fatalf("time not in ctime layout: line %q, want prefix %q", line, got)
	}
	secs, err := strconv.ParseInt(f[5], 10, 64)
	if err != nil {
		t.Fatalf("transfer-time %q: %v", f[5], err)
	}
	size, err := strconv.ParseInt(f[7], 10, 64)
	if err != nil {
		t.Fatalf("file-size %q: %v", f[7], err)
	}
	return xferEntry{tm, secs, f[6], size, f[8], f[9], f[10], f[11], f[12], f[13], f[14], f[15], f[16], f[17]}
}

func readLines(t testing.TB, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if s == "" {
		return nil
	}
	if !strings.HasSuffix(s, "\n") {
		t.Fatalf("%s does not end with a newline", path)
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

func TestFormatXferlogExact(t *testing.T) {
	start := time.Date(2024, 3, 5, 9, 7, 0, 0, time.Local)
	rec := proxy.TransferRecord{
		Start: start, Duration: 2*time.Second + 900*time.Millisecond,
		Client: netip.MustParseAddr("192.0.2.10"), User: "alice", Command: "RETR",
		Path: "/pub/file.iso", Bytes: 4096, Complete: true, ReplyCode: 226,
	}
	want := "Tue Mar  5 09:07:02 2024 2 192.0.2.10 4096 /pub/file.iso b _ o r alice ftp 0 * c\n"
	if got := FormatXferlog(rec); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestXferField(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "-"},
		{"plain.txt", "plain.txt"},
		{"/a dir/my file.txt", "/a_dir/my_file.txt"},
		{"evil\r\nFri Jan  1 00:00:00 2021 0 1.2.3.4 1 /x b _ o r root ftp 0 * c", "evil__Fri_Jan__1_00:00:00_2021_0_1.2.3.4_1_/x_b___o_r_root_ftp_0_*_c"},
		{"tab\there", "tab_here"},
		{"nul\x00del\x7f", "nul_del_"},
		{"nbsp\u00a0ls\u2028ps\u2029nel\u0085", "nbsp_ls_ps_nel_"},
		{"ünïcödé.txt", "ünïcödé.txt"},
		{"latin1-\xe9.txt", "latin1-\xe9.txt"},
	} {
		if got := xferField(tc.in); got != tc.want {
			t.Errorf("xferField(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestTransferLogWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "xferlog")
	tl, err := OpenTransferLog(path)
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	start := time.Now().Add(-time.Minute).Truncate(time.Second)
	recs := []proxy.TransferRecord{
		{Start: start, Duration: 3500 * time.Millisecond, Client: netip.MustParseAddr("192.0.2.1"), User: "alice",
			Command: "STOR", Path: "/in/report 2024.csv", Bytes: 1234, Upload: true, Complete: true},
		{Start: start, Duration: 200 * time.Millisecond, Client: netip.MustParseAddr("::ffff:198.51.100.7"), User: "bob smith",
			Command: "RETR", Path: "notes\r\nwith crlf.txt", Bytes: 99, ASCII: true},
		{Start: start, Duration: 61 * time.Second, Client: netip.MustParseAddr("2001:db8::5"), User: "carol",
			Command: "APPE", Path: "log.txt", Bytes: 7, Upload: true, Aborted: true},
		{Start: start, Command: "LIST", Path: "-la", Bytes: 500, Complete: true}, // not a file transfer
		{Start: start, Command: "STOU", Upload: true, Complete: true, Bytes: 1},
	}
	for _, r := range recs {
		if err := tl.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	lines := readLines(t, path)
	if len(lines) != 4 {
		t.Fatalf("got %d lines, want 4 (LIST is not logged):\n%s", len(lines), strings.Join(lines, "\n"))
	}
	want := []xferEntry{
		{start.Add(3500 * time.Millisecond).Truncate(time.Second), 3, "192.0.2.1", 1234, "/in/report_2024.csv",
			"b", "_", "i", "r", "alice", "ftp", "0", "*", "c"},
		{start.Add(200 * time.Millisecond).Truncate(time.Second), 0, "198.51.100.7", 99, "notes__with_crlf.txt",
			"a", "_", "o", "r", "bob_smith", "ftp", "0", "*", "i"},
		{start.Add(61 * time.Second), 61, "2001:db8::5", 7, "log.txt",
			"b", "_", "i", "r", "carol", "ftp", "0", "*", "i"},
		{start, 0, "-", 1, "-", "b", "_", "i", "r", "-", "ftp", "0", "*", "c"},
	}
	for i, line := range lines {
		got := parseXferlog(t, line)
		if !got.Time.Equal(want[i].Time) {
			t.Errorf("line %d: time %v, want %v", i, got.Time, want[i].Time)
		}
		got.Time = want[i].Time
		if got != want[i] {
			t.Errorf("line %d:\n got %+v\nwant %+v\nline %q", i, got, want[i], line)
		}
	}
}

func TestTransferLogReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "xferlog")
	tl, err := OpenTransferLog(path)
	if err != nil {
		t.Fatal(err)
	}
	rec := proxy.TransferRecord{Start: time.Now(), Command: "RETR", Path: "a", User: "u", Complete: true}
	if err := tl.Write(rec); err != nil {
		t.Fatal(err)
	}
	// logrotate: rename, then signal; lines before the Reopen still go to the renamed file.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	rec.Path = "b"
	tl.Write(rec)
	if err := tl.Reopen(); err != nil {
		t.Fatal(err)
	}
	rec.Path = "c"
	tl.Write(rec)
	rec.Path = "d"
	tl.Write(rec)
	if got := filenames(t, readLines(t, path+".1")); got != "a b" {
		t.Errorf("rotated file has %q, want \"a b\"", got)
	}
	if got := filenames(t, readLines(t, path)); got != "c d" {
		t.Errorf("new file has %q, want \"c d\"", got)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != transferLogMode {
		t.Errorf("new file mode: %v %v", fi.Mode(), err)
	}

	// A failed reopen keeps the old file in use.
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o755)
	tl2, err := OpenTransferLog(filepath.Join(sub, "x"))
	if err != nil {
		t.Fatal(err)
	}
	defer tl2.Close()
	os.RemoveAll(sub)
	if err := tl2.Reopen(); err == nil {
		t.Error("reopen in a removed directory succeeded")
	}
	if err := tl2.Write(rec); err != nil {
		t.Errorf("write after failed reopen: %v", err)
	}

	if err := tl.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tl.Write(rec); !errors.Is(err, os.ErrClosed) {
		t.Errorf("write after close: %v", err)
	}
	if err := tl.Reopen(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("reopen after close: %v", err)
	}
	if err := tl.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	var nilLog *TransferLog
	if nilLog.Write(rec) != nil || nilLog.Close() != nil {
		t.Error("nil TransferLog not a no-op")
	}
	if _, err := OpenTransferLog(filepath.Join(dir, "missing", "x")); err == nil {
		t.Error("open in a missing directory succeeded")
	}
}

func filenames(t testing.TB, lines []string) string {
	var names []string
	for _, l := range lines {
		names = append(names, parseXferlog(t, l).Filename)
	}
	return strings.Join(names, " ")
}

// TestTransferLogConcurrent writes from many goroutines, rotating meanwhile: every line must
// arrive whole in one of the two files.
func TestTransferLogConcurrent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "xferlog")
	tl, err := OpenTransferLog(path)
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	const workers, rounds = 8, 250
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				rec := proxy.TransferRecord{Start: time.Now(), Command: "STOR", Upload: true, Complete: true,
					Path: strings.Repeat("p", 100+w*37+i), User: "u" + strconv.Itoa(w), Bytes: int64(i)}
				if err := tl.Write(rec); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	os.Rename(path, path+".1")
	if err := tl.Reopen(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	n := 0
	for _, p := range []string{path + ".1", path} {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			e := parseXferlog(t, sc.Text())
			w, _ := strconv.Atoi(strings.TrimPrefix(e.User, "u"))
			if len(e.Filename) != 100+w*37+int(e.Size) {
				t.Fatalf("torn line: %q", sc.Text())
			}
			n++
		}
		f.Close()
	}
	if n != workers*rounds {
		t.Errorf("%d lines, want %d", n, workers*rounds)
	}
}

// TestMetricsForwardsTransfers checks that Metrics writes file transfers to its TransferLog
// and counts failed writes.
func TestMetricsForwardsTransfers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "xferlog")
	tl, err := OpenTransferLog(path)
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics()
	m.SetTransferLog(tl)
	m.Transfer(proxy.TransferRecord{Start: time.Now(), Command: "RETR", Path: "x y", User: "u", Complete: true, Bytes: 3})
	m.Transfer(proxy.TransferRecord{Start: time.Now(), Command: "MLSD", Complete: true, Bytes: 3})
	lines := readLines(t, path)
	if len(lines) != 1 || parseXferlog(t, lines[0]).Filename != "x_y" {
		t.Fatalf("transfer log: %q", lines)
	}
	tl.Close()
	m.Transfer(proxy.TransferRecord{Start: time.Now(), Command: "RETR", Path: "z", User: "u"})
	got := ours(scrape(t, m))
	if got["ftpsproxy_transfer_log_errors_total"] != 1 {
		t.Errorf("transfer_log_errors_total = %v, want 1", got["ftpsproxy_transfer_log_errors_total"])
	}
	if got[key("ftpsproxy_transfers_total", "direction", "download", "result", "complete")] != 2 {
		t.Errorf("listing not counted as a download")
	}
	m.SetTransferLog(nil)
	m.Transfer(proxy.TransferRecord{Command: "RETR"})
}

// TestTransferLogFullDisk (issue 13 item 8): writes to a full disk (/dev/full) are counted
// one by one and logged with their cause, at most about ten lines a second plus one
// "suppressed N similar" line, however many transfers fail.
func TestTransferLogFullDisk(t *testing.T) {
	tl, err := OpenTransferLog("/dev/full")
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	tl.LogErrorsTo(slog.New(slog.NewTextHandler(&logs, nil)))
	m := NewMetrics()
	m.SetTransferLog(tl)
	const n = 5000
	for range n {
		m.Transfer(proxy.TransferRecord{Start: time.Now(), Command: "STOR", Path: "f", User: "u", Upload: true, Complete: true, Bytes: 1})
	}
	if got := ours(scrape(t, m))["ftpsproxy_transfer_log_errors_total"]; got != n {
		t.Fatalf("transfer_log_errors_total = %v, want %d", got, n)
	}
	tl.Close() // writes the pending summary
	text := logs.String()
	failed := strings.Count(text, `msg="transfer log write failed"`)
	if failed == 0 || failed > 10 || !strings.Contains(text, "no space left on device") {
		t.Fatalf("%d failure lines, want 1 to 10 with the cause:\n%s", failed, text)
	}
	if want := fmt.Sprintf(`msg="suppressed %d similar" cause="transfer log write failed"`, n-failed); !strings.Contains(text, want) {
		t.Fatalf("no %q in:\n%s", want, text)
	}
}

// syncBuffer is a bytes.Buffer safe for the logger and the test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
