package admin

import (
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ftpsproxy/ftpsproxy/internal/logthrottle"
	"github.com/ftpsproxy/ftpsproxy/proxy"
)

// xferTimeLayout is xferlog's current-time, "DDD MMM dd hh:mm:ss YYYY" as ctime(3) writes it
// (day of month padded with a space).
const xferTimeLayout = "Mon Jan _2 15:04:05 2006"

// transferLogMode keeps user names and client addresses away from other local users.
const transferLogMode = 0o640

// TransferLog writes one line per file transfer in the xferlog(5) format of wu-ftpd and
// ProFTPD, so existing xferlog analysers read it:
//
//	current-time transfer-time remote-host file-size filename transfer-type
//	special-action-flag direction access-mode username service-name
//	authentication-method authenticated-user-id completion-status
//
// Fields follow ProFTPD's mod_proxy, the closest thing to this proxy: the filename is the
// command's argument as the client sent it, transfer-time is whole seconds rounded down (0 for
// a short transfer), access-mode is always r, service-name ftp, authentication-method 0 and
// authenticated-user-id *. Directory listings are not file transfers and are not logged.
//
// A TransferLog is safe for concurrent use; each line is written with one write(2) on a file
// opened for appending, so lines never interleave.
type TransferLog struct {
	path string

	mu sync.Mutex
	// errLog, when set, logs failed writes, rate-limited: one failure per transfer could
	// otherwise flood the log (the metric counts every one).
	errLog   *slog.Logger
	throttle *logthrottle.Throttle
	f        *os.File
	closed   bool
}

// OpenTransferLog opens (creating if needed, mode 0640) the xferlog file at path for appending.
func OpenTransferLog(path string) (*TransferLog, error) {
	f, err := openAppend(path)
	if err != nil {
		return nil, err
	}
	return &TransferLog{path: path, f: f}, nil
}

// LogErrorsTo makes failed writes logged to log at error level, at most a few a second with
// a count of the others.
func (l *TransferLog) LogErrorsTo(log *slog.Logger) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.throttle.Close() // a nil Throttle's Close does nothing
	l.errLog, l.throttle = log, logthrottle.New(log, logthrottle.Options{})
}

func openAppend(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, transferLogMode)
	if err != nil {
		return nil, fmt.Errorf("transfer log: %w", err)
	}
	return f, nil
}

// Path returns the file name the log was opened with.
func (l *TransferLog) Path() string { return l.path }

// Write appends rec's line. Records of directory listings (LIST, NLST, MLSD, MLST) are
// skipped. Write on a nil TransferLog does nothing.
func (l *TransferLog) Write(rec proxy.TransferRecord) error {
	if l == nil || isListing(rec.Command) {
		return nil
	}
	line := FormatXferlog(rec)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return fmt.Errorf("transfer log: %w", os.ErrClosed)
	}
	if _, err := l.f.WriteString(line); err != nil {
		err = fmt.Errorf("transfer log: %w", err)
		if l.errLog != nil {
			l.throttle.Error(l.errLog, "transfer log write failed", "path", l.path, "err", err)
		}
		return err
	}
	return nil
}

// Reopen opens the log's path anew and swaps it in, closing the old file: call it after a
// rotation tool renamed the file (SIGHUP/SIGUSR1). When the path cannot be opened, the old
// file stays in use and the error is returned.
func (l *TransferLog) Reopen() error {
	f, err := openAppend(l.path)
	if err != nil {
		return err
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		f.Close()
		return fmt.Errorf("transfer log: %w", os.ErrClosed)
	}
	old := l.f
	l.f = f
	l.mu.Unlock()
	return old.Close()
}

// Close closes the file; later writes fail with os.ErrClosed. Closing twice is harmless.
func (l *TransferLog) Close() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	l.throttle.Close()
	return l.f.Close()
}

// FormatXferlog returns rec's xferlog line, newline included. The time is the transfer's end
// in local time, as wu-ftpd and ProFTPD write it.
func FormatXferlog(rec proxy.TransferRecord) string {
	end := time.Now()
	if !rec.Start.IsZero() {
		end = rec.Start.Add(rec.Duration)
	}
	secs := max(int64(rec.Duration/time.Second), 0)
	host := "-"
	if rec.Client.IsValid() {
		host = xferField(rec.Client.Unmap().String())
	}
	typ := byte('b')
	if rec.ASCII {
		typ = 'a'
	}
	dir := byte('o')
	if rec.Upload {
		dir = 'i'
	}
	status := byte('i')
	if rec.Complete {
		status = 'c'
	}
	b := make([]byte, 0, 128+len(rec.Path))
	b = end.Local().AppendFormat(b, xferTimeLayout)
	b = append(b, ' ')
	b = strconv.AppendInt(b, secs, 10)
	b = append(b, ' ')
	b = append(b, host...)
	b = append(b, ' ')
	b = strconv.AppendInt(b, max(rec.Bytes, 0), 10)
	b = append(b, ' ')
	b = append(b, xferField(rec.Path)...)
	b = append(b, ' ', typ, ' ', '_', ' ', dir, ' ', 'r', ' ')
	b = append(b, xferField(rec.User)...)
	b = append(b, " ftp 0 * "...)
	b = append(b, status, '\n')
	return string(b)
}

// xferField makes s one space-free field: like ProFTPD, every space or control character
// becomes '_' (Unicode ones too, so no line or field separator of any tool survives), and an
// empty value becomes "-" so the field count stays right.
func xferField(s string) string {
	if s == "" {
		return "-"
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			b.WriteByte(s[i]) // not UTF-8 (a Latin-1 name): kept, it cannot split a line
		case unicode.IsSpace(r) || unicode.IsControl(r):
			b.WriteByte('_')
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// isListing reports whether cmd is a directory listing rather than a file transfer.
func isListing(cmd string) bool {
	switch strings.ToUpper(cmd) {
	case "LIST", "NLST", "MLSD", "MLST":
		return true
	}
	return false
}
