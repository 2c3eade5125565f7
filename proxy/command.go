package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
)

// MaxLine is the longest command line, CRLF included, that the proxy accepts from a client
// (SPEC §4). Longer lines are answered 500 and discarded whole.
const MaxLine = 4096

// readBufSize is the size of a backend control connection's read buffer, clientBufSize the
// client's. Command and reply lines are short; ReadLine and ReadReply assemble longer ones
// from fragments, so a buffer need not hold MaxLine, and an idle session costs less memory.
// The backend's is larger: a multi-line reply may run to maxReplyBytes, read a buffer per
// system call, and a backend that floods one should meet that bound before its deadline.
const (
	readBufSize   = 512
	clientBufSize = 256
)

// Errors returned by ReadLine and ParseCommand. Each maps to a 500 reply; none ends the session.
var (
	ErrLineTooLong = errors.New("line too long")
	ErrBareLF      = errors.New("line not terminated by CRLF")
	ErrBadChar     = errors.New("CR or NUL inside a command")
	ErrBadVerb     = errors.New("malformed command verb")
	ErrEmptyLine   = errors.New("empty command line")
)

// Telnet bytes that RFC 959 clients may put on the control connection (RFC 854).
const (
	telnetIAC  = 0xFF
	telnetDONT = 0xFE
	telnetWILL = 0xFB
	telnetSE   = 0xF0
)

// Command is one parsed client command. Verb is upper case; Arg is everything after the single
// space that follows the verb, byte for byte, and never contains CR, LF or NUL.
type Command struct {
	Verb string
	Arg  string
}

// String re-serialises the command without its CRLF. It is what reaches a backend, so a command
// is never forwarded as the raw bytes the client sent.
func (c Command) String() string {
	if c.Arg == "" {
		return c.Verb
	}
	return c.Verb + " " + c.Arg
}

// LogString is String with the argument of PASS (and ACCT) replaced, for logs.
func (c Command) LogString() string {
	if (c.Verb == "PASS" || c.Verb == "ACCT") && c.Arg != "" {
		return c.Verb + " ****"
	}
	return c.String()
}

// ReadLine reads one control line of at most max bytes including its CRLF and returns it without
// the CRLF. An overlong line is consumed up to its LF and reported as ErrLineTooLong; a line ending
// in a bare LF as ErrBareLF. Both leave the reader at the start of the next line, so the session
// can answer 500 and go on. Other errors come from the underlying reader.
func ReadLine(r *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	tooLong := false
	for {
		frag, err := r.ReadSlice('\n')
		if !tooLong {
			if len(line)+len(frag) > max {
				tooLong = true
				line = nil
			} else {
				line = append(line, frag...)
			}
		}
		if err == nil {
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return nil, err
	}
	if tooLong {
		return nil, ErrLineTooLong
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, ErrBareLF
	}
	return line[:len(line)-2], nil
}

// StripTelnet removes Telnet commands (IAC IP, IAC DM, option negotiation, …) from a control
// line, as clients send IAC IP + Synch before ABOR (RFC 959 §4.1.3), and turns IAC IAC into a
// single 0xFF byte. It returns line itself when there is nothing to strip.
func StripTelnet(line []byte) []byte {
	i := bytes.IndexByte(line, telnetIAC)
	if i < 0 {
		return trimTelnetLead(line)
	}
	out := make([]byte, 0, len(line))
	out = append(out, line[:i]...)
	for ; i < len(line); i++ {
		b := line[i]
		if b != telnetIAC {
			out = append(out, b)
			continue
		}
		if i+1 >= len(line) {
			break // IAC at the end of the line: nothing follows
		}
		next := line[i+1]
		switch {
		case next == telnetIAC:
			out = append(out, telnetIAC)
			i++
		case next >= telnetWILL && next <= telnetDONT:
			i += 2 // option negotiation carries one option byte
		case next >= telnetSE:
			i++ // a two-byte command: IP, DM, AO, AYT, …
		default:
			// IAC followed by a plain byte (the DM went out of band): drop the IAC only.
		}
	}
	return trimTelnetLead(out)
}

// trimTelnetLead drops Telnet command bytes left at the start of a line when part of an
// IAC IP / IAC DM sequence was taken out of band as urgent data. A verb starts with a letter,
// so nothing of a command is lost.
func trimTelnetLead(b []byte) []byte {
	for len(b) > 0 && b[0] >= telnetSE {
		b = b[1:]
	}
	return b
}

// ParseCommand parses one control line (without CRLF, Telnet commands already stripped). The verb
// is 3 or 4 ASCII letters, case-insensitive; the argument follows a single space and may hold any
// byte but CR, LF and NUL.
func ParseCommand(line []byte) (Command, error) {
	if len(line) == 0 {
		return Command{}, ErrEmptyLine
	}
	if i := bytes.IndexAny(line, "\r\n\x00"); i >= 0 {
		return Command{}, ErrBadChar
	}
	verb, arg, _ := bytes.Cut(line, []byte{' '})
	if len(verb) < 3 || len(verb) > 4 {
		return Command{}, fmt.Errorf("%w: length %d", ErrBadVerb, len(verb))
	}
	up := make([]byte, len(verb))
	for i, b := range verb {
		switch {
		case b >= 'A' && b <= 'Z':
			up[i] = b
		case b >= 'a' && b <= 'z':
			up[i] = b - 'a' + 'A'
		default:
			return Command{}, ErrBadVerb
		}
	}
	return Command{Verb: string(up), Arg: string(arg)}, nil
}
