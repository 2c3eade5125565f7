package proxy

import "time"

// The reply table (replies.go), exported for the external tests of this package so they
// assert the production texts instead of a copy of them.
const (
	ReplyUnknownCmd    = replyUnknownCmd
	ReplyLineTooLong   = replyLineTooLong
	ReplyBadLine       = replyBadLine
	ReplyBadChar       = replyBadChar
	ReplyNotLoggedIn   = replyNotLoggedIn
	ReplyLoginBad      = replyLoginBad
	ReplyUserFirst     = replyUserFirst
	ReplyUserOK        = replyUserOK
	ReplyUserEmpty     = replyUserEmpty
	ReplyLoggedIn      = replyLoggedIn
	ReplyNoop          = replyNoop
	ReplySyst          = replySyst
	ReplyClnt          = replyClnt
	ReplyUTF8          = replyUTF8
	ReplyOptsBad       = replyOptsBad
	ReplyGoodbye       = replyGoodbye
	ReplyHostOK        = replyHostOK
	ReplyHostLate      = replyHostLate
	ReplyHostBad       = replyHostBad
	ReplyHelpPreLogin  = replyHelpPreLogin
	ReplyAuthNone      = replyAuthNone
	ReplyAuthMech      = replyAuthMech
	ReplyAuthTwice     = replyAuthTwice
	ReplyPbszEarly     = replyPbszEarly
	ReplyPbszBad       = replyPbszBad
	ReplyPbszOK        = replyPbszOK
	ReplyProtEarly     = replyProtEarly
	ReplyProtC         = replyProtC
	ReplyProtP         = replyProtP
	ReplyProtUnknown   = replyProtUnknown
	ReplyProtLevel     = replyProtLevel
	ReplyProtRequired  = replyProtRequired
	ReplyAdat          = replyAdat
	ReplyProtected     = replyProtected
	ReplyCCC           = replyCCC
	ReplyTLSRequired   = replyTLSRequired
	ReplyDataTLS       = replyDataTLS
	ReplyPasvV6        = replyPasvV6
	ReplyEpsvProto     = replyEpsvProto
	ReplyEpsvProto6    = replyEpsvProto6
	ReplyEprtProto     = replyEprtProto
	ReplyEpsvAll       = replyEpsvAll
	ReplyEpsvAllOnly   = replyEpsvAllOnly
	ReplyPortOK        = replyPortOK
	ReplyPortBad       = replyPortBad
	ReplyPortRefused   = replyPortRefused
	ReplyNeedData      = replyNeedData
	ReplyCantOpen      = replyCantOpen
	ReplyReinNo        = replyReinNo
	ReplyAborted       = replyAborted
	ReplyAcctExpected  = replyAcctExpected
	ReplyProt150       = replyProt150
	ReplyDataTLSFailed = replyDataTLSFailed
)

// ReplyAuthOK is the table's 234 for mechanism mech.
func ReplyAuthOK(mech string) string { return replyAuthOK(mech) }

// ReplyAddrVerbRefused is the table's 502 for a command that would announce a backend address.
func ReplyAddrVerbRefused(verb string) string { return replyAddrVerbRefused(verb) }

// SetIdleSweep sets how often servers look for idle client readers (idle.go). TestMain sets
// it short, before any server starts, so every test's sessions that pause hand their reader
// over to the poller and back.
func SetIdleSweep(d time.Duration) { idleSweepEvery = d }

// SweepCounts reports how many sessions the idle sweep looks at and how many away owners
// wait in its heap of idle deadlines (sweep.go).
func (s *Server) SweepCounts() (present, due int) { return s.sweeps.counts() }
