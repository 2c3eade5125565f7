package main

import (
	"context"
	"crypto/x509"
	_ "embed"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/template"
	"time"

	"github.com/ftpsproxy/ftpsproxy/config"
	"github.com/ftpsproxy/ftpsproxy/internal/demoftp"
	"github.com/ftpsproxy/ftpsproxy/proxy"
	"github.com/ftpsproxy/ftpsproxy/tlsterm"
)

// Demo account and addresses.
const (
	demoUser     = "demo"
	demoPassword = "demo"
)

// runDemo starts an in-process FTP backend, a self-signed certificate and the proxy (explicit
// FTPS offered), prints how to try it, and runs until SIGINT/SIGTERM.
func runDemo(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ftpsproxy demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:2121", "address of the proxy")
	ports := fs.String("ports", "30000-30099", "the proxy's passive port range (below the ephemeral ports, which local active-mode clients use)")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	d, err := startDemo(*listen, *ports, log)
	if err != nil {
		fmt.Fprintf(stderr, "ftpsproxy demo: %v\n", err)
		return exitConfig
	}
	defer d.close()
	fmt.Fprint(stdout, d.instructions())

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	select {
	case <-sigs:
	case err := <-d.served:
		if err != nil {
			fmt.Fprintf(stderr, "ftpsproxy demo: %v\n", err)
			return exitConfig
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d.proxy.Shutdown(ctx)
	return exitOK
}

// demo is a running demo: backend, certificate and proxy.
type demo struct {
	dir     string
	certPEM string
	backend *demoftp.Server
	proxy   *proxy.Server
	served  chan error
}

//go:embed demo.toml
var demoConfig string

var demoTemplate = template.Must(template.New("demo.toml").Parse(demoConfig))

func startDemo(listen, ports string, log *slog.Logger) (*demo, error) {
	dir, err := os.MkdirTemp("", "ftpsproxy-demo-")
	if err != nil {
		return nil, err
	}
	d := &demo{dir: dir, served: make(chan error, 1)}
	if err := d.start(listen, ports, log); err != nil {
		d.close()
		return nil, err
	}
	go func() { d.served <- d.proxy.Serve() }()
	return d, nil
}

// start writes the demo's files, starts its backend, and loads demo.toml filled in with them
// through config.Load, as any config file.
func (d *demo) start(listen, ports string, log *slog.Logger) error {
	root := filepath.Join(d.dir, "files")
	os.MkdirAll(root, 0o755)
	os.WriteFile(filepath.Join(root, "hello.txt"), []byte("Hello from the ftpsproxy demo backend.\n"), 0o644)
	if err := d.writeCert(); err != nil {
		return err
	}
	var err error
	d.backend, err = demoftp.Start(demoftp.Config{Addr: "127.0.0.1:0", Root: root, User: demoUser, Password: demoPassword})
	if err != nil {
		return err
	}
	var toml strings.Builder
	demoTemplate.Execute(&toml, map[string]string{"Listen": listen, "Ports": ports, "Backend": d.backend.Addr()})
	path := filepath.Join(d.dir, "demo.toml")
	if err := os.WriteFile(path, []byte(toml.String()), 0o600); err != nil {
		return err
	}
	f, err := config.Load(path)
	if err != nil {
		return fmt.Errorf("demo config (-listen, -ports):\n%w", err)
	}
	rt, err := build(f, log, nil, buildEnv{})
	if err != nil {
		return err
	}
	if d.proxy, err = proxy.New(rt.cfg, log, nil); err != nil {
		return err
	}
	return d.proxy.Listen(context.Background())
}

// writeCert writes a self-signed certificate and its key where demo.toml expects them.
func (d *demo) writeCert() error {
	cert, certPEM, err := tlsterm.SelfSigned("127.0.0.1", "localhost", "::1")
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return err
	}
	d.certPEM = filepath.Join(d.dir, "demo-cert.pem")
	if err := os.WriteFile(d.certPEM, certPEM, 0o644); err != nil {
		return err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	return os.WriteFile(filepath.Join(d.dir, "demo-key.pem"), keyPEM, 0o600)
}

func (d *demo) addr() string { return d.proxy.Addrs()[0].String() }

func (d *demo) instructions() string {
	a := d.addr()
	return fmt.Sprintf(`ftpsproxy demo is running.
  proxy:    ftp://%[1]s  (explicit FTPS offered; self-signed certificate %[2]s)
  backend:  %[3]s  (in-process demo FTP server, files in %[4]s)
  login:    user %[5]q, password %[6]q

Try it (in another terminal):
  curl --user %[5]s:%[6]s ftp://%[1]s/hello.txt
  curl --ssl-reqd --cacert %[2]s --user %[5]s:%[6]s ftp://%[1]s/hello.txt
  curl --ssl-reqd --cacert %[2]s --user %[5]s:%[6]s -T /etc/hostname ftp://%[1]s/uploaded.txt
  lftp -u %[5]s,%[6]s -e 'set ssl:ca-file %[2]s; set ftp:ssl-force yes; ls; get hello.txt -o /tmp/hello.txt; bye' %[1]s

Press Ctrl-C to stop.
`, a, d.certPEM, d.backend.Addr(), filepath.Join(d.dir, "files"), demoUser, demoPassword)
}

func (d *demo) close() {
	if d.proxy != nil {
		d.proxy.Close()
	}
	if d.backend != nil {
		d.backend.Stop()
	}
	os.RemoveAll(d.dir)
}
