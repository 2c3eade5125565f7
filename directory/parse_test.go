package directory

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseLine(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Entry
		skip    bool
		wantErr bool
	}{
		{name: "two fields", in: "alice,web", want: Entry{User: "alice", Target: "web"}},
		{name: "three fields", in: "bob,10.0.0.2:21,ftp_bob", want: Entry{User: "bob", Target: "10.0.0.2:21", BackendUser: "ftp_bob"}},
		{name: "spaces trimmed", in: "  carol , eu ,  c1  ", want: Entry{User: "carol", Target: "eu", BackendUser: "c1"}},
		{name: "CRLF file", in: "dave,eu\r", want: Entry{User: "dave", Target: "eu"}},
		{name: "empty backend user", in: "erin,eu,", want: Entry{User: "erin", Target: "eu"}},
		{name: "domain as user", in: "shop.example,shops", want: Entry{User: "shop.example", Target: "shops"}},
		{name: "user with at", in: "a@b.example,eu", want: Entry{User: "a@b.example", Target: "eu"}},
		{name: "IPv6 backend", in: "v6,[::1]:2121", want: Entry{User: "v6", Target: "[::1]:2121"}},
		{name: "blank", in: "", skip: true},
		{name: "spaces only", in: "   \t", skip: true},
		{name: "comment", in: "# user,target", skip: true},
		{name: "indented comment", in: "   # x", skip: true},
		{name: "one field", in: "alice", wantErr: true},
		{name: "four fields", in: "a,b,c,d", wantErr: true},
		{name: "empty user", in: ",web", wantErr: true},
		{name: "empty target", in: "alice,", wantErr: true},
		{name: "space in target", in: "alice,we b", wantErr: true},
		{name: "quote", in: `"alice",web`, wantErr: true},
		{name: "tab inside", in: "al\tice,web", wantErr: true},
		{name: "NUL", in: "al\x00ice,web", wantErr: true},
		{name: "bare CR inside", in: "al\rice,web", wantErr: true},
		{name: "DEL", in: "alice,we\x7fb", wantErr: true},
		{name: "long user", in: strings.Repeat("u", MaxUser+1) + ",web", wantErr: true},
		{name: "longest user", in: strings.Repeat("u", MaxUser) + ",web", want: Entry{User: strings.Repeat("u", MaxUser), Target: "web"}},
		{name: "bad backend user", in: "alice,web,\x01", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, skip, err := ParseLine(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if skip != tt.skip || got != tt.want {
				t.Fatalf("got %+v skip %v, want %+v skip %v", got, skip, tt.want, tt.skip)
			}
		})
	}
}

func TestSplitUser(t *testing.T) {
	tests := []struct {
		name, in, sep     string
		wantUser, wantDom string
		wantErr           bool
	}{
		{name: "off", in: "alice@shop.example", sep: "", wantUser: "alice@shop.example"},
		{name: "plain", in: "alice@shop.example", sep: "@", wantUser: "alice", wantDom: "shop.example"},
		{name: "no separator", in: "alice", sep: "@", wantUser: "alice"},
		{name: "domain lower-cased", in: "Alice@Shop.Example", sep: "@", wantUser: "Alice", wantDom: "shop.example"},
		{name: "last separator", in: "me@mail.example@shop.example", sep: "@", wantUser: "me@mail.example", wantDom: "shop.example"},
		{name: "other separator", in: "alice%shop.example", sep: "%", wantUser: "alice", wantDom: "shop.example"},
		{name: "long separator", in: "alice::shop.example", sep: "::", wantUser: "alice", wantDom: "shop.example"},
		{name: "double at", in: "@@", sep: "@", wantErr: true},
		{name: "trailing at", in: "alice@", sep: "@", wantErr: true},
		{name: "leading at", in: "@shop.example", sep: "@", wantErr: true},
		{name: "at at domain", in: "alice@@shop.example", sep: "@", wantErr: true},
		{name: "bad domain", in: "alice@shop_example", sep: "@", wantErr: true},
		{name: "domain dots", in: "alice@shop..example", sep: "@", wantErr: true},
		{name: "domain leading dot", in: "alice@.example", sep: "@", wantErr: true},
		{name: "domain with port", in: "alice@shop.example:21", sep: "@", wantErr: true},
		{name: "4 KB", in: strings.Repeat("a", 4000) + "@shop.example", sep: "@", wantErr: true},
		{name: "4 KB no separator", in: strings.Repeat("a", 4000), sep: "", wantErr: true},
		{name: "long domain", in: "a@" + strings.Repeat("d", 254), sep: "@", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, d, err := SplitUser(tt.in, tt.sep)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrBadName) {
				t.Fatalf("err = %v, want ErrBadName", err)
			}
			if u != tt.wantUser || d != tt.wantDom {
				t.Fatalf("got %q %q, want %q %q", u, d, tt.wantUser, tt.wantDom)
			}
		})
	}
}

func TestParse(t *testing.T) {
	known := func(s string) bool { return s == "web" || s == "eu" || s == "10.0.0.9:21" }
	good := "# customers\n\nalice,web\nbob,10.0.0.9:21,b1\r\n  # moved\ncarol,eu\n"
	tab, err := Parse(strings.NewReader(good), "users.csv", known)
	if err != nil {
		t.Fatal(err)
	}
	if tab.Len() != 3 {
		t.Fatalf("Len = %d, want 3", tab.Len())
	}
	if e, ok := tab.Lookup("bob"); !ok || e.Target != "10.0.0.9:21" || e.BackendUser != "b1" {
		t.Fatalf("bob = %+v %v", e, ok)
	}
	if _, ok := tab.Lookup("dave"); ok {
		t.Fatal("dave found")
	}
	bad := []struct{ name, in, want string }{
		{"syntax", "alice,web\nbob\n", "users.csv:2: "},
		{"duplicate", "alice,web\n#\nalice,eu\n", `users.csv:3: user "alice" already on line 1`},
		{"unknown target", "alice,web\nbob,nowhere\n", `users.csv:2: target "nowhere" is not a pool or backend`},
		{"long line", "alice,web\n" + strings.Repeat("x", 5000) + "\n", "users.csv:2: line longer than"},
	}
	for _, b := range bad {
		t.Run(b.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(b.in), "users.csv", known)
			if err == nil || !strings.Contains(err.Error(), b.want) {
				t.Fatalf("err = %v, want it to contain %q", err, b.want)
			}
		})
	}
}

// FuzzParseLine checks that ParseLine never panics, that what it accepts has no byte a
// command line toward a backend could be split on, and that re-serialising an entry parses
// back to the same entry.
func FuzzParseLine(f *testing.F) {
	for _, s := range []string{
		"alice,web",             // the common line
		"bob,10.0.0.2:21,b",     // backend address and backend user
		"# comment",             // skipped
		"",                      // blank
		" a , b , c \r",         // spaces and CR
		"a,b,c,d",               // too many fields
		",,",                    // empty fields
		"a\x00,b",               // NUL
		"a,b\n,c",               // LF inside
		"\"a\",b",               // quotes
		"[::1]:21,[::1]:21,x y", // IPv6 and a space in the backend user
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		e, skip, err := ParseLine(line)
		if err != nil || skip {
			return
		}
		for _, s := range []string{e.User, e.Target, e.BackendUser} {
			if strings.ContainsAny(s, "\r\n\x00,\"") || len(s) > MaxUser {
				t.Fatalf("accepted field %q", s)
			}
		}
		out := e.User + "," + e.Target
		if e.BackendUser != "" {
			out += "," + e.BackendUser
		}
		e2, skip2, err := ParseLine(out)
		if err != nil || skip2 || e2 != e {
			t.Fatalf("round trip of %q: %+v %v %v, want %+v", out, e2, skip2, err, e)
		}
	})
}

// FuzzSplitUser checks that SplitUser never panics, that an accepted split has a non-empty
// local part and a DNS-name domain, and that joining the parts gives back the name (up to
// the domain's case).
func FuzzSplitUser(f *testing.F) {
	for _, s := range []string{
		"alice@shop.example", // the common name
		"alice",              // no domain
		"@@",                 // hostile
		"alice@",             // trailing separator
		"a@b@c.example",      // separator in the local part
		"alice@SHOP.example", // upper case domain
		"x@-",                // odd but legal label characters
	} {
		f.Add(s, "@")
	}
	f.Add("alice%shop.example", "%")
	f.Fuzz(func(t *testing.T, name, sep string) {
		u, d, err := SplitUser(name, sep)
		if err != nil {
			return
		}
		if d == "" {
			if u != name {
				t.Fatalf("no domain but user %q != name %q", u, name)
			}
			return
		}
		if u == "" || !isDomain(d) || d != strings.ToLower(d) {
			t.Fatalf("split %q %q into %q %q", name, sep, u, d)
		}
		if !strings.EqualFold(u+sep+d, name) {
			t.Fatalf("join %q+%q+%q != %q", u, sep, d, name)
		}
	})
}

func TestOnErrorText(t *testing.T) {
	for _, s := range []string{"routes", "refuse"} {
		var o OnError
		if err := o.UnmarshalText([]byte(s)); err != nil {
			t.Fatal(err)
		}
		if b, _ := o.MarshalText(); string(b) != s {
			t.Fatalf("%s round trip: %s", s, b)
		}
	}
	var o OnError
	if err := o.UnmarshalText([]byte("open")); err == nil {
		t.Fatal("open accepted")
	}
	if d := DefaultConfig(); d.Enabled() || d.Timeout != 2*time.Second || d.CacheTTL != time.Minute || d.OnError != OnErrorRefuse {
		t.Fatalf("DefaultConfig() = %+v", d)
	}
}
