package admin

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// exposition is a parsed Prometheus text exposition (format 0.0.4).
type exposition struct {
	// values maps a canonical series (name{a="x",b="y"}, labels sorted) to its value.
	values map[string]float64
	// types maps a family to its TYPE; families without one are absent.
	types map[string]string
	// helps maps a family to its HELP text ("" for an empty HELP line).
	helps map[string]string
}

// parseExposition is a strict checker of the text format's line grammar: every line must be
// a HELP, a TYPE or a sample; TYPE comes once per family and before its samples; a family's
// samples are contiguous; series are unique; label values use only the three defined escapes;
// counters are non-negative. It reports the first violation with its line number.
func parseExposition(text string) (*exposition, error) {
	e := &exposition{values: make(map[string]float64), types: make(map[string]string), helps: make(map[string]string)}
	if text == "" {
		return e, nil
	}
	if !strings.HasSuffix(text, "\n") {
		return nil, fmt.Errorf("exposition does not end with a newline")
	}
	if !utf8.ValidString(text) {
		return nil, fmt.Errorf("exposition is not UTF-8")
	}
	done := make(map[string]bool)    // families whose samples are finished
	sampled := make(map[string]bool) // families with samples
	cur := ""                        // family of the previous line
	for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		n := i + 1
		fail := func(format string, a ...any) error {
			return fmt.Errorf("line %d %q: %s", n, line, fmt.Sprintf(format, a...))
		}
		if line == "" {
			return nil, fail("empty line")
		}
		if strings.HasPrefix(line, "#") {
			kind, rest, ok := strings.Cut(strings.TrimPrefix(line, "# "), " ")
			if !strings.HasPrefix(line, "# ") || !ok {
				return nil, fail("comment is neither HELP nor TYPE")
			}
			name, arg, _ := strings.Cut(rest, " ")
			if !validMetricName(name) {
				return nil, fail("bad metric name %q", name)
			}
			if done[name] || sampled[name] {
				return nil, fail("metadata of family %q after its samples", name)
			}
			switch kind {
			case "HELP":
				if _, dup := e.helps[name]; dup {
					return nil, fail("second HELP for %q", name)
				}
				e.helps[name] = arg
			case "TYPE":
				if _, dup := e.types[name]; dup {
					return nil, fail("second TYPE for %q", name)
				}
				switch arg {
				case "counter", "gauge", "histogram", "summary", "untyped":
				default:
					return nil, fail("unknown type %q", arg)
				}
				e.types[name] = arg
			default:
				return nil, fail("comment is neither HELP nor TYPE")
			}
			if cur != name && cur != "" {
				done[cur] = true
			}
			cur = name
			continue
		}
		name, labels, value, err := parseSample(line)
		if err != nil {
			return nil, fail("%v", err)
		}
		fam := familyOf(name, e.types)
		if fam != cur {
			if done[fam] {
				return nil, fail("family %q is not contiguous", fam)
			}
			if cur != "" {
				done[cur] = true
			}
			cur = fam
		}
		sampled[fam] = true
		switch typ := e.types[fam]; typ {
		case "counter":
			if name != fam {
				return nil, fail("counter sample name differs from its family %q", fam)
			}
			if value < 0 || math.IsNaN(value) {
				return nil, fail("counter value %v", value)
			}
		case "histogram":
			if strings.HasSuffix(name, "_bucket") && labels["le"] == "" {
				return nil, fail("histogram bucket without le")
			}
		case "summary":
			if name == fam && labels["quantile"] == "" {
				return nil, fail("summary sample without quantile")
			}
		}
		key := canonical(name, labels)
		if _, dup := e.values[key]; dup {
			return nil, fail("duplicate series %s", key)
		}
		e.values[key] = value
	}
	return e, nil
}

// familyOf maps a sample name to its family: itself, or for the _sum, _count and _bucket
// samples of a declared summary or histogram, that family.
func familyOf(name string, types map[string]string) string {
	if _, ok := types[name]; ok {
		return name
	}
	for _, suf := range []string{"_sum", "_count", "_bucket"} {
		base, ok := strings.CutSuffix(name, suf)
		if ok && (types[base] == "summary" || types[base] == "histogram") {
			return base
		}
	}
	return name
}

// parseSample parses `name{label="value",...} value [timestamp]`.
func parseSample(line string) (string, map[string]string, float64, error) {
	i := 0
	for i < len(line) && line[i] != '{' && line[i] != ' ' {
		i++
	}
	name := line[:i]
	if !validMetricName(name) {
		return "", nil, 0, fmt.Errorf("bad metric name %q", name)
	}
	labels := make(map[string]string)
	if i < len(line) && line[i] == '{' {
		i++
		for {
			// Blanks may separate label tokens, as the reference parser (expfmt) allows.
			i = skipBlanks(line, i)
			if i < len(line) && line[i] == '}' {
				i++
				break
			}
			j := i
			for j < len(line) && line[j] != '=' {
				j++
			}
			ln := line[i:j]
			if !validLabelName(ln) {
				return "", nil, 0, fmt.Errorf("bad label name %q", ln)
			}
			if _, dup := labels[ln]; dup {
				return "", nil, 0, fmt.Errorf("duplicate label %q", ln)
			}
			if j+1 >= len(line) || line[j+1] != '"' {
				return "", nil, 0, fmt.Errorf("label %q value not quoted", ln)
			}
			i = j + 2
			var v strings.Builder
			for {
				if i >= len(line) {
					return "", nil, 0, fmt.Errorf("unterminated value of label %q", ln)
				}
				c := line[i]
				if c == '"' {
					i++
					break
				}
				if c == '\\' {
					if i+1 >= len(line) {
						return "", nil, 0, fmt.Errorf("dangling backslash")
					}
					switch line[i+1] {
					case '\\':
						v.WriteByte('\\')
					case '"':
						v.WriteByte('"')
					case 'n':
						v.WriteByte('\n')
					default:
						return "", nil, 0, fmt.Errorf("undefined escape \\%c", line[i+1])
					}
					i += 2
					continue
				}
				v.WriteByte(c)
				i++
			}
			labels[ln] = v.String()
			i = skipBlanks(line, i)
			if i < len(line) && line[i] == ',' {
				i++
				continue
			}
			if i < len(line) && line[i] == '}' {
				i++
				break
			}
			return "", nil, 0, fmt.Errorf("expected , or } after label %q", ln)
		}
	}
	if i >= len(line) || line[i] != ' ' {
		return "", nil, 0, fmt.Errorf("no single space before the value")
	}
	fields := strings.Split(line[i+1:], " ")
	if len(fields) < 1 || len(fields) > 2 || fields[0] == "" {
		return "", nil, 0, fmt.Errorf("want value [timestamp], got %q", line[i+1:])
	}
	value, err := parseValue(fields[0])
	if err != nil {
		return "", nil, 0, err
	}
	if len(fields) == 2 {
		if _, err := strconv.ParseInt(fields[1], 10, 64); err != nil {
			return "", nil, 0, fmt.Errorf("bad timestamp %q", fields[1])
		}
	}
	return name, labels, value, nil
}

func skipBlanks(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	return i
}

func parseValue(s string) (float64, error) {
	switch s {
	case "NaN":
		return math.NaN(), nil
	case "+Inf":
		return math.Inf(1), nil
	case "-Inf":
		return math.Inf(-1), nil
	}
	if strings.ContainsAny(s, "_xXpP") || strings.EqualFold(s, "inf") || strings.EqualFold(s, "infinity") {
		return 0, fmt.Errorf("bad value %q", s)
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("bad value %q", s)
	}
	return v, nil
}

func validMetricName(s string) bool {
	for i, c := range s {
		ok := c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9'
		if !ok {
			return false
		}
	}
	return s != ""
}

func validLabelName(s string) bool {
	return validMetricName(s) && !strings.Contains(s, ":")
}

// canonical returns name{k="v",...} with labels sorted and values escaped the one way.
func canonical(name string, labels map[string]string) string {
	if len(labels) == 0 {
		return name
	}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	kv := make([]string, 0, 2*len(keys))
	for _, k := range keys {
		kv = append(kv, k, labels[k])
	}
	return series(name, kv...)
}

func TestParseExpositionRejects(t *testing.T) {
	bad := []struct{ name, in string }{
		{"no final newline", "a 1"},
		{"empty line", "a 1\n\nb 2\n"},
		{"bad name", "1a 1\n"},
		{"bad value", "a one\n"},
		{"two spaces", "a  1\n"},
		{"unquoted label", "a{b=c} 1\n"},
		{"bad escape", `a{b="\t"} 1` + "\n"},
		{"unterminated", `a{b="x} 1` + "\n"},
		{"duplicate series", "a 1\na 2\n"},
		{"duplicate label", `a{b="1",b="2"} 1` + "\n"},
		{"second TYPE", "# TYPE a counter\n# TYPE a counter\na 1\n"},
		{"unknown type", "# TYPE a thing\na 1\n"},
		{"TYPE after samples", "a 1\n# TYPE a counter\n"},
		{"not contiguous", "a 1\nb 1\na{x=\"1\"} 1\n"},
		{"negative counter", "# TYPE a counter\na -1\n"},
		{"free comment", "# hello\n"},
	}
	for _, tc := range bad {
		if _, err := parseExposition(tc.in); err == nil {
			t.Errorf("%s: accepted %q", tc.name, tc.in)
		}
	}
	good := "# HELP a_total\n# TYPE a_total counter\na_total{b=\"x\\\"y\\\\z\\n\"} 3\n# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_sum 2\ns_count 3\nu 1.5e+06 1700000000000\n"
	e, err := parseExposition(good)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.values[series("a_total", "b", "x\"y\\z\n")]; got != 3 {
		t.Errorf("escaped label round trip: got %v", got)
	}
}

// key returns the canonical series of name with the label pairs kv, in any order.
func key(name string, kv ...string) string {
	labels := make(map[string]string)
	for i := 0; i+1 < len(kv); i += 2 {
		labels[kv[i]] = kv[i+1]
	}
	return canonical(name, labels)
}
