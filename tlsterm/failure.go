package tlsterm

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
)

// Reasons a TLS handshake failed: a fixed set, so a metric label never carries an error
// text. FailureWords says each in words for logs.
const (
	FailUnknownCA      = "unknown_ca"          // the peer's certificate chain has no trusted root
	FailBadCertificate = "bad_certificate"     // wrong name, bad signature, unsupported, revoked, or refused by the peer
	FailExpired        = "expired_certificate" // outside its validity period
	FailNoVersion      = "no_shared_version"   // no TLS version both sides accept
	FailNoCipher       = "no_shared_cipher"    // no cipher suite, curve or signature both accept
	FailNotTLS         = "not_tls"             // the peer did not speak TLS (plain FTP on a TLS leg)
	FailTimeout        = "timeout"             // limits.tls_handshake_timeout passed
	FailEOF            = "eof"                 // the peer closed or reset the connection
	FailOther          = "other"
)

// FailureReasons lists every value FailureReason returns.
var FailureReasons = []string{FailUnknownCA, FailBadCertificate, FailExpired, FailNoVersion,
	FailNoCipher, FailNotTLS, FailTimeout, FailEOF, FailOther}

var failureWords = map[string]string{
	FailUnknownCA:      "unknown CA",
	FailBadCertificate: "bad or refused certificate",
	FailExpired:        "certificate expired or not yet valid",
	FailNoVersion:      "no shared TLS version",
	FailNoCipher:       "no shared cipher suite",
	FailNotTLS:         "not TLS",
	FailTimeout:        "timeout",
	FailEOF:            "peer closed the connection",
	FailOther:          "other",
}

// FailureWords says a FailureReason in words an operator reads without knowing TLS
// internals ("unknown CA" rather than "remote error: tls: unknown certificate authority").
func FailureWords(reason string) string {
	if w, ok := failureWords[reason]; ok {
		return w
	}
	return reason
}

// FailureReason maps a TLS handshake error to one of the Fail constants ("" for nil).
// Errors of our own verification are read from their types; the peer's alerts arrive as a
// "remote error" whose text is crypto/tls's name for the RFC 8446 alert, the only form the
// standard library exposes them in.
func FailureReason(err error) string {
	var (
		verr   *tls.CertificateVerificationError
		rh     tls.RecordHeaderError
		opErr  *net.OpError
		netErr net.Error
	)
	switch {
	case err == nil:
		return ""
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return FailTimeout
	case errors.As(err, &verr):
		return certReason(verr.Err)
	case errors.As(err, &rh):
		return FailNotTLS
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed):
		return FailEOF
	case errors.As(err, &opErr) && opErr.Op == "remote error" && opErr.Err != nil:
		return alertReason(opErr.Err.Error())
	}
	return localReason(err.Error())
}

// certReason classifies our own rejection of the peer's certificate.
func certReason(err error) string {
	var (
		ua  x509.UnknownAuthorityError
		inv x509.CertificateInvalidError
	)
	switch {
	case errors.As(err, &ua):
		return FailUnknownCA
	case errors.As(err, &inv) && inv.Reason == x509.Expired:
		return FailExpired
	}
	return FailBadCertificate
}

// alertReason classifies an alert the peer sent, by crypto/tls's alert text.
func alertReason(text string) string {
	switch strings.TrimPrefix(text, "tls: ") {
	case "unknown certificate authority":
		return FailUnknownCA
	case "bad certificate", "unsupported certificate", "revoked certificate", "unknown certificate",
		"certificate required", "bad certificate status response":
		return FailBadCertificate
	case "expired certificate":
		return FailExpired
	case "protocol version not supported":
		return FailNoVersion
	case "handshake failure", "insufficient security level":
		return FailNoCipher
	}
	return FailOther
}

// localReason classifies crypto/tls's own handshake errors that have no type.
func localReason(text string) string {
	switch {
	case strings.Contains(text, "unsupported versions"), strings.Contains(text, "protocol version not supported"),
		strings.Contains(text, "server selected unsupported protocol version"):
		return FailNoVersion
	case strings.Contains(text, "no cipher suite supported"), strings.Contains(text, "no ECDHE curve supported"),
		strings.Contains(text, "no mutually supported"), strings.Contains(text, "handshake failure"):
		return FailNoCipher
	case strings.Contains(text, "first record does not look like a TLS handshake"):
		return FailNotTLS
	case strings.Contains(text, "local error: tls: bad record MAC"):
		// A TLS 1.3 client (OpenSSL, GnuTLS) that rejects our certificate sends its alert
		// unencrypted, before it switches to the handshake keys; crypto/tls then fails to
		// decrypt it. Which alert it was is lost, so this is the general reason.
		return FailBadCertificate
	}
	return FailOther
}
