package config

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ftpsproxy/ftpsproxy/nat"
)

// Env is what the warnings read from the host. System returns the real one; tests set a
// fixed clock and port range.
type Env struct {
	Now time.Time
	// EphemeralPorts returns the kernel's range for outgoing connections' local ports.
	EphemeralPorts func() (nat.PortRange, error)
}

// EphemeralPortsFile is where Linux keeps the ephemeral port range.
const EphemeralPortsFile = "/proc/sys/net/ipv4/ip_local_port_range"

// System returns the Env of this host: the current time and the range in
// EphemeralPortsFile.
func System() Env {
	return Env{Now: time.Now(), EphemeralPorts: func() (nat.PortRange, error) {
		data, err := os.ReadFile(EphemeralPortsFile)
		if err != nil {
			return nat.PortRange{}, err
		}
		return ParseLocalPortRange(string(data))
	}}
}

// ParseLocalPortRange parses the contents of ip_local_port_range: two port numbers separated
// by white space.
func ParseLocalPortRange(s string) (nat.PortRange, error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return nat.PortRange{}, fmt.Errorf("ip_local_port_range %q: want two ports", s)
	}
	lo, err1 := strconv.ParseUint(f[0], 10, 16)
	hi, err2 := strconv.ParseUint(f[1], 10, 16)
	if err1 != nil || err2 != nil || lo > hi {
		return nat.PortRange{}, fmt.Errorf("ip_local_port_range %q: want two ports, low first", s)
	}
	return nat.PortRange{First: uint16(lo), Last: uint16(hi)}, nil
}

// ExpiryWarning is how long before a certificate's end -check warns about it.
const ExpiryWarning = 14 * 24 * time.Hour

// Warnings lists what is valid but probably wrong in a loaded File, in key order: -check
// prints them as WARN lines (and -check -strict refuses the file), the proxy logs them at
// start and reload.
func Warnings(f *File, env Env) []Problem {
	w := &checker{seen: map[string]bool{}}
	w.warnCertificate("tls.cert_file", f.TLS.CertFile, env.Now)
	w.warnCertFiles(&f.TLS, env.Now)
	w.warnAdmin(f)
	w.warnEphemeral(f, env)
	return sortProblems(w.probs)
}

// FormatWarnings writes warnings as -check prints them, one "WARN key: msg" line each.
func FormatWarnings(ws []Problem) string {
	var b strings.Builder
	for _, w := range ws {
		b.WriteString("WARN " + w.String() + "\n")
	}
	return b.String()
}

// warnCertificate warns when a certificate of the PEM file name has expired or expires
// within ExpiryWarning (the first one to end is named: a chain is as good as its shortest).
func (w *checker) warnCertificate(key, name string, now time.Time) {
	if msg := certWarning(name, now); msg != "" {
		w.add(key, msg)
	}
}

// certWarning is warnCertificate's message, "" when the file is fine or cannot be read
// (validation reported that).
func certWarning(name string, now time.Time) string {
	if name == "" {
		return ""
	}
	data, err := readReferred(name) // cert_dir's files are not validated one by one: a FIFO there must not block
	if err != nil {
		return ""
	}
	var first *x509.Certificate
	for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err == nil && (first == nil || c.NotAfter.Before(first.NotAfter)) {
			first = c
		}
	}
	if first == nil {
		return ""
	}
	end := first.NotAfter.UTC().Format(time.DateTime + " UTC")
	left := first.NotAfter.Sub(now)
	switch {
	case left <= 0:
		return fmt.Sprintf("certificate %q expired on %s (%s ago): clients will refuse it", certName(first), end, days(-left))
	case left < ExpiryWarning:
		return fmt.Sprintf("certificate %q expires on %s (in %s)", certName(first), end, days(left))
	}
	return ""
}

// warnCertFiles warns about the [[tls.certificate]] pairs and the certificates of
// tls.cert_dir that have expired or expire soon; the directory's are one warning naming
// each file.
func (w *checker) warnCertFiles(t *TLS, now time.Time) {
	for i, p := range t.Certificates {
		w.warnCertificate(fmt.Sprintf("tls.certificate[%d].cert_file", i), p.CertFile, now)
	}
	if t.CertDir == "" {
		return
	}
	ents, err := os.ReadDir(t.CertDir)
	if err != nil {
		return
	}
	var msgs []string
	for _, e := range ents {
		if ext := filepath.Ext(e.Name()); ext != ".crt" && ext != ".pem" {
			continue
		}
		if msg := certWarning(filepath.Join(t.CertDir, e.Name()), now); msg != "" {
			msgs = append(msgs, e.Name()+": "+msg)
		}
	}
	if len(msgs) > 0 {
		w.add("tls.cert_dir", strings.Join(msgs, "; "))
	}
}

// certName names a certificate for an operator: its common name, else its first DNS name,
// else its serial number.
func certName(c *x509.Certificate) string {
	switch {
	case c.Subject.CommonName != "":
		return c.Subject.CommonName
	case len(c.DNSNames) > 0:
		return c.DNSNames[0]
	}
	return "serial " + c.SerialNumber.String()
}

// days writes a duration in whole days, or hours below one day.
func days(d time.Duration) string {
	if d < 24*time.Hour {
		return fmt.Sprintf("%d hours", int(d.Hours()))
	}
	n := int(d.Hours() / 24)
	if n == 1 {
		return "1 day"
	}
	return fmt.Sprintf("%d days", n)
}

// warnAdmin warns when the admin server listens beyond loopback with no token.
func (w *checker) warnAdmin(f *File) {
	a := f.Admin
	if a.Address == "" || a.TokenFile != "" {
		return
	}
	host, _, err := net.SplitHostPort(a.Address)
	if err != nil {
		return
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsLoopback() || host == "localhost" {
		return
	}
	w.addf("admin.address", "%q is reachable from other hosts and admin.token_file is not set: the admin server has no authentication; listen on 127.0.0.1 or set a token", a.Address)
}

// warnEphemeral warns when the passive ports overlap the kernel's ephemeral range: an
// outgoing connection of the host (to a backend, say) may hold a port when a client needs it.
func (w *checker) warnEphemeral(f *File, env Env) {
	if env.EphemeralPorts == nil {
		return
	}
	eph, err := env.EphemeralPorts()
	if err != nil {
		return
	}
	r := f.Data.PortRange
	if r.First <= eph.Last && eph.First <= r.Last {
		w.addf("data.port_range", "%q overlaps the kernel's ephemeral port range %s (%s): outgoing connections can take its ports; move it below %d or narrow the ephemeral range",
			r.String(), eph, EphemeralPortsFile, eph.First)
	}
}
