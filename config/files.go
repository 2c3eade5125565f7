package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// maxReferredFile bounds the files a config names (certificates, keys, CA bundles, tokens).
const maxReferredFile = int64(4 << 20)

// pathErr drops the operation and path of an *fs.PathError: the problem line names the path.
func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// readReferred reads a file the config refers to: a regular file of sane size, so that a
// path like /dev/zero or a FIFO cannot hang -check, a start or a reload.
func readReferred(name string) ([]byte, error) {
	// Stat before Open: opening a FIFO would block.
	st, err := os.Stat(name)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	fh, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, maxReferredFile+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > maxReferredFile {
		return nil, fmt.Errorf("larger than %d MiB", maxReferredFile>>20)
	}
	return data, nil
}

// readFile is readReferred reporting its failure as a problem of key.
func (c *checker) readFile(key, name string) ([]byte, bool) {
	data, err := readReferred(name)
	if err != nil {
		c.addf(key, "cannot read %q: %v", name, pathErr(err))
		return nil, false
	}
	return data, true
}

// certFile checks that name is a PEM file of one or more certificates.
func (c *checker) certFile(key, name string) {
	data, ok := c.readFile(key, name)
	if !ok {
		return
	}
	n := 0
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			c.addf(key, "%q: certificate %d: %v", name, n+1, err)
			return
		}
		n++
	}
	if n == 0 {
		c.addf(key, "%q holds no PEM certificate", name)
	}
}

// keyPair checks that the certificate and key files load together.
func (c *checker) keyPair(certKey, keyKey, certFile, keyFile string) {
	certPEM, certOK := c.readFile(certKey, certFile)
	keyPEM, keyOK := c.readFile(keyKey, keyFile)
	if certOK && keyOK {
		if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
			c.addf(certKey, "does not load with key_file %q: %v", keyFile, err)
		}
	}
}

// logFile checks that the proxy can append to the log file name: it may be missing (the
// proxy creates it), but its directory must exist and be writable, and an existing file must
// be a regular file.
func (c *checker) logFile(key, name string) {
	if st, err := os.Stat(name); err == nil {
		if !st.Mode().IsRegular() {
			c.addf(key, "%q is not a regular file", name)
		} else if err := syscall.Access(name, wOK); err != nil {
			c.addf(key, "%q is not writable: %v", name, err)
		}
		return
	}
	if msg := dirProblem(filepath.Dir(name)); msg != "" {
		c.addf(key, "cannot create %q: %s", name, msg)
	}
}

// storageDir checks a directory the proxy keeps state in (ACME storage). certmagic creates
// it and its parents at start (MkdirAll), so a directory that does not exist yet is a problem
// only when it cannot be created: its nearest existing ancestor must be a writable directory.
func (c *checker) storageDir(key, dir string) {
	anc := filepath.Clean(dir)
	for {
		_, err := os.Lstat(anc)
		missing := errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
		if !missing || filepath.Dir(anc) == anc {
			break
		}
		anc = filepath.Dir(anc)
	}
	switch msg := dirProblem(anc); {
	case msg == "":
	case anc == filepath.Clean(dir):
		c.add(key, msg)
	default:
		c.addf(key, "directory %q does not exist and cannot be created: %s", dir, msg)
	}
}

// wOK is access(2)'s W_OK. access(2) answers for the real user, which is the user the proxy
// runs as, and reports EROFS on a read-only mount even for root.
const wOK = 2

// dirProblem says what keeps the proxy from creating files in dir, or "".
func dirProblem(dir string) string {
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Sprintf("directory %q does not exist", dir)
	case err != nil:
		return pathErr(err).Error()
	case !st.IsDir():
		return fmt.Sprintf("%q is not a directory", dir)
	}
	if err := syscall.Access(dir, wOK); err != nil {
		return fmt.Sprintf("directory %q is not writable: %v", dir, err)
	}
	return ""
}
