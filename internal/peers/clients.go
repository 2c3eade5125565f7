package peers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// DefaultClientTimeout bounds a client helper whose context has no deadline.
const DefaultClientTimeout = 60 * time.Second

// Curl runs curl -sS --fail with args and returns its combined output. An
// error (non-zero exit, timeout) carries the output too.
//
// Debian 12's curl 7.88 cannot do active mode (-P/--ftp-port) over TLS; it
// resumes TLS sessions on data connections and resumes uploads with APPE.
func Curl(ctx context.Context, args ...string) (string, error) {
	return runClient(ctx, nil, "curl", append([]string{"-sS", "--fail"}, args...)...)
}

// LftpPrelude is prepended to every Lftp script: any failed command ends
// lftp with a non-zero status, and network errors fail at once instead of
// being retried for minutes.
const LftpPrelude = `set cmd:fail-exit yes
set cmd:interactive no
set net:max-retries 1
set net:persist-retries 0
set net:timeout 20
set net:reconnect-interval-base 1
set xfer:clobber yes
set dns:order "inet inet6"
`

// Lftp runs an lftp script (one command a line, after LftpPrelude) with its
// own empty home, so no ~/.lftprc or bookmark applies. lftp tries AUTH TLS on
// ftp:// URLs by default: a plain-FTP script says "set ftp:ssl-allow no", a
// TLS one "set ftp:ssl-force yes" and "set ssl:ca-file FILE". lftp (GnuTLS)
// resumes TLS sessions on data connections; "set ftp:passive-mode no" selects
// active mode.
func Lftp(ctx context.Context, script string) (string, error) {
	home, err := os.MkdirTemp("", "peers-lftp-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(home)
	file := home + "/script.lftp"
	if err := os.WriteFile(file, []byte(LftpPrelude+script+"\n"), 0o600); err != nil {
		return "", err
	}
	env := []string{"HOME=" + home, "LFTP_HOME=" + home, "XDG_CONFIG_HOME=" + home,
		"XDG_DATA_HOME=" + home, "XDG_CACHE_HOME=" + home}
	return runClient(ctx, env, "lftp", "-f", file)
}

// PythonFTPTLSReuse is Python source defining ReuseFTP_TLS, an ftplib.FTP_TLS
// whose data connections resume the control connection's TLS session (stock
// ftplib does not, so servers that require reuse refuse its transfers).
// Prepend it to a Python script.
const PythonFTPTLSReuse = `import ftplib as _ftplib
class ReuseFTP_TLS(_ftplib.FTP_TLS):
    def ntransfercmd(self, cmd, rest=None):
        conn, size = _ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=self.sock.session)
        return conn, size
`

// Python runs a Python 3 script (python3 from PATH) with args as sys.argv[1:]
// and returns its combined output.
func Python(ctx context.Context, script string, args ...string) (string, error) {
	f, err := os.CreateTemp("", "peers-*.py")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(script); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return runClient(ctx, []string{"PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1"}, "python3",
		append([]string{f.Name()}, args...)...)
}

// runClient runs a client in its own process group, killed with the group
// when ctx ends, and returns its combined output.
func runClient(ctx context.Context, env []string, name string, args ...string) (string, error) {
	path, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s: %w: run %s as root", name, err, InstallScript)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultClientTimeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = nil
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = errors.Join(err, ctxErr)
		}
		return out.String(), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}
