package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/ftpsproxy/ftpsproxy/config"
)

// TestLogOutputSwitches: a logger derived before a change (as a session's is) follows a new
// level and format, and a level set at run time survives a reload that keeps [log] level.
func TestLogOutputSwitches(t *testing.T) {
	var buf bytes.Buffer
	out, log := newLogOutput(config.Log{Level: config.LevelInfo, Format: config.FormatText}, &buf)
	sess := log.With("session", "1")
	sess.Debug("hidden")
	sess.Info("as text")
	if s := buf.String(); strings.Contains(s, "hidden") || !strings.Contains(s, "msg=\"as text\" session=1") {
		t.Fatalf("text output: %q", s)
	}
	buf.Reset()
	out.apply(config.Log{Level: config.LevelDebug, Format: config.FormatJSON})
	sess.Debug("as json")
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil || rec["msg"] != "as json" || rec["session"] != "1" || rec["level"] != "DEBUG" {
		t.Fatalf("json output after reload: %q (%v)", buf.String(), err)
	}
	// The admin API sets warn; a reload with the same [log] level keeps it.
	out.level.Set(slog.LevelWarn)
	out.apply(config.Log{Level: config.LevelDebug, Format: config.FormatJSON})
	buf.Reset()
	sess.Info("dropped")
	if buf.Len() != 0 {
		t.Fatalf("a reload that kept [log] level reset the run-time level: %q", buf.String())
	}
	out.apply(config.Log{Level: config.LevelInfo, Format: config.FormatJSON})
	sess.Info("shown")
	if !strings.Contains(buf.String(), "shown") {
		t.Fatal("a changed [log] level was not applied")
	}
}

// TestLogOutputDerivesLazily: a logger derived (attributes, then a group, then attributes)
// while the output is text writes the same record as JSON after a switch, and back.
func TestLogOutputDerivesLazily(t *testing.T) {
	var buf bytes.Buffer
	out, log := newLogOutput(config.Log{Level: config.LevelInfo, Format: config.FormatText}, &buf)
	sess := log.With("session", "7").WithGroup("tls").With("sni", "a.example")
	sess.Info("one", "resumed", true)
	if s := buf.String(); !strings.Contains(s, `session=7 tls.sni=a.example tls.resumed=true`) {
		t.Fatalf("text: %q", s)
	}
	buf.Reset()
	out.apply(config.Log{Level: config.LevelInfo, Format: config.FormatJSON})
	sess.Info("two", "resumed", false)
	var rec struct {
		Msg     string `json:"msg"`
		Session string `json:"session"`
		TLS     struct {
			SNI     string `json:"sni"`
			Resumed bool   `json:"resumed"`
		} `json:"tls"`
	}
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil || rec.Msg != "two" || rec.Session != "7" || rec.TLS.SNI != "a.example" || rec.TLS.Resumed {
		t.Fatalf("json after the switch: %q (%v)", buf.String(), err)
	}
	buf.Reset()
	out.apply(config.Log{Level: config.LevelInfo, Format: config.FormatText})
	sess.Info("three")
	if s := buf.String(); !strings.Contains(s, `msg=three session=7 tls.sni=a.example`) {
		t.Fatalf("text again: %q", s)
	}
}
