package peers

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// VsftpdBinary is the unpacked vsftpd 3.0.3.
const VsftpdBinary = Prefix + "/vsftpd/usr/sbin/vsftpd"

// vsftpdPAMService is written by InstallScript: pam_unix only, so the Debian
// default's ftpusers and shell checks do not apply.
const vsftpdPAMService = "ftpsproxy-vsftpd"

// StartVsftpd starts vsftpd 3.0.3 (no MLSD; TLS capped at 1.2; explicit and
// implicit FTPS).
func StartVsftpd(t testing.TB, o Options) *Server {
	t.Helper()
	needBinary(t, VsftpdBinary)
	acct := lookupAccount(t)
	l := newLayout(t, acct)
	ip, port, auto := listenAddr(t, o.Addr)
	checkNetNS(t, o)
	s := &Server{Name: "vsftpd", Root: l.root, Dir: l.dir, PasvPorts: pasvPorts(t, o, 20)}
	s.logFiles = []string{l.path("stderr.log"), l.path("vsftpd.log")}

	// vsftpd insists on an empty directory it does not own for its
	// unprivileged parts (default /var/run/vsftpd/empty, not ours to create).
	empty := l.path("empty")
	if err := os.Mkdir(empty, 0o555); err != nil {
		t.Fatalf("peers: %v", err)
	}

	var c strings.Builder
	set := func(k string, v any) { fmt.Fprintf(&c, "%s=%v\n", k, v) }
	set("listen", yesNo(ip.Is4()))
	set("listen_ipv6", yesNo(ip.Is6()))
	if ip.Is4() {
		set("listen_address", ip)
	} else {
		set("listen_address6", ip)
	}
	set("background", "NO")
	// The sandboxes need namespaces and a seccomp policy that do not hold in
	// containers, and buy nothing in a test.
	set("seccomp_sandbox", "NO")
	set("isolate", "NO")
	set("isolate_network", "NO")
	set("secure_chroot_dir", empty)
	set("anonymous_enable", "NO")
	set("local_enable", "YES")
	set("write_enable", "YES")
	set("local_umask", "022")
	set("pam_service_name", vsftpdPAMService)
	set("userlist_enable", "NO")
	set("tcp_wrappers", "NO")
	set("local_root", l.root)
	set("chroot_local_user", "YES")
	set("allow_writeable_chroot", "YES") // the root is the user's and writable
	set("pasv_enable", "YES")
	set("pasv_min_port", s.PasvPorts[0])
	set("pasv_max_port", s.PasvPorts[1])
	if a := pasvAddress(t, o); a != "" {
		set("pasv_address", a)
		set("pasv_addr_resolve", "NO")
	}
	set("port_enable", "YES")
	set("connect_from_port_20", "NO")
	set("max_clients", 0)
	set("max_per_ip", 0)
	set("delay_failed_login", 0)
	// Logs: every command and reply, transfers, and TLS details.
	set("syslog_enable", "NO")
	set("xferlog_enable", "YES")
	set("xferlog_std_format", "NO")
	set("vsftpd_log_file", l.path("vsftpd.log"))
	set("log_ftp_protocol", "YES")
	set("debug_ssl", "YES")
	env := serverEnv()
	if o.TLS != TLSNone {
		f := setupTLS(t, l, o)
		s.CertFile = f.cert
		set("ssl_enable", "YES")
		set("rsa_cert_file", f.cert)
		set("rsa_private_key_file", f.key)
		set("ssl_ciphers", "HIGH") // the default cipher string is refused by OpenSSL 3
		set("ssl_request_cert", "NO")
		set("require_ssl_reuse", yesNo(o.RequireReuse))
		set("implicit_ssl", yesNo(o.TLS == TLSImplicit))
		// Both default to YES: plain logins would be refused.
		set("force_local_logins_ssl", yesNo(o.ForceTLS))
		set("force_local_data_ssl", yesNo(o.ForceTLS))
		set("allow_anon_ssl", "NO")
		// vsftpd 3.0.3 predates TLS 1.3 and has no protocol switch.
		env = serverEnv(tls12Conf(t, l))
	} else {
		set("ssl_enable", "NO")
	}
	run(t, s, ip, port, auto, startSpec{
		netns:    o.NetNS,
		name:     s.Name,
		implicit: o.TLS == TLSImplicit,
		build: func(port int) (*exec.Cmd, string) {
			conf := l.path("vsftpd.conf")
			writeFile(t, conf, c.String()+fmt.Sprintf("listen_port=%d\n", port), 0o600)
			cmd := exec.Command(VsftpdBinary, conf)
			cmd.Env = env
			cmd.Dir = l.dir
			return cmd, l.path("stderr.log")
		},
	})
	return s
}

func yesNo(b bool) string {
	if b {
		return "YES"
	}
	return "NO"
}
