package config

import (
	"strings"
	"testing"
)

func TestValidSRVName(t *testing.T) {
	for name, want := range map[string]bool{
		"_ftp._tcp.farm.example":               true,
		"_ftp._tcp.farm.example.":              true,
		"_ftp._tcp.consul":                     true,
		"ftp._tcp.farm.example":                false,
		"_ftp.tcp.farm.example":                false,
		"_ftp._tcp":                            false,
		"_ftp.._tcp.example":                   false,
		"_ftp._tcp.farm example":               false,
		"_ftp._tcp.a/b":                        false,
		"_ftp._tcp.host:21":                    false,
		"":                                     false,
		"_ftp._tcp." + strings.Repeat("a", 64): false,
	} {
		if got := validSRVName(name); got != want {
			t.Errorf("validSRVName(%q) = %v, want %v", name, got, want)
		}
	}
}

// FuzzValidSRVName: an accepted name always has the _service._proto form, no empty or
// oversized label, and no character a host name cannot hold.
func FuzzValidSRVName(f *testing.F) {
	for _, s := range []string{"_ftp._tcp.farm.example", "_ftp._tcp.", "a.b.c", "_x._y.z\t"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !validSRVName(s) {
			return
		}
		labels := strings.Split(strings.TrimSuffix(s, "."), ".")
		if len(labels) < 3 || labels[0][0] != '_' || labels[1][0] != '_' || strings.ContainsAny(s, " \t/:@") {
			t.Fatalf("accepted %q", s)
		}
		for _, l := range labels {
			if l == "" || len(l) > 63 {
				t.Fatalf("accepted %q with label %q", s, l)
			}
		}
	})
}
