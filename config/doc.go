// Package config reads ftpsproxy's TOML config file (SPEC §3) into typed values and checks
// it, reporting every problem with its key path.
//
// Decoding (decode.go) is strict: an unknown key, a value of the wrong TOML type or a value
// its type refuses is a problem, named by its full key path with array indices, with a line
// number and a "did you mean" where one can be given. Each value is parsed once into the type
// of the package that uses it (proxy.TLSMode, balancer.PolicyName, nat.PortRange,
// netip.Prefix, time.Duration, ...), and a table starts from the defaults that package
// defines. Validation (validate.go) then checks ranges, required keys, references between
// tables and the files the config names. Warnings (warn.go) are what -check reports without
// refusing the file.
//
// It does not build anything: turning a File into a running proxy is the command's job.
//
//	f, err := config.Load("/etc/ftpsproxy/config.toml")
//	if err != nil { // a *config.Error, one problem per line
//		...
//	}
//	for _, w := range config.Warnings(f, config.System()) { ... }
//
// Adding a key: a field with a toml tag in the struct of its table (the owning package's
// config type where the table is one, such as proxy.Limits), its default in that package's
// Default* function or constant, its checks in validate.go, a line in config.example.toml,
// and a golden test in testdata/config.
package config
