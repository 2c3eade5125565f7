package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/cloudflare/tableflip"

	"github.com/ftpsproxy/ftpsproxy/balancer"
	"github.com/ftpsproxy/ftpsproxy/proxy"
)

// upgradeTimeout bounds how long the old process waits for the new one to say it is ready.
const upgradeTimeout = 2 * time.Minute

// Once it has stopped accepting, the old process of an upgrade lets its sessions go on until
// none has received a command for upgradeQuiet (at most upgradeSettle) before it drains as on
// SIGTERM: a client that was in the middle of a short exchange when the new process took over
// finishes it instead of getting the shutdown 421.
const (
	upgradeQuiet  = time.Second
	upgradeSettle = 10 * time.Second
)

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
	// Listeners are bound with the control connections' keep-alive set on the listening
	// socket, which accepted connections inherit (proxy.ControlListenConfig).
	upg, err := tableflip.New(tableflip.Options{UpgradeTimeout: upgradeTimeout, PIDFile: pidFile, ListenConfig: proxy.ControlListenConfig()})
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
		return proxy.ControlListenConfig().Listen(context.Background(), network, addr)
	}
	return u.upg.Listen(network, addr)
}

// inherited reports whether this process was started by an upgrade.
func (u *upgrader) inherited() bool { return u.upg != nil && u.upg.HasParent() }

// ready tells the old process (if any) that this one serves, which makes it drain, and closes
// inherited sockets this config does not use.
func (u *upgrader) ready() error {
	if u.inherited() {
		// The new process of an upgrade tells systemd it is the main one now (the unit has
		// NotifyAccess=all); tableflip does not give the old one its pid.
		NotifyMainPID(u.log, os.Getpid())
	}
	notifyReady(u.log)
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
// goroutine, since it takes as long as the new process needs to start. The administrator's
// drain/disable settings of reg go to the new process with the sockets.
func (u *upgrader) upgrade(reg *balancer.Registry) {
	if u.upg == nil {
		u.log.Error("upgrade refused: not supported on this platform")
		return
	}
	if err := u.passAdminState(reg); err != nil {
		u.log.Warn("upgrade: drain/disable settings not handed over", "err", err)
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

// adminStateFile names the file that carries the administrator's backend settings to the new
// process of an upgrade (tableflip passes it like the sockets).
const adminStateFile = "ftpsproxy-admin-state"

// adminStateMax bounds what the new process reads of that file.
const adminStateMax = 1 << 20

// adminState is one backend the administrator drained or disabled.
type adminState struct {
	Pool    string              `json:"pool"`
	Backend string              `json:"backend"` // its name, else its address
	Admin   balancer.AdminState `json:"admin"`
}

// passAdminState hands the drained and disabled backends of reg to the next process.
func (u *upgrader) passAdminState(reg *balancer.Registry) error {
	var states []adminState
	for _, v := range reg.Backends() {
		if a := v.Backend.Admin(); !v.Removed && a != balancer.AdminEnabled {
			states = append(states, adminState{Pool: v.Pool, Backend: v.Backend.Key(), Admin: a})
		}
	}
	f, err := os.CreateTemp("", "ftpsproxy-admin-state-")
	if err != nil {
		return err
	}
	os.Remove(f.Name()) // only the descriptor travels
	defer f.Close()
	if err := json.NewEncoder(f).Encode(states); err != nil {
		return err
	}
	return u.upg.AddFile(adminStateFile, f)
}

// takeAdminState applies the drain/disable settings the process being upgraded handed over.
func (u *upgrader) takeAdminState(reg *balancer.Registry) {
	if !u.inherited() {
		return
	}
	f, err := u.upg.File(adminStateFile)
	if err != nil || f == nil {
		return
	}
	defer f.Close()
	var states []adminState
	// ReadAt: the descriptor shares its offset (at the end) with the old process's copy.
	if err := json.NewDecoder(io.NewSectionReader(f, 0, adminStateMax)).Decode(&states); err != nil {
		u.log.Warn("upgrade: drain/disable settings unreadable", "err", err)
		return
	}
	for _, st := range states {
		if b := reg.Find(st.Pool, st.Backend); b != nil && st.Admin >= balancer.AdminEnabled && st.Admin <= balancer.AdminDisabled {
			b.SetAdmin(st.Admin)
			u.log.Info("backend state handed over by the upgrade", "pool", st.Pool, "backend", st.Backend, "admin", st.Admin.String())
		}
	}
}
