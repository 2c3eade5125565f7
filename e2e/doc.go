// Package e2e holds ftpsproxy's end-to-end tests: the real binary, started from a config
// string, in front of real FTP servers (vsftpd, pure-ftpd, ProFTPD from Debian's packages,
// installed by scripts/install-test-peers.sh), driven by real clients (curl, lftp, Python
// ftplib and a Go client). Every transfer is checked by sha256.
package e2e
