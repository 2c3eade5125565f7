package e2e

import (
	"testing"

	"github.com/ftpsproxy/ftpsproxy/internal/peers"
)

// servers starts each real server with opts.
var servers = []struct {
	name  string
	start func(testing.TB, peers.Options) *peers.Server
}{
	{"vsftpd", peers.StartVsftpd},
	{"pure-ftpd", peers.StartPureFTPd},
	{"proftpd", peers.StartProFTPD},
}

// TestPlainMatrix: every real server, both backend data modes, every client in its passive
// and active modes, through the proxy, plain FTP on both legs.
func TestPlainMatrix(t *testing.T) {
	for _, srv := range servers {
		for _, dataMode := range []string{"passive", "active"} {
			t.Run(srv.name+"/backend-"+dataMode, func(t *testing.T) {
				s := srv.start(t, peers.Options{})
				p := startProxy(t, plainProxyConfig(t, s.Addr, dataMode, ""))
				tg := target{addr: p.addr, root: s.Root, hasMLSD: s.HasMLSD, tls: "none", fileSize: 1 << 20}
				t.Run("go/epsv", func(t *testing.T) { goSuite(t, tg, true) })
				t.Run("go/pasv", func(t *testing.T) { goSuite(t, tg, false) })
				for _, m := range []string{"pasv", "epsv", "port", "eprt"} {
					t.Run("curl/"+m, func(t *testing.T) { curlSuite(t, tg, m) })
				}
				for _, m := range []string{"epsv", "pasv", "port"} {
					t.Run("lftp/"+m, func(t *testing.T) { lftpSuite(t, tg, m) })
				}
				for _, m := range []string{"pasv", "epsv", "port"} {
					t.Run("ftplib/"+m, func(t *testing.T) { ftplibSuite(t, tg, m) })
				}
				big := tg
				big.fileSize = 100 << 20
				t.Run("go/100MiB", func(t *testing.T) { goSuite(t, big, true) })
				noPassword(t, p)
			})
		}
	}
}
