package config

import (
	"fmt"
	"strings"
)

// keyLines maps the key paths of a TOML document (as the decoder names them: "pool[1].name",
// `tls.acme."bad key"`) to the line where the key or table header is written, as far as a
// line scan can tell. BurntSushi/toml v1.6.0 keeps key positions but does not export them.
// The scan follows table headers, counting [[array]] headers the way the decoder numbers
// them, and "key = value" lines; it skips the inside of multi-line strings and does not
// follow inline tables. A key it does not find has no entry: the problem is then reported
// without a line. It never fails on any input.
func keyLines(src string) map[string]int {
	lines := map[string]int{}
	counts := map[string]int{} // array-of-tables path (with parent indices) -> elements seen
	current := ""
	inMulti := ""
	for n, line := range strings.Split(src, "\n") {
		if inMulti != "" {
			if strings.Count(line, inMulti)%2 == 1 {
				inMulti = ""
			}
			continue
		}
		for _, q := range []string{`"""`, `'''`} {
			if strings.Count(line, q)%2 == 1 {
				inMulti = q
			}
		}
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[") {
			array := strings.HasPrefix(line, "[[")
			inner := strings.TrimLeft(line, "[")
			end := closingBracket(inner)
			if end < 0 {
				continue
			}
			segs := splitKey(inner[:end])
			if len(segs) == 0 {
				continue
			}
			prefix := ""
			for _, s := range segs[:len(segs)-1] {
				prefix = join(prefix, s)
				if k, ok := counts[prefix]; ok {
					prefix = fmt.Sprintf("%s[%d]", prefix, k-1)
				}
			}
			current = join(prefix, segs[len(segs)-1])
			setLine(lines, current, n+1)
			if array {
				k := counts[current]
				counts[current] = k + 1
				current = fmt.Sprintf("%s[%d]", current, k)
				setLine(lines, current, n+1)
			}
			continue
		}
		keyPart, _, ok := cutOutsideQuotes(line, '=')
		if !ok {
			continue
		}
		if segs := splitKey(keyPart); len(segs) > 0 {
			setLine(lines, join(current, strings.Join(segs, ".")), n+1)
		}
	}
	return lines
}

func setLine(lines map[string]int, key string, n int) {
	if _, ok := lines[key]; !ok {
		lines[key] = n
	}
}

// closingBracket returns the index of the first ']' outside quotes in s, or -1.
func closingBracket(s string) int {
	before, _, ok := cutOutsideQuotes(s, ']')
	if !ok {
		return -1
	}
	return len(before)
}

// cutOutsideQuotes cuts s around the first sep that is not inside a "..." or '...' string.
func cutOutsideQuotes(s string, sep byte) (before, after string, found bool) {
	var quote byte
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; {
		case quote == '"' && ch == '\\':
			i++
		case quote != 0:
			if ch == quote {
				quote = 0
			}
		case ch == '"' || ch == '\'':
			quote = ch
		case ch == sep:
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// splitKey splits a (possibly dotted, possibly quoted) TOML key into its parts, each written
// as quoteKey writes it. It returns nil for something that is not a key.
func splitKey(s string) []string {
	var segs []string
	for {
		part, rest, more := cutOutsideQuotes(s, '.')
		part = strings.TrimSpace(part)
		switch {
		case len(part) >= 2 && part[0] == '"' && part[len(part)-1] == '"':
			part = strings.ReplaceAll(part[1:len(part)-1], `\"`, `"`)
		case len(part) >= 2 && part[0] == '\'' && part[len(part)-1] == '\'':
			part = part[1 : len(part)-1]
		case part == "" || strings.Trim(part, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != "":
			return nil
		}
		segs = append(segs, quoteKey(part))
		if !more {
			return segs
		}
		s = rest
	}
}
