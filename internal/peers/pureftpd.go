package peers

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// PureFTPdBinary and PurePwBinary are the unpacked pure-ftpd 1.0.50.
const (
	PureFTPdBinary = Prefix + "/pure-ftpd/usr/sbin/pure-ftpd"
	PurePwBinary   = Prefix + "/pure-ftpd/usr/bin/pure-pw"
)

// StartPureFTPd starts pure-ftpd 1.0.50 with a virtual-user database. It has
// no implicit FTPS (Options.TLS == TLSImplicit fails the test) and cannot
// require TLS session reuse (Options.RequireReuse is ignored). It admits at
// most half as many sessions as it has passive ports. As root it opens
// active-mode data connections from port 20.
func StartPureFTPd(t testing.TB, o Options) *Server {
	t.Helper()
	if o.TLS == TLSImplicit {
		t.Fatalf("peers: pure-ftpd: implicit FTPS is unsupported")
	}
	needBinary(t, PureFTPdBinary)
	acct := lookupAccount(t)
	l := newLayout(t, acct)
	ip, port, auto := listenAddr(t, o.Addr)
	checkNetNS(t, o)
	s := &Server{Name: "pure-ftpd", Root: l.root, Dir: l.dir, PasvPorts: pasvPorts(t, o, 100), HasMLSD: true}
	s.logFiles = []string{l.path("stderr.log"), l.path("syslog.log"), l.path("transfer.log")}

	// A password line as pure-pw writes it, but hashed with SHA-512 crypt:
	// pure-pw's own argon2 hash costs seconds of CPU per login.
	hash, err := sha512Crypt()
	if err != nil {
		t.Fatalf("peers: hashing the test password: %v", err)
	}
	passwd := l.path("pureftpd.passwd")
	writeFile(t, passwd, fmt.Sprintf("%s:%s:%d:%d::%s/./::::::::::::\n", User, hash, acct.uid, acct.gid, l.root), 0o600)
	pdb := l.path("pureftpd.pdb")
	if out, err := exec.Command(PurePwBinary, "mkdb", pdb, "-f", passwd).CombinedOutput(); err != nil {
		t.Fatalf("peers: pure-pw mkdb: %v\n%s", err, out)
	}

	args := []string{
		"--login", "puredb:" + pdb,
		"--noanonymous",
		"--chrooteveryone",
		"--dontresolve",
		"--minuid", "1",
		"--maxclientsnumber", "200",
		"--passiveportrange", fmt.Sprintf("%d:%d", s.PasvPorts[0], s.PasvPorts[1]),
		"--pidfile", l.path("pure-ftpd.pid"),
		"--altlog", "clf:" + l.path("transfer.log"),
		"--verboselog",
	}
	if a := pasvAddress(t, o); a != "" {
		args = append(args, "--forcepassiveip", a)
	}
	env := serverEnv()
	if o.TLS == TLSExplicit {
		f := setupTLS(t, l, o)
		s.CertFile = f.cert
		// 1: TLS optional; 3: TLS required for the control and the data
		// connections (2 would still allow plain data).
		level := "1"
		if o.ForceTLS {
			level = "3"
		}
		args = append(args, "--tls", level, "--certfile", f.combined)
		if o.MaxTLS12 {
			env = serverEnv(tls12Conf(t, l))
		}
	}

	// pure-ftpd logs only to syslog, and this machine has no /dev/log: give
	// it one of its own in a private mount namespace.
	sink := newSyslogSink(t, l.path("syslog.log"))

	run(t, s, ip, port, auto, startSpec{
		netns: o.NetNS,
		name:  s.Name,
		build: func(port int) (*exec.Cmd, string) {
			full := append([]string{"--bind", ip.String() + "," + strconv.Itoa(port)}, args...)
			var cmd *exec.Cmd
			if sink != nil {
				cmd = sink.command(l, PureFTPdBinary, full...)
			} else {
				cmd = exec.Command(PureFTPdBinary, full...)
			}
			cmd.Env = env
			cmd.Dir = l.dir
			return cmd, l.path("stderr.log")
		},
	})
	return s
}

var (
	cryptOnce sync.Once
	cryptHash string
	cryptErr  error
)

// sha512Crypt hashes Password once per process with openssl passwd -6.
func sha512Crypt() (string, error) {
	cryptOnce.Do(func() {
		cmd := exec.Command("openssl", "passwd", "-6", "-stdin")
		cmd.Stdin = strings.NewReader(Password + "\n")
		out, err := cmd.Output()
		if err != nil {
			cryptErr = fmt.Errorf("openssl passwd -6: %w", err)
			return
		}
		cryptHash = strings.TrimSpace(string(out))
		if !strings.HasPrefix(cryptHash, "$6$") {
			cryptErr = fmt.Errorf("openssl passwd -6 printed %q", cryptHash)
		}
	})
	return cryptHash, cryptErr
}

// syslogSink receives a server's syslog datagrams and appends them to a file.
type syslogSink struct {
	sock string
	conn *net.UnixConn
	out  *os.File
	done chan struct{}
}

var (
	unshareOnce sync.Once
	unshareOK   bool
)

// newSyslogSink listens on a datagram socket for a server run through
// command, or returns nil when mount namespaces are unavailable (the server
// then runs without a syslog).
func newSyslogSink(t testing.TB, logPath string) *syslogSink {
	t.Helper()
	unshareOnce.Do(func() {
		unshareOK = exec.Command("unshare", "--mount", "--propagation", "unchanged", "true").Run() == nil
	})
	if !unshareOK {
		writeFile(t, logPath, "(no syslog: mount namespaces unavailable)\n", 0o644)
		return nil
	}
	// Socket paths are limited to 108 bytes, and t.TempDir paths can be
	// longer: use a short directory of its own.
	dir, err := os.MkdirTemp("", "peers-syslog-")
	if err != nil {
		t.Fatalf("peers: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := dir + "/log"
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatalf("peers: syslog socket: %v", err)
	}
	out, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		conn.Close()
		t.Fatalf("peers: %v", err)
	}
	s := &syslogSink{sock: sock, conn: conn, out: out, done: make(chan struct{})}
	go s.copyLoop()
	// Registered before the server's stop, so it runs after it (LIFO).
	t.Cleanup(s.close)
	return s
}

func (s *syslogSink) copyLoop() {
	defer close(s.done)
	buf := make([]byte, 64<<10)
	for {
		n, err := s.conn.Read(buf)
		if err != nil {
			return // closed
		}
		line := strings.TrimRight(string(buf[:n]), "\n\x00")
		_, _ = s.out.WriteString(line + "\n")
	}
}

func (s *syslogSink) close() {
	s.conn.Close()
	<-s.done
	s.out.Close()
}

// command runs bin in a new mount namespace whose /dev is an overlay holding
// a /dev/log bound to the sink's socket. The mounts are made only once /dev
// (or /) is private, so nothing propagates to the host's /dev; "/" is no
// mount point in a chroot, hence the fallback to /dev alone. If any step
// fails, the server runs anyway without a syslog and says so on stderr.
func (s *syslogSink) command(l layout, bin string, args ...string) *exec.Cmd {
	upper, work := l.path("dev-upper"), l.path("dev-work")
	script := `if { mount --make-rprivate / 2>/dev/null || mount --make-rprivate /dev; } &&
	mount -t overlay overlay -o "lowerdir=/dev,upperdir=$1,workdir=$2" /dev &&
	: >/dev/log && mount --bind "$3" /dev/log; then :; else
	echo "peers: no syslog capture (mounting /dev/log failed)" >&2; fi
shift 3
exec "$@"`
	full := append([]string{"--mount", "--propagation", "unchanged", "sh", "-c", script, "sh", upper, work, s.sock, bin}, args...)
	_ = os.MkdirAll(upper, 0o755)
	_ = os.MkdirAll(work, 0o755)
	return exec.Command("unshare", full...)
}
