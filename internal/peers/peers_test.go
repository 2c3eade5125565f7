package peers

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
)

const fileSize = 1 << 20

type startFunc func(testing.TB, Options) *Server

var servers = []struct {
	name     string
	start    startFunc
	implicit bool // supports TLSImplicit
	reuse    bool // can require TLS session reuse
}{
	{"vsftpd", StartVsftpd, true, true},
	{"pure-ftpd", StartPureFTPd, false, false},
	{"proftpd", StartProFTPD, true, true},
}

// randomFile returns 1 MiB of random bytes and their SHA-256.
func randomFile(t *testing.T) ([]byte, string) {
	t.Helper()
	b := make([]byte, fileSize)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b, sum(b)
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// checkRoot asserts that the server stored name in its root with the given
// SHA-256, owned by the test user.
func checkRoot(t *testing.T, s *Server, name, want string) {
	t.Helper()
	path := filepath.Join(s.Root, name)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%s: stored file: %v\n%s", s.Name, err, s.Log())
	}
	if got := sum(b); got != want {
		t.Fatalf("%s: %s in root has sha256 %s (%d bytes), want %s\n%s", s.Name, name, got, len(b), want, s.Log())
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if uid := fi.Sys().(*syscall.Stat_t).Uid; int(uid) != lookupAccount(t).uid {
		t.Errorf("%s: %s is owned by uid %d, want the test user's %d", s.Name, name, uid, lookupAccount(t).uid)
	}
}

// logHasCommand asserts that the server's log shows one of the commands as
// received: vsftpd and ProFTPD log `"EPRT |1|...`, pure-ftpd `[eprt] [...]`
// (a FEAT reply's " EPRT" line does not count).
func logHasCommand(t *testing.T, s *Server, cmds ...string) {
	t.Helper()
	if strings.Contains(s.Log(), "no syslog") {
		t.Logf("%s: no command log here (no mount namespaces), not checking for %v", s.Name, cmds)
		return
	}
	re := regexp.MustCompile(`(?i)["[](` + strings.Join(cmds, "|") + `)[] "]`)
	if !re.MatchString(s.Log()) {
		t.Errorf("%s: log shows none of the commands %v:\n%s", s.Name, cmds, s.Log())
	}
}

// TestGoClient runs every server in every TLS mode it supports against
// jlaffaye/ftp (passive only), once with EPSV and once with PASV.
func TestGoClient(t *testing.T) {
	t.Parallel()
	for _, srv := range servers {
		modes := []struct {
			name string
			o    Options
		}{
			{"plain", Options{}},
			{"explicit", Options{TLS: TLSExplicit}},
			{"explicit-forced", Options{TLS: TLSExplicit, ForceTLS: true, MaxTLS12: true}},
		}
		if srv.reuse {
			modes = append(modes, struct {
				name string
				o    Options
			}{"explicit-reuse", Options{TLS: TLSExplicit, RequireReuse: true}})
		}
		if srv.implicit {
			modes = append(modes, struct {
				name string
				o    Options
			}{"implicit", Options{TLS: TLSImplicit, RequireReuse: srv.reuse}})
		}
		for _, m := range modes {
			t.Run(srv.name+"/"+m.name, func(t *testing.T) {
				t.Parallel()
				s := srv.start(t, m.o)
				goClientSession(t, s, m.o, false)
				goClientSession(t, s, m.o, true)
				if m.o.TLS != TLSNone && m.o.ForceTLS {
					// A plain login must be refused.
					c, err := ftp.Dial(s.Addr, ftp.DialWithTimeout(5*time.Second))
					if err == nil {
						err = c.Login(User, Password)
						c.Quit()
					}
					if err == nil {
						t.Errorf("%s: plain login accepted with ForceTLS", s.Name)
					}
				}
			})
		}
	}
}

func dialGo(t *testing.T, s *Server, o Options, pasvOnly bool) *ftp.ServerConn {
	t.Helper()
	opts := []ftp.DialOption{ftp.DialWithTimeout(10 * time.Second), ftp.DialWithDisabledEPSV(pasvOnly)}
	switch o.TLS {
	case TLSExplicit:
		opts = append(opts, ftp.DialWithExplicitTLS(s.ClientTLSConfig(t)))
	case TLSImplicit:
		opts = append(opts, ftp.DialWithTLS(s.ClientTLSConfig(t)))
	}
	c, err := ftp.Dial(s.Addr, opts...)
	if err != nil {
		t.Fatalf("%s: dial: %v\n%s", s.Name, err, s.Log())
	}
	t.Cleanup(func() { c.Quit() })
	if err := c.Login(User, Password); err != nil {
		t.Fatalf("%s: login: %v\n%s", s.Name, err, s.Log())
	}
	return c
}

func goClientSession(t *testing.T, s *Server, o Options, pasvOnly bool) {
	t.Helper()
	c := dialGo(t, s, o, pasvOnly)
	fail := func(op string, err error) {
		t.Helper()
		t.Fatalf("%s (pasvOnly=%v): %s: %v\n%s", s.Name, pasvOnly, op, err, s.Log())
	}
	if c.IsTimePreciseInList() != s.HasMLSD {
		t.Errorf("%s: FEAT lists MLST: %v, but HasMLSD is %v", s.Name, c.IsTimePreciseInList(), s.HasMLSD)
	}
	data, want := randomFile(t)
	name := "up-" + strconv.FormatBool(pasvOnly) + ".bin"

	if err := c.Stor(name, bytes.NewReader(data)); err != nil {
		fail("STOR", err)
	}
	checkRoot(t, s, name, want)
	if got := retr(t, c, name, 0); sum(got) != want {
		fail("RETR", errors.New("downloaded content differs"))
	}
	if n, err := c.FileSize(name); err != nil || n != fileSize {
		fail("SIZE", errors.Join(err, errors.New("size "+strconv.FormatInt(n, 10))))
	}
	if mt, err := c.GetTime(name); err != nil || time.Since(mt) > time.Hour || time.Until(mt) > time.Hour {
		fail("MDTM", errors.Join(err, errors.New("time "+mt.String())))
	}
	// REST + RETR.
	if got := retr(t, c, name, 1000); !bytes.Equal(got, data[1000:]) {
		fail("REST+RETR", errors.New("content differs"))
	}
	// REST + STOR: rewrite the second half.
	half := fileSize / 2
	if err := c.StorFrom(name, bytes.NewReader(data[half:]), uint64(half)); err != nil {
		fail("REST+STOR", err)
	}
	checkRoot(t, s, name, want)
	// APPE.
	if err := c.Append(name, strings.NewReader("tail")); err != nil {
		fail("APPE", err)
	}
	checkRoot(t, s, name, sum(append(append([]byte{}, data...), "tail"...)))

	entries, err := c.List("/")
	if err != nil {
		fail("LIST", err)
	}
	found := false
	for _, e := range entries {
		found = found || (e.Name == name && e.Size == fileSize+4)
	}
	if !found {
		fail("LIST", errors.New("uploaded file missing from the listing"))
	}
	dir := "dir-" + strconv.FormatBool(pasvOnly)
	if err := c.MakeDir(dir); err != nil {
		fail("MKD", err)
	}
	if fi, err := os.Stat(filepath.Join(s.Root, dir)); err != nil || !fi.IsDir() {
		fail("MKD", errors.New("directory missing from root"))
	}
	if err := c.ChangeDir(dir); err != nil {
		fail("CWD", err)
	}
	if wd, err := c.CurrentDir(); err != nil || wd != "/"+dir {
		fail("PWD", errors.Join(err, errors.New("wd "+wd+", want chrooted /"+dir)))
	}
	if err := c.ChangeDirToParent(); err != nil {
		fail("CDUP", err)
	}
	if err := c.RemoveDir(dir); err != nil {
		fail("RMD", err)
	}
	renamed := "renamed-" + name
	if err := c.Rename(name, renamed); err != nil {
		fail("RNFR/RNTO", err)
	}
	if _, err := os.Stat(filepath.Join(s.Root, renamed)); err != nil {
		fail("RNFR/RNTO", err)
	}
	if err := c.Delete(renamed); err != nil {
		fail("DELE", err)
	}
	if _, err := os.Stat(filepath.Join(s.Root, renamed)); !errors.Is(err, os.ErrNotExist) {
		fail("DELE", errors.New("file still in root"))
	}
	// A file the test puts into Root directly is the user's to read and delete.
	s.WriteFile(t, dir+"/seed.txt", []byte("seed"))
	if got := retr(t, c, dir+"/seed.txt", 0); string(got) != "seed" {
		fail("RETR of a file put into Root", errors.New("got "+strconv.Quote(string(got))))
	}
	if err := c.Delete(dir + "/seed.txt"); err != nil {
		fail("DELE of a file put into Root", err)
	}
	if err := c.RemoveDir(dir); err != nil {
		fail("RMD of a directory made by WriteFile", err)
	}
	if pasvOnly {
		logHasCommand(t, s, "PASV")
	} else {
		logHasCommand(t, s, "EPSV")
	}
}

func retr(t *testing.T, c *ftp.ServerConn, name string, offset uint64) []byte {
	t.Helper()
	r, err := c.RetrFrom(name, offset)
	if err != nil {
		t.Fatalf("RETR %s from %d: %v", name, offset, err)
	}
	b, err := io.ReadAll(r)
	if cerr := r.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("RETR %s from %d: %v", name, offset, err)
	}
	return b
}

// writeLocal writes 1 MiB of random data to a local file for the CLI clients.
func writeLocal(t *testing.T) (path, want string) {
	t.Helper()
	data, want := randomFile(t)
	path = filepath.Join(t.TempDir(), "local.bin")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, want
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sum(b)
}

func clientCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestCurl(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		start  startFunc
		o      Options
		active bool
	}{
		{"vsftpd/explicit-reuse/passive", StartVsftpd, Options{TLS: TLSExplicit, RequireReuse: true}, false},
		{"proftpd/explicit-reuse/passive", StartProFTPD, Options{TLS: TLSExplicit, RequireReuse: true}, false},
		{"proftpd/implicit-reuse/passive", StartProFTPD, Options{TLS: TLSImplicit, RequireReuse: true}, false},
		// curl 7.88 cannot do active mode over TLS.
		{"pure-ftpd/plain/active", StartPureFTPd, Options{}, true},
		{"vsftpd/plain/active", StartVsftpd, Options{}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := tc.start(t, tc.o)
			local, want := writeLocal(t)
			scheme := "ftp://"
			common := []string{"-u", User + ":" + Password, "--max-time", "30"}
			switch tc.o.TLS {
			case TLSExplicit:
				common = append(common, "--ssl-reqd", "--cacert", s.CertFile)
			case TLSImplicit:
				scheme = "ftps://"
				common = append(common, "--cacert", s.CertFile)
			}
			if tc.active {
				common = append(common, "--ftp-port", "127.0.0.1")
			}
			url := scheme + s.Addr + "/"
			ctx := clientCtx(t)
			if out, err := Curl(ctx, append(common, "-T", local, url+"curl.bin")...); err != nil {
				t.Fatalf("upload: %v\n%s\n%s", err, out, s.Log())
			}
			checkRoot(t, s, "curl.bin", want)
			down := filepath.Join(t.TempDir(), "down.bin")
			if out, err := Curl(ctx, append(common, "-o", down, url+"curl.bin")...); err != nil {
				t.Fatalf("download: %v\n%s\n%s", err, out, s.Log())
			}
			if got := fileSum(t, down); got != want {
				t.Fatalf("downloaded sha256 %s, want %s", got, want)
			}
			// LIST, then MKD/RMD, RNFR/RNTO and DELE as quote commands.
			out, err := Curl(ctx, append(common, url)...)
			if err != nil || !strings.Contains(out, "curl.bin") {
				t.Fatalf("LIST: %v\n%s\n%s", err, out, s.Log())
			}
			if out, err := Curl(ctx, append(common, "-Q", "MKD d", "-Q", "RMD d", "-Q", "RNFR curl.bin",
				"-Q", "RNTO moved.bin", "-Q", "DELE moved.bin", url)...); err != nil {
				t.Fatalf("quote commands: %v\n%s\n%s", err, out, s.Log())
			}
			if _, err := os.Stat(filepath.Join(s.Root, "curl.bin")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("curl.bin still in root after RNFR/DELE")
			}
			if tc.active {
				logHasCommand(t, s, "EPRT", "PORT")
			} else {
				logHasCommand(t, s, "EPSV", "PASV")
			}
		})
	}
}

func TestLftp(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		start  startFunc
		o      Options
		active bool
	}{
		{"vsftpd/explicit-reuse/passive", StartVsftpd, Options{TLS: TLSExplicit, RequireReuse: true}, false},
		{"proftpd/explicit-reuse/passive", StartProFTPD, Options{TLS: TLSExplicit, RequireReuse: true}, false},
		{"vsftpd/explicit-reuse/active", StartVsftpd, Options{TLS: TLSExplicit, RequireReuse: true}, true},
		{"proftpd/explicit-reuse/active", StartProFTPD, Options{TLS: TLSExplicit, RequireReuse: true}, true},
		{"vsftpd/implicit-reuse/passive", StartVsftpd, Options{TLS: TLSImplicit, RequireReuse: true}, false},
		{"pure-ftpd/plain/active", StartPureFTPd, Options{}, true},
		{"pure-ftpd/explicit/passive", StartPureFTPd, Options{TLS: TLSExplicit}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := tc.start(t, tc.o)
			local, want := writeLocal(t)
			down := filepath.Join(t.TempDir(), "down.bin")
			var b strings.Builder
			url := "ftp://" + s.Addr
			switch tc.o.TLS {
			case TLSNone:
				b.WriteString("set ftp:ssl-allow no\n")
			case TLSExplicit:
				b.WriteString("set ftp:ssl-force yes\nset ftp:ssl-protect-data yes\nset ssl:ca-file " + s.CertFile + "\n")
			case TLSImplicit:
				url = "ftps://" + s.Addr
				b.WriteString("set ftp:ssl-protect-data yes\nset ssl:ca-file " + s.CertFile + "\n")
			}
			b.WriteString("set ftp:passive-mode " + map[bool]string{true: "no", false: "yes"}[tc.active] + "\n")
			b.WriteString("open -u " + User + "," + Password + " " + url + "\n")
			prelude := b.String()
			script := prelude + "put " + local + " -o lftp.bin\n" +
				"get lftp.bin -o " + down + "\n" +
				"cls -l\nmkdir d\nrmdir d\nmv lftp.bin moved.bin\n" +
				"quote SIZE moved.bin\nquote MDTM moved.bin\n"
			out, err := Lftp(clientCtx(t), script)
			if err != nil {
				t.Fatalf("lftp: %v\n%s\n%s", err, out, s.Log())
			}
			if !strings.Contains(out, "lftp.bin") || !strings.Contains(out, "213 "+strconv.Itoa(fileSize)) {
				t.Errorf("lftp output lacks the listing or the SIZE reply:\n%s", out)
			}
			checkRoot(t, s, "moved.bin", want)
			if got := fileSum(t, down); got != want {
				t.Fatalf("downloaded sha256 %s, want %s", got, want)
			}
			if out, err := Lftp(clientCtx(t), prelude+"rm moved.bin\n"); err != nil {
				t.Fatalf("lftp rm: %v\n%s\n%s", err, out, s.Log())
			}
			if _, err := os.Stat(filepath.Join(s.Root, "moved.bin")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("moved.bin still in root after DELE")
			}
			if tc.active {
				logHasCommand(t, s, "EPRT", "PORT")
			} else {
				logHasCommand(t, s, "EPSV", "PASV")
			}
		})
	}
}

// pythonClient uploads, downloads, lists, and renames with ftplib.
// argv: host port tls(none|explicit|reuse) active(0|1) cafile local down
const pythonClient = PythonFTPTLSReuse + `
import ftplib, io, ssl, sys
host, port, mode, active, cafile, local, down = sys.argv[1:8]
if mode == "none":
    f = ftplib.FTP()
else:
    ctx = ssl.create_default_context(cafile=cafile)
    f = (ReuseFTP_TLS if mode == "reuse" else ftplib.FTP_TLS)(context=ctx)
f.connect(host, int(port), timeout=20)
f.login("` + User + `", "` + Password + `")
if mode != "none":
    f.prot_p()
f.set_pasv(active != "1")
with open(local, "rb") as fp:
    print(f.storbinary("STOR py.bin", fp))
with open(down, "wb") as fp:
    print(f.retrbinary("RETR py.bin", fp.write))
print("SIZE", f.size("py.bin"))
print(f.sendcmd("MDTM py.bin"))
lines = []
f.retrlines("LIST", lines.append)
assert any("py.bin" in l for l in lines), lines
print(f.mkd("d")); print(f.rmd("d"))
print(f.rename("py.bin", "moved.bin"))
print(f.storbinary("STOR tmp.bin", io.BytesIO(b"x")))
print(f.delete("tmp.bin"))
print(f.quit())
`

func TestPython(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		start  startFunc
		o      Options
		mode   string
		active bool
	}{
		{"pure-ftpd/explicit/passive", StartPureFTPd, Options{TLS: TLSExplicit}, "explicit", false},
		{"vsftpd/plain/active", StartVsftpd, Options{}, "none", true},
		{"proftpd/explicit/active", StartProFTPD, Options{TLS: TLSExplicit}, "explicit", true},
		{"proftpd/explicit-reuse/passive", StartProFTPD, Options{TLS: TLSExplicit, RequireReuse: true}, "reuse", false},
		{"vsftpd/explicit-reuse/passive", StartVsftpd, Options{TLS: TLSExplicit, RequireReuse: true}, "reuse", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := tc.start(t, tc.o)
			local, want := writeLocal(t)
			down := filepath.Join(t.TempDir(), "down.bin")
			host, port, _ := strings.Cut(s.Addr, ":")
			active := map[bool]string{true: "1", false: "0"}[tc.active]
			out, err := Python(clientCtx(t), pythonClient, host, port, tc.mode, active, s.CertFile, local, down)
			if err != nil {
				t.Fatalf("python: %v\n%s\n%s", err, out, s.Log())
			}
			if !strings.Contains(out, "SIZE "+strconv.Itoa(fileSize)) {
				t.Errorf("no SIZE in output:\n%s", out)
			}
			checkRoot(t, s, "moved.bin", want)
			if _, err := os.Stat(filepath.Join(s.Root, "tmp.bin")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("tmp.bin still in root after DELE")
			}
			if got := fileSum(t, down); got != want {
				t.Fatalf("downloaded sha256 %s, want %s", got, want)
			}
			if tc.active {
				logHasCommand(t, s, "EPRT", "PORT")
			} else {
				logHasCommand(t, s, "EPSV", "PASV")
			}
		})
	}
}

// TestStartFailures checks the failure paths that tests elsewhere rely on.
func TestStartFailures(t *testing.T) {
	t.Parallel()
	t.Run("implicit pure-ftpd", func(t *testing.T) {
		f := &fakeTB{TB: t}
		runFatal(f, func() { StartPureFTPd(f, Options{TLS: TLSImplicit}) })
		if !strings.Contains(f.msg, "unsupported") {
			t.Errorf("got %q", f.msg)
		}
	})
	t.Run("missing binary", func(t *testing.T) {
		f := &fakeTB{TB: t}
		runFatal(f, func() { needBinary(f, "/nonexistent/vsftpd") })
		if !strings.Contains(f.msg, InstallScript) {
			t.Errorf("message does not name the install script: %q", f.msg)
		}
	})
	t.Run("port taken", func(t *testing.T) {
		busy := FreePort(t)
		ln, err := listenTCP(busy)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go closeAll(ln) // the greeting probe then fails at once
		f := &fakeTB{TB: t}
		runFatal(f, func() { StartProFTPD(f, Options{Addr: "127.0.0.1:" + strconv.Itoa(busy)}) })
		if !strings.Contains(f.msg, "did not start") || !strings.Contains(f.msg, "==>") {
			t.Errorf("message lacks the reason or the server log: %s", f.msg)
		}
	})
}

// fakeTB records a Fatalf and unwinds to runFatal.
type fakeTB struct {
	testing.TB
	msg string
}

type fatalPanic struct{}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic(fatalPanic{})
}

func (f *fakeTB) Fatal(args ...any) {
	f.msg = fmt.Sprint(args...)
	panic(fatalPanic{})
}

func runFatal(f *fakeTB, fn func()) {
	f.TB.Helper()
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(fatalPanic); !ok {
				panic(r)
			}
		}
	}()
	fn()
	f.TB.Fatalf("expected a Fatalf")
}

func listenTCP(port int) (net.Listener, error) {
	return net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
}

func closeAll(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

// rawConn is a minimal control connection for checks the clients hide.
type rawConn struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	c := &rawConn{t: t, conn: conn, r: bufio.NewReader(conn)}
	c.expect("220")
	return c
}

// expect reads one reply, multi-line ones ("123-" ... "123 ") whole, and
// checks its code.
func (c *rawConn) expect(code string) string {
	c.t.Helper()
	var all strings.Builder
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("reading reply: %v (so far %q)", err, all.String())
		}
		all.WriteString(line)
		first := all.String()
		if len(first) < 4 || first[3] != '-' || strings.HasPrefix(line, first[:3]+" ") {
			break
		}
	}
	if !strings.HasPrefix(all.String(), code) {
		c.t.Fatalf("got reply %q, want %s", all.String(), code)
	}
	return all.String()
}

func (c *rawConn) cmd(line, code string) string {
	c.t.Helper()
	if _, err := c.conn.Write([]byte(line + "\r\n")); err != nil {
		c.t.Fatal(err)
	}
	return c.expect(code)
}

// startTLS upgrades after AUTH TLS and returns the negotiated version.
func (c *rawConn) startTLS(cfg *tls.Config) uint16 {
	c.t.Helper()
	c.cmd("AUTH TLS", "234")
	tc := tls.Client(c.conn, cfg)
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("handshake: %v", err)
	}
	c.conn, c.r = tc, bufio.NewReader(tc)
	return tc.ConnectionState().Version
}

func TestTLSVersions(t *testing.T) {
	t.Parallel()
	for _, srv := range servers {
		for _, capped := range []bool{false, true} {
			t.Run(srv.name+"/max12="+strconv.FormatBool(capped), func(t *testing.T) {
				t.Parallel()
				s := srv.start(t, Options{TLS: TLSExplicit, MaxTLS12: capped})
				want := uint16(tls.VersionTLS13)
				if capped || s.Name == "vsftpd" {
					want = tls.VersionTLS12
				}
				c := dialRaw(t, s.Addr)
				if got := c.startTLS(s.ClientTLSConfig(t)); got != want {
					t.Errorf("%s: negotiated %s, want %s", s.Name, tls.VersionName(got), tls.VersionName(want))
				}
				c.cmd("USER "+User, "331")
				c.cmd("PASS "+Password, "230")
			})
		}
	}
}

func TestPasvAddress(t *testing.T) {
	t.Parallel()
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			t.Parallel()
			s := srv.start(t, Options{PasvAddress: "127.0.0.2", PasvPorts: FreePortRange(t, 10)})
			c := dialRaw(t, s.Addr)
			c.cmd("USER "+User, "331")
			c.cmd("PASS "+Password, "230")
			reply := c.cmd("PASV", "227")
			m := regexp.MustCompile(`(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)`).FindStringSubmatch(reply)
			if m == nil || strings.Join(m[1:5], ".") != "127.0.0.2" {
				t.Fatalf("%s: 227 %q does not announce 127.0.0.2\n%s", s.Name, reply, s.Log())
			}
			hi, _ := strconv.Atoi(m[5])
			lo, _ := strconv.Atoi(m[6])
			if p := hi*256 + lo; p < s.PasvPorts[0] || p > s.PasvPorts[1] {
				t.Errorf("%s: passive port %d outside %v", s.Name, p, s.PasvPorts)
			}
		})
	}
}

func TestIPv6Loopback(t *testing.T) {
	t.Parallel()
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			t.Parallel()
			s := srv.start(t, Options{Addr: "[::1]:0"})
			if !strings.HasPrefix(s.Addr, "[::1]:") {
				t.Fatalf("Addr %q", s.Addr)
			}
			c := dialGo(t, s, Options{}, false)
			if err := c.Stor("v6.bin", strings.NewReader("over IPv6")); err != nil {
				t.Fatalf("%s: STOR over IPv6: %v\n%s", s.Name, err, s.Log())
			}
			checkRoot(t, s, "v6.bin", sum([]byte("over IPv6")))
		})
	}
}

// TestStopEndsSessions: Stop ends a server's session processes too, a frozen one included
// (vsftpd's call setsid, so its process group does not hold them): none is left behind, and
// a logged-in client sees its control connection end.
func TestStopEndsSessions(t *testing.T) {
	for _, sv := range servers {
		t.Run(sv.name, func(t *testing.T) {
			s := sv.start(t, Options{})
			leader := s.proc.cmd.Process.Pid
			c, err := net.DialTimeout("tcp", s.Addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			r := bufio.NewReader(c)
			expect := func(code string) {
				t.Helper()
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						t.Fatalf("waiting for %s: %v", code, err)
					}
					if strings.HasPrefix(line, code+" ") {
						return
					}
				}
			}
			expect("220")
			fmt.Fprintf(c, "USER %s\r\n", User)
			expect("331")
			fmt.Fprintf(c, "PASS %s\r\n", Password)
			expect("230")
			pids, err := descendants(leader)
			if err != nil {
				t.Fatal(err)
			}
			if len(pids) < 2 {
				t.Fatalf("no session process below %d: %v", leader, pids)
			}
			if err := s.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			s.Stop()
			for _, pid := range pids {
				// A zombie (reaped by nobody in a container) is gone as far as a test goes.
				if !processGone(pid) {
					st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
					t.Errorf("process %d still runs after Stop: %s", pid, st)
				}
			}
			if _, err := r.ReadString('\n'); err == nil {
				t.Error("the control connection still answers after Stop")
			}
		})
	}
}

// TestFreePortsAvoidDefaultDataRange: no port or range handed out falls in the proxy's default
// passive range, which a config that keeps it refuses for a listener (a test that drew such a
// port failed about once in 23).
func TestFreePortsAvoidDefaultDataRange(t *testing.T) {
	for range 500 {
		r := FreePortRange(t, 3)
		if r[1] >= defaultDataPorts[0] && r[0] <= defaultDataPorts[1] {
			t.Fatalf("FreePortRange gave %d-%d, inside the default data range %d-%d", r[0], r[1], defaultDataPorts[0], defaultDataPorts[1])
		}
	}
}
