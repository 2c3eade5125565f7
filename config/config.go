package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// Problem is one thing wrong with a config file, named by its key path ("pool[0].policy",
// "listener[1].address", "tls.acme.email"). Problems that concern the file as a whole use
// the key "config".
type Problem struct{ Key, Msg string }

// String returns the problem as "<key>: <msg>".
func (p Problem) String() string { return p.Key + ": " + p.Msg }

// Error lists every problem found in a config file, in the order of the keys in
// config.example.toml, at most one per key.
type Error struct{ Problems []Problem }

// Error returns one problem per line, as "<key>: <msg>".
func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Load reads, decodes, defaults and validates the config file at path. Relative file paths
// inside it (cert_file, key_file, [[tls.certificate]], cert_dir, client_ca_file, ca_root,
// storage, ca_file, transfer_log, token_file) are taken relative to the directory of path
// and are returned joined with it. Every error, including a file that cannot be read, is an
// *Error.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{Problems: []Problem{{Key: "config", Msg: err.Error()}}}
	}
	return parse(data, filepath.Dir(path))
}

// Parse decodes, defaults and validates a config file's contents. Relative file paths inside
// it are relative to the working directory. Every error is an *Error.
func Parse(data []byte) (*File, error) {
	return parse(data, "")
}

func parse(data []byte, baseDir string) (*File, error) {
	c := &checker{seen: map[string]bool{}, defined: map[string]bool{}}
	f, ok := c.decode(data)
	if ok {
		if baseDir != "" {
			f.resolvePaths(baseDir)
		}
		c.validate(f)
	}
	if len(c.probs) > 0 {
		return nil, c.err()
	}
	return f, nil
}

// resolvePaths makes the file paths of f relative to dir.
func (f *File) resolvePaths(dir string) {
	join := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	join(&f.TLS.CertFile)
	join(&f.TLS.KeyFile)
	join(&f.TLS.ACME.CARoot)
	join(&f.TLS.ACME.Storage)
	for i := range f.TLS.Certificates {
		join(&f.TLS.Certificates[i].CertFile)
		join(&f.TLS.Certificates[i].KeyFile)
	}
	join(&f.TLS.CertDir)
	join(&f.TLS.ClientCAFile)
	for i := range f.Pools {
		for j := range f.Pools[i].Backends {
			join(&f.Pools[i].Backends[j].CAFile)
		}
	}
	join(&f.Log.TransferLog)
	join(&f.Admin.TokenFile)
	join(&f.Directory.File)
	join(&f.Directory.CAFile)
}

// checker collects problems while decoding and validating one file.
type checker struct {
	probs   []ranked
	seen    map[string]bool // keys with a problem: one problem per key
	defined map[string]bool // key paths present in the file
	lines   map[string]int  // key path -> line, where the scan of the file found it
}

type ranked struct {
	rank []int
	Problem
}

// add records a problem for key unless key already has one (the first, from decoding,
// explains the rest).
func (c *checker) add(key, msg string) {
	if c.seen[key] {
		return
	}
	c.seen[key] = true
	c.probs = append(c.probs, ranked{rankOf(key), Problem{key, oneLine(msg)}})
}

func (c *checker) addf(key, format string, args ...any) { c.add(key, fmt.Sprintf(format, args...)) }

// oneLine keeps a problem on one line: values are quoted with %q, but TOML parse errors and
// OS errors may still carry raw control characters.
func oneLine(msg string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, msg)
}

func (c *checker) err() *Error {
	return &Error{Problems: sortProblems(c.probs)}
}

func sortProblems(probs []ranked) []Problem {
	slices.SortStableFunc(probs, func(a, b ranked) int {
		if r := slices.Compare(a.rank, b.rank); r != 0 {
			return r
		}
		return strings.Compare(a.Key, b.Key)
	})
	out := make([]Problem, len(probs))
	for i, p := range probs {
		out[i] = p.Problem
	}
	return out
}

// rankOf orders key paths as the fields of File are declared (which is the order of
// config.example.toml), array elements by index, unknown keys after the known ones of their
// table, and "config" first.
func rankOf(key string) []int {
	if key == "config" {
		return []int{-1}
	}
	var rank []int
	t := fileType
	for seg := range strings.SplitSeq(key, ".") {
		name, idx := seg, -1
		if i := strings.IndexByte(seg, '['); i > 0 && strings.HasSuffix(seg, "]") {
			if n, err := strconv.Atoi(seg[i+1 : len(seg)-1]); err == nil {
				name, idx = seg[:i], n
			}
		}
		if t.Kind() != reflect.Struct {
			return append(rank, 1<<30)
		}
		fi := fieldByTag(t, name)
		if fi < 0 {
			return append(rank, t.NumField())
		}
		rank = append(rank, fi)
		t = t.Field(fi).Type
		if idx >= 0 && t.Kind() == reflect.Slice {
			rank = append(rank, idx)
			t = t.Elem()
		}
	}
	return rank
}

// Keys lists the key paths of File, tables included, without indices: "listener",
// "listener.address", ..., "pool.backend.weight". A test checks config.example.toml
// against it.
func Keys() []string {
	var keys []string
	var walk func(prefix string, t reflect.Type)
	walk = func(prefix string, t reflect.Type) {
		for i := range t.NumField() {
			name := tag(t.Field(i))
			if name == "" {
				continue
			}
			key := join(prefix, name)
			keys = append(keys, key)
			ft := t.Field(i).Type
			if ft.Kind() == reflect.Slice && !isLeaf(ft.Elem()) {
				ft = ft.Elem()
			}
			if !isLeaf(ft) {
				walk(key, ft)
			}
		}
	}
	walk("", fileType)
	return keys
}
