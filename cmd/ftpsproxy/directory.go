package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/ftpsproxy/ftpsproxy/config"
	"github.com/ftpsproxy/ftpsproxy/directory"
	"github.com/ftpsproxy/ftpsproxy/proxy"
)

// buildDirectory sets pc.Directory from [directory]. A reload with the same settings keeps
// the directory (its cache, its watcher) and re-reads its file: a bad file then keeps the
// table in force and is logged, it does not refuse the reload. New settings build a new one,
// whose file must load.
func buildDirectory(f *config.File, pc *proxy.Config, rt, prev *runtime, log *slog.Logger) error {
	dc := f.Directory
	if !dc.Enabled() {
		return nil
	}
	key := fmt.Sprintf("%+v", dc)
	if prev != nil && prev.dir != nil && prev.dirKey == key {
		if err := prev.dir.Reload(pc.HasTarget); err != nil {
			log.Error("directory reload refused; the directory in force stays", "err", err)
		}
		rt.dir, rt.stopDir = prev.dir, prev.stopDir
	} else {
		d, err := directory.New(dc, pc.HasTarget, log)
		if err != nil {
			return err
		}
		rt.dir = d
	}
	rt.dirKey = key
	pc.Directory = rt.dir
	return nil
}

// startDirectory runs the directory file's watcher unless it runs already (a kept directory).
func (rt *runtime) startDirectory() {
	if rt.dir == nil || rt.stopDir != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	rt.stopDir = cancel
	go rt.dir.Watch(ctx)
}

// stopDirectoryFor stops old's watcher when rt does not keep its directory.
func (rt *runtime) stopDirectoryFor(old *runtime) {
	if old.stopDir != nil && old.dir != rt.dir {
		old.stopDir()
	}
}
