package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a server process the benchmark started, in its own process group.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error
}

var (
	procsMu sync.Mutex
	started []*proc // every process still to stop, for cleanup on exit or signal
)

// startProc starts cmd in a new process group with stderr, and stdin and stdout unless the
// caller set them, on logPath (vsftpd reports startup errors on fd 0). The process gets
// SIGKILL if the benchmark dies.
func startProc(name string, cmd *exec.Cmd, logPath string) (*proc, error) {
	out, err := os.OpenFile(logPath, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	if cmd.Stdin == nil {
		cmd.Stdin = out
	}
	if cmd.Stdout == nil {
		cmd.Stdout = out
	}
	cmd.Stderr = out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	procsMu.Lock()
	started = append(started, p)
	procsMu.Unlock()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// logTail returns the end of the process's log, for error messages.
func (p *proc) logTail() string {
	b, _ := os.ReadFile(p.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// stop ends the process group and every descendant (vsftpd's session processes start their
// own sessions, so the group alone does not reach them): SIGTERM, then SIGKILL.
func (p *proc) stop() {
	if p.exited() {
		return
	}
	desc := descendants(p.pid())
	pgid := p.pid()
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-p.done
	for _, d := range desc {
		if d.pid == p.pid() {
			continue
		}
		// Only a process that is still the one seen above (same start time).
		if st, err := readStat(d.pid); err == nil && st.start == d.start {
			_ = syscall.Kill(d.pid, syscall.SIGKILL)
		}
	}
}

// stopAll stops every process started here, newest first.
func stopAll() {
	procsMu.Lock()
	ps := started
	started = nil
	procsMu.Unlock()
	var wg sync.WaitGroup
	for i := len(ps) - 1; i >= 0; i-- {
		wg.Add(1)
		go func(p *proc) { defer wg.Done(); p.stop() }(ps[i])
	}
	wg.Wait()
}

// procStat is what the benchmark reads from /proc/<pid>/stat.
type procStat struct {
	pid, ppid, pgrp int
	ticks           uint64 // utime + stime
	sysTicks        uint64 // stime
	childTicks      uint64 // cutime + cstime: children it has reaped
	rss             int64  // bytes
	start           uint64 // start time, to tell a reused pid apart
}

var (
	clkTck   = uint64(100) // USER_HZ: 100 on every Linux architecture Go supports
	pageSize = int64(os.Getpagesize())
)

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, errors.New("bad stat")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): field n is f[n-3].
	if len(f) < 22 {
		return procStat{}, errors.New("short stat")
	}
	num := func(n int) uint64 { v, _ := strconv.ParseUint(f[n-3], 10, 64); return v }
	return procStat{
		pid:        pid,
		ppid:       int(num(4)),
		pgrp:       int(num(5)),
		ticks:      num(14) + num(15),
		sysTicks:   num(15),
		childTicks: num(16) + num(17),
		start:      num(22),
		rss:        int64(num(24)) * pageSize,
	}, nil
}

// allStats reads every process's stat.
func allStats() []procStat {
	ents, _ := os.ReadDir("/proc")
	out := make([]procStat, 0, len(ents))
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readStat(pid); err == nil {
			out = append(out, st)
		}
	}
	return out
}

// descendants returns root and every process below it.
func descendants(root int) []procStat {
	all := allStats()
	children := map[int][]int{}
	byPid := map[int]procStat{}
	for _, s := range all {
		children[s.ppid] = append(children[s.ppid], s.pid)
		byPid[s.pid] = s
	}
	var out []procStat
	queue := []int{root}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		if s, ok := byPid[pid]; ok {
			out = append(out, s)
		}
		queue = append(queue, children[pid]...)
	}
	return out
}

// usage is the CPU and memory of a set of processes at one moment.
type usage struct {
	ticks map[int]uint64 // pid -> utime+stime
	sys   map[int]uint64 // pid -> stime
	rss   int64
	n     int
}

// sample reads the usage of root and its descendants (tree) or of root alone. For a tree,
// root's count includes the children it has reaped, so sessions that ended in between
// still count.
func sample(root int, tree bool) usage {
	var sts []procStat
	if tree {
		sts = descendants(root)
	} else if st, err := readStat(root); err == nil {
		sts = []procStat{st}
	}
	u := usage{ticks: map[int]uint64{}, sys: map[int]uint64{}, n: len(sts)}
	for _, s := range sts {
		u.ticks[s.pid] = s.ticks
		u.sys[s.pid] = s.sysTicks
		if tree && s.pid == root {
			u.ticks[s.pid] += s.childTicks
		}
		u.rss += s.rss
	}
	return u
}

// cpuSince is the CPU seconds used between two samples: per pid, processes that started
// in between count from zero.
func cpuSince(before, after usage) float64 {
	return tickDelta(before.ticks, after.ticks)
}

// sysSince is the part of cpuSince spent in the kernel (stime; reaped children not included).
func sysSince(before, after usage) float64 {
	return tickDelta(before.sys, after.sys)
}

func tickDelta(before, after map[int]uint64) float64 {
	var t uint64
	for pid, a := range after {
		b := before[pid]
		if a > b {
			t += a - b
		}
	}
	return float64(t) / float64(clkTck)
}

// pss sums the proportional set size of root and its descendants (shared pages divided
// among the processes sharing them), from /proc/<pid>/smaps_rollup.
func pss(root int) int64 {
	var total int64
	for _, s := range descendants(root) {
		f, err := os.Open(filepath.Join("/proc", strconv.Itoa(s.pid), "smaps_rollup"))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			l := sc.Text()
			if strings.HasPrefix(l, "Pss:") {
				kb, _ := strconv.ParseInt(strings.Fields(l)[1], 10, 64)
				total += kb << 10
				break
			}
		}
		f.Close()
	}
	return total
}
