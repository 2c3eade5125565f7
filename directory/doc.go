// Package directory is the user directory of a hosting proxy: it tells, per user name, which
// pool or backend of the config a login goes to and as which backend user, and optionally
// asks an external service whether a login is allowed.
//
// Three sources, all optional: a CSV file (user,target[,backend_user]) held in memory and
// re-read when it changes (mtime poll) or on Reload; an HTTP lookup service for users the
// file does not know, with a positive and a negative cache; and an HTTP authentication
// service that sees the password and may map the credentials.
//
// It does not dial backends, does not know the config's pools (a caller-supplied check says
// which targets exist) and never builds an address from client input: a target is only a
// name the caller looks up among its configured pools and backends.
//
//	d, err := directory.New(directory.Config{File: "users.csv", URL: "https://dir.example/lookup"}, known, log)
//	go d.Watch(ctx)
//	ans, found, err := d.Lookup(ctx, directory.Query{User: "alice"})
package directory
