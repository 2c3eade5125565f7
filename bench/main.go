// Command bench measures ftpsproxy against a direct connection to the backend, ProFTPD's
// mod_proxy and a bare relay, all on loopback in front of the same vsftpd: throughput of RETR
// and STOR (plain, and FTPS toward the client), session rate, NOOP latency, memory per idle
// session (plain and FTPS), CPU per GiB relayed, TLS handshake rates against a bare Go TLS
// terminator, and how NOOP latency and CPU grow with the sessions held. See README.md in this
// directory.
//
//	go run ./bench [-quick] [-json FILE] [flags]
//
// It needs root and the test peers (scripts/install-test-peers.sh).
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if relayChild() {
		os.Exit(relayMain())
	}
	os.Exit(run(os.Args[1:]))
}

type stderrLogger struct{ start time.Time }

func (l stderrLogger) Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(l.start).Seconds(), fmt.Sprintf(format, args...))
}

func run(args []string) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	quick := fs.Bool("quick", false, "small sizes: 64 MiB files, 200 sessions, 100 idle sessions, 2 rounds (about a minute)")
	jsonPath := fs.String("json", "", "write the raw numbers as JSON to `FILE`")
	reps := fs.Int("reps", 0, "rounds of every measurement (default 5; quick 2)")
	sizeMiB := fs.Int("size", 0, "file size in MiB for RETR/STOR (default 1024; quick 64)")
	sessions := fs.Int("sessions", 0, "sessions per path per round for the session rate (default 1500; quick 200)")
	conc := fs.Int("concurrency", 0, "concurrent clients for the session rate (default 32)")
	noops := fs.Int("noops", 0, "NOOPs per path per round (default 5000; quick 500)")
	idle := fs.String("idle", "", "idle session levels, comma-separated (default 1000,10000; quick 100)")
	ftpsIdle := fs.String("ftps-idle", "", "idle FTPS session levels of the ftpsidle phase, comma-separated (default 1000,5000; quick 100)")
	hsFull := fs.Int("hs-full", 0, "full TLS handshakes per path per round (default 1000; quick 200)")
	hsResumed := fs.Int("hs-resumed", 0, "resumed TLS handshakes per path per round (default 2000; quick 400)")
	hsMP := fs.Int("hs-mod-proxy", 0, "TLS handshakes through mod_proxy per round and kind: it forks per connection (default 50; quick 20)")
	scale := fs.String("scale", "", "idle session levels of the scale phase, comma-separated (default 100,1000,5000; quick 50,200)")
	scaleNoops := fs.Int("scale-noops", 0, "NOOPs per worker per round in the scale phase (default 1000; quick 100)")
	capMP := fs.Int("mod-proxy-cap", 0, "most idle sessions held through mod_proxy, one process each (default 2000; quick 100)")
	phases := fs.String("phases", strings.Join(allPhases, ","), "phases to run, comma-separated")
	login := fs.String("login", "anonymous", "backend login: anonymous (vsftpd maps it to the test user, no password hashing) or local (ftptest through PAM: yescrypt costs ~13 ms of CPU per login)")
	bin := fs.String("ftpsproxy", "", "use this ftpsproxy binary instead of building ./cmd/ftpsproxy")
	keep := fs.Bool("keep", false, "keep the work directory (configs, logs)")
	logLevel := fs.String("ftpsproxy-log", "info", "ftpsproxy [log] level: debug, info, warn or error (its log goes to a file in the work directory)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	opt := DefaultOptions(*quick)
	setInt := func(dst *int, v int) {
		if v > 0 {
			*dst = v
		}
	}
	setInt(&opt.Reps, *reps)
	setInt(&opt.Sessions, *sessions)
	setInt(&opt.Concurrency, *conc)
	setInt(&opt.Noops, *noops)
	setInt(&opt.ModProxyCap, *capMP)
	setInt(&opt.HSFull, *hsFull)
	setInt(&opt.HSResumed, *hsResumed)
	setInt(&opt.HSModProxy, *hsMP)
	setInt(&opt.ScaleNoops, *scaleNoops)
	if *sizeMiB > 0 {
		opt.FileSize = int64(*sizeMiB) << 20
	}
	for _, l := range []struct {
		flag, val string
		dst       *[]int
	}{{"-idle", *idle, &opt.IdleLevels}, {"-ftps-idle", *ftpsIdle, &opt.FTPSIdleLevels}, {"-scale", *scale, &opt.ScaleLevels}} {
		if l.val == "" {
			continue
		}
		*l.dst = nil
		for f := range strings.SplitSeq(l.val, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				fmt.Fprintf(os.Stderr, "bench: bad %s %q\n", l.flag, l.val)
				return 2
			}
			*l.dst = append(*l.dst, n)
		}
	}
	opt.Phases = nil
	for f := range strings.SplitSeq(*phases, ",") {
		f = strings.TrimSpace(f)
		known := false
		for _, p := range allPhases {
			known = known || p == f
		}
		if !known {
			fmt.Fprintf(os.Stderr, "bench: unknown phase %q (have %s)\n", f, strings.Join(allPhases, ","))
			return 2
		}
		opt.Phases = append(opt.Phases, f)
	}
	if *login != "anonymous" && *login != "local" {
		fmt.Fprintf(os.Stderr, "bench: -login must be anonymous or local\n")
		return 2
	}
	opt.Login, opt.FtpsproxyBin, opt.Keep, opt.LogLevel = *login, *bin, *keep, *logLevel

	// On SIGINT/SIGTERM, stop every server started so far before leaving.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "bench: %v: stopping servers\n", s)
		stopAll()
		os.Exit(130)
	}()

	res, err := Run(opt, stderrLogger{start: time.Now()}, os.Stdout)
	if res != nil && *jsonPath != "" {
		if res.Targets == nil {
			res.finish()
		}
		if jerr := res.writeJSON(*jsonPath); jerr != nil {
			fmt.Fprintln(os.Stderr, "bench:", jerr)
			return 1
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: FAILED:", err)
		return 1
	}
	return 0
}
