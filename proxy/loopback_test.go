package proxy_test

import (
	"bytes"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/internal/demoftp"
	"github.com/ftpsproxy/ftpsproxy/proxy"
	"github.com/jlaffaye/ftp"
)

// TestLoopbackTransfers proves the core path with a Go client and an in-process backend:
// login, directory commands, upload and download in EPSV and PASV with sha256 compared, REST
// resume and APPE, in both backend data modes.
func TestLoopbackTransfers(t *testing.T) {
	for _, mode := range []balancer.DataMode{balancer.DataPassive, balancer.DataActive} {
		for _, epsv := range []bool{true, false} {
			name := mode.String() + "/epsv"
			if !epsv {
				name = mode.String() + "/pasv"
			}
			t.Run(name, func(t *testing.T) {
				be := startBackend(t, nil)
				bc := plainBackend(be.addr)
				bc.DataMode = mode
				p := startProxy(t, []balancer.BackendConfig{bc})
				c := goClient(t, p.addr, ftp.DialWithDisabledEPSV(!epsv))

				src, want := randomFile(t, t.TempDir(), 3<<20+17)
				data, _ := os.ReadFile(src)
				if err := c.MakeDir("dir"); err != nil {
					t.Fatal(err)
				}
				if err := c.ChangeDir("dir"); err != nil {
					t.Fatal(err)
				}
				if dir, err := c.CurrentDir(); err != nil || dir != "/dir" {
					t.Fatalf("PWD = %q, %v", dir, err)
				}
				if err := c.Stor("f.bin", bytes.NewReader(data)); err != nil {
					t.Fatal(err)
				}
				if got := fileSHA(t, filepath.Join(be.root, "dir", "f.bin")); got != want {
					t.Fatalf("uploaded sha256 %s, want %s", got, want)
				}
				r, err := c.Retr("f.bin")
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(r)
				r.Close()
				if err != nil || sha(got) != want {
					t.Fatalf("download: %d bytes, err %v, sha mismatch %v", len(got), err, sha(got) != want)
				}
				// Resume a download from an offset.
				r, err = c.RetrFrom("f.bin", 1000)
				if err != nil {
					t.Fatal(err)
				}
				tail, _ := io.ReadAll(r)
				r.Close()
				if sha(tail) != sha(data[1000:]) {
					t.Fatal("REST+RETR returned the wrong bytes")
				}
				// Upload in two halves with APPE.
				half := len(data) / 2
				if err := c.Stor("g.bin", bytes.NewReader(data[:half])); err != nil {
					t.Fatal(err)
				}
				if err := c.Append("g.bin", bytes.NewReader(data[half:])); err != nil {
					t.Fatal(err)
				}
				if got := fileSHA(t, filepath.Join(be.root, "dir", "g.bin")); got != want {
					t.Fatal("APPE result differs")
				}
				if size, err := c.FileSize("g.bin"); err != nil || size != int64(len(data)) {
					t.Fatalf("SIZE = %d, %v", size, err)
				}
				entries, err := c.List("")
				if err != nil || len(entries) != 2 {
					t.Fatalf("LIST: %d entries, %v", len(entries), err)
				}
				names, err := c.NameList("")
				if err != nil || len(names) != 2 {
					t.Fatalf("NLST: %v, %v", names, err)
				}
				if err := c.Rename("g.bin", "h.bin"); err != nil {
					t.Fatal(err)
				}
				if err := c.Delete("h.bin"); err != nil {
					t.Fatal(err)
				}
				if err := c.Delete("f.bin"); err != nil {
					t.Fatal(err)
				}
				if err := c.ChangeDirToParent(); err != nil {
					t.Fatal(err)
				}
				if err := c.RemoveDir("dir"); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// TestLoginFailureSameReply checks that a wrong user and a wrong password get the same 530 and
// that the session may log in afterwards.
func TestLoginFailureSameReply(t *testing.T) {
	be := startBackend(t, nil)
	p := startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)})
	rc := dialRaw(t, p.addr)
	rc.cmd("USER nobody", 331)
	a := rc.cmd("PASS whatever", 530)
	rc.cmd("USER "+demoUser, 331)
	b := rc.cmd("PASS wrong", 530)
	if a != b || a != "530 Login incorrect." {
		t.Fatalf("replies differ: %q vs %q", a, b)
	}
	rc.login()
	rc.cmd("PWD", 257)
	if strings.Contains(p.logs.String(), "wrong") || strings.Contains(p.logs.String(), demoPass) {
		t.Fatal("a password reached the logs")
	}
}

// TestBadInputBeforeAndAfterLogin sends hostile lines and checks each gets its 500-class reply
// while the session goes on.
func TestBadInputBeforeAndAfterLogin(t *testing.T) {
	be := startBackend(t, nil)
	p := startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)})
	rc := dialRaw(t, p.addr)
	rc.cmd("PWD", 530)
	rc.cmd("RETR x", 530)
	rc.send(strings.Repeat("A", 5000) + "\r\n")
	rc.expect(500)
	rc.send("NOOP\n")
	rc.expect(500)
	rc.send("NO\x00OP\r\n")
	rc.expect(500)
	rc.send("US\rER x\r\n")
	rc.expect(500)
	rc.login()
	rc.send("MKD a\x00b\r\n")
	rc.expect(500)
	rc.send("MKD a\rb\r\n")
	rc.expect(500)
	rc.send("MKD " + strings.Repeat("x", 4100) + "\r\n")
	rc.expect(500)
	rc.send("MKD abc\n")
	rc.expect(500)
	rc.cmd("PORT 127,0,0,1,0,21", 501)
	rc.cmd("PORT 10,1,2,3,100,100", 501)
	rc.cmd("EPRT |1|10.1.2.3|5000|", 501)
	rc.cmd("EPRT |3|x|5000|", 522)
	rc.cmd("PORT 1,2,3", 501)
	rc.cmd("RETR nothing", 425)
	rc.cmd("PWD", 257)
	entries, err := os.ReadDir(be.root)
	if err != nil || len(entries) != 0 {
		t.Fatalf("something reached the backend: %v %v", entries, err)
	}
}

// TestForeignDataPeer connects to the passive port from 127.0.0.2 first: that connection is
// closed, the proxy keeps waiting, and the real client's connection then works.
func TestForeignDataPeer(t *testing.T) {
	be := startBackend(t, nil)
	os.WriteFile(filepath.Join(be.root, "x"), []byte("hello"), 0o644)
	p := startProxy(t, []balancer.BackendConfig{plainBackend(be.addr)})
	rc := dialRaw(t, p.addr)
	rc.login()
	line := rc.cmd("EPSV", 229)
	port := line[strings.Index(line, "|||")+3 : strings.LastIndex(line, "|")]
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	bad, err := d.Dial("tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatal(err)
	}
	bad.SetReadDeadline(time.Now().Add(3 * time.Second))
	if n, err := bad.Read(make([]byte, 1)); err == nil {
		t.Fatalf("foreign peer read %d bytes", n)
	}
	good, err := net.Dial("tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatal(err)
	}
	rc.send("RETR x\r\n")
	rc.expect(150)
	got, _ := io.ReadAll(good)
	rc.expect(226)
	if string(got) != "hello" {
		t.Fatalf("got %q", got)
	}
	waitFor(t, 2*time.Second, func() bool { return p.srv.Foreign.Load() == 1 })
}

// TestFixPasvAddress: a backend behind NAT announces an address the proxy cannot reach; with
// fix_pasv_address the proxy dials the backend's control IP with the announced port.
func TestFixPasvAddress(t *testing.T) {
	be := startBackend(t, func(c *demoftp.Config) { c.PublicHost = "10.255.255.1" })
	os.WriteFile(filepath.Join(be.root, "f"), []byte("through NAT"), 0o644)
	for _, fix := range []bool{true, false} {
		bc := plainBackend(be.addr)
		bc.FixPasvAddress = fix
		p := startProxy(t, []balancer.BackendConfig{bc}, func(c *proxy.Config, _ *balancer.PoolConfig) {
			c.Data.ConnectTimeout = 500 * time.Millisecond
		})
		c := goClient(t, p.addr)
		r, err := c.Retr("f")
		if !fix {
			if err == nil {
				r.Close()
				t.Fatal("dialled the announced private address")
			}
			if !strings.HasPrefix(err.Error(), "425") {
				t.Fatalf("want 425, got %v", err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r)
		r.Close()
		if string(b) != "through NAT" {
			t.Fatalf("got %q", b)
		}
	}
}
