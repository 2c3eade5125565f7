module github.com/ftpsproxy/ftpsproxy

go 1.26.0

require (
	github.com/BurntSushi/toml v1.6.0 // indirect
	github.com/fclairamb/ftpserverlib v0.29.0 // indirect
	github.com/jlaffaye/ftp v0.2.4 // indirect
	github.com/pires/go-proxyproto v0.15.0 // indirect
	github.com/spf13/afero v1.15.0 // indirect
	golang.org/x/sys v0.40.0 // indirect
	golang.org/x/text v0.37.0 // indirect
	golang.org/x/time v0.16.0 // indirect
)
