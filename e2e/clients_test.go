package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/internal/peers"
	"github.com/jlaffaye/ftp"
)

// target is what a client suite talks to: the proxy, and the real server's root behind it
// for checking files at rest.
type target struct {
	addr     string // proxy host:port
	root     string // backend's root directory
	hasMLSD  bool
	tls      string      // none | explicit | implicit (the client's side)
	caFile   string      // proxy certificate, for TLS clients
	tlsConf  *tls.Config // Go client TLS config
	fileSize int
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return c
}

// goSuite runs every operation with the Go client (passive only: EPSV or PASV).
func goSuite(t *testing.T, tg target, epsv bool) {
	opts := []ftp.DialOption{ftp.DialWithTimeout(30 * time.Second), ftp.DialWithDisabledEPSV(!epsv), ftp.DialWithTrustPasvIP(true)}
	switch tg.tls {
	case "explicit":
		opts = append(opts, ftp.DialWithExplicitTLS(tg.tlsConf))
	case "implicit":
		opts = append(opts, ftp.DialWithTLS(tg.tlsConf))
	}
	c, err := ftp.Dial(tg.addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Quit()
	must := func(err error, what string) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	must(c.Login(peers.User, peers.Password), "login")
	_, data := randomData(t, t.TempDir(), "src", tg.fileSize)
	dir := "god" + map[bool]string{true: "-epsv", false: "-pasv"}[epsv]
	must(c.MakeDir(dir), "MKD")
	must(c.ChangeDir(dir), "CWD")
	if pwd, err := c.CurrentDir(); err != nil || pwd != "/"+dir {
		t.Fatalf("PWD %q %v", pwd, err)
	}
	must(c.Stor("up.bin", bytes.NewReader(data)), "STOR")
	if got := fileSum(t, filepath.Join(tg.root, dir, "up.bin")); got != sum(data) {
		t.Fatal("uploaded file differs at rest")
	}
	r, err := c.Retr("up.bin")
	must(err, "RETR")
	got, err := io.ReadAll(r)
	must(err, "RETR read")
	must(r.Close(), "RETR reply")
	if sum(got) != sum(data) {
		t.Fatal("download differs")
	}
	r, err = c.RetrFrom("up.bin", 12345)
	must(err, "REST+RETR")
	got, _ = io.ReadAll(r)
	must(r.Close(), "REST+RETR reply")
	if sum(got) != sum(data[12345:]) {
		t.Fatal("REST+RETR differs")
	}
	half := len(data) / 2
	must(c.Stor("part.bin", bytes.NewReader(data[:half])), "STOR half")
	must(c.StorFrom("part.bin", bytes.NewReader(data[half:]), uint64(half)), "REST+STOR")
	if got := fileSum(t, filepath.Join(tg.root, dir, "part.bin")); got != sum(data) {
		t.Fatal("REST+STOR result differs")
	}
	must(c.Stor("app.bin", bytes.NewReader(data[:half])), "STOR half")
	must(c.Append("app.bin", bytes.NewReader(data[half:])), "APPE")
	if got := fileSum(t, filepath.Join(tg.root, dir, "app.bin")); got != sum(data) {
		t.Fatal("APPE result differs")
	}
	if n, err := c.FileSize("up.bin"); err != nil || n != int64(len(data)) {
		t.Fatalf("SIZE %d %v", n, err)
	}
	if mt, err := c.GetTime("up.bin"); err != nil || time.Since(mt) > time.Hour {
		t.Fatalf("MDTM %v %v", mt, err)
	}
	names, err := c.NameList("")
	must(err, "NLST")
	names = dropDots(names)
	if len(names) != 3 {
		t.Fatalf("NLST %v", names)
	}
	entries, err := c.List("") // MLSD when the server has it (FEAT relayed), else LIST
	must(err, "LIST/MLSD")
	if len(entries) < 3 {
		t.Fatalf("LIST %d entries", len(entries))
	}
	must(c.Rename("app.bin", "renamed.bin"), "RNFR/RNTO")
	for _, f := range []string{"renamed.bin", "part.bin", "up.bin"} {
		must(c.Delete(f), "DELE "+f)
	}
	must(c.ChangeDirToParent(), "CDUP")
	must(c.RemoveDir(dir), "RMD")
}

// curlSuite runs the operations curl can do. mode: pasv (227 address trusted), epsv, port.
func curlSuite(t *testing.T, tg target, mode string) {
	base := []string{"--user", peers.User + ":" + peers.Password, "--max-time", "120"}
	switch mode {
	case "pasv":
		base = append(base, "--disable-epsv", "--no-ftp-skip-pasv-ip")
	case "port":
		base = append(base, "--ftp-port", "127.0.0.1", "--disable-eprt")
	case "eprt":
		base = append(base, "--ftp-port", "127.0.0.1")
	}
	scheme := "ftp"
	switch tg.tls {
	case "explicit":
		base = append(base, "--ssl-reqd", "--cacert", tg.caFile)
	case "implicit":
		scheme = "ftps"
		base = append(base, "--cacert", tg.caFile)
	}
	url := scheme + "://" + tg.addr + "/"
	d := "cud-" + mode
	run := func(args ...string) string {
		t.Helper()
		out, err := peers.Curl(ctx(t), append(append([]string{}, base...), args...)...)
		if err != nil {
			t.Fatalf("curl %v: %v\n%s", args, err, out)
		}
		return out
	}
	tmp := t.TempDir()
	src, data := randomData(t, tmp, "src", tg.fileSize)
	run("--ftp-create-dirs", "-T", src, url+d+"/up.bin")
	if got := fileSum(t, filepath.Join(tg.root, d, "up.bin")); got != sum(data) {
		t.Fatal("curl upload differs at rest")
	}
	dst := filepath.Join(tmp, "down")
	run("-o", dst, url+d+"/up.bin")
	if fileSum(t, dst) != sum(data) {
		t.Fatal("curl download differs")
	}
	// Resume a download (REST + RETR).
	os.WriteFile(dst, data[:len(data)/3], 0o644)
	run("-C", "-", "-o", dst, url+d+"/up.bin")
	if fileSum(t, dst) != sum(data) {
		t.Fatal("curl resumed download differs")
	}
	// Append (APPE).
	half := len(data) / 2
	os.WriteFile(filepath.Join(tmp, "a"), data[:half], 0o644)
	os.WriteFile(filepath.Join(tmp, "b"), data[half:], 0o644)
	run("-T", filepath.Join(tmp, "a"), url+d+"/app.bin")
	run("--append", "-T", filepath.Join(tmp, "b"), url+d+"/app.bin")
	if got := fileSum(t, filepath.Join(tg.root, d, "app.bin")); got != sum(data) {
		t.Fatal("curl APPE result differs")
	}
	if l := run(url + d + "/"); !strings.Contains(l, "up.bin") || !strings.Contains(l, "app.bin") {
		t.Fatalf("LIST: %q", l)
	}
	if l := run("--list-only", url+d+"/"); !strings.Contains(l, "up.bin") {
		t.Fatalf("NLST: %q", l)
	}
	head := run("-I", url+d+"/up.bin") // SIZE and MDTM
	if !strings.Contains(head, fmt.Sprintf("Content-Length: %d", len(data))) || !strings.Contains(head, "Last-Modified:") {
		t.Fatalf("curl -I: %q", head)
	}
	run("-o", os.DevNull, "-Q", "RNFR "+d+"/app.bin", "-Q", "RNTO "+d+"/ren.bin", "-Q", "DELE "+d+"/ren.bin", "-Q", "DELE "+d+"/up.bin", "-Q", "RMD "+d, url)
	if _, err := os.Stat(filepath.Join(tg.root, d)); !os.IsNotExist(err) {
		t.Fatalf("cleanup through RNFR/RNTO/DELE/RMD failed: %v", err)
	}
}

// lftpSuite runs the operations with lftp. mode: epsv, pasv (227 address trusted), port.
func lftpSuite(t *testing.T, tg target, mode string) {
	tmp := t.TempDir()
	src, data := randomData(t, tmp, "src", tg.fileSize)
	dst := filepath.Join(tmp, "down")
	var s strings.Builder
	switch mode {
	case "epsv":
		s.WriteString("set ftp:passive-mode on\nset ftp:prefer-epsv yes\n")
	case "pasv":
		s.WriteString("set ftp:passive-mode on\nset ftp:prefer-epsv no\nset ftp:fix-pasv-address no\n")
	case "port":
		s.WriteString("set ftp:passive-mode off\nset ftp:port-ipv4 127.0.0.1\n")
	}
	url := "ftp://" + tg.addr
	switch tg.tls {
	case "none":
		s.WriteString("set ftp:ssl-allow no\n")
	case "explicit":
		s.WriteString("set ftp:ssl-force yes\nset ftp:ssl-protect-data yes\nset ftp:ssl-protect-list yes\n")
		fmt.Fprintf(&s, "set ssl:ca-file %s\nset ssl:check-hostname no\n", tg.caFile)
	case "implicit":
		url = "ftps://" + tg.addr
		s.WriteString("set ftp:ssl-protect-data yes\nset ftp:ssl-protect-list yes\n")
		fmt.Fprintf(&s, "set ssl:ca-file %s\nset ssl:check-hostname no\n", tg.caFile)
	}
	fmt.Fprintf(&s, "open -u %s,%s %s\n", peers.User, peers.Password, url)
	ld := "lfd-" + mode
	fmt.Fprintf(&s, "mkdir %[3]s\ncd %[3]s\nput %[1]s -o up.bin\nget up.bin -o %[2]s\ncls -l\nls\nmv up.bin moved.bin\n", src, dst, ld)
	if tg.hasMLSD {
		s.WriteString("set ftp:use-mlsd yes\ncls -l\n")
	}
	fmt.Fprintf(&s, "quote SIZE moved.bin\nquote MDTM moved.bin\n")
	out, err := peers.Lftp(ctx(t), s.String())
	if err != nil {
		t.Fatalf("lftp: %v\n%s", err, out)
	}
	if fileSum(t, dst) != sum(data) {
		t.Fatal("lftp download differs")
	}
	if got := fileSum(t, filepath.Join(tg.root, ld, "moved.bin")); got != sum(data) {
		t.Fatal("lftp upload differs at rest")
	}
	if !strings.Contains(out, fmt.Sprintf("213 %d", len(data))) {
		t.Fatalf("lftp SIZE missing: %s", out)
	}
	// Resume the download (get -c: REST + RETR), then clean up.
	os.WriteFile(dst, data[:len(data)/4], 0o644)
	var r strings.Builder
	r.WriteString(s.String()[:strings.Index(s.String(), "mkdir "+ld)])
	fmt.Fprintf(&r, "cd %[2]s\nget -c moved.bin -o %[1]s\nrm moved.bin\ncd ..\nrmdir %[2]s\n", dst, ld)
	out, err = peers.Lftp(ctx(t), r.String())
	if err != nil {
		t.Fatalf("lftp resume: %v\n%s", err, out)
	}
	if fileSum(t, dst) != sum(data) {
		t.Fatal("lftp resumed download differs")
	}
	if _, err := os.Stat(filepath.Join(tg.root, ld)); !os.IsNotExist(err) {
		t.Fatalf("lftp cleanup failed: %v", err)
	}
}

// ftplibSuite runs suite.py. mode: pasv (227 address trusted), epsv, port.
func ftplibSuite(t *testing.T, tg target, mode string) {
	src, data := randomData(t, t.TempDir(), "src", tg.fileSize)
	host, port, _ := strings.Cut(tg.addr, ":")
	script, err := os.ReadFile("suite.py")
	if err != nil {
		t.Fatal(err)
	}
	mlsd := "0"
	if tg.hasMLSD {
		mlsd = "1"
	}
	out, err := peers.Python(ctx(t), string(script), host, port, peers.User, peers.Password, mode, tg.tls, tg.caFile, src, mlsd)
	if err != nil {
		t.Fatalf("ftplib: %v\n%s", err, out)
	}
	var res struct {
		PWD      string   `json:"pwd"`
		Retr     string   `json:"retr"`
		RestRetr string   `json:"rest_retr"`
		Appe     string   `json:"appe"`
		Size     int      `json:"size"`
		MDTM     string   `json:"mdtm"`
		NLST     []string `json:"nlst"`
		List     int      `json:"list"`
		MLSD     []string `json:"mlsd"`
		Quit     string   `json:"quit"`
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Fatalf("ftplib output: %v\n%s", err, out)
	}
	if res.Retr != sum(data) || res.RestRetr != sum(data[1000:]) || res.Appe != sum(data) {
		t.Fatalf("ftplib transfers differ: %+v", res)
	}
	if res.PWD != "/pyd-"+mode || res.Size != len(data) || res.MDTM != "213" || len(res.NLST) != 2 || res.List != 2 || res.Quit != "221" {
		t.Fatalf("ftplib results: %+v", res)
	}
	if tg.hasMLSD && len(res.MLSD) != 2 {
		t.Fatalf("MLSD: %v", res.MLSD)
	}
}

// dropDots removes "." and ".." (pure-ftpd lists them in NLST).
func dropDots(names []string) []string {
	out := names[:0]
	for _, n := range names {
		if n != "." && n != ".." {
			out = append(out, n)
		}
	}
	return out
}
