package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/cloudflare/tableflip"
)

// upgradeTimeout bounds how long the old process waits for the new one to say it is ready.
const upgradeTimeout = 2 * time.Minute

// upgradeSettle is how long the old process, once it has stopped accepting, lets its sessions
// go on before it drains as on SIGTERM: a session that was mid-way through its commands when
// the new process took over finishes them instead of getting the shutdown 421.
const upgradeSettle = 2 * time.Second

// notifyHook tells the service manager about the process's state. It is called with
// "READY=1" once serving, "RELOADING=1" and then "READY=1" around a reload, "STOPPING=1" when
// a drain starts, and "MAINPID=<pid>" from the new process of an upgrade before its READY=1.
// Helper "ops" wires systemd's notify socket to it (notify.go); until then it does nothing.
var notifyHook = func(state string) {}

// upgrader hands the listening sockets to a new process on SIGUSR2 (cloudflare/tableflip): the
// new binary at the same path starts with every listener (client control, admin, ACME HTTP)
// inherited, says it is ready, and the old process then stops accepting and drains. Where
// tableflip is not supported, listeners are bound directly and SIGUSR2 is refused.
type upgrader struct {
	upg *tableflip.Upgrader // nil when not supported
	log *slog.Logger
}

// newUpgrader starts tableflip. pidFile, when set, is written with the pid of the process
// that is ready (the new one after an upgrade).
func newUpgrader(pidFile string, log *slog.Logger) (*upgrader, error) {
	upg, err := tableflip.New(tableflip.Options{UpgradeTimeout: upgradeTimeout, PIDFile: pidFile})
	if errors.Is(err, tableflip.ErrNotSupported) {
		log.Warn("zero-downtime upgrade (SIGUSR2) is not supported on this platform")
		return &upgrader{log: log}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("upgrade: %w", err)
	}
	return &upgrader{upg: upg, log: log}, nil
}

// listen binds addr, or takes the socket inherited for it from the process being upgraded.
func (u *upgrader) listen(network, addr string) (net.Listener, error) {
	if u.upg == nil {
		return net.Listen(network, addr)
	}
	return u.upg.Listen(network, addr)
}

// inherited reports whether this process was started by an upgrade.
func (u *upgrader) inherited() bool { return u.upg != nil && u.upg.HasParent() }

// ready tells the old process (if any) that this one serves, which makes it drain, and closes
// inherited sockets this config does not use.
func (u *upgrader) ready() error {
	if u.inherited() {
		notifyHook(fmt.Sprintf("MAINPID=%d", os.Getpid()))
	}
	notifyHook("READY=1")
	if u.upg == nil {
		return nil
	}
	return u.upg.Ready()
}

// exit is closed once an upgrade has succeeded: the process must then drain and end.
func (u *upgrader) exit() <-chan struct{} {
	if u.upg == nil {
		return nil
	}
	return u.upg.Exit()
}

// upgrade starts the new process and waits until it is ready or failed. It runs in its own
// goroutine, since it takes as long as the new process needs to start.
func (u *upgrader) upgrade() {
	if u.upg == nil {
		u.log.Error("upgrade refused: not supported on this platform")
		return
	}
	u.log.Info("upgrade: starting the new process", "binary", os.Args[0])
	if err := u.upg.Upgrade(); err != nil {
		u.log.Error("upgrade failed; this process goes on serving", "err", err)
		return
	}
	u.log.Info("upgrade: the new process is ready; draining this one", "pid", os.Getpid())
}

// stop ends tableflip's bookkeeping when the process shuts down for good.
func (u *upgrader) stop() {
	if u.upg != nil {
		u.upg.Stop()
	}
}
