package pebble

import (
	"context"
	"encoding/pem"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestStart(t *testing.T) {
	port := freePort(t)
	e := Start(t, Options{HTTPPort: port})
	if e.HTTPPort != port || e.HTTPAddress != "127.0.0.1:"+strconv.Itoa(port) {
		t.Errorf("HTTPPort %d HTTPAddress %q, want the port asked for, %d", e.HTTPPort, e.HTTPAddress, port)
	}
	if n := e.Orders(); n != 0 {
		t.Errorf("%d orders before any client, want 0", n)
	}
	if dir := e.Get(t, e.Directory); !strings.Contains(string(dir), `"newOrder"`) {
		t.Errorf("directory without newOrder: %s", dir)
	}
	if b, _ := pem.Decode(e.IssuerRootPEM(t)); b == nil || b.Type != "CERTIFICATE" {
		t.Error("/roots/0 is not a PEM certificate")
	}
	e.IssuerRoots(t)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, name := range []string{"ftp.test.example", "anything.else.example"} {
		addrs, err := e.Resolver().LookupHost(ctx, name)
		if err != nil || len(addrs) == 0 || addrs[0] != "127.0.0.1" {
			t.Errorf("%s resolves to %v %v, want 127.0.0.1", name, addrs, err)
		}
	}
}
