package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
)

// Limits on what a backend may send as one reply. A backend is trusted no more than a client:
// past these the backend leg is treated as failed (421 policy).
const (
	maxReplyLine  = 8192
	maxReplyBytes = 1 << 20
)

// ErrBadReply reports a backend reply that does not follow RFC 959's grammar.
var ErrBadReply = errors.New("malformed reply")

// Reply is one complete FTP reply, single- or multi-line, with the exact bytes received.
type Reply struct {
	Code int    // 100..599 as sent; 6xx is framed too, the session refuses it
	Raw  []byte // every line with its line terminator, byte for byte
}

// Text returns the text of the first line, after the code and its separator, without the line
// terminator.
func (r Reply) Text() string {
	line := r.Raw
	for i, b := range line {
		if b == '\n' {
			line = line[:i]
			break
		}
	}
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	if len(line) < 4 {
		return ""
	}
	return string(line[4:])
}

// Preliminary reports a 1xx reply: more replies follow for the same command.
func (r Reply) Preliminary() bool { return r.Code >= 100 && r.Code < 200 }

// ReadReply reads one whole reply from a backend. Multi-line replies start with "ddd-" and end
// with a line that starts "ddd " with the same code; the lines between may take any form (RFC
// 959 §4.2). Lines may end in CRLF or a bare LF (old servers); they are kept as sent.
func ReadReply(r *bufio.Reader) (Reply, error) {
	first, err := readReplyLine(r)
	if err != nil {
		return Reply{}, err
	}
	code, sep, err := replyCode(first)
	if err != nil {
		return Reply{}, err
	}
	rep := Reply{Code: code, Raw: first}
	if sep == ' ' {
		return rep, nil
	}
	for {
		line, err := readReplyLine(r)
		if err != nil {
			return Reply{}, fmt.Errorf("multi-line %d reply: %w", code, err)
		}
		if len(rep.Raw)+len(line) > maxReplyBytes {
			return Reply{}, fmt.Errorf("%w: multi-line reply over %d bytes", ErrBadReply, maxReplyBytes)
		}
		rep.Raw = append(rep.Raw, line...)
		if c, s, err := replyCode(line); err == nil && c == code && s == ' ' {
			return rep, nil
		}
	}
}

// replyReady reports whether b begins with what ReadReply returns without reading more: a
// whole reply, or a first line it rejects. Later lines are matched as ReadReply matches them;
// the byte bounds are its own to enforce (b is a read buffer, far smaller).
func replyReady(b []byte) bool {
	line, rest, ok := cutLine(b)
	if !ok {
		return false
	}
	code, sep, err := replyCode(line)
	if err != nil || sep == ' ' {
		return true
	}
	for {
		if line, rest, ok = cutLine(rest); !ok {
			return false
		}
		if c, s, err := replyCode(line); err == nil && c == code && s == ' ' {
			return true
		}
	}
}

// cutLine splits b after its first '\n'; ok is false when there is none.
func cutLine(b []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return nil, b, false
	}
	return b[:i+1], b[i+1:], true
}

// readReplyLine reads one line with its terminator, bounded by maxReplyLine.
func readReplyLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		frag, err := r.ReadSlice('\n')
		if len(line)+len(frag) > maxReplyLine {
			return nil, fmt.Errorf("%w: line over %d bytes", ErrBadReply, maxReplyLine)
		}
		line = append(line, frag...)
		if err == nil {
			return line, nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
	}
}

// replyCode reads "ddd" and the separator (' ' or '-') at the start of a reply line. A line of
// exactly the code is accepted as "ddd ".
func replyCode(line []byte) (int, byte, error) {
	if len(line) < 3 {
		return 0, 0, fmt.Errorf("%w: %q", ErrBadReply, line)
	}
	code := 0
	for _, b := range line[:3] {
		if b < '0' || b > '9' {
			return 0, 0, fmt.Errorf("%w: %q", ErrBadReply, truncate(line))
		}
		code = code*10 + int(b-'0')
	}
	if code < 100 {
		return 0, 0, fmt.Errorf("%w: code %03d", ErrBadReply, code)
	}
	sep := byte(' ')
	if len(line) > 3 {
		sep = line[3]
	}
	switch sep {
	case ' ', '-':
	case '\r', '\n':
		sep = ' '
	default:
		return 0, 0, fmt.Errorf("%w: %q", ErrBadReply, truncate(line))
	}
	return code, sep, nil
}

func truncate(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}
