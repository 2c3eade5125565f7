package config

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/nat"
)

func TestParseLocalPortRange(t *testing.T) {
	tests := []struct {
		name, in string
		want     nat.PortRange
		wantErr  bool
	}{
		{"linux default", "32768\t60999\n", nat.PortRange{First: 32768, Last: 60999}, false},
		{"spaces", " 1024 65535 ", nat.PortRange{First: 1024, Last: 65535}, false},
		{"one port", "40000\t40000", nat.PortRange{First: 40000, Last: 40000}, false},
		{"empty", "", nat.PortRange{}, true},
		{"one number", "32768", nat.PortRange{}, true},
		{"three numbers", "1 2 3", nat.PortRange{}, true},
		{"reversed", "60999 32768", nat.PortRange{}, true},
		{"too big", "32768 65536", nat.PortRange{}, true},
		{"negative", "-1 2", nat.PortRange{}, true},
	}
	for _, tt := range tests {
		got, err := ParseLocalPortRange(tt.in)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("%s: ParseLocalPortRange(%q) = %v, %v; want %v, error %v", tt.name, tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

// TestSystemEphemeralPorts reads this host's real range, which the kernel always has.
func TestSystemEphemeralPorts(t *testing.T) {
	data, err := os.ReadFile(EphemeralPortsFile)
	if err != nil {
		t.Fatalf("%v (ftpsproxy runs on Linux)", err)
	}
	want, err := ParseLocalPortRange(string(data))
	if err != nil {
		t.Fatal(err)
	}
	got, err := System().EphemeralPorts()
	if err != nil || got != want || got.Len() == 0 {
		t.Errorf("System().EphemeralPorts() = %v, %v; want %v", got, err, want)
	}
}

func FuzzParseLocalPortRange(f *testing.F) {
	f.Add("32768\t60999\n") // the Linux default
	f.Add("1 1")            // the smallest range
	f.Add("99999999999999999999 1")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseLocalPortRange(s)
		if err == nil && r.First > r.Last {
			t.Fatalf("%q gave the reversed range %v", s, r)
		}
	})
}

// TestWarningsSkipFIFOInCertDir: the proxy's certificate store ignores what is not a regular
// file in cert_dir, so a load accepts a FIFO named x.pem there; the expiry warnings, logged at
// every start and reload, must not block opening it.
func TestWarningsSkipFIFOInCertDir(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "x.pem"), 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	done := make(chan []Problem, 1)
	go func() { done <- Warnings(&File{TLS: TLS{CertDir: dir}}, Env{Now: time.Now()}) }()
	select {
	case ws := <-done:
		if len(ws) != 0 {
			t.Errorf("Warnings = %v; want none", ws)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Warnings blocked on a FIFO in cert_dir")
	}
}
