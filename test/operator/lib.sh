# lib.sh — sourced by test/operator/t_*.sh: finds or starts an API server and exports
# KUBECONFIG, KUBECTL. op_api_up registers the cleanup trap itself.
K8S_BIN=${K8S_BIN:-$(ls -d /var/cache/ambit-tools/kubernetes-v*/bin 2>/dev/null | grep -v '\.tmp/' | tail -1)}
KUBECTL=${KUBECTL:-$(command -v kubectl || echo "$K8S_BIN/kubectl")}
OP_BARE_DIR=

op_cleanup() {
    if [ -n "$OP_BARE_DIR" ]; then
        test/operator/bare-apiserver.sh stop "$OP_BARE_DIR"
        rm -rf "$OP_BARE_DIR"
    fi
    # a sanitizer build reports at exit (leaks) or aborts into the component logs: fail on it
    # (call op_cleanup after stopping the components)
    local bad
    bad=$(grep -lE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "${T_DIR:-/nonexistent}"/*.log 2>/dev/null)
    if [ -n "$bad" ]; then
        echo "[  FAILED  ] sanitizer report in: $bad"
        exit 1
    fi
}

# op_api_up: use $KUBECONFIG if it answers, else start a bare API server. Exit 77 = skip.
op_api_up() {
    trap op_cleanup EXIT
    if [ -n "${KUBECONFIG:-}" ] && "$KUBECTL" get --raw /readyz >/dev/null 2>&1; then
        echo "operator layer: using the API server of KUBECONFIG=$KUBECONFIG"
        return 0
    fi
    OP_BARE_DIR=$(mktemp -d /tmp/amb-op-api.XXXXXX)
    KUBECONFIG=$(test/operator/bare-apiserver.sh start "$OP_BARE_DIR") || return 1
    export KUBECONFIG
    echo "operator layer: started a bare kube-apiserver ($KUBECONFIG)"
}

kc() { "$KUBECTL" "$@"; }

# op_crds_install: apply crds/ (all files); remembers which CRDs did not exist before so that
# op_crds_cleanup removes only those (a shared cluster is left as it was found: a later
# `helm install` must not meet CRDs it does not own).
OP_CRDS_CREATED=()
op_crds_install() {
    local f name
    for f in crds/*.yaml; do
        name=$(basename "$f" .yaml | awk -F_ '{print $2"."$1}')
        kc get crd "$name" >/dev/null 2>&1 || OP_CRDS_CREATED+=("$name")
    done
    kc apply --server-side --force-conflicts -f crds/ || return 1
    kc wait --for condition=established --timeout=60s \
        $(for f in crds/*.yaml; do echo "crd/$(basename "$f" .yaml | awk -F_ '{print $2"."$1}')"; done)
}
op_crds_cleanup() {
    [ -n "$OP_BARE_DIR" ] && return 0 # the whole API server goes away anyway
    [ ${#OP_CRDS_CREATED[@]} -gt 0 ] && kc delete crd "${OP_CRDS_CREATED[@]}" --wait=false >/dev/null 2>&1
    return 0
}

# ---------------------------------------------------------------- shared by the t_*.sh scripts
# op_start ARGS...: ambit-operator ($BUILD/bin) in the background, logging to
# $T_DIR/operator.log; its pid in OP_PID. op_stop: stop it (SIGCONT first: a test may have
# frozen it) and wait.
OP_PID=
op_start() {
    "${BUILD:-build}/bin/ambit-operator" "$@" >>"$T_DIR/operator.log" 2>&1 &
    OP_PID=$!
}
op_stop() {
    [ -n "$OP_PID" ] && kill -CONT "$OP_PID" 2>/dev/null && kill "$OP_PID" 2>/dev/null &&
        wait "$OP_PID" 2>/dev/null
    OP_PID=
}

# ev_has FILTER: some event line of $EV (the operator's --events-out) matches the jq filter
ev_has() { [ -f "$EV" ] && jq -e -s "map(select($1)) | length > 0" "$EV" >/dev/null 2>&1; }

# op_test_namespaces NS...: create the namespaces with the label the operator's
# --write-selector "amb-test=$$" admits, and their default ServiceAccount (a bare API server has
# no controller-manager to create it)
op_test_namespaces() {
    local n
    for n in "$@"; do
        kc create ns "$n" >/dev/null || return 1
        kc label ns "$n" "amb-test=$$" >/dev/null || return 1
        kc -n "$n" create serviceaccount default >/dev/null 2>&1
    done
    return 0
}
