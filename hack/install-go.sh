#!/usr/bin/env bash
# Go for the offline kind path (Kubernetes 1.34, kind, etcd, CoreDNS, ... built from the Go
# module proxy; their go.mod files ask for Go 1.24). A Go on PATH (or in /usr/local/go) is
# used only when it is at least $GO_MIN: Debian 12's golang-go is 1.19 and cannot build
# them. Otherwise the toolchain module from the Go module proxy goes to $TOOLS/go, linked
# as $TOOLS/bin/go, which the Makefile (and hack/kind/kind.mk) put first on PATH; the older
# Go is left installed, unused. Prints the Go it settled on. Idempotent.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
TOOLS="${HPCHUB_TOOLS:-$here/.tools}"
GO_MIN="${GO_MIN:-1.24}"
GO_TOOLCHAIN="${GO_TOOLCHAIN:-1.24.4}"
mkdir -p "$TOOLS/bin"
export PATH="$TOOLS/bin:$PATH"

# new_enough GO: that binary runs and reports a version >= GO_MIN.
new_enough() {
  local v
  v="$("$1" env GOVERSION 2>/dev/null)" || return 1
  v="${v#go}"
  [ -n "$v" ] && [ "$(printf '%s\n%s\n' "$GO_MIN" "$v" | sort -V | head -n1)" = "$GO_MIN" ]
}

found=""
for cand in "$(command -v go || true)" /usr/local/go/bin/go; do
  if [ -n "$cand" ] && [ -x "$cand" ] && new_enough "$cand"; then
    found="$cand"
    break
  fi
done
if [ -n "$found" ]; then
  # /usr/local/go, or a newer Go than the one first on PATH: link it where PATH looks first.
  [ "$(command -v go)" = "$found" ] || ln -sf "$found" "$TOOLS/bin/go"
else
  old="$(command -v go >/dev/null && go env GOVERSION 2>/dev/null || echo none)"
  echo "install-go: Go $old is older than $GO_MIN; Go $GO_TOOLCHAIN from the Go module proxy (golang.org/toolchain) into $TOOLS/go"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  curl -fsSL -o "$tmp/go.zip" \
    "${GOPROXY_URL:-https://proxy.golang.org}/golang.org/toolchain/@v/v0.0.1-go$GO_TOOLCHAIN.linux-$(dpkg --print-architecture).zip"
  rm -rf "$TOOLS/go" && mkdir -p "$TOOLS/go"
  unzip -q "$tmp/go.zip" -d "$tmp/x"
  mv "$tmp"/x/golang.org/toolchain@*/* "$TOOLS/go/"
  chmod +x "$TOOLS"/go/bin/* "$TOOLS"/go/pkg/tool/*/*
  ln -sf "$TOOLS/go/bin/go" "$TOOLS/bin/go"
  new_enough "$TOOLS/bin/go" || { echo "install-go: $TOOLS/bin/go is not Go >= $GO_MIN" >&2; exit 1; }
fi
echo "install-go: $(command -v go) ($(go env GOVERSION))"
