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
