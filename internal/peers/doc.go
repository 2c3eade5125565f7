// Package peers starts real FTP servers (vsftpd, pure-ftpd, ProFTPD) and runs
// real FTP clients (curl, lftp, Python's ftplib) for integration tests.
//
// Each Start function runs one server on a loopback port with its own
// configuration, logs and root directory in t.TempDir(), waits until it greets
// with 220, and stops it (the whole process group) at t.Cleanup. The test user
// is User with Password; it sees Server.Root as "/" and may write there.
//
// The binaries come from scripts/install-test-peers.sh, which unpacks the three
// Debian packages side by side under /opt/ftpsproxy-peers (they conflict with
// each other as packages) and creates the system account. When something is
// missing, the tests fail with a message naming that script: they never skip,
// since a skipped interoperability test looks like a passing one.
//
// The package does not run the servers unprivileged, or on anything but
// loopback and the addresses the caller gives; it needs root (the servers
// chroot and switch to the test user). Options.NetNS runs a server inside a
// network namespace the caller made with "ip netns add" (on an address of
// that namespace); the server's root stays on the shared filesystem. pure-ftpd has no implicit
// FTPS. vsftpd has no MLSD/MLST and always runs with TLS capped at 1.2.
//
// pure-ftpd logs only to syslog; the package gives it a /dev/log of its own
// in a mount namespace and collects the messages into its log.
//
// Usage:
//
//	s := peers.StartProFTPD(t, peers.Options{TLS: peers.TLSExplicit, RequireReuse: true})
//	s.WriteFile(t, "in/seed.txt", []byte("hello"))
//	c, err := ftp.Dial(s.Addr, ftp.DialWithExplicitTLS(s.ClientTLSConfig(t)))
//	...
//	out, err := peers.Curl(ctx, "--ssl-reqd", "--cacert", s.CertFile,
//		"-u", peers.User+":"+peers.Password, "ftp://"+s.Addr+"/in/seed.txt")
//	if err != nil {
//		t.Fatalf("%v\n%s", err, s.Log())
//	}
package peers
