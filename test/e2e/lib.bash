# lib.bash — what every e2e script does around its checks (sourced; not a test itself).
#
#   e2e_setup <suite>   testlib + t_begin, binaries present, the e2e lock (istio-system is a
#                       singleton on the shared cluster), the cluster up (E2E_STARTED=1 when this
#                       script started it), KUBECONFIG/PATH, and this checkout's images mapped:
#                       $HUB/<binary>:* -> $BIN/<binary> and ambit/bookinfo:* -> the sample apps,
#                       first in the runner's images map (it re-reads it for every container)
#   e2e_require_no_mesh fails the suite if a mesh is already installed (never touch one)
#   e2e_install_mesh    helm install base, control-plane, cni, node-agent (--wait), in order
#   e2e_teardown        helm uninstall in reverse (unless the script did), images unmapped, the
#                       cluster down again if this script started it (AMBIT_CLUSTER_KEEP=1 keeps it)
#   all_ready <ns>      every pod of the namespace Running and Ready (at least one)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=../lib/testlib.sh
. "$REPO/test/lib/testlib.sh"
CL=$REPO/test/cluster/cluster.sh
BIN=$REPO/${BUILD:-build}/bin
NS=istio-system
WAIT=${E2E_WAIT:-90s}
RELEASES=(ambit-base istiod ambit-cni ambit-node) # install order; uninstall is the reverse
E2E_STARTED=0
sfx=$(printf '%04x' $((RANDOM % 65536)))
HUB=ambit-e2e-$sfx.local/ambit

e2e_setup() {
    t_begin "$1"
    local b
    for b in ambit-operator ambit-node ambit-cni ambitctl; do
        if [ ! -x "$BIN/$b" ]; then
            t_fail "binaries built" "$BIN/$b missing (run make all first)"
            t_end
            exit 1
        fi
    done
    exec 9>/tmp/ambit-e2e-install.lock
    if ! flock -w 600 9; then
        t_fail "e2e lock" "another e2e script holds /tmp/ambit-e2e-install.lock"
        t_end
        exit 1
    fi
    if ! "$CL" status >/dev/null 2>&1; then
        local t0=$SECONDS
        if "$CL" up >>"$T_LOG" 2>&1; then
            t_pass "cluster up ($((SECONDS - t0))s)"
            E2E_STARTED=1
        else
            t_fail "cluster up" "see $T_LOG and /var/lib/ambit-cluster/logs"
            tail -40 "$T_LOG"
            "$CL" down >/dev/null 2>&1
            t_end
            exit 1
        fi
    fi
    eval "$("$CL" env)"
    . "$REPO/test/cluster/config.sh"
    MAP=$RUN/images.map
}

e2e_map_images() {
    local tmp=$MAP.e2e-$sfx b
    {
        for b in ambit-operator ambit-node ambit-cni; do echo "$HUB/$b:* $BIN/$b # e2e-$sfx"; done
        echo "ambit/bookinfo:* $REPO/test/apps/bookinfo.py # e2e-$sfx"
        cat "$MAP"
    } >"$tmp" && mv "$tmp" "$MAP"
}

e2e_unmap_images() {
    [ -f "$MAP" ] || return 0
    local tmp=$MAP.e2e-$sfx
    grep -v " # e2e-$sfx\$" "$MAP" >"$tmp" && mv "$tmp" "$MAP"
}

e2e_require_no_mesh() {
    if helm status ambit-base -n "$NS" >/dev/null 2>&1 || kubectl get ns "$NS" >/dev/null 2>&1; then
        t_fail "cluster has no mesh installed yet" "namespace $NS or release ambit-base exists; not touching it"
        trap - EXIT
        t_end
        exit 1
    fi
}

e2e_install_mesh() {
    helm install ambit-base "$REPO/charts/base" -n "$NS" --create-namespace --wait --timeout "$WAIT" &&
        helm install istiod "$REPO/charts/control-plane" -n "$NS" --set profile=ambient \
            --set image.repository="$HUB/ambit-operator" --wait --timeout "$WAIT" &&
        helm install ambit-cni "$REPO/charts/cni" -n "$NS" --set image.repository="$HUB/ambit-cni" \
            --wait --timeout "$WAIT" &&
        helm install ambit-node "$REPO/charts/node-agent" -n "$NS" \
            --set image.repository="$HUB/ambit-node" --wait --timeout "$WAIT"
}

e2e_teardown() {
    local i
    for ((i = ${#RELEASES[@]} - 1; i >= 0; i--)); do
        helm uninstall "${RELEASES[$i]}" -n "$NS" --wait --timeout 60s >/dev/null 2>&1
    done
    e2e_unmap_images
    if [ "$E2E_STARTED" = 1 ] && [ -z "${AMBIT_CLUSTER_KEEP:-}" ]; then "$CL" down >/dev/null 2>&1; fi
}

all_ready() {
    local s
    s=$(kubectl -n "$1" get pods -o jsonpath='{range .items[*]}{.status.phase}/{.status.conditions[?(@.type=="Ready")].status} {end}' 2>/dev/null)
    [ -n "$s" ] && [ -z "$(tr ' ' '\n' <<<"$s" | grep -v '^Running/True$' | grep .)" ]
}
