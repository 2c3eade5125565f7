package main

import (
	"bytes"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestNotifyMainPID checks the message the upgrade path sends (the upgrade itself is tested
// end to end where it is built): MAINPID=<pid> on the NOTIFY_SOCKET, and nothing, no error
// and no log line when the process was not started by systemd.
func TestNotifyMainPID(t *testing.T) {
	dir, err := os.MkdirTemp("", "ops-notify-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "n.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	t.Setenv("NOTIFY_SOCKET", path)
	NotifyMainPID(log, 4242)
	buf := make([]byte, 512)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := conn.Read(buf)
	if err != nil || string(buf[:n]) != "MAINPID=4242" {
		t.Fatalf("got %q, %v; want MAINPID=4242", buf[:n], err)
	}

	// A socket that is gone: logged as a warning, not fatal.
	t.Setenv("NOTIFY_SOCKET", filepath.Join(dir, "gone.sock"))
	notifyReady(log)
	if !strings.Contains(logs.String(), "systemd notify failed") {
		t.Fatalf("a failed send is not logged: %s", logs.String())
	}

	logs.Reset()
	os.Unsetenv("NOTIFY_SOCKET")
	notifyStopping(log)
	if logs.Len() != 0 {
		t.Fatalf("without NOTIFY_SOCKET: %s", logs.String())
	}
}
