package enum

import "testing"

type mode uint8

var modeNames = Names[mode]{"none", "explicit"}

func TestIndex(t *testing.T) {
	names := []string{"none", "explicit"}
	tests := []struct {
		in      string
		want    int
		wantErr string
	}{
		{"none", 0, ""},
		{"explicit", 1, ""},
		{"Explicit", 0, `unknown value "Explicit"; must be one of none, explicit`},
		{"", 0, `unknown value ""; must be one of none, explicit`},
	}
	for _, tt := range tests {
		got, err := Index(tt.in, names)
		if got != tt.want || (err == nil) != (tt.wantErr == "") || err != nil && err.Error() != tt.wantErr {
			t.Errorf("Index(%q) = %d, %v; want %d, %q", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestNames(t *testing.T) {
	if got := modeNames.Name(1); got != "explicit" {
		t.Errorf("Name(1) = %q", got)
	}
	if got := modeNames.Name(7); got != "enum.mode(7)" {
		t.Errorf("Name(7) = %q", got)
	}
	m := mode(1)
	if err := modeNames.Parse(&m, []byte("none")); err != nil || m != 0 {
		t.Errorf("Parse(none) = %v, %v", m, err)
	}
	if err := modeNames.Parse(&m, []byte("implicit")); err == nil || m != 0 {
		t.Errorf("Parse(implicit) = %v, %v; want an error and no change", m, err)
	}
	if got := Strings([]string{"a", "b"}); len(got) != 2 || got[1] != "b" {
		t.Errorf("Strings = %v", got)
	}
}
