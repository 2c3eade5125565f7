package main

import (
	"bytes"
	"os"
	"path/filepath"
	goruntime "runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/ftpsproxy/ftpsproxy/admin"
)

func runCLI(args ...string) (stdout, stderr string, code int) {
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return o.String(), e.String(), code
}

// TestHelpExitsZero: -help (and -h) print the usage on stdout and succeed (SPEC §8); a bad
// flag still prints it on stderr and exits 2.
func TestHelpExitsZero(t *testing.T) {
	for _, arg := range []string{"-help", "-h", "--help"} {
		out, errOut, code := runCLI(arg)
		if code != exitOK || !strings.HasPrefix(out, "usage: ftpsproxy -config FILE") || !strings.Contains(out, "-strict") || errOut != "" {
			t.Errorf("%s: code %d, stdout %q, stderr %q", arg, code, out, errOut)
		}
	}
	out, errOut, code := runCLI("-nosuchflag")
	if code != exitUsage || out != "" || !strings.Contains(errOut, "usage: ftpsproxy") {
		t.Errorf("-nosuchflag: code %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestStrictNeedsCheck(t *testing.T) {
	_, errOut, code := runCLI("-config", "../../config.example.toml", "-strict")
	if code != exitUsage || !strings.Contains(errOut, "-strict goes with -check") {
		t.Errorf("code %d, stderr %q", code, errOut)
	}
}

// TestCheckWarnings runs -check on a file whose admin server is open to every host: the
// warning is printed and the exit is 0; with -strict the exit is 1 and there is no OK.
func TestCheckWarnings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "open-admin.toml")
	os.WriteFile(path, []byte("[[listener]]\naddress = \":2121\"\n[[pool]]\nname = \"p\"\n[[pool.backend]]\naddress = \"10.0.0.1:21\"\n[admin]\naddress = \":9121\"\n"), 0o644)
	const warn = `WARN admin.address: ":9121" is reachable from other hosts and admin.token_file is not set`
	out, _, code := runCLI("-config", path, "-check")
	if code != exitOK || !strings.Contains(out, path+": OK\n") || !strings.Contains(out, warn) {
		t.Errorf("-check: code %d, stdout %q", code, out)
	}
	out, errOut, code := runCLI("-config", path, "-check", "-strict")
	if code != exitConfig || strings.Contains(out, "OK") || !strings.Contains(errOut, "-strict refuses them:\n"+warn) {
		t.Errorf("-check -strict: code %d, stdout %q, stderr %q", code, out, errOut)
	}
	// The example has no warning on a host with Linux's default ephemeral range, so -strict
	// accepts it there.
	if eph, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil && strings.Fields(string(eph))[0] == "32768" {
		if out, errOut, code := runCLI("-config", "../../config.example.toml", "-check", "-strict"); code != exitOK || strings.Contains(out, "WARN") {
			t.Errorf("example -check -strict: code %d, stdout %q, stderr %q", code, out, errOut)
		}
	}
}

func TestVersionText(t *testing.T) {
	info := func(bi *debug.BuildInfo) func() (*debug.BuildInfo, bool) {
		return func() (*debug.BuildInfo, bool) { return bi, bi != nil }
	}
	tests := []struct {
		name    string
		version string
		bi      *debug.BuildInfo
		want    string
	}{
		{"no build info", "0.1.0-dev", nil, "ftpsproxy 0.1.0-dev\ncommit: abc123\ngo: " + goruntime.Version() + " "},
		{"a development build", "0.1.0-dev", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}},
			"ftpsproxy 0.1.0-dev\ncommit: abc123\ngo: go1.26.8 "},
		{"go install of a tag", "0.1.0-dev", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.2.0"}},
			"ftpsproxy v0.2.0\ncommit: abc123\ngo: go1.26.8 "},
		{"ldflags win over the module version", "0.3.0", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.2.0"}},
			"ftpsproxy 0.3.0\n"},
	}
	for _, tt := range tests {
		if got := versionText(tt.version, "abc123", info(tt.bi)); !strings.HasPrefix(got, tt.want) {
			t.Errorf("%s: %q, want it to start with %q", tt.name, got, tt.want)
		}
	}
	// The binary's own: the commit is the one the metrics export.
	out, _, code := runCLI("-version")
	if code != exitOK || !strings.HasPrefix(out, "ftpsproxy ") || !strings.Contains(out, "\ncommit: "+admin.BuildCommit()+"\n") || !strings.Contains(out, "\ngo: go1.") {
		t.Errorf("-version: code %d, %q", code, out)
	}
}
