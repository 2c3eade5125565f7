package config

import (
	"testing"
)

func TestKeyLines(t *testing.T) {
	src := `# comment = not a key
top = 1
[[pool]]
name = "a"
[[pool.backend]]
address = "x:21"
[[pool.backend]]
adress = "y:21"
[[pool]]
name = "b"
[[pool.backend]]
"bad key" = 1
  dotted.key = 2
[tls.acme] # trailing comment
banner = """
fake = 1
"""
after = 3
list = [
  "not = a key",
]
[ "quoted" . 'table' ]
k = 1
`
	want := map[string]int{
		"top":                           2,
		"pool":                          3,
		"pool[0]":                       3,
		"pool[0].name":                  4,
		"pool[0].backend[0]":            5,
		"pool[0].backend[0].address":    6,
		"pool[0].backend[1].adress":     8,
		"pool[1].name":                  10,
		`pool[1].backend[0]."bad key"`:  12,
		"pool[1].backend[0].dotted.key": 13,
		"tls.acme":                      14,
		"tls.acme.banner":               15,
		"tls.acme.after":                18,
		"tls.acme.list":                 19,
		"quoted.table.k":                23,
	}
	got := keyLines(src)
	for k, line := range want {
		if got[k] != line {
			t.Errorf("line of %s = %d, want %d", k, got[k], line)
		}
	}
	for _, k := range []string{"tls.acme.fake", "comment", `tls.acme."not = a key"`} {
		if n, ok := got[k]; ok {
			t.Errorf("%s found on line %d: it is not a key", k, n)
		}
	}
}

func TestSuggest(t *testing.T) {
	known := []string{"address", "tls", "pool", "policy", "idle_timeout", "log"}
	tests := []struct{ in, want string }{
		{"adress", "address"},
		{"Address", "address"},
		{"tsl", "tls"},
		{"polcy", "policy"},
		{"idle_timout", "idle_timeout"},
		{"logs", "log"},
		{"verbose", ""},
		{"x", ""},  // one letter is too short to be a typo of anything
		{"ab", ""}, // no known key within two edits
	}
	for _, tt := range tests {
		if got := suggest(tt.in, known); got != tt.want {
			t.Errorf("suggest(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzKeyLines: the scan never panics, and every line it gives is a line of the input.
func FuzzKeyLines(f *testing.F) {
	f.Add("[[pool]]\nname = 1\n")
	f.Add("[a.\"b\\\"c\"]\nk = 1")        // an escaped quote in a header
	f.Add("x = '''\n[not]\n'''\ny = 2")   // a header inside a multi-line literal string
	f.Add("[[a]]\n[[a.b]]\n[[a]]\n[a.b]") // a table after arrays of the same name
	f.Add("[")                            // an unclosed header
	f.Fuzz(func(t *testing.T, src string) {
		n := 1
		for _, c := range src {
			if c == '\n' {
				n++
			}
		}
		for k, line := range keyLines(src) {
			if line < 1 || line > n {
				t.Fatalf("%s on line %d of %d", k, line, n)
			}
		}
	})
}
