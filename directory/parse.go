package directory

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
)

// MaxUser is the longest user name, in bytes, that the directory looks up or the proxy lets
// through to a backend when a directory is configured. Longer names are refused as unknown
// users, so a 4 KB name costs neither a lookup nor a dial.
const MaxUser = 256

// maxLineLen bounds one line of the CSV file.
const maxLineLen = 4096

// Entry is one line of the directory file: where User's logins go.
type Entry struct {
	User        string
	Target      string // a pool name or a configured backend address
	BackendUser string // the user name to log in to the backend with; empty: the client's
}

// Errors of ParseLine and SplitUser; callers branch on them in tests only, the messages say
// which field was wrong.
var (
	ErrFields  = errors.New("want user,target[,backend_user]")
	ErrField   = errors.New("bad field")
	ErrBadName = errors.New("bad user name")
)

// ParseLine parses one line of the directory file. A blank line or a comment (first
// non-blank character '#') returns skip. Fields are separated by commas and trimmed of
// spaces; quoting is not supported, so no field may contain a quote, a comma or a control
// character, and a target has no spaces.
func ParseLine(line string) (e Entry, skip bool, err error) {
	line = strings.TrimSuffix(line, "\r")
	t := strings.TrimSpace(line)
	if t == "" || t[0] == '#' {
		return Entry{}, true, nil
	}
	f := strings.Split(t, ",")
	if len(f) < 2 || len(f) > 3 {
		return Entry{}, false, fmt.Errorf("%w: %d fields", ErrFields, len(f))
	}
	for i := range f {
		f[i] = strings.TrimSpace(f[i])
	}
	e.User, e.Target = f[0], f[1]
	if len(f) == 3 {
		e.BackendUser = f[2]
	}
	if err := checkName(e.User, false); err != nil {
		return Entry{}, false, fmt.Errorf("user: %w", err)
	}
	if err := checkName(e.Target, true); err != nil {
		return Entry{}, false, fmt.Errorf("target: %w", err)
	}
	if e.BackendUser != "" {
		if err := checkName(e.BackendUser, false); err != nil {
			return Entry{}, false, fmt.Errorf("backend_user: %w", err)
		}
	}
	return e, false, nil
}

// checkName accepts a non-empty field of at most MaxUser bytes without control characters or
// quotes; a target (noSpace) has no spaces either.
func checkName(s string, noSpace bool) error {
	if s == "" {
		return fmt.Errorf("%w: empty", ErrField)
	}
	if len(s) > MaxUser {
		return fmt.Errorf("%w: longer than %d bytes", ErrField, MaxUser)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f || c == '"' || (noSpace && c == ' ') {
			return fmt.Errorf("%w: character %q at %d", ErrField, c, i)
		}
	}
	return nil
}

// SplitUser splits a USER name of the form user<sep>domain at the last sep, so a local part
// may itself hold the separator (an e-mail address as the user name). A name without sep
// returns domain "". The domain must be a DNS name (letters, digits, '-' and '.', at most 253
// bytes) and is returned in lower case; the local part must not be empty. sep "" turns the
// split off.
func SplitUser(name, sep string) (user, domain string, err error) {
	if len(name) > MaxUser {
		return "", "", fmt.Errorf("%w: longer than %d bytes", ErrBadName, MaxUser)
	}
	if sep == "" {
		return name, "", nil
	}
	i := strings.LastIndex(name, sep)
	if i < 0 {
		return name, "", nil
	}
	user, domain = name[:i], name[i+len(sep):]
	if user == "" || strings.HasSuffix(user, sep) {
		return "", "", fmt.Errorf("%w: empty local part", ErrBadName)
	}
	if !isDomain(domain) {
		return "", "", fmt.Errorf("%w: bad domain", ErrBadName)
	}
	return user, strings.ToLower(domain), nil
}

// isDomain accepts a DNS name: labels of letters, digits and '-', separated by single dots.
func isDomain(d string) bool {
	if d == "" || len(d) > 253 || d[0] == '.' || d[len(d)-1] == '.' || strings.Contains(d, "..") {
		return false
	}
	for i := 0; i < len(d); i++ {
		c := d[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// entry is a table row: the target and backend user of a user, and its line for messages.
type entry struct {
	target      string
	backendUser string
	line        int32
}

// Table is a parsed directory file. It is immutable; a reload builds a new one.
type Table struct {
	file    string
	entries map[string]entry
}

// Len returns the number of users in t.
func (t *Table) Len() int {
	if t == nil {
		return 0
	}
	return len(t.entries)
}

// Lookup returns the entry of user.
func (t *Table) Lookup(user string) (Entry, bool) {
	if t == nil {
		return Entry{}, false
	}
	e, ok := t.entries[user]
	if !ok {
		return Entry{}, false
	}
	return Entry{User: user, Target: e.target, BackendUser: e.backendUser}, true
}

// Parse reads a directory file from r; name is used in error messages. known, when not nil,
// says whether a target names a pool or backend of the config: a line with another target is
// an error. Every error names the file and the line.
func Parse(r io.Reader, name string, known func(target string) bool) (*Table, error) {
	t := &Table{file: name, entries: make(map[string]entry)}
	targets := map[string]string{} // interned: thousands of users share a few targets
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, maxLineLen), maxLineLen)
	n := 0
	for sc.Scan() {
		n++
		e, skip, err := ParseLine(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, n, err)
		}
		if skip {
			continue
		}
		if first, dup := t.entries[e.User]; dup {
			return nil, fmt.Errorf("%s:%d: user %q already on line %d", name, n, e.User, first.line)
		}
		tg, ok := targets[e.Target]
		if !ok { // a new target: checked once, then shared by every line naming it
			if known != nil && !known(e.Target) {
				return nil, fmt.Errorf("%s:%d: target %q is not a pool or backend of the config", name, n, e.Target)
			}
			tg = e.Target
			targets[tg] = tg
		}
		t.entries[e.User] = entry{target: tg, backendUser: e.BackendUser, line: int32(n)}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("%s:%d: line longer than %d bytes", name, n+1, maxLineLen)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return t, nil
}
