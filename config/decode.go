package config

// Decoding is strict and exhaustive: BurntSushi/toml parses the file into a generic tree,
// which is walked against the File struct tree by its toml tags, so that every unknown key,
// every value of the wrong type and every bad value is reported with its full key path, array
// indices included, instead of stopping at the first (toml.Decode into the struct stops at
// the first type error, and its strict mode, md.Undecoded, names unknown keys without the
// array index). Key names match exactly (BurntSushi would otherwise accept "Address" for
// "address"). A leaf value is parsed once, into the type of its field: time.Duration,
// netip.Addr, netip.Prefix, or any type with an UnmarshalText method (the enums of proxy and
// balancer, nat.PortRange), whose error text is the problem's message.

import (
	"encoding"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/agnivade/levenshtein"
)

var (
	fileType     = reflect.TypeFor[File]()
	durationType = reflect.TypeFor[time.Duration]()
	addrType     = reflect.TypeFor[netip.Addr]()
	prefixType   = reflect.TypeFor[netip.Prefix]()
	textType     = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// isLeaf reports whether values of t are single TOML values rather than tables.
func isLeaf(t reflect.Type) bool {
	return t.Kind() != reflect.Struct || reflect.PointerTo(t).Implements(textType)
}

// decode parses data into a defaulted File, recording every problem in c.
func (c *checker) decode(data []byte) (*File, bool) {
	var tree map[string]any
	if _, err := toml.Decode(string(data), &tree); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			c.add("config", fmt.Sprintf("line %d, column %d: %s", pe.Position.Line, pe.Position.Col, pe.Message))
		} else {
			c.add("config", err.Error())
		}
		return nil, false
	}
	c.lines = keyLines(string(data))
	f := new(File)
	rv := reflect.ValueOf(f).Elem()
	applyDefaults(rv)
	c.decodeTable("", tree, rv)
	return f, true
}

// applyDefaults sets the defaults of v (a struct) and of the structs nested in it, but not of
// slice elements, which get theirs when they are decoded.
func applyDefaults(v reflect.Value) {
	if def, ok := tableDefaults[v.Type()]; ok {
		v.Set(reflect.ValueOf(def()))
	}
	for i := range v.NumField() {
		if f := v.Field(i); !isLeaf(f.Type()) && tag(v.Type().Field(i)) != "" {
			applyDefaults(f)
		}
	}
}

// tag is the TOML key of a struct field, "" for fields not in the file.
func tag(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	if tag == "-" {
		return ""
	}
	return tag
}

func fieldByTag(t reflect.Type, name string) int {
	for i := range t.NumField() {
		if tag(t.Field(i)) == name {
			return i
		}
	}
	return -1
}

func join(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// quoteKey writes a key of the file the way TOML would need it: bare when it can be, quoted
// otherwise (which also keeps control characters out of problem lines).
func quoteKey(k string) string {
	if k == "" {
		return `""`
	}
	for _, r := range k {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return strconv.Quote(k)
		}
	}
	return k
}

// typeName names the TOML type of a decoded value.
func typeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case time.Time:
		return "a date-time"
	case []any, []map[string]any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("a %T", v)
}

// decodeTable decodes the table raw into the struct rv, reporting unknown keys.
func (c *checker) decodeTable(path string, raw map[string]any, rv reflect.Value) {
	t := rv.Type()
	var known []string
	for i := range t.NumField() {
		name := tag(t.Field(i))
		if name == "" {
			continue
		}
		known = append(known, name)
		v, ok := raw[name]
		if !ok {
			continue
		}
		key := join(path, name)
		c.defined[key] = true
		c.decodeValue(key, v, rv.Field(i))
	}
	for k := range raw {
		if fieldByTag(t, k) < 0 || k == "" {
			c.unknownKey(path, k, known)
		}
	}
}

// unknownKey reports key k of the table at path, with its line when the scan of the file
// found it and the closest known key when one is near enough to be a typo.
func (c *checker) unknownKey(path, k string, known []string) {
	key := join(path, quoteKey(k))
	msg := "unknown key"
	if line, ok := c.lines[key]; ok {
		msg += fmt.Sprintf(" (line %d)", line)
	}
	if s := suggest(k, known); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	}
	c.add(key, msg)
}

// suggest returns the known key closest to k by edit distance (case-insensitive), if it is
// close enough to be a typo: at most 2 edits, and fewer than k has letters.
func suggest(k string, known []string) string {
	best, bestDist := "", 3
	lk := strings.ToLower(k)
	for _, cand := range known {
		d := levenshtein.ComputeDistance(lk, cand)
		if d < bestDist && d < len(k) {
			best, bestDist = cand, d
		}
	}
	return best
}

func (c *checker) decodeValue(key string, raw any, rv reflect.Value) {
	t := rv.Type()
	if t == durationType || reflect.PointerTo(t).Implements(textType) {
		c.decodeText(key, raw, rv)
		return
	}
	switch t.Kind() {
	case reflect.String:
		s, ok := raw.(string)
		if !ok {
			c.addf(key, "must be a string, not %s", typeName(raw))
			return
		}
		rv.SetString(s)
	case reflect.Bool:
		b, ok := raw.(bool)
		if !ok {
			c.addf(key, "must be true or false, not %s", typeName(raw))
			return
		}
		rv.SetBool(b)
	case reflect.Int:
		n, ok := raw.(int64)
		if !ok {
			c.addf(key, "must be an integer, not %s", typeName(raw))
			return
		}
		if rv.OverflowInt(n) {
			c.addf(key, "%d is out of range", n)
			return
		}
		rv.SetInt(n)
	case reflect.Struct:
		m, ok := raw.(map[string]any)
		if !ok {
			c.addf(key, "must be a table, not %s", typeName(raw))
			return
		}
		c.decodeTable(key, m, rv)
	case reflect.Slice:
		c.decodeSlice(key, raw, rv)
	default:
		panic("config: no decoder for " + t.String())
	}
}

// decodeText decodes a value written as a string and parsed into its field's type.
func (c *checker) decodeText(key string, raw any, rv reflect.Value) {
	t := rv.Type()
	s, ok := raw.(string)
	if !ok {
		if t == durationType {
			c.addf(key, "must be a duration string such as \"30s\", not %s", typeName(raw))
		} else {
			c.addf(key, "must be a string, not %s", typeName(raw))
		}
		return
	}
	var v any
	var err error
	switch t {
	case durationType:
		v, err = time.ParseDuration(s)
		if err != nil {
			err = fmt.Errorf("invalid duration %q; use a number with a unit, e.g. \"30s\", \"15m\", \"1h\"", s)
		}
	case addrType:
		// An empty string is the zero Addr: "not set".
		v, err = netip.Addr{}, nil
		if s != "" {
			v, err = netip.ParseAddr(s)
		}
		if err != nil {
			err = fmt.Errorf("%q is not an IP address", s)
		}
	case prefixType:
		v, err = parsePrefix(s)
		if err != nil {
			err = fmt.Errorf("%q is not a CIDR (\"10.0.0.0/8\") or an IP address", s)
		}
	default:
		p := reflect.New(t)
		err = p.Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s))
		v = p.Elem().Interface()
	}
	if err != nil {
		c.add(key, err.Error())
		return
	}
	rv.Set(reflect.ValueOf(v))
}

// parsePrefix parses a CIDR or a bare IP (as a single-address prefix), masked.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.WithZone("")
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func (c *checker) decodeSlice(key string, raw any, rv reflect.Value) {
	et := rv.Type().Elem()
	var elems []any
	switch v := raw.(type) {
	case []any:
		elems = v
	case []map[string]any:
		for _, m := range v {
			elems = append(elems, m)
		}
	default:
		if isLeaf(et) {
			c.addf(key, "must be an array, not %s", typeName(raw))
			return
		}
		c.addf(key, "must be an array of tables ([[%s]]), not %s", tablePath(key), typeName(raw))
		return
	}
	out := reflect.MakeSlice(rv.Type(), len(elems), len(elems))
	for i, e := range elems {
		ev := out.Index(i)
		if !isLeaf(et) {
			applyDefaults(ev)
		}
		c.decodeValue(fmt.Sprintf("%s[%d]", key, i), e, ev)
	}
	rv.Set(out)
}

// tablePath turns "pool[0].backend" into "pool.backend", the header of an array of tables.
func tablePath(key string) string {
	var b strings.Builder
	depth := 0
	for _, r := range key {
		switch {
		case r == '[':
			depth++
		case r == ']':
			depth--
		case depth == 0:
			b.WriteRune(r)
		}
	}
	return b.String()
}
