package admin

import (
	"bytes"
	"context"
	"flag"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/proxy"
)

var updateScreenshot = flag.Bool("update-screenshot", false, "write the status page screenshot to ../docs/status-page.png")

// chromium returns Debian's chromium, installing the package when it is missing. The test
// fails, never skips, when it cannot be installed: the status page must be seen rendered.
func chromium(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	t.Log("chromium is missing: installing Debian's chromium package (this takes a while)")
	install := func(args ...string) {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Logf("apt-get %v: %v\n%s", args, err, lastBytes(out, 2000))
		}
	}
	install("install", "-y", "chromium")
	if _, err := exec.LookPath("chromium"); err != nil {
		install("update")
		install("install", "-y", "chromium")
	}
	p, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium cannot be installed (apt-get install -y chromium): %v", err)
	}
	return p
}

func lastBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// runChromium runs headless chromium on url with extra flags and returns its stdout.
func runChromium(t *testing.T, bin, url string, extra ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--hide-scrollbars", "--user-data-dir=" + t.TempDir(), "--window-size=1200,900",
	}, extra...)
	args = append(args, url)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\nstderr:\n%s", extra, err, lastBytes(stderr.Bytes(), 4000))
	}
	return stdout.Bytes()
}

// TestStatusPageChromium renders the status page in headless Chromium: the DOM must show every
// backend with its state, and the screenshot must be a full window with the UP and DOWN colours.
// With -update-screenshot it refreshes docs/status-page.png for the README.
func TestStatusPageChromium(t *testing.T) {
	bin := chromium(t)
	src := demoSource(t)
	m := NewMetrics()
	for _, c := range []proxy.Cause{proxy.CauseTooMany, proxy.CauseTimeout, proxy.CauseTimeout, proxy.CauseNoBackend,
		proxy.CauseTimeout, proxy.CauseBackend, proxy.CauseLoginRate} {
		m.Closed421(c)
	}
	s := startServer(t, src, m)
	url := "http://" + s.Addr().String() + "/"

	dom := runChromium(t, bin, url, "--dump-dom")
	rows := backendRows(t, string(dom))
	want := map[string]string{
		"10.0.0.11:21":        "UP",
		"10.0.0.12:21":        "DOWN",
		"10.0.0.13:21":        "UP",
		"ftp1.example.net:21": "UP",
		"[2001:db8::21]:2121": "DOWN",
	}
	for addr, state := range want {
		if rows[addr] != state {
			t.Errorf("rendered DOM: backend %s state %q, want %q", addr, rows[addr], state)
		}
	}
	if len(rows) != len(want) {
		t.Errorf("rendered DOM has %d backend rows, want %d: %v", len(rows), len(want), rows)
	}

	shot := filepath.Join(t.TempDir(), "status.png")
	runChromium(t, bin, url, "--screenshot="+shot)
	b, err := os.ReadFile(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	if got := img.Bounds().Size(); got != image.Pt(1200, 900) {
		t.Errorf("screenshot is %v, want 1200x900", got)
	}
	// The UP and DOWN badges and the header bar must be painted in their colours.
	for name, c := range map[string][3]uint32{"UP green": {0x2e, 0x9d, 0x4f}, "DOWN red": {0xc0, 0x39, 0x2b}, "header": {0x23, 0x38, 0x4d}} {
		if n := countColor(img, c); n < 100 {
			t.Errorf("screenshot has %d pixels of %s", n, name)
		}
	}
	if *updateScreenshot {
		dst := filepath.Join("..", "docs", "status-page.png")
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", dst)
	}
}

// countColor counts pixels within a small distance of rgb (8-bit components).
func countColor(img image.Image, rgb [3]uint32) int {
	n := 0
	r := img.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			cr, cg, cb, _ := img.At(x, y).RGBA()
			if near(cr>>8, rgb[0]) && near(cg>>8, rgb[1]) && near(cb>>8, rgb[2]) {
				n++
			}
		}
	}
	return n
}

func near(a, b uint32) bool { return a+3 >= b && b+3 >= a }
