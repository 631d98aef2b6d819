#!/usr/bin/env bash
# build-tools.sh [tool...] — build the pinned cluster tools from the Go module proxy into
# $AMBIT_TOOLS_CACHE/<name>-<version>/ (default /var/cache/ambit-tools). A tool whose directory
# has a `.done` stamp is reused. Tools: kubernetes helm coredns gateway-api fortio httpbin noderunner.
# Without arguments builds all of them. Safe to re-run; concurrent runs serialize on a lock.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
. "$HERE/versions.env"
CACHE=${AMBIT_TOOLS_CACHE:-/var/cache/ambit-tools}
mkdir -p "$CACHE/src" "$CACHE/log"
export GOFLAGS="-trimpath -mod=mod -buildvcs=false"
export CGO_ENABLED=${CGO_ENABLED:-0}
export GOTOOLCHAIN=local
LDFLAGS="-s -w"

log() { echo "build-tools: $*" >&2; }

# Go >= 1.24 (the machine's /usr/local/go; Debian's golang-go 1.19 is too old)
if [ -x /usr/local/go/bin/go ]; then export PATH=/usr/local/go/bin:$PATH; fi
command -v go >/dev/null || { log "no go toolchain found"; exit 1; }
gov=$(go env GOVERSION | sed 's/^go//')
if [ "$(printf '%s\n1.24\n' "$gov" | sort -V | head -1)" != 1.24 ]; then
    log "go $gov is too old (need >= 1.24)"
    exit 1
fi

# with_lock <name> cmd... : one builder per tool at a time
with_lock() {
    local name=$1
    shift
    exec {lockfd}>"$CACHE/.lock-$name"
    flock "$lockfd"
    "$@"
    exec {lockfd}>&-
}

# mkmod <dir> <module-name> <require lines...>
mkmod() {
    local dir=$1 mod=$2
    shift 2
    rm -rf "$dir"
    mkdir -p "$dir"
    {
        echo "module $mod"
        echo
        echo "go 1.24"
        echo
        local r
        for r in "$@"; do echo "$r"; done
    } >"$dir/go.mod"
}

build_kubernetes() {
    local out=$CACHE/kubernetes-$K8S_VERSION
    [ -e "$out/.done" ] && return 0
    log "building kubernetes $K8S_VERSION (kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy, kubectl) — takes a while"
    local src=$CACHE/src/kubernetes-$K8S_VERSION
    go mod download -json "k8s.io/kubernetes@$K8S_VERSION" >"$CACHE/log/k8s-download.json"
    local kdir
    kdir=$(sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p' "$CACHE/log/k8s-download.json")
    local reps=() m
    for m in $(sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$kdir/go.mod"); do
        reps+=("replace $m => $m $K8S_STAGING_VERSION")
    done
    mkmod "$src" ambit.local/k8stools "require k8s.io/kubernetes $K8S_VERSION" "${reps[@]}"
    local cmds=(kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl ${AMBIT_BUILD_KUBELET:+kubelet})
    local pkgs=()
    for m in "${cmds[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$m"); done
    rm -rf "$out.tmp"
    mkdir -p "$out.tmp/bin"
    (cd "$src" && go build -ldflags="$LDFLAGS -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2) -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION" \
        -o "$out.tmp/bin/" "${pkgs[@]}")
    touch "$out.tmp/.done"
    rm -rf "$out"
    mv "$out.tmp" "$out"
}

# go_tool <name> <version> <module> <module-version> <package...> : build module binaries
go_tool() {
    local name=$1 ver=$2 mod=$3 modver=$4
    shift 4
    local out=$CACHE/$name-$ver
    [ -e "$out/.done" ] && return 0
    log "building $name $ver"
    local src=$CACHE/src/$name-$ver
    mkmod "$src" "ambit.local/$name" "require $mod $modver"
    rm -rf "$out.tmp"
    mkdir -p "$out.tmp/bin"
    (cd "$src" && go build -ldflags="$LDFLAGS" -o "$out.tmp/bin/" "$@")
    touch "$out.tmp/.done"
    rm -rf "$out"
    mv "$out.tmp" "$out"
}

build_helm() { go_tool helm "$HELM_VERSION" helm.sh/helm/v3 "$HELM_VERSION" helm.sh/helm/v3/cmd/helm; }
build_coredns() { go_tool coredns "$COREDNS_VERSION" github.com/coredns/coredns "$COREDNS_VERSION" github.com/coredns/coredns; }
build_fortio() { go_tool fortio "$FORTIO_VERSION" fortio.org/fortio "$FORTIO_VERSION" fortio.org/fortio; }
build_httpbin() { go_tool go-httpbin "$GO_HTTPBIN_VERSION" github.com/mccutchen/go-httpbin/v2 "$GO_HTTPBIN_VERSION" github.com/mccutchen/go-httpbin/v2/cmd/go-httpbin; }

build_gateway_api() {
    local out=$CACHE/gateway-api-$GATEWAY_API_VERSION
    [ -e "$out/.done" ] && return 0
    log "fetching gateway-api $GATEWAY_API_VERSION CRDs"
    local dir
    dir=$(go mod download -json "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
    rm -rf "$out.tmp"
    mkdir -p "$out.tmp/crd"
    cp "$dir"/config/crd/standard/*.yaml "$out.tmp/crd/"
    chmod -R u+w "$out.tmp"
    touch "$out.tmp/.done"
    rm -rf "$out"
    mv "$out.tmp" "$out"
}

build_noderunner() {
    # the node runner is our own source (test/cluster/noderunner); rebuilt when its sources change
    local sum
    sum=$(cat "$HERE"/noderunner/*.go "$HERE"/noderunner/go.mod | sha256sum | cut -c1-12)
    local out=$CACHE/noderunner-$K8S_VERSION-$sum
    [ -e "$out/.done" ] && return 0
    log "building noderunner ($sum)"
    rm -rf "$out.tmp"
    mkdir -p "$out.tmp/bin"
    (cd "$HERE/noderunner" && go build -ldflags="$LDFLAGS" -o "$out.tmp/bin/ambit-noderunner" .)
    touch "$out.tmp/.done"
    rm -rf "$out"
    mv "$out.tmp" "$out"
}

ALL=(kubernetes helm coredns gateway-api fortio httpbin noderunner)
[ $# -eq 0 ] && set -- "${ALL[@]}"
for t in "$@"; do
    case $t in
    kubernetes | helm | coredns | fortio | httpbin | noderunner) with_lock "$t" "build_$t" ;;
    gateway-api) with_lock "$t" build_gateway_api ;;
    *)
        echo "build-tools: unknown tool $t" >&2
        exit 2
        ;;
    esac
done
