#!/usr/bin/env bash
# Builds the real Kubernetes test tooling into .tools/bin/ (git-ignored), each tool only when its
# binary is missing or its pinned version (recorded in .tools/stamps/<tool>) changed:
#
#   kube-apiserver           k8s.io/kubernetes/cmd/kube-apiserver           (Go module, through a generated wrapper)
#   kubelet                  k8s.io/kubernetes/cmd/kubelet                  (same wrapper module)
#   kube-controller-manager  k8s.io/kubernetes/cmd/kube-controller-manager  (same wrapper module)
#   kube-scheduler           k8s.io/kubernetes/cmd/kube-scheduler           (same wrapper module)
#   etcd            see ETCD_SOURCE below                    (Debian etcd-server 3.4, or Go module 3.5)
#   helm            helm.sh/helm/v3/cmd/helm                 (Go module, through a wrapper)
#   csi-sanity      github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity (Go module, through a wrapper)
#
# Usage: scripts/k8s-tools.sh [--only <tool>]... [--force]
#
# Go's module cache and build cache stay in their default places (go env GOMODCACHE / GOCACHE), so a
# second run on the same machine (or after a version bump of one tool) is fast. Safe to run again
# and again, from CI (CI=true, root, no stdin). Installs the Debian packages it needs with apt-get
# (update first) when running as root. Exits non-zero naming the tool that failed.
#
# Every Go tool is built from a small wrapper module in .tools/src/<tool>/ that *requires* the
# upstream module instead of `go install mod@ver`, because `go install mod@ver` refuses modules whose
# go.mod has replace directives (etcd's server module has them; k8s.io/kubernetes does too).
# k8s.io/kubernetes additionally requires each k8s.io staging module at v0.0.0, so its wrapper
# replaces every one of them with v0.<minor>.<patch>; the list is read from the published
# k8s.io/kubernetes go.mod in the module cache, not hard-coded. The four Kubernetes commands share that
# one wrapper module (.tools/src/kubernetes/). One staging module is not served by the Go module proxy
# at the kube version (k8s.io/endpointslice@v0.32.13: 403 "not available"; kube-controller-manager
# imports it), so STAGING_OVERRIDES pins it to the previous patch release, which is served.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
BIN="$TOOLS/bin"
SRC="$TOOLS/src"
STAMPS="$TOOLS/stamps"

# Pinned versions. Bump one and only that tool is rebuilt on the next run.
KUBE_VERSION="v1.32.13"      # kubectl here is v1.32; staging modules are v0.32.13
# Staging modules the proxy does not serve at the kube version: module=version.
STAGING_OVERRIDES=("k8s.io/endpointslice=v0.32.12")
HELM_VERSION="v3.17.4"
CSI_TEST_VERSION="v5.4.0"
ETCD_VERSION="v3.5.21"       # only used when ETCD_SOURCE=go
# etcd: both sources were tried with kube-apiserver v1.32.13 on this machine and both pass
# test/k8s/apiserver.test.ts (namespaces, ConfigMaps, CRDs, kubectl wait). Debian's etcd-server
# 3.4.23 is the default because it installs in ~10 s (the Go build of etcd 3.5.21 takes ~42 s cold).
# Its one known gap: etcd < 3.4.31 lacks RequestWatchProgress, so the API server logs
# "RequestWatchProgress feature is not supported" and answers streaming-list watches
# (sendInitialEvents=true, the WatchList feature) with HTTP 500 "a watch stream was requested by the
# client but the required storage feature RequestWatchProgress is disabled". List-then-watch clients
# (kubectl get -w, classic informers) are unaffected. ETCD_SOURCE=go builds go.etcd.io/etcd/server/v3
# instead, which supports it.
ETCD_SOURCE="${ETCD_SOURCE:-debian}"
# Bumped when the build recipe itself changes (forces a rebuild of everything).
RECIPE=1

ALL_TOOLS=(kube-apiserver etcd helm csi-sanity kubelet kube-controller-manager kube-scheduler)
KUBE_CMDS=(kube-apiserver kubelet kube-controller-manager kube-scheduler)

log() { printf '[k8s-tools] %s\n' "$*" >&2; }
die() { printf '[k8s-tools] ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
  cat >&2 <<EOF
usage: scripts/k8s-tools.sh [--only <tool>]... [--force]
  tools: ${ALL_TOOLS[*]}
  env:   ETCD_SOURCE=debian|go (default debian), GO_PARALLEL (default 2)
EOF
}

only=()
force=0
while [ $# -gt 0 ]; do
  case "$1" in
    --only)
      [ $# -ge 2 ] || { usage; die "--only needs a tool name"; }
      only+=("$2"); shift 2 ;;
    --only=*) only+=("${1#--only=}"); shift ;;
    --force) force=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage; die "unknown argument: $1" ;;
  esac
done
for t in "${only[@]+"${only[@]}"}"; do
  case " ${ALL_TOOLS[*]} " in *" $t "*) ;; *) die "unknown tool '$t' (tools: ${ALL_TOOLS[*]})" ;; esac
done
[ ${#only[@]} -gt 0 ] || only=("${ALL_TOOLS[@]}")

export DEBIAN_FRONTEND=noninteractive
export GOTOOLCHAIN=local      # never download another Go toolchain
export CGO_ENABLED=0          # static binaries, no C compiler needed
export GOFLAGS="${GOFLAGS:-} -p=${GO_PARALLEL:-2} -mod=mod"

# ---------- system packages ----------
apt_updated=0
apt_install() {
  if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null; then
    die "missing system packages: $* (install them, or run this script as root)"
  fi
  if [ $apt_updated = 0 ]; then
    log "apt-get update"
    apt-get update -qq </dev/null || die "apt-get update failed"
    apt_updated=1
  fi
  log "apt-get install $*"
  apt-get install -y -qq --no-install-recommends "$@" </dev/null >/dev/null || die "apt-get install $* failed"
}

need_go() {
  command -v go >/dev/null || die "$1: the Go toolchain ('go') is not on PATH; install Go >= 1.23"
}

# ---------- stamps and timing ----------
stamp_ok() { # tool expected-stamp
  [ $force = 0 ] && [ -x "$BIN/$1" ] && [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ---------- Go wrapper modules ----------
# write_wrapper <tool> <module> <version> <package> [extra go.mod lines...]
write_wrapper() {
  local tool="$1" mod="$2" ver="$3" pkg="$4"; shift 4
  local dir="$SRC/$tool"
  rm -rf "$dir"; mkdir -p "$dir"
  {
    echo "// Generated by scripts/k8s-tools.sh: builds $pkg at $ver. Do not edit."
    echo "module marufs.local/tools/$tool"
    echo
    echo "go 1.23.0"
    echo
    echo "require $mod $ver"
    for line in "$@"; do echo "$line"; done
  } >"$dir/go.mod"
  cat >"$dir/tools.go" <<EOF
//go:build tools

// Generated by scripts/k8s-tools.sh. Pins $pkg into this module's build list.
package tools

import _ "$pkg"
EOF
}

# go_build <tool> <package> <ldflags>
go_build() {
  local tool="$1" pkg="$2" ldflags="$3" dir="$SRC/$1"
  ( cd "$dir" && go mod tidy ) || die "$tool: 'go mod tidy' in $dir failed"
  ( cd "$dir" && go build -trimpath -ldflags "-s -w $ldflags" -o "$BIN/$tool.new" "$pkg" ) \
    || die "$tool: 'go build $pkg' failed"
  mv -f "$BIN/$tool.new" "$BIN/$tool"
}

# The wrapper module shared by every Kubernetes command, written once per run.
kube_wrapper_done=0
kube_wrapper() {
  [ $kube_wrapper_done = 0 ] || return 0
  need_go kubernetes
  local ver="$KUBE_VERSION" stagever="v0.${KUBE_VERSION#v1.}"
  local gomod
  gomod="$(cd "$TOOLS" && go mod download -json "k8s.io/kubernetes@$ver" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')" \
    || die "kubernetes: 'go mod download k8s.io/kubernetes@$ver' failed"
  [ -f "$gomod" ] || die "kubernetes: go.mod of k8s.io/kubernetes@$ver not found in the module cache"
  # Every k8s.io module the published go.mod points at ./staging/src/... gets the staging version.
  local staging
  staging="$(sed -n 's#^[[:space:]]*\(replace[[:space:]]\{1,\}\)\{0,1\}\(k8s\.io/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\./staging/.*#\2#p' "$gomod" | sort -u)"
  [ -n "$staging" ] || die "kubernetes: no staging replace directives found in $gomod"
  local replaces=() m v o
  for m in $staging; do
    v="$stagever"
    for o in "${STAGING_OVERRIDES[@]}"; do [ "${o%%=*}" = "$m" ] && v="${o#*=}"; done
    replaces+=("replace $m => $m $v")
  done
  log "kubernetes: $(echo "$staging" | wc -l) staging modules replaced with $stagever (overrides: ${STAGING_OVERRIDES[*]})"
  write_wrapper kubernetes k8s.io/kubernetes "$ver" k8s.io/kubernetes/cmd/kube-apiserver "${replaces[@]}"
  # Pin every command into the one module's build list.
  {
    echo "//go:build tools"
    echo
    echo "// Generated by scripts/k8s-tools.sh. Pins the Kubernetes commands into this module's build list."
    echo "package tools"
    echo
    echo "import ("
    for m in "${KUBE_CMDS[@]}"; do echo "	_ \"k8s.io/kubernetes/cmd/$m\""; done
    echo ")"
  } >"$SRC/kubernetes/tools.go"
  ( cd "$SRC/kubernetes" && go mod tidy ) || die "kubernetes: 'go mod tidy' in $SRC/kubernetes failed"
  kube_wrapper_done=1
}

# build_kube <command>: one of KUBE_CMDS, from the shared wrapper module.
build_kube() {
  local tool="$1" ver="$KUBE_VERSION"
  kube_wrapper
  local minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
  local v ldflags=""
  for v in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $v.gitVersion=$ver -X $v.gitMajor=1 -X $v.gitMinor=$minor"
    ldflags+=" -X $v.gitTreeState=clean -X $v.buildDate=1970-01-01T00:00:00Z"
  done
  ( cd "$SRC/kubernetes" && go build -trimpath -ldflags "-s -w $ldflags" -o "$BIN/$tool.new" "k8s.io/kubernetes/cmd/$tool" ) \
    || die "$tool: 'go build k8s.io/kubernetes/cmd/$tool' failed"
  mv -f "$BIN/$tool.new" "$BIN/$tool"
}

build_etcd_go() {
  need_go etcd
  write_wrapper etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" go.etcd.io/etcd/server/v3
  go_build etcd go.etcd.io/etcd/server/v3 ""
}

build_etcd_debian() {
  [ -x /usr/bin/etcd ] || apt_install etcd-server
  [ -x /usr/bin/etcd ] || die "etcd: /usr/bin/etcd missing after installing etcd-server"
  # Debian starts an etcd service on install where systemd runs; no systemd here, and the helper
  # starts its own etcd on free loopback ports anyway.
  ln -sfn /usr/bin/etcd "$BIN/etcd"
}

build_helm() {
  need_go helm
  write_wrapper helm helm.sh/helm/v3 "$HELM_VERSION" helm.sh/helm/v3/cmd/helm
  go_build helm helm.sh/helm/v3/cmd/helm "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
}

build_csi_sanity() {
  need_go csi-sanity
  write_wrapper csi-sanity github.com/kubernetes-csi/csi-test/v5 "$CSI_TEST_VERSION" github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity
  go_build csi-sanity github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity "-X main.VERSION=$CSI_TEST_VERSION"
}

stamp_for() {
  case "$1" in
    kube-apiserver) echo "recipe=$RECIPE k8s.io/kubernetes@$KUBE_VERSION" ;;
    kubelet|kube-controller-manager|kube-scheduler)
      echo "recipe=$RECIPE k8s.io/kubernetes@$KUBE_VERSION ${STAGING_OVERRIDES[*]}" ;;
    etcd)
      if [ "$ETCD_SOURCE" = go ]; then echo "recipe=$RECIPE go.etcd.io/etcd/server/v3@$ETCD_VERSION"
      else echo "recipe=$RECIPE debian:etcd-server"; fi ;;
    helm) echo "recipe=$RECIPE helm.sh/helm/v3@$HELM_VERSION" ;;
    csi-sanity) echo "recipe=$RECIPE github.com/kubernetes-csi/csi-test/v5@$CSI_TEST_VERSION" ;;
  esac
}

build_one() {
  local tool="$1" want start
  want="$(stamp_for "$tool")"
  if stamp_ok "$tool" "$want"; then
    log "$tool: up to date ($want)"
    return 0
  fi
  start="$(now)"
  log "$tool: building ($want)"
  rm -f "$STAMPS/$tool"
  case "$tool" in
    kube-apiserver|kubelet|kube-controller-manager|kube-scheduler) build_kube "$tool" ;;
    etcd)
      case "$ETCD_SOURCE" in
        debian) build_etcd_debian ;;
        go) build_etcd_go ;;
        *) die "etcd: ETCD_SOURCE must be 'debian' or 'go', not '$ETCD_SOURCE'" ;;
      esac ;;
    helm) build_helm ;;
    csi-sanity) build_csi_sanity ;;
  esac
  "$BIN/$tool" --version >/dev/null 2>&1 || "$BIN/$tool" version >/dev/null 2>&1 \
    || die "$tool: the built binary $BIN/$tool does not run"
  echo "$want" >"$STAMPS/$tool"
  local secs; secs="$(elapsed "$start")"
  log "$tool: done in ${secs}s"
  printf '%s %s %ss %s\n' "$(date -u +%FT%TZ)" "$tool" "$secs" "$want" >>"$TOOLS/build-times.log"
}

mkdir -p "$BIN" "$SRC" "$STAMPS"
command -v openssl >/dev/null || apt_install openssl   # test/helpers/apiserver.ts makes certificates with it
total_start="$(now)"
for tool in "${only[@]}"; do build_one "$tool"; done
log "all done in $(elapsed "$total_start")s: ${only[*]} in $BIN"
