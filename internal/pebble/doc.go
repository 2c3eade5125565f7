// Package pebble runs a real ACME CA for tests: Let's Encrypt's pebble, with
// pebble-challtestsrv as its DNS server (every name resolves to 127.0.0.1), so
// that pebble's HTTP-01 validation really connects to the ACME client's
// challenge server on 127.0.0.1:Env.HTTPPort.
//
// Both binaries are installed with "go install" (through the Go module proxy,
// outside this module, so go.mod is untouched) into a cache directory the first
// time, ~25 s, and reused afterwards. When something is missing, Start fails the
// test: it never skips, since a skipped test looks like a passing one.
//
// Usage:
//
//	ca := pebble.Start(t, pebble.Options{})
//	// ACME client: directory ca.Directory, trust ca.MinicaRoot for the ACME API,
//	// answer HTTP-01 on ca.HTTPAddress.
//	...
//	roots := ca.IssuerRoots(t) // verifies the certificates pebble issued
//	if ca.Orders() != 1 { ... }
package pebble
