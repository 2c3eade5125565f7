package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// Cause is why a session ends with a 421 (SPEC §4, "421 is one policy").
type Cause int

// The causes of SPEC's 421 table. CauseBackend uses the backend's own 421 line when it sent one.
const (
	CauseNone Cause = iota
	CauseNoBackend
	CauseTooMany
	CauseLoginRate
	CauseTimeout
	CauseShutdown
	CauseBackend
	CauseDenied // listener.allow/deny or route.allow/deny refused the client address
	CauseAdmin  // closed through the admin API
)

// text421 is the one table of 421 texts.
var text421 = map[Cause]string{
	CauseNoBackend: "421 Service not available, closing control connection",
	CauseTooMany:   "421 Too many connections, try again later",
	CauseLoginRate: "421 Too many login attempts, try again later",
	CauseTimeout:   "421 Timeout, closing control connection",
	CauseShutdown:  "421 Server shutting down, closing control connection",
	CauseBackend:   "421 Service not available, closing control connection",
	CauseDenied:    "421 Service not available, closing control connection",
	CauseAdmin:     "421 Session closed by administrator",
}

var causeNames = map[Cause]string{
	CauseNone:      "none",
	CauseNoBackend: "no_backend",
	CauseTooMany:   "too_many",
	CauseLoginRate: "login_rate",
	CauseTimeout:   "timeout",
	CauseShutdown:  "shutdown",
	CauseBackend:   "backend_lost",
	CauseDenied:    "denied",
	CauseAdmin:     "admin",
}

// String returns the cause's name as used in logs and metrics.
func (c Cause) String() string { return causeNames[c] }

// Line421 returns the exact 421 line, without CRLF, for cause c.
func Line421(c Cause) string { return text421[c] }

// endError ends a session with a 421. line, when set, is the backend's own 421 line to relay
// (its first line only: a 421 is never sent inside a multi-line reply).
type endError struct {
	cause Cause
	line  string
	err   error
}

func (e *endError) Error() string {
	if e.err != nil {
		return fmt.Sprintf("session ended (%s): %v", e.cause, e.err)
	}
	return fmt.Sprintf("session ended (%s)", e.cause)
}

func (e *endError) Unwrap() error { return e.err }

// backend421 ends the session with a backend's own 421, as one line: the first line of its
// reply with "421-" turned into "421 " (a 421 is never sent as a multi-line reply).
func backend421(raw []byte) error {
	line := firstLine(raw)
	if len(line) > 3 && line[3] == '-' {
		line = line[:3] + " " + line[4:]
	}
	return &endError{cause: CauseBackend, line: line}
}

// end421 returns the error that makes Run send the 421 of cause and close both legs.
func end421(c Cause, err error) error { return &endError{cause: c, err: err} }

// finalLine returns the one line to send before closing, or "" when none is due.
func finalLine(err error) (string, Cause) {
	var e *endError
	if !errors.As(err, &e) {
		return "", CauseNone
	}
	if e.line != "" {
		return e.line, e.cause
	}
	return text421[e.cause], e.cause
}

// Replies the proxy writes itself. Keeping the texts here lets tests and docs refer to one place.
const (
	replyUnknownCmd    = "500 Syntax error, command unrecognized."
	replyLineTooLong   = "500 Command line too long."
	replyBadLine       = "500 Command line not terminated by CRLF."
	replyBadChar       = "500 Illegal character in command."
	replyNotLoggedIn   = "530 Please login with USER and PASS"
	replyLoginBad      = "530 Login incorrect."
	replyUserFirst     = "503 Login with USER first."
	replyUserOK        = "331 Please specify the password."
	replyLoggedIn      = "503 Already logged in."
	replyNoop          = "200 NOOP ok."
	replySyst          = "215 UNIX Type: L8"
	replyClnt          = "200 Noted."
	replyUTF8          = "200 Always in UTF8 mode."
	replyOptsBad       = "501 Option not understood."
	replyGoodbye       = "221 Goodbye."
	replyHostOK        = "220 Host accepted."
	replyHostLate      = "503 HOST must come before USER."
	replyHostBad       = "501 Bad host name."
	replyAuthNone      = "502 TLS is not offered on this listener."
	replyAuthMech      = "504 Unsupported security mechanism; use AUTH TLS."
	replyAuthTwice     = "503 TLS already active."
	replyAuthLate      = "503 AUTH must come before login."
	replyPbszEarly     = "503 PBSZ before AUTH."
	replyProtEarly     = "503 PROT before PBSZ."
	replyAdat          = "503 ADAT not supported without a security mechanism."
	replyProtected     = "537 Protected commands are not supported."
	replyCCC           = "533 Clear control channel refused."
	replyProtLevel     = "536 Protection level not supported; use PROT C or PROT P."
	replyProtRequired  = "534 PROT C refused: this listener requires protected data."
	replyTLSRequired   = "534 TLS required: use AUTH TLS first."
	replyDataTLS       = "521 Data connections must be protected: use PROT P."
	replyPasvV6        = "501 PASV carries IPv4 only: use EPSV."
	replyEpsvProto     = "522 Network protocol not supported, use (1)"
	replyEpsvProto6    = "522 Network protocol not supported, use (2)"
	replyEprtProto     = "522 Network protocol not supported, use (1,2)"
	replyEpsvAll       = "200 EPSV ALL ok."
	replyEpsvAllOnly   = "503 Only EPSV is allowed after EPSV ALL."
	replyPortOK        = "200 PORT command successful."
	replyPortBad       = "501 Syntax error in PORT/EPRT argument."
	replyPortRefused   = "501 Data connection refused: only to your own address and a port of 1024 or above."
	replyActiveOff     = "502 Active mode is disabled: use PASV or EPSV."
	replyNeedData      = "425 Use PORT, PASV or EPSV first."
	replyCantOpen      = "425 Can't open data connection."
	replyReinNo        = "502 REIN not supported by the proxy."
	replyAborted       = "426 Connection closed; transfer aborted."
	replyAbortOK       = "226 ABOR command successful."
	replyReuseRequired = "522 Data connection must resume the TLS session of the control connection."
	replyDataTLSFailed = "425 Can't open data connection: TLS handshake failed."
	replyUserEmpty     = "501 USER needs a user name."
	replyAcctExpected  = "503 ACCT expected."
	replyPbszBad       = "501 PBSZ needs a decimal number."
	replyPbszOK        = "200 PBSZ=0"
	replyProtC         = "200 Protection level set to C."
	replyProtP         = "200 Protection level set to P."
	replyProtUnknown   = "504 Unknown protection level."
	replyProt150       = "150 Opening protected data connection."
	replyHelpPreLogin  = "214-The following commands are recognized before login:\r\n" +
		" USER PASS AUTH PBSZ PROT FEAT OPTS SYST NOOP HELP HOST CLNT QUIT\r\n214 Help OK.\r\n"
)

// replyAuthOK is the 234 that starts the TLS handshake for mechanism mech (TLS, SSL, ...).
func replyAuthOK(mech string) string { return "234 AUTH " + mech + " successful." }

// replyAddrVerbRefused answers a command the proxy never relays because the backend's reply
// would announce a backend address (LPSV, LPRT, ...).
func replyAddrVerbRefused(verb string) string {
	return "502 " + verb + " not supported: use EPSV or EPRT."
}

// replyGreeting is the 220 greeting with the listener's banner.
func replyGreeting(banner string) string { return "220 " + banner }

// replyCodeOf returns the code of one of the proxy's own reply lines.
func replyCodeOf(line string) int {
	code := 0
	for i := 0; i < 3 && i < len(line); i++ {
		code = code*10 + int(line[i]-'0')
	}
	return code
}

// The features the proxy announces itself in FEAT (RFC 2389): TLS toward the client on TLS
// listeners, and the data-connection commands it translates. Before login it also answers
// HOST and OPTS UTF8 itself.
var (
	featTLS      = []string{"AUTH TLS", "PBSZ", "PROT"}
	featData     = []string{"EPRT", "EPSV"}
	featPreLogin = []string{"HOST", "UTF8"}
)

// featDropped are backend features that belong to a leg the proxy terminates: TLS is the
// proxy's business on each side, HOST is answered before login, and data-connection variants
// other than EPSV/EPRT/PASV/PORT are not translated.
var featDropped = map[string]bool{
	"AUTH": true, "PBSZ": true, "PROT": true, "CCC": true, "ADAT": true,
	"HOST": true, "EPSV": true, "EPRT": true, "LPSV": true, "LPRT": true,
	"SPSV": true, "ESTA": true, "ESTP": true, "SSCN": true, "CPSV": true,
}

// feat builds every FEAT reply the proxy sends. Before login (backend nil) it lists only what
// the proxy implements itself, so no client is promised what the backend may lack. After
// login, backend is the backend's 211 reply: the proxy's own features replace the backend's
// TLS and data-connection ones, and the rest of the backend's list is kept.
func feat(offerTLS bool, backend []byte) []byte {
	var out bytes.Buffer
	out.WriteString("211-Features:\r\n")
	own := featData
	if offerTLS {
		own = append(append([]string{}, featTLS...), featData...)
	}
	if backend == nil {
		own = append(append([]string{}, own...), featPreLogin...)
	}
	for _, f := range own {
		out.WriteString(" " + f + "\r\n")
	}
	for _, f := range backendFeatures(backend) {
		out.WriteString(" " + f + "\r\n")
	}
	out.WriteString("211 End\r\n")
	return out.Bytes()
}

// backendFeatures returns the feature lines of a backend's 211 FEAT reply that the proxy
// relays unchanged.
func backendFeatures(raw []byte) []string {
	var out []string
	lines := strings.Split(string(raw), "\n")
	for i, l := range lines {
		if i == 0 || i == len(lines)-1 {
			continue // the 211- opener and the empty tail after the last LF
		}
		l = strings.TrimRight(l, "\r")
		if strings.HasPrefix(l, "211 ") || l == "211" {
			continue
		}
		f := strings.TrimSpace(l)
		if f == "" {
			continue
		}
		name, _, _ := strings.Cut(f, " ")
		if featDropped[strings.ToUpper(name)] {
			continue
		}
		out = append(out, f)
	}
	return out
}

// RewriteFeat rewrites a backend's 211 FEAT reply as the proxy relays it after login: the
// backend's features it relays unchanged, without the ones in featDropped, after its own.
func RewriteFeat(raw []byte, offerTLS bool) []byte { return feat(offerTLS, raw) }
