package config

import (
	"strings"
	"testing"
	"time"

	"github.com/ftpsproxy/ftpsproxy/directory"
)

func TestDirectoryConfig(t *testing.T) {
	f := mustParse(t, minimalConfig+`
[directory]
file = "/srv/users.csv"
url = "http://127.0.0.1:9/lookup"
timeout = "500ms"
cache_ttl = "5m"
on_error = "routes"
domain_separator = "@"
auth_url = "https://auth.example/ftp"
`)
	want := directory.Config{File: "/srv/users.csv", URL: "http://127.0.0.1:9/lookup", Timeout: 500 * time.Millisecond,
		CacheTTL: 5 * time.Minute, OnError: directory.OnErrorRoutes, DomainSeparator: "@", AuthURL: "https://auth.example/ftp"}
	if f.Directory != want {
		t.Fatalf("[directory] = %+v, want %+v", f.Directory, want)
	}
	if d := mustParse(t, minimalConfig).Directory; d.Enabled() || d != directory.DefaultConfig() {
		t.Fatalf("no [directory]: %+v", d)
	}
	bad := []struct{ in, want string }{
		{`on_error = "open"`, `directory.on_error: `},
		{`url = "ftp://x/y"`, `directory: url: want an http:// or https:// URL`},
		{`auth_url = "auth.example"`, `directory: auth_url: want an http:// or https:// URL`},
		{`timeout = "0s"`, `directory.timeout: must be more than 0s`},
		{`cache_ttl = "-1s"`, `directory.cache_ttl: must be more than 0s`},
		{`ca_file = "/nonexistent/ca.pem"`, `directory.ca_file: cannot read`},
		{`bogus = 1`, `directory.bogus`},
	}
	for _, b := range bad {
		_, err := Parse([]byte(minimalConfig + "[directory]\n" + b.in + "\n"))
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%s: err = %v, want %q", b.in, err, b.want)
		}
	}
}
