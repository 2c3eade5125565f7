package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/internal/peers"
)

// rawLogin opens a logged-in control connection through addr.
func rawLogin(t *testing.T, addr string) (*textproto.Conn, net.Conn) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	tp := textproto.NewConn(c)
	if _, _, err := tp.ReadResponse(220); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		cmd  string
		code int
	}{{"USER " + peers.User, 331}, {"PASS " + peers.Password, 230}} {
		if _, err := tp.Cmd("%s", step.cmd); err != nil {
			t.Fatal(err)
		}
		if _, msg, err := tp.ReadResponse(step.code); err != nil {
			t.Fatalf("%s: %v %s", step.cmd, err, msg)
		}
	}
	return tp, c
}

// pasvPort sends PASV and returns the port of the 227 reply.
func pasvPort(t *testing.T, tp *textproto.Conn) int {
	t.Helper()
	if _, err := tp.Cmd("PASV"); err != nil {
		t.Fatal(err)
	}
	_, msg, err := tp.ReadResponse(227)
	if err != nil {
		t.Fatalf("PASV: %v", err)
	}
	open, end := strings.Index(msg, "("), strings.Index(msg, ")")
	f := strings.Split(msg[open+1:end], ",")
	p1, _ := strconv.Atoi(f[4])
	p2, _ := strconv.Atoi(f[5])
	return p1*256 + p2
}

func inRange(port int, r string) bool {
	lo, hi, _ := strings.Cut(r, "-")
	a, _ := strconv.Atoi(lo)
	b, _ := strconv.Atoi(hi)
	return port >= a && port <= b
}

// apiCall sends a request to the admin API and decodes the JSON answer into out (may be nil).
func apiCall(t *testing.T, method, url, token string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v in %q", method, url, err, b)
		}
	}
	return resp.StatusCode
}

// TestReloadAppliesKeys: a SIGHUP changes data.port_range (the next PASV, also in a session
// that was already running, leases from the new range while a transfer set up before keeps its
// port and finishes intact), [log] level and format, and the admin address (rebound); the log
// line names the changed keys.
func TestReloadAppliesKeys(t *testing.T) {
	v := peers.StartVsftpd(t, peers.Options{PasvPorts: peers.FreePortRange(t, 20)})
	_, data := randomData(t, t.TempDir(), "big", 8<<20)
	v.WriteFile(t, "big", data)
	listen, r1, r2, a1, a2 := freeAddr(t), freeRange(t, 10), freeRange(t, 10), freeAddr(t), freeAddr(t)
	backend := fmt.Sprintf("[[pool.backend]]\naddress = %q\n", v.Addr)
	cfg := func(r, adm, lvl, format string) string {
		return strings.Replace(identityConfig(listen, r, "0s", backend, fmt.Sprintf("format = %q\n[admin]\naddress = %q\n", format, adm)),
			`level = "debug"`, fmt.Sprintf("level = %q", lvl), 1)
	}
	p := startProxy(t, cfg(r1, a1, "info", "text"))

	tp, _ := rawLogin(t, p.addr)
	if port := pasvPort(t, tp); !inRange(port, r1) {
		t.Fatalf("PASV before the reload: port %d outside %s", port, r1)
	}
	// A download set up before the reload, read after it.
	c := login(t, p.addr)
	defer c.Quit()
	rd, head := startDownload(t, c, "big")

	reloadWith(t, p, cfg(r2, a2, "debug", "json"))
	waitLog(t, p, `"keys_changed":"data.port_range,log.level,log.format,admin.address"`)

	rest, err := io.ReadAll(rd)
	if err != nil || rd.Close() != nil || sum(append(head, rest...)) != sum(data) {
		t.Fatalf("download across the reload: %v, sha256 intact: %v", err, sum(append(head, rest...)) == sum(data))
	}
	if port := pasvPort(t, tp); !inRange(port, r2) {
		t.Fatalf("PASV after the reload in a running session: port %d outside the new range %s", port, r2)
	}
	tp2, _ := rawLogin(t, p.addr)
	if port := pasvPort(t, tp2); !inRange(port, r2) {
		t.Fatalf("PASV after the reload: port %d outside the new range %s", port, r2)
	}
	// The admin server moved.
	if code := healthz(t, a2, ""); code != 200 {
		t.Fatalf("/healthz on the new admin address: %d", code)
	}
	if _, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + a1 + "/healthz"); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("the old admin address: %v, want connection refused", err)
	}
	// JSON at debug level: session commands are logged as JSON records.
	if !strings.Contains(p.logs.String(), `"msg":"command"`) {
		t.Fatal("no JSON debug record after the reload")
	}
}

// TestDrainAndCloseByAPI: with a transfer running on backend A, draining A through the API
// lets the transfer finish intact while new sessions go to B; a session is closed through the
// API and its client gets "421 Session closed by administrator". Writes without the token are
// refused.
func TestDrainAndCloseByAPI(t *testing.T) {
	a := peers.StartVsftpd(t, peers.Options{PasvPorts: peers.FreePortRange(t, 20)})
	b := peers.StartPureFTPd(t, peers.Options{})
	_, data := randomData(t, t.TempDir(), "big", 16<<20)
	a.WriteFile(t, "big", data)
	a.WriteFile(t, "marker", []byte("a"))
	b.WriteFile(t, "marker", []byte("b"))
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte("tok-123\n"), 0o600)
	adm := freeAddr(t)
	backends := fmt.Sprintf("[[pool.backend]]\nname = \"a\"\naddress = %q\n[[pool.backend]]\nname = \"b\"\naddress = %q\n", a.Addr, b.Addr)
	cfg := identityConfig(freeAddr(t), freeRange(t, 40), "0s", backends,
		fmt.Sprintf("[admin]\naddress = %q\ntoken_file = %q\n", adm, tokenFile))
	p := startProxy(t, cfg)
	api := "http://" + adm + "/api/v1"

	// least_conn with both idle: the first session goes to a.
	c := login(t, p.addr)
	if w := whichBackend(t, c); w != "a" {
		t.Fatalf("first session on %q", w)
	}
	rd, head := startDownload(t, c, "big")
	if code := apiCall(t, "POST", api+"/backends/farm/a/drain", "", nil); code != 401 {
		t.Fatalf("drain without the token: %d", code)
	}
	var got struct{ State string }
	if code := apiCall(t, "POST", api+"/backends/farm/a/drain", "tok-123", &got); code != 200 || got.State != "draining" {
		t.Fatalf("drain: %d %+v", code, got)
	}
	reloadWith(t, p, cfg) // the administrator's setting survives a reload
	for i := range 4 {
		c2 := login(t, p.addr)
		if w := whichBackend(t, c2); w != "b" {
			t.Fatalf("new session %d on %q while a drains", i, w)
		}
		c2.Quit()
	}
	rest, err := io.ReadAll(rd)
	if err != nil || rd.Close() != nil || sum(append(head, rest...)) != sum(data) {
		t.Fatal("the transfer running during the drain did not finish intact")
	}
	var list []struct{ Name, State string }
	apiCall(t, "GET", api+"/backends", "", &list)
	if len(list) != 2 || list[0].Name != "a" || list[0].State != "draining" || list[1].State != "up" {
		t.Fatalf("backends: %+v", list)
	}

	// Close the running session through the API.
	var sessions []struct {
		ID, User, Backend, Command string
	}
	apiCall(t, "GET", api+"/sessions", "", &sessions)
	if len(sessions) != 1 || sessions[0].Backend != "a" || sessions[0].User != peers.User {
		t.Fatalf("sessions: %+v", sessions)
	}
	if code := apiCall(t, "POST", api+"/sessions/"+sessions[0].ID+"/close", "tok-123", nil); code != 200 {
		t.Fatalf("close: %d", code)
	}
	err = c.NoOp()
	if !is421(err, "Session closed by administrator") {
		t.Fatalf("after close by the API: %v", err)
	}
	// Once it has ended, the session is unknown: 404.
	waitFor(t, 5*time.Second, func() bool {
		return apiCall(t, "POST", api+"/sessions/"+sessions[0].ID+"/close", "tok-123", nil) == 404
	})
}

// TestReloadRemovedBackendFinishes: a backend removed by a reload while a download runs on it
// is listed as removed with its session until the download (intact) and the session end.
func TestReloadRemovedBackendFinishes(t *testing.T) {
	a := peers.StartVsftpd(t, peers.Options{PasvPorts: peers.FreePortRange(t, 20)})
	b := peers.StartPureFTPd(t, peers.Options{})
	_, data := randomData(t, t.TempDir(), "big", 8<<20)
	a.WriteFile(t, "big", data)
	a.WriteFile(t, "marker", []byte("a"))
	b.WriteFile(t, "marker", []byte("b"))
	listen, ports, adm := freeAddr(t), freeRange(t, 40), freeAddr(t)
	one := fmt.Sprintf("[[pool.backend]]\nname = \"a\"\naddress = %q\n", a.Addr)
	two := fmt.Sprintf("[[pool.backend]]\nname = \"b\"\naddress = %q\n", b.Addr)
	extra := fmt.Sprintf("[admin]\naddress = %q\n", adm)
	p := startProxy(t, identityConfig(listen, ports, "0s", one+two, extra))
	api := "http://" + adm + "/api/v1/backends"

	c := login(t, p.addr)
	if w := whichBackend(t, c); w != "a" {
		t.Fatalf("first session on %q", w)
	}
	rd, head := startDownload(t, c, "big")
	reloadWith(t, p, identityConfig(listen, ports, "0s", two, extra))
	waitLog(t, p, "backends_removed=farm/a")
	type backend struct {
		Name, State string
		Sessions    int
	}
	var list []backend
	apiCall(t, "GET", api, "", &list)
	if len(list) != 2 || list[1] != (backend{"a", "removed", 1}) {
		t.Fatalf("backends after removing a: %+v", list)
	}
	rest, err := io.ReadAll(rd)
	if err != nil || rd.Close() != nil || sum(append(head, rest...)) != sum(data) {
		t.Fatal("the download on the removed backend did not finish intact")
	}
	c.Quit()
	waitFor(t, 5*time.Second, func() bool {
		list = nil
		apiCall(t, "GET", api, "", &list)
		return len(list) == 1 && list[0].Name == "b"
	})
}
