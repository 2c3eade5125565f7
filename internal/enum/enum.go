// Package enum parses the names of small configuration enums (a TLS mode, a balancing
// policy) so that every package that owns such a type reports an unknown name the same way:
// with the list of legal names taken from the type itself. It does not know any enum.
package enum

import (
	"fmt"
	"strings"
)

// Index returns the position of s in names, or an error that lists names.
func Index(s string, names []string) (int, error) {
	for i, n := range names {
		if n == s {
			return i, nil
		}
	}
	return 0, fmt.Errorf("unknown value %q; must be one of %s", s, strings.Join(names, ", "))
}

// Names are the config names of an integer enum T, indexed by value: Names[T]{"none",
// "explicit"} names T(0) "none". The owning type's String and UnmarshalText call it.
type Names[T ~uint8] []string

// Name returns the name of v, or "T(v)" for a value outside the list.
func (n Names[T]) Name(v T) string {
	if int(v) < len(n) {
		return n[v]
	}
	return fmt.Sprintf("%T(%d)", v, v)
}

// Parse sets *p to the value named b, or returns an error that lists the names.
func (n Names[T]) Parse(p *T, b []byte) error {
	i, err := Index(string(b), n)
	if err == nil {
		*p = T(i)
	}
	return err
}

// Strings converts a list of string-based enum values to their names.
func Strings[T ~string](vals []T) []string {
	out := make([]string, len(vals))
	for i, v := range vals {
		out[i] = string(v)
	}
	return out
}
