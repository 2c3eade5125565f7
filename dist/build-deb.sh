#!/usr/bin/env bash
# Builds the ftpsproxy .deb from this checkout: a static binary, then nfpm (goreleaser's
# packager) run as a pinned Go module, so go.mod does not carry it and nothing is installed.
#
#   dist/build-deb.sh [OUTDIR]     -> OUTDIR/ftpsproxy_VERSION_ARCH.deb (default OUTDIR: dist/out)
#
# VERSION comes from $VERSION, else `git describe` of a vX.Y.Z tag, else 0.0.0~gitCOMMIT. If v2.48.0's
# dependencies cannot be fetched, NFPM_VERSION=v2.45.2 is the known-good fallback.
set -euo pipefail
cd "$(dirname "$0")/.."

NFPM_VERSION=${NFPM_VERSION:-v2.48.0}
OUT=$(realpath -m "${1:-dist/out}")
mkdir -p "$OUT"

version=${VERSION:-$(git describe --tags --match 'v[0-9]*' --dirty 2>/dev/null || true)}
version=${version#v}
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
[[ $version =~ ^[0-9] ]] || version="0.0.0~git$commit"

# nfpm.yaml takes the binary from dist/build/ (ignored by git).
mkdir -p dist/build
CGO_ENABLED=0 go build -trimpath -buildvcs=false \
	-ldflags "-s -w -X main.version=$version -X main.commit=$commit -X github.com/ftpsproxy/ftpsproxy/admin.stampedCommit=$commit" \
	-o dist/build/ftpsproxy ./cmd/ftpsproxy

export DEB_VERSION=$version DEB_ARCH=$(go env GOARCH)
go run "github.com/goreleaser/nfpm/v2/cmd/nfpm@$NFPM_VERSION" package \
	--config dist/nfpm.yaml --packager deb --target "$OUT/" >&2
deb="$OUT/ftpsproxy_${version}_${DEB_ARCH}.deb"
[[ -f $deb ]] || { echo "build-deb.sh: nfpm did not write $deb" >&2; exit 1; }
echo "$deb"
