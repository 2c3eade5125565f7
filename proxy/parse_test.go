package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestParseCommand(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Command
		wantErr error
	}{
		{"verb only", "PWD", Command{Verb: "PWD"}, nil},
		{"lower case", "retr file", Command{Verb: "RETR", Arg: "file"}, nil},
		{"mixed case", "StOr a b", Command{Verb: "STOR", Arg: "a b"}, nil},
		{"leading space in name kept", "RETR  x", Command{Verb: "RETR", Arg: " x"}, nil},
		{"trailing space kept", "CWD dir ", Command{Verb: "CWD", Arg: "dir "}, nil},
		{"latin1 name", "RETR caf\xe9", Command{Verb: "RETR", Arg: "caf\xe9"}, nil},
		{"empty", "", Command{}, ErrEmptyLine},
		{"too short verb", "AB", Command{}, ErrBadVerb},
		{"too long verb", "ABCDE x", Command{}, ErrBadVerb},
		{"digit verb", "R3TR x", Command{}, ErrBadVerb},
		{"numeric verb", "220 hi", Command{}, ErrBadVerb},
		{"NUL in arg", "RETR a\x00b", Command{}, ErrBadChar},
		{"CR in arg", "RETR a\rb", Command{}, ErrBadChar},
		{"LF in arg", "RETR a\nDELE b", Command{}, ErrBadChar},
		{"leading space", " RETR x", Command{}, ErrBadVerb},
		{"utf8 verb", "ÄBC", Command{}, ErrBadVerb},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCommand([]byte(tt.in))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestCommandRoundTrip(t *testing.T) {
	for _, in := range []string{"PWD", "RETR a b", "STOR  lead", "SITE CHMOD 755 x"} {
		c, err := ParseCommand([]byte(in))
		if err != nil {
			t.Fatal(err)
		}
		c2, err := ParseCommand([]byte(c.String()))
		if err != nil || c2 != c {
			t.Fatalf("%q: round trip %+v -> %+v (%v)", in, c, c2, err)
		}
	}
	if got := (Command{Verb: "PASS", Arg: "secret"}).LogString(); got != "PASS ****" {
		t.Fatalf("LogString = %q", got)
	}
}

func TestReadLine(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []string // lines read in order; "!err" for an error
		wantErr []error
	}{
		{"two lines", "USER a\r\nPASS b\r\n", []string{"USER a", "PASS b"}, []error{nil, nil}},
		{"bare LF then good", "NOOP\nPWD\r\n", []string{"", "PWD"}, []error{ErrBareLF, nil}},
		{"overlong then good", strings.Repeat("x", 5000) + "\r\nPWD\r\n", []string{"", "PWD"}, []error{ErrLineTooLong, nil}},
		{"exactly max", strings.Repeat("y", MaxLine-2) + "\r\n", []string{strings.Repeat("y", MaxLine-2)}, []error{nil}},
		{"one over max", strings.Repeat("y", MaxLine-1) + "\r\nA\r\n", []string{"", "A"}, []error{ErrLineTooLong, nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bufio.NewReaderSize(strings.NewReader(tt.in), 512)
			for i, want := range tt.want {
				got, err := ReadLine(r, MaxLine)
				if !errors.Is(err, tt.wantErr[i]) {
					t.Fatalf("line %d: err %v, want %v", i, err, tt.wantErr[i])
				}
				if err == nil && string(got) != want {
					t.Fatalf("line %d: %q, want %q", i, got, want)
				}
			}
		})
	}
}

func TestStripTelnet(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"plain", "ABOR", "ABOR"},
		{"IP DM inline", "\xff\xf4\xff\xf2ABOR", "ABOR"},
		{"IP then DM out of band", "\xff\xf4\xffABOR", "ABOR"},
		{"DM alone in band", "\xf2ABOR", "ABOR"},
		{"doubled IAC", "RETR a\xff\xffb", "RETR a\xffb"},
		{"IAC at end", "NOOP\xff", "NOOP"},
		{"option negotiation", "\xff\xfb\x01NOOP", "NOOP"},
	}
	for _, tt := range tests {
		if got := string(StripTelnet([]byte(tt.in))); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestReadReply(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		wantCode int
		wantRaw  string
		wantErr  bool
	}{
		{"single", "220 hi\r\n", 220, "220 hi\r\n", false},
		{"multi", "211-Features:\r\n MDTM\r\n211 End\r\n", 211, "211-Features:\r\n MDTM\r\n211 End\r\n", false},
		{"rfc959 middle lines", "214-Help\r\n  more\r\n214-still\r\n214 done\r\n", 214, "214-Help\r\n  more\r\n214-still\r\n214 done\r\n", false},
		{"other code inside", "211-x\r\n220 not the end\r\n211 end\r\n", 211, "211-x\r\n220 not the end\r\n211 end\r\n", false},
		{"bare LF kept", "200 ok\n", 200, "200 ok\n", false},
		{"code only", "200\r\n", 200, "200\r\n", false},
		{"junk", "hello\r\n", 0, "", true},
		{"code 099", "099 x\r\n", 0, "", true},
		{"bad separator", "200x\r\n", 0, "", true},
		{"truncated multi", "211-x\r\n", 0, "", true},
		{"overlong", "200 " + strings.Repeat("a", maxReplyLine) + "\r\n", 0, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := ReadReply(bufio.NewReaderSize(strings.NewReader(tt.in), 256))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v", err)
			}
			if err == nil && (rep.Code != tt.wantCode || string(rep.Raw) != tt.wantRaw) {
				t.Fatalf("got %d %q", rep.Code, rep.Raw)
			}
		})
	}
	// An endless multi-line reply is cut at maxReplyBytes.
	endless := "211-x\r\n" + strings.Repeat(" feature\r\n", maxReplyBytes/10+10)
	if _, err := ReadReply(bufio.NewReader(strings.NewReader(endless))); !errors.Is(err, ErrBadReply) {
		t.Fatalf("endless reply: %v", err)
	}
}

func TestRewriteFeat(t *testing.T) {
	in := "211-Features:\r\n AUTH TLS\r\n PBSZ\r\n PROT\r\n EPSV\r\n MDTM\r\n SIZE\r\n MLST type*;size*;\r\n HOST\r\n REST STREAM\r\n UTF8\r\n211 End\r\n"
	got := string(RewriteFeat([]byte(in), false))
	want := "211-Features:\r\n EPRT\r\n EPSV\r\n MDTM\r\n SIZE\r\n MLST type*;size*;\r\n REST STREAM\r\n UTF8\r\n211 End\r\n"
	if got != want {
		t.Fatalf("got\n%q\nwant\n%q", got, want)
	}
	got = string(RewriteFeat([]byte("211-x\r\n SIZE\r\n211 End\r\n"), true))
	if !strings.Contains(got, " AUTH TLS\r\n PBSZ\r\n PROT\r\n") {
		t.Fatalf("TLS features missing: %q", got)
	}
}

func FuzzParseCommand(f *testing.F) {
	f.Add([]byte("RETR file"))            // ordinary
	f.Add([]byte("\xff\xf4\xff\xf2ABOR")) // Telnet IP + Synch
	f.Add([]byte("STOR a\rb"))            // CR smuggling
	f.Add([]byte("PORT 1,2,3,4,5,6"))     // data setup
	f.Add([]byte(""))                     // empty
	f.Fuzz(func(t *testing.T, line []byte) {
		c, err := ParseCommand(StripTelnet(line))
		if err != nil {
			return
		}
		s := c.String()
		if strings.ContainsAny(s, "\r\n\x00") {
			t.Fatalf("re-serialised command carries CR/LF/NUL: %q", s)
		}
		c2, err := ParseCommand([]byte(s))
		if err != nil || c2 != c {
			t.Fatalf("round trip: %+v -> %q -> %+v, %v", c, s, c2, err)
		}
	})
}

func FuzzReadReply(f *testing.F) {
	f.Add([]byte("220 ready\r\n"))                               // single line
	f.Add([]byte("211-a\r\n b\r\n211 end\r\n"))                  // multi-line
	f.Add([]byte("227 Entering Passive Mode (1,2,3,4,5,6)\r\n")) // 227
	f.Add([]byte("211-x\r\n"))                                   // truncated
	f.Fuzz(func(t *testing.T, in []byte) {
		rep, err := ReadReply(bufio.NewReaderSize(bytes.NewReader(in), 64))
		if err != nil {
			return
		}
		if rep.Code < 100 || rep.Code > 999 || !bytes.HasPrefix(in, rep.Raw) {
			t.Fatalf("reply %d %q not a prefix of input", rep.Code, rep.Raw)
		}
	})
}

// TestReplyReady: replyReady says a reply is buffered exactly when ReadReply would take it
// without reading more.
func TestReplyReady(t *testing.T) {
	for in, want := range map[string]bool{
		"":                            false,
		"226 done":                    false,
		"226 done\r\n":                true,
		"226\r\n":                     true,
		"226-a\r\n":                   false,
		"226-a\r\n b\r\n226":          false,
		"226-a\r\n b\r\n227 x\r\n":    false,
		"226-a\r\n226-b\r\n226 c\r\n": true,
		"226-a\n226 c\n200 next\r\n":  true,
		"xyz\r\n":                     true, // ReadReply rejects it at once
		"099 low\r\n":                 true,
	} {
		if got := replyReady([]byte(in)); got != want {
			t.Errorf("replyReady(%q) = %v, want %v", in, got, want)
		}
	}
}

// FuzzReplyReady: whenever replyReady says a reply is buffered, ReadReply returns without
// needing a byte more; whenever ReadReply takes a reply from the input, replyReady says so.
func FuzzReplyReady(f *testing.F) {
	f.Add([]byte("226 done\r\n"))
	f.Add([]byte("211-a\r\n b\r\n211 end\r\n"))
	f.Add([]byte("211-x\r\n211"))
	f.Add([]byte("bad\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		ready := replyReady(in)
		_, err := ReadReply(bufio.NewReaderSize(bytes.NewReader(in), 64))
		needsMore := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
		if ready && needsMore {
			t.Fatalf("replyReady(%q), but ReadReply wants more: %v", in, err)
		}
		if !ready && err == nil {
			t.Fatalf("ReadReply took a reply from %q, but replyReady says none is there", in)
		}
	})
}

func FuzzReadLine(f *testing.F) {
	f.Add([]byte("USER a\r\nPASS b\r\n"))
	f.Add([]byte("NOOP\n"))
	f.Add([]byte(strings.Repeat("z", 5000) + "\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bufio.NewReaderSize(bytes.NewReader(in), 64)
		for range 100 {
			line, err := ReadLine(r, 256)
			if err != nil && !errors.Is(err, ErrBareLF) && !errors.Is(err, ErrLineTooLong) {
				return
			}
			if len(line) > 254 {
				t.Fatalf("line of %d bytes over the limit", len(line))
			}
		}
	})
}
