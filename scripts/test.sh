#!/usr/bin/env bash
# The one test command (README "Tests"): installs every peer the tests need from Debian's
# packages, checks formatting and vet, and runs the whole suite under the race detector.
# Runs as root on Debian 12 with Go installed (CI runs exactly this).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-peers.sh

unformatted=$(gofmt -l $(find . -name '*.go' -not -path './.git/*'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change: $unformatted" >&2
	exit 1
fi
go vet ./...
go test -race -count=1 -timeout 60m ./...
