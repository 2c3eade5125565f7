package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckReadOnlyDirs runs the binary's -check in a mount namespace of its own where a
// directory is a read-only tmpfs: a transfer log or ACME storage there is an error (exit 1)
// even for root, whom file modes do not stop. (The golden files cover the missing
// directories; this is the "not writable" case, which needs a real read-only mount.)
func TestCheckReadOnlyDirs(t *testing.T) {
	dir := t.TempDir()
	ro := filepath.Join(dir, "ro")
	if err := os.Mkdir(ro, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "ftpsproxy.toml")
	os.WriteFile(cfg, []byte(`
[[listener]]
address = "127.0.0.1:2121"
tls = "explicit"
[tls.acme]
domains = ["ftp.example.com"]
email = "ops@example.com"
storage = "ro/acme"
[[pool]]
name = "p"
[[pool.backend]]
address = "127.0.0.1:21"
[log]
transfer_log = "ro/xfer.log"
`), 0o644)
	// checkRO runs -check with ro a read-only tmpfs holding the files named in touch.
	checkRO := func(touch string) string {
		script := `mount -t tmpfs ftpsproxy-check-ro "$1" && for f in $4; do : > "$1/$f"; done && mount -o remount,ro "$1" && exec "$2" -config "$3" -check`
		out, err := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", ro, binary, cfg, touch).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
			t.Fatalf("-check with read-only directories: %v, want exit 1\n%s", err, out)
		}
		return string(out)
	}
	const erofs = "read-only file system"
	out := checkRO("")
	for _, want := range []string{
		`tls.acme.storage: directory "` + ro + `/acme" does not exist and cannot be created: directory "` + ro + `" is not writable: ` + erofs,
		`log.transfer_log: cannot create "` + ro + `/xfer.log": directory "` + ro + `" is not writable: ` + erofs,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// The transfer log exists, on the read-only mount.
	if out, want := checkRO("xfer.log"), `log.transfer_log: "`+ro+`/xfer.log" is not writable: `+erofs; !strings.Contains(out, want) {
		t.Errorf("output lacks %q:\n%s", want, out)
	}
	// The same file with the directory writable (no mount): OK.
	if out, err := exec.Command(binary, "-config", cfg, "-check").CombinedOutput(); err != nil {
		t.Errorf("-check with a writable directory: %v\n%s", err, out)
	}
}

// TestCheckStrictAndHelp runs the real binary: -help succeeds with the usage on stdout, a
// warning leaves -check at exit 0 and makes -check -strict exit 1, and -version names the Go
// version it was built with.
func TestCheckStrictAndHelp(t *testing.T) {
	out, err := exec.Command(binary, "-help").Output()
	if err != nil || !strings.HasPrefix(string(out), "usage: ftpsproxy") {
		t.Errorf("-help: %v, stdout %q", err, out)
	}
	out, err = exec.Command(binary, "-version").Output()
	if err != nil || !strings.HasPrefix(string(out), "ftpsproxy ") || !strings.Contains(string(out), "\ncommit: ") || !strings.Contains(string(out), "\ngo: go1.") {
		t.Errorf("-version: %v, stdout %q", err, out)
	}
	cfg := filepath.Join(t.TempDir(), "open-admin.toml")
	os.WriteFile(cfg, []byte("[[listener]]\naddress = \"127.0.0.1:2121\"\n[[pool]]\nname = \"p\"\n[[pool.backend]]\naddress = \"127.0.0.1:21\"\n[admin]\naddress = \"0.0.0.0:9121\"\n"), 0o644)
	const warn = `WARN admin.address: "0.0.0.0:9121" is reachable from other hosts`
	out, err = exec.Command(binary, "-config", cfg, "-check").CombinedOutput()
	if err != nil || !strings.Contains(string(out), ": OK\n") || !strings.Contains(string(out), warn) {
		t.Errorf("-check: %v\n%s", err, out)
	}
	out, err = exec.Command(binary, "-config", cfg, "-check", "-strict").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), warn) {
		t.Errorf("-check -strict: %v, want exit 1\n%s", err, out)
	}
}
