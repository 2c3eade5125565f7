package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	goruntime "runtime"
	"runtime/debug"

	"github.com/ftpsproxy/ftpsproxy/admin"
	"github.com/ftpsproxy/ftpsproxy/config"
)

// version is set at build time with -ldflags "-X main.version=…" (dist/build-deb.sh does);
// left as is, the module version from the build info is used when there is one.
var version = "0.1.0-dev"

// Exit codes (SPEC §2).
const (
	exitOK     = 0
	exitConfig = 1
	exitUsage  = 2
)

const usageLine = "usage: ftpsproxy -config FILE [-check [-strict]] | ftpsproxy demo [-listen ADDR] [-ports RANGE] | ftpsproxy -version | ftpsproxy -help\n"

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "demo" {
		return runDemo(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("ftpsproxy", flag.ContinueOnError)
	// Parse prints its complaint and the usage; where to is known only after it returns.
	var parseOut bytes.Buffer
	fs.SetOutput(&parseOut)
	configPath := fs.String("config", "", "path of the TOML config file")
	check := fs.Bool("check", false, "validate the config, print every problem and warning, and exit")
	strict := fs.Bool("strict", false, "with -check: exit 1 when there are warnings")
	showVersion := fs.Bool("version", false, "print the version, commit and Go version, and exit")
	pidFile := fs.String("pidfile", "", "write the pid of the serving process here (the new one after a SIGUSR2 upgrade)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageLine)
		fs.PrintDefaults()
	}
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		// -help asked for it: usage on stdout, and success (SPEC §8).
		stdout.Write(parseOut.Bytes())
		return exitOK
	}
	stderr.Write(parseOut.Bytes())
	fs.SetOutput(stderr)
	if err != nil {
		return exitUsage
	}
	var bad string
	switch {
	case fs.NArg() > 0:
		bad = fmt.Sprintf("unexpected argument %q", fs.Arg(0))
	case *showVersion:
		fmt.Fprint(stdout, versionText(version, admin.BuildCommit(), debug.ReadBuildInfo))
		return exitOK
	case *configPath == "":
		bad = "-config is required"
	case *strict && !*check:
		bad = "-strict goes with -check"
	}
	if bad != "" {
		fmt.Fprintf(stderr, "ftpsproxy: %s\n", bad)
		fs.Usage()
		return exitUsage
	}
	f, err := config.Load(*configPath)
	if err != nil {
		fmt.Fprintf(stderr, "%s: config has problems:\n%v\n", *configPath, err)
		return exitConfig
	}
	if *check {
		return runCheck(*configPath, f, *strict, stdout, stderr)
	}
	logs, log := newLogOutput(f.Log, stderr)
	return serve(*configPath, *pidFile, f, logs, log)
}

// runCheck prints what -check reports on a valid file: OK, the summary and the warnings;
// with strict, warnings make it a refusal.
func runCheck(path string, f *config.File, strict bool, stdout, stderr io.Writer) int {
	warns := config.Warnings(f, config.System())
	if strict && len(warns) > 0 {
		fmt.Fprintf(stderr, "%s: config has warnings, and -strict refuses them:\n%s", path, config.FormatWarnings(warns))
		return exitConfig
	}
	fmt.Fprintf(stdout, "%s: OK\n%s%s", path, f.Summary(), config.FormatWarnings(warns))
	return exitOK
}

// versionText is what -version prints: the version, the commit the binary was built from
// (admin.BuildCommit: stamped by release builds, else Go's VCS stamp) and the Go version.
// Left at its default, the version is the module's when the build info has one (go install
// …@v1.2.3).
func versionText(v, commit string, readBuildInfo func() (*debug.BuildInfo, bool)) string {
	goVersion := goruntime.Version()
	if bi, ok := readBuildInfo(); ok {
		if v == "0.1.0-dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		goVersion = bi.GoVersion
	}
	return fmt.Sprintf("ftpsproxy %s\ncommit: %s\ngo: %s %s/%s\n", v, commit, goVersion, goruntime.GOOS, goruntime.GOARCH)
}
