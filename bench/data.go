package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"

	"github.com/ftpsproxy/ftpsproxy/tlsterm"
)

// workdir is the benchmark's scratch directory, on tmpfs when there is one (uploads then
// cause no disk writeback during later measurements).
type workdir struct {
	dir   string // configs, logs, certificates
	root  string // the FTP root: owned by root (vsftpd refuses a writable anonymous root)
	pub   string // root/pub, owned by the test user: every file the benchmark moves
	empty string // vsftpd's secure_chroot_dir
	cert  string // ECDSA P-256, self-signed: every TLS terminator
	key   string
	// rsaCert and rsaKey are an RSA-2048 self-signed pair, for the handshake phase's second
	// key type.
	rsaCert string
	rsaKey  string
	acct    account
}

func (w *workdir) etc(name string) string { return filepath.Join(w.dir, name) }

func newWorkdir() (*workdir, error) {
	u, err := user.Lookup(testUser)
	if err != nil {
		return nil, fmt.Errorf("test account %q: %v: run %s as root", testUser, err, installScript)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	base := os.TempDir()
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		base = "/dev/shm"
	}
	dir, err := os.MkdirTemp(base, "ftpsproxy-bench-")
	if err != nil {
		return nil, err
	}
	w := &workdir{dir: dir, root: filepath.Join(dir, "root"), empty: filepath.Join(dir, "empty"), acct: account{uid, gid}}
	w.pub = filepath.Join(w.root, "pub")
	// The servers open the root after switching to the test user: every directory on the
	// way must be traversable.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	for _, d := range []string{w.root, w.pub, w.empty} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return nil, err
		}
	}
	os.Chmod(w.empty, 0o555)
	if err := os.Chown(w.pub, uid, gid); err != nil {
		return nil, err
	}
	hosts := []string{"localhost", "127.0.0.1", "127.0.0.2", "127.0.0.3"}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	w.cert, w.key = w.etc("cert.pem"), w.etc("key.pem")
	if err := writeSelfSigned(w.cert, w.key, ecKey, hosts...); err != nil {
		return nil, err
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	w.rsaCert, w.rsaKey = w.etc("rsa-cert.pem"), w.etc("rsa-key.pem")
	if err := writeSelfSigned(w.rsaCert, w.rsaKey, rsaKey, hosts...); err != nil {
		return nil, err
	}
	return w, nil
}

// writeSelfSigned writes a self-signed certificate for hosts with key (tlsterm.SelfSignedKey)
// and the key in PKCS#8.
func writeSelfSigned(certPath, keyPath string, key crypto.Signer, hosts ...string) error {
	_, certPEM, err := tlsterm.SelfSignedKey(key, hosts...)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(certPath, certPEM, 0o644); err != nil {
		return err
	}
	return os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// writeData writes size bytes of a seeded PRNG stream (splitmix64: several GB/s, so a 1 GiB
// file takes about a second) to pub/name, owned by the test user, and returns its SHA-256.
func (w *workdir) writeData(name string, size int64, seed uint64) (string, [32]byte, error) {
	path := filepath.Join(w.pub, name)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return "", [32]byte{}, err
	}
	h := sha256.New()
	buf := make([]byte, 1<<20)
	state := seed
	for left := size; left > 0; {
		n := int64(len(buf))
		if left < n {
			n = left
		}
		b := buf[:n]
		fillPRNG(b, &state)
		h.Write(b)
		if _, err := f.Write(b); err != nil {
			f.Close()
			return "", [32]byte{}, err
		}
		left -= n
	}
	if err := f.Close(); err != nil {
		return "", [32]byte{}, err
	}
	if err := os.Chown(path, w.acct.uid, w.acct.gid); err != nil {
		return "", [32]byte{}, err
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return path, sum, nil
}

// fillPRNG fills b with splitmix64 output.
func fillPRNG(b []byte, state *uint64) {
	s := *state
	i := 0
	for ; i+8 <= len(b); i += 8 {
		s += 0x9e3779b97f4a7c15
		z := s
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		binary.LittleEndian.PutUint64(b[i:], z^(z>>31))
	}
	for ; i < len(b); i++ {
		s += 0x9e3779b97f4a7c15
		b[i] = byte(s >> 56)
	}
	*state = s
}

// fileSum hashes a file.
func fileSum(path string) ([32]byte, int64, error) {
	var sum [32]byte
	f, err := os.Open(path)
	if err != nil {
		return sum, 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.CopyBuffer(h, f, make([]byte, 1<<20))
	if err != nil {
		return sum, n, err
	}
	copy(sum[:], h.Sum(nil))
	return sum, n, nil
}
