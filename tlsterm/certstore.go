package tlsterm

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
)

// CertPair names a certificate file (PEM, chain first) and its key file. They may be the same
// file when it holds both. It is also one [[tls.certificate]] of the config file.
type CertPair struct {
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
}

// CertStoreOptions lists where the client-facing certificates come from.
type CertStoreOptions struct {
	Pairs []CertPair // [[tls.certificate]], and the top-level cert_file/key_file
	// Dir holds pairs NAME.crt + NAME.key, or NAME.pem with both (tls.cert_dir).
	Dir string
	// Default is the NAME of a pair in Dir served to clients without SNI or with a name no
	// certificate covers (tls.default_certificate). Empty: Pairs[0], else the first pair of
	// Dir in name order.
	Default string
}

// maxCertFile bounds one certificate or key file: a PEM chain is a few KiB; a file larger
// than this in the directory is a mistake, not a certificate.
const maxCertFile = 1 << 20

// CertStore chooses a certificate by the SNI of each handshake among many pairs: exact names
// of the certificates' SANs first, then a wildcard SAN one label up, then the default. When
// two certificates cover the same name the one that expires last wins, so a renewed
// certificate dropped beside the old one takes over at once. Reload re-reads every file
// (SIGHUP); a failed reload keeps the certificates in use.
type CertStore struct {
	opts CertStoreOptions
	idx  atomic.Pointer[certIndex]
}

type certIndex struct {
	byName map[string]*tls.Certificate // lower-case SAN (exact or "*.suffix") → certificate
	def    *tls.Certificate
	all    []*tls.Certificate // in load order
}

// LoadCertStore loads every pair. An error names the file that does not load.
func LoadCertStore(o CertStoreOptions) (*CertStore, error) {
	s := &CertStore{opts: o}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// CheckCertStore loads o as LoadCertStore would and returns every problem, one per file,
// for `-check`.
func CheckCertStore(o CertStoreOptions) []error {
	_, errs := buildIndex(o, true)
	return errs
}

// Reload re-reads the files; on error the certificates in use stay.
func (s *CertStore) Reload() error {
	idx, errs := buildIndex(s.opts, false)
	if len(errs) > 0 {
		return errs[0]
	}
	s.idx.Store(idx)
	return nil
}

// Len returns the number of certificates loaded.
func (s *CertStore) Len() int { return len(s.idx.Load().all) }

// GetCertificate implements CertSource.
func (s *CertStore) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	idx := s.idx.Load()
	if c := idx.lookup(hello.ServerName); c != nil {
		return c, nil
	}
	return idx.def, nil
}

// lookup finds the certificate for a server name: exact, then a wildcard for the name
// without its first label (a wildcard covers exactly one label, RFC 6125 §6.4.3).
func (idx *certIndex) lookup(name string) *tls.Certificate {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	if name == "" {
		return nil
	}
	if c := idx.byName[name]; c != nil {
		return c
	}
	if _, rest, ok := strings.Cut(name, "."); ok && rest != "" {
		return idx.byName["*."+rest]
	}
	return nil
}

// buildIndex loads the pairs and the directory. With all it goes on after a failure to
// report every bad file; otherwise it stops at the first.
func buildIndex(o CertStoreOptions, all bool) (*certIndex, []error) {
	idx := &certIndex{byName: make(map[string]*tls.Certificate)}
	var errs []error
	var first *tls.Certificate
	add := func(p CertPair) *tls.Certificate {
		c, err := loadPair(p)
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		idx.add(c)
		if first == nil {
			first = c
		}
		return c
	}
	for _, p := range o.Pairs {
		if add(p); len(errs) > 0 && !all {
			return nil, errs
		}
	}
	if o.Dir != "" {
		pairs, dirErrs := dirPairs(o.Dir)
		errs = append(errs, dirErrs...)
		named := false // a pair called Default exists (whether or not it loads)
		for _, np := range pairs {
			c := add(np.pair)
			if len(errs) > 0 && !all {
				return nil, errs
			}
			if np.name == o.Default {
				named = true
				if c != nil {
					idx.def = c
				}
			}
		}
		if o.Default != "" && !named {
			errs = append(errs, fmt.Errorf("tls: default_certificate %q: no pair %s.crt/%s.key or %s.pem in %s",
				o.Default, o.Default, o.Default, o.Default, o.Dir))
		}
	}
	if idx.def == nil {
		idx.def = first
	}
	if len(idx.all) == 0 && len(errs) == 0 {
		errs = append(errs, errors.New("tls: no certificate found"))
	}
	return idx, errs
}

func (idx *certIndex) add(c *tls.Certificate) {
	idx.all = append(idx.all, c)
	names := c.Leaf.DNSNames
	if len(names) == 0 && c.Leaf.Subject.CommonName != "" {
		names = []string{c.Leaf.Subject.CommonName} // an old certificate without SANs
	}
	for _, n := range names {
		n = strings.ToLower(n)
		if old := idx.byName[n]; old == nil || c.Leaf.NotAfter.After(old.Leaf.NotAfter) {
			idx.byName[n] = c
		}
	}
}

func loadPair(p CertPair) (*tls.Certificate, error) {
	certPEM, err := readBounded(p.CertFile)
	if err != nil {
		return nil, err
	}
	keyPEM := certPEM
	if p.KeyFile != p.CertFile {
		if keyPEM, err = readBounded(p.KeyFile); err != nil {
			return nil, err
		}
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		if p.KeyFile == p.CertFile {
			return nil, fmt.Errorf("tls: %s: %w", p.CertFile, err)
		}
		return nil, fmt.Errorf("tls: %s with key %s: %w", p.CertFile, p.KeyFile, err)
	}
	return &c, nil
}

// readBounded reads a certificate or key file of at most maxCertFile bytes. Only regular
// files (after links) are opened: opening a FIFO would block the load, and a reload with it.
func readBounded(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("tls: %s: not a regular file", path)
	}
	if st.Size() > maxCertFile {
		return nil, fmt.Errorf("tls: %s: larger than %d bytes", path, maxCertFile)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	return b, nil
}

type namedPair struct {
	name string
	pair CertPair
}

// dirPairs lists the pairs of a cert_dir in name order: NAME.pem (both in one file), or
// NAME.crt with NAME.key. A .crt without its .key (or the reverse) is an error naming it.
// Other files are ignored.
func dirPairs(dir string) ([]namedPair, []error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, []error{fmt.Errorf("tls: cert_dir: %w", err)}
	}
	files := map[string]bool{}
	for _, e := range ents {
		if e.Type()&fs.ModeType == 0 || e.Type()&fs.ModeSymlink != 0 {
			files[e.Name()] = true
		}
	}
	var out []namedPair
	var errs []error
	for _, e := range ents {
		n := e.Name()
		if !files[n] {
			continue
		}
		ext := filepath.Ext(n)
		base := strings.TrimSuffix(n, ext)
		p := func(f string) string { return filepath.Join(dir, f) }
		switch ext {
		case ".pem":
			out = append(out, namedPair{base, CertPair{p(n), p(n)}})
		case ".crt":
			if !files[base+".key"] {
				errs = append(errs, fmt.Errorf("tls: %s: no key file %s.key beside it", p(n), base))
				continue
			}
			out = append(out, namedPair{base, CertPair{p(n), p(base + ".key")}})
		case ".key":
			if !files[base+".crt"] && !files[base+".pem"] {
				errs = append(errs, fmt.Errorf("tls: %s: no certificate file %s.crt beside it", p(n), base))
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, errs
}
