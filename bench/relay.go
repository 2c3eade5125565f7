package main

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"
)

// The bare relay: no FTP logic at all. It listens on the control port and on every port of
// the backend's passive range, on its own loopback IP, and forwards each connection to the
// same port on the backend's IP. The client uses EPSV (229 carries no address) or ignores the
// 227 address, so nothing is rewritten. The plain relay copies with io.Copy between two
// *net.TCPConn (splice); the TLS relay terminates TLS toward the client on every port
// (implicit TLS on the control port, no AUTH TLS: it cannot see FTP commands) and copies
// plaintext to the backend.
//
// The bare TLS terminator (Terminate) is the handshake phase's reference: it accepts, runs the
// crypto/tls server handshake with one tls.Config (session tickets on, the default), writes
// "220 ready", then reads until the client closes. No backend, no FTP: the ceiling of
// crypto/tls on this machine.
//
// It runs as a child process of the benchmark (the benchmark's own executable with
// relayEnv set), so that its CPU time and RSS are measured alone.

const relayEnv = "FTPSPROXY_BENCH_RELAY"

type relaySpec struct {
	Listen string `json:"listen"` // IP to listen on
	Target string `json:"target"` // backend IP
	Ports  []int  `json:"ports"`  // control port and passive ports, identical on both sides
	Cert   string `json:"cert,omitempty"`
	Key    string `json:"key,omitempty"` // with Cert: terminate TLS
	// Terminate: no backend (Target unused); with Cert, greet and read until the client closes.
	Terminate bool `json:"terminate,omitempty"`
}

// relayChild reports whether this process was started as a relay.
func relayChild() bool { return os.Getenv(relayEnv) != "" }

// relayMain is the relay process: it prints "ready" once every port listens and runs until
// its stdin closes (the benchmark ended, however it ended).
func relayMain() int {
	var spec relaySpec
	if err := json.Unmarshal([]byte(os.Getenv(relayEnv)), &spec); err != nil {
		fmt.Fprintln(os.Stderr, "relay:", err)
		return 2
	}
	var tcfg *tls.Config
	if spec.Cert != "" {
		cert, err := tls.LoadX509KeyPair(spec.Cert, spec.Key)
		if err != nil {
			fmt.Fprintln(os.Stderr, "relay:", err)
			return 2
		}
		// One config for control and data connections, so data connections resume the
		// control connection's session like they do on the proxies.
		tcfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	for _, port := range spec.Ports {
		ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.ParseIP(spec.Listen), Port: port})
		if err != nil {
			fmt.Fprintln(os.Stderr, "relay:", err)
			return 2
		}
		if spec.Terminate {
			go termServe(ln, tcfg)
			continue
		}
		target := net.JoinHostPort(spec.Target, strconv.Itoa(port))
		go relayServe(ln, target, tcfg)
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	return 0
}

func relayServe(ln *net.TCPListener, target string, tcfg *tls.Config) {
	for {
		c, err := ln.AcceptTCP()
		if err != nil {
			fmt.Fprintln(os.Stderr, "relay: accept:", err)
			return
		}
		go relayConn(c, target, tcfg)
	}
}

func termServe(ln *net.TCPListener, tcfg *tls.Config) {
	for {
		c, err := ln.AcceptTCP()
		if err != nil {
			fmt.Fprintln(os.Stderr, "terminator: accept:", err)
			return
		}
		go termConn(c, tcfg)
	}
}

var termGreeting = []byte("220 ready\r\n")

// termConn is one terminated connection: handshake, greeting, then read until the client
// closes (the TLS 1.3 tickets went out with the handshake).
func termConn(c *net.TCPConn, tcfg *tls.Config) {
	defer c.Close()
	tc := tls.Server(c, tcfg)
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if err := tc.Handshake(); err != nil {
		return
	}
	if _, err := tc.Write(termGreeting); err != nil {
		return
	}
	c.SetDeadline(time.Time{})
	io.Copy(io.Discard, tc)
}

type closeWriter interface{ CloseWrite() error }

// relayConn forwards one connection to target, both directions, with half-close.
func relayConn(c *net.TCPConn, target string, tcfg *tls.Config) {
	raddr, _ := net.ResolveTCPAddr("tcp4", target)
	b, err := net.DialTCP("tcp4", nil, raddr)
	if err != nil {
		c.Close()
		return
	}
	var client net.Conn = c
	if tcfg != nil {
		client = tls.Server(c, tcfg)
	}
	var wg sync.WaitGroup
	half := func(dst, src net.Conn) {
		defer wg.Done()
		io.Copy(dst, src)
		if cw, ok := dst.(closeWriter); ok {
			cw.CloseWrite()
		}
	}
	wg.Add(2)
	go half(b, client)
	go half(client, b)
	wg.Wait()
	client.Close()
	b.Close()
}

// startRelay starts a relay child process and waits for it to listen.
func startRelay(name, logPath string, spec relaySpec) (*proc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	js, _ := json.Marshal(spec)
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), relayEnv+"="+string(js), "GOMAXPROCS=2")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	_ = stdin // held by cmd until Wait: closing it (at exit) stops the relay
	p, err := startProc(name, cmd, logPath)
	if err != nil {
		return nil, err
	}
	line := make([]byte, 6)
	if _, err := io.ReadFull(stdout, line); err != nil || string(line) != "ready\n" {
		p.stop()
		return nil, fmt.Errorf("%s did not start: %v\n%s", name, err, p.logTail())
	}
	return p, nil
}
