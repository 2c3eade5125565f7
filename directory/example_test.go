package directory

import (
	"os"
	"regexp"
	"testing"
)

// TestReadmeExample parses the users.csv of the README's worked example against its config's
// targets, so the documentation cannot drift from the parser.
func TestReadmeExample(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)`/etc/ftpsproxy/users.csv`:\n\n```\n(.*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README has no users.csv example")
	}
	path := t.TempDir() + "/users.csv"
	os.WriteFile(path, m[1], 0o644)
	d, err := New(Config{File: path}, knownTargets("web1", "web2", "10.0.0.11:21", "10.0.0.12:21", "10.0.0.13:21"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if d.Len() != 4 {
		t.Fatalf("%d users, want 4", d.Len())
	}
}
