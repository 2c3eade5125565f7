package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/internal/demoftp"
	"github.com/ftpsproxy/ftpsproxy/nat"
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

func startDemo(listen, ports string, log *slog.Logger) (*demo, error) {
	dir, err := os.MkdirTemp("", "ftpsproxy-demo-")
	if err != nil {
		return nil, err
	}
	d := &demo{dir: dir, served: make(chan error, 1)}
	root := filepath.Join(dir, "files")
	os.MkdirAll(root, 0o755)
	os.WriteFile(filepath.Join(root, "hello.txt"), []byte("Hello from the ftpsproxy demo backend.\n"), 0o644)

	cert, pemBytes, err := tlsterm.SelfSigned("127.0.0.1", "localhost", "::1")
	if err != nil {
		d.close()
		return nil, err
	}
	d.certPEM = filepath.Join(dir, "demo-cert.pem")
	os.WriteFile(d.certPEM, pemBytes, 0o644)

	d.backend, err = demoftp.Start(demoftp.Config{Addr: "127.0.0.1:0", Root: root, User: demoUser, Password: demoPassword})
	if err != nil {
		d.close()
		return nil, err
	}
	pr, err := nat.ParsePortRange(ports)
	if err != nil {
		d.close()
		return nil, fmt.Errorf("-ports: %w", err)
	}
	pool, err := balancer.NewPool(balancer.PoolConfig{Name: "demo", Policy: balancer.RoundRobin,
		Backends: []balancer.BackendConfig{{Address: d.backend.Addr(), FixPasvAddress: true}}})
	if err != nil {
		d.close()
		return nil, err
	}
	tlsSrv, err := tlsterm.NewServer(tlsterm.ServerOptions{Source: tlsterm.StaticSource{Cert: cert}})
	if err != nil {
		d.close()
		return nil, err
	}
	d.proxy, err = proxy.New(proxy.Config{
		Listeners: []proxy.ListenerConfig{{Name: "demo", Address: listen, TLS: proxy.TLSExplicit, Pool: "demo", Banner: "ftpsproxy demo ready"}},
		Data:      proxy.DataConfig{PortRange: pr, AllowActive: true, ConnectTimeout: 30 * time.Second},
		Pools:     []*balancer.Pool{pool},
		Limits:    proxy.Limits{IdleTimeout: 15 * time.Minute, LoginTimeout: time.Minute, BackendTimeout: 10 * time.Second},
		TLS:       tlsSrv,
	}, log, nil)
	if err != nil {
		d.close()
		return nil, err
	}
	if err := d.proxy.Listen(context.Background()); err != nil {
		d.close()
		return nil, err
	}
	go func() { d.served <- d.proxy.Serve() }()
	return d, nil
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
