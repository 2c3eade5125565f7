package peers

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// ProFTPDBinary and ProFTPDModules are the unpacked ProFTPD 1.3.8 and its
// loadable modules (mod_tls, mod_proxy, ...).
const (
	ProFTPDBinary  = Prefix + "/proftpd/usr/sbin/proftpd"
	ProFTPDModules = Prefix + "/proftpd/usr/lib/proftpd"
)

// StartProFTPD starts ProFTPD 1.3.8 with a virtual-user file (MLSD;
// explicit and implicit FTPS, TLS 1.2 and 1.3).
func StartProFTPD(t testing.TB, o Options) *Server {
	t.Helper()
	needBinary(t, ProFTPDBinary)
	acct := lookupAccount(t)
	l := newLayout(t, acct)
	ip, port, auto := listenAddr(t, o.Addr)
	checkNetNS(t, o)
	s := &Server{Name: "proftpd", Root: l.root, Dir: l.dir, PasvPorts: pasvPorts(t, o, 20), HasMLSD: true}
	s.logFiles = []string{l.path("stderr.log"), l.path("system.log"), l.path("commands.log"),
		l.path("transfer.log"), l.path("tls.log")}

	hash, err := sha512Crypt()
	if err != nil {
		t.Fatalf("peers: hashing the test password: %v", err)
	}
	passwd, group := l.path("ftpd.passwd"), l.path("ftpd.group")
	writeFile(t, passwd, fmt.Sprintf("%s:%s:%d:%d::%s:/bin/bash\n", User, hash, acct.uid, acct.gid, l.root), 0o600)
	writeFile(t, group, fmt.Sprintf("%s:x:%d:%s\n", User, acct.gid, User), 0o600)

	var c strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&c, format+"\n", args...) }
	line(`ServerType standalone`)
	line(`ServerName "ftpsproxy test ProFTPD"`)
	line(`UseIPv6 %s`, onOff(ip.Is6()))
	line(`DefaultAddress %s`, ip)
	line(`SocketBindTight on`)
	line(`User nobody`)
	line(`Group nogroup`)
	line(`PidFile %s`, l.path("proftpd.pid"))
	line(`ScoreboardFile %s`, l.path("proftpd.scoreboard"))
	// Nothing under /run or /var/log: those are shared with other servers.
	line(`DelayEngine off`)
	line(`ControlsEngine off`)
	line(`WtmpLog off`)
	line(`UseReverseDNS off`)
	line(`SystemLog %s`, l.path("system.log"))
	line(`TransferLog %s`, l.path("transfer.log"))
	line(`LogFormat peers "%%t %%a %%u \"%%r\" -> %%s %%S"`)
	line(`ExtendedLog %s ALL peers`, l.path("commands.log"))
	// Only the virtual user: no PAM, no /etc/passwd, no shell check.
	line(`AuthOrder mod_auth_file.c`)
	line(`AuthUserFile %s`, passwd)
	line(`AuthGroupFile %s`, group)
	line(`RequireValidShell off`)
	line(`RootLogin off`)
	line(`DefaultRoot ~`)
	line(`Umask 022`)
	line(`AllowOverwrite on`)
	line(`AllowStoreRestart on`)
	line(`AllowRetrieveRestart on`)
	line(`MaxInstances 200`)
	line(`PassivePorts %d %d`, s.PasvPorts[0], s.PasvPorts[1])
	if a := pasvAddress(t, o); a != "" {
		line(`MasqueradeAddress %s`, a)
	}
	if o.TLS != TLSNone {
		f := setupTLS(t, l, o)
		s.CertFile = f.cert
		protocols := "TLSv1.2 TLSv1.3"
		if o.MaxTLS12 {
			protocols = "TLSv1.2"
		}
		var opts []string
		if !o.RequireReuse {
			opts = append(opts, "NoSessionReuseRequired")
		}
		if o.TLS == TLSImplicit {
			opts = append(opts, "UseImplicitSSL")
		}
		line(`ModulePath %s`, ProFTPDModules)
		line(`LoadModule mod_tls.c`)
		line(`TLSEngine on`)
		line(`TLSLog %s`, l.path("tls.log"))
		line(`TLSProtocol %s`, protocols)
		line(`TLSRSACertificateFile %s`, f.cert)
		line(`TLSRSACertificateKeyFile %s`, f.key)
		line(`TLSVerifyClient off`)
		line(`TLSRenegotiate none`)
		line(`TLSRequired %s`, onOff(o.ForceTLS))
		if len(opts) > 0 {
			line(`TLSOptions %s`, strings.Join(opts, " "))
		}
	}

	run(t, s, ip, port, auto, startSpec{
		netns:    o.NetNS,
		name:     s.Name,
		implicit: o.TLS == TLSImplicit,
		build: func(port int) (*exec.Cmd, string) {
			conf := l.path("proftpd.conf")
			writeFile(t, conf, c.String()+fmt.Sprintf("Port %d\n", port), 0o644)
			cmd := exec.Command(ProFTPDBinary, "--nodaemon", "--config", conf)
			cmd.Env = serverEnv()
			cmd.Dir = l.dir
			return cmd, l.path("stderr.log")
		},
	})
	return s
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
