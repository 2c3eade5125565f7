package main

import (
	"log/slog"
	"strconv"

	sd "github.com/coreos/go-systemd/v22/daemon"
)

// systemd readiness protocol (sd_notify(3)) for Type=notify units. Every function is a no-op
// when NOTIFY_SOCKET is unset (not started by systemd), so they are called unconditionally.
// A failed send is logged, never fatal: the proxy serves whether or not systemd hears it.

// notifyReady tells systemd the proxy serves: its listeners accept (start) or the reloaded
// config is in force (after notifyReloading).
func notifyReady(log *slog.Logger) { sdNotify(log, sd.SdNotifyReady) }

// notifyReloading tells systemd a SIGHUP reload started; notifyReady must follow, whether
// the reload was applied or refused. MONOTONIC_USEC lets systemd ≥ 253 match the two.
func notifyReloading(log *slog.Logger) {
	sdNotify(log, sd.SdNotifyReloading+"\n"+sd.SdNotifyMonotonicUsec())
}

// notifyStopping tells systemd the proxy stopped accepting and drains (SIGTERM/SIGINT, or
// the old process after an upgrade).
func notifyStopping(log *slog.Logger) { sdNotify(log, sd.SdNotifyStopping) }

// NotifyMainPID tells systemd that pid is now the service's main process: the new process of
// a SIGUSR2 upgrade calls it with its own pid once it serves, before READY=1 (tableflip does
// not tell the old process the new pid; the unit has NotifyAccess=all so the new process may
// notify before it is the main one). The old one then drains and exits.
func NotifyMainPID(log *slog.Logger, pid int) {
	sdNotify(log, "MAINPID="+strconv.Itoa(pid))
}

func sdNotify(log *slog.Logger, state string) {
	sent, err := sd.SdNotify(false, state)
	switch {
	case err != nil:
		log.Warn("systemd notify failed", "state", state, "err", err)
	case sent:
		log.Debug("systemd notified", "state", state)
	}
}
