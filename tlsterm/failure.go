package tlsterm

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
)

// Reasons a TLS handshake failed, in words an operator reads without knowing TLS internals.
// The set is fixed, so it can label a metric.
const (
	FailTimeout        = "timeout"
	FailClosed         = "peer closed the connection"
	FailNotTLS         = "not TLS"
	FailNoVersion      = "no shared TLS version"
	FailNoCipher       = "no shared cipher suite"
	FailNoALPN         = "no shared application protocol"
	FailUnknownCA      = "unknown CA"
	FailBadCert        = "bad certificate"
	FailExpired        = "certificate expired or not yet valid"
	FailNameMismatch   = "certificate name mismatch"
	FailCertRejected   = "certificate rejected by the peer"
	FailInternal       = "internal error"
	FailOther          = "other"
	failBadRecordMACIn = "bad record MAC"
)

// FailureReasons lists every value FailureReason returns.
var FailureReasons = []string{FailTimeout, FailClosed, FailNotTLS, FailNoVersion, FailNoCipher, FailNoALPN,
	FailUnknownCA, FailBadCert, FailExpired, FailNameMismatch, FailCertRejected, FailInternal, FailOther}

// FailureReason says in words why a handshake failed, for logs and metrics: "unknown CA"
// rather than "remote error: tls: unknown certificate authority", and "certificate rejected
// by the peer" for the "local error: tls: bad record MAC" that a TLS 1.3 client which
// refuses the certificate causes (it sends its alert before switching to the handshake
// keys the server expects). It returns "" for a nil error.
func FailureReason(err error) string {
	if err == nil {
		return ""
	}
	var (
		ne      net.Error
		unknown x509.UnknownAuthorityError
		invalid x509.CertificateInvalidError
		host    x509.HostnameError
		rhe     tls.RecordHeaderError
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return FailTimeout
	case errors.As(err, &unknown):
		return FailUnknownCA
	case errors.As(err, &invalid):
		if invalid.Reason == x509.Expired {
			return FailExpired
		}
		return FailBadCert
	case errors.As(err, &host):
		return FailNameMismatch
	case errors.As(err, &rhe):
		return FailNotTLS
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed):
		return FailClosed
	}
	return reasonFromText(err.Error())
}

// reasonFromText maps crypto/tls's alert and error texts, which have no exported types.
func reasonFromText(s string) string {
	for _, m := range []struct{ text, reason string }{
		{"unknown certificate authority", FailUnknownCA},
		{"certificate signed by unknown authority", FailUnknownCA},
		{"certificate has expired", FailExpired},
		{"expired certificate", FailExpired},
		{"bad certificate", FailBadCert},
		{"certificate unknown", FailCertRejected},
		{"unsupported certificate", FailBadCert},
		{failBadRecordMACIn, FailCertRejected},
		{"decrypt error", FailCertRejected},
		{"protocol version", FailNoVersion},
		{"unsupported versions", FailNoVersion},
		{"no cipher suite", FailNoCipher},
		{"insufficient security", FailNoCipher},
		{"handshake failure", FailNoCipher},
		{"no application protocol", FailNoALPN},
		{"unsupported application protocols", FailNoALPN},
		{"does not look like a TLS handshake", FailNotTLS},
		{"oversized record", FailNotTLS},
		{"internal error", FailInternal},
	} {
		if strings.Contains(s, m.text) {
			return m.reason
		}
	}
	return FailOther
}
