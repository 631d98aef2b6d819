#!/usr/bin/env bash
# The node agent's operator client (dataplane/opclient) against a real ambit-operator and
# kube-apiserver: certificate signing (200 / 403 identity not on the node / 401 bad token /
# TLS refused with a foreign root) and the config stream (snapshot + synced).
set -u
cd "$(dirname "$0")/../.."
. test/lib/testlib.sh
. test/operator/lib.sh
BUILD=${BUILD:-build}
t_begin opclient
op_api_up || { t_fail "API server available"; t_end; exit 1; }
opns=amb-oc-sys-$$
ns=amb-oc-$$
OP_PID=
cleanup() {
    [ -n "$OP_PID" ] && kill "$OP_PID" 2>/dev/null && wait "$OP_PID" 2>/dev/null
    kc delete ns "$ns" "$opns" --wait=false >/dev/null 2>&1
    op_cleanup
}
trap cleanup EXIT
port=$(freeport)
mport=$(freeport)

op_test_namespaces "$opns" "$ns" || { t_fail "test namespaces"; t_end; exit 1; }
kc -n "$opns" create serviceaccount ztunnel >/dev/null
kc -n "$ns" create serviceaccount reviews >/dev/null
cat <<EOF2 | kc apply -f - >>"$T_LOG" 2>&1
apiVersion: v1
kind: Pod
metadata: {name: agent-1, namespace: $opns}
spec: {nodeName: node-1, serviceAccountName: ztunnel, containers: [{name: c, image: none}]}
---
apiVersion: v1
kind: Pod
metadata: {name: reviews-1, namespace: $ns}
spec: {nodeName: node-1, serviceAccountName: reviews, containers: [{name: c, image: none}]}
EOF2
op_start --namespace "$opns" --root-namespace "$opns" --listen "127.0.0.1:$port" \
    --metrics-listen "127.0.0.1:$mport" --debounce-ms 50
t_check "operator ready" t_wait_for 30 curl -sf "http://127.0.0.1:$mport/healthz/ready"
root=$T_DIR/root.pem
t_check "root published" t_wait_for 10 bash -c \
    "kc() { $KUBECTL \"\$@\"; }; kc -n $ns get configmap istio-ca-root-cert -o jsonpath='{.data.root-cert\.pem}' >$root && test -s $root"
kc -n "$opns" create token ztunnel --audience istio-ca --bound-object-kind Pod \
    --bound-object-name agent-1 >"$T_DIR/token"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=other \
    -keyout "$T_DIR/other.key" -out "$T_DIR/other.pem" -days 1 2>/dev/null

# the operator's serving certificate names istiod.<ns>.svc: dial 127.0.0.1 but verify that name
OPCLIENT_URL=https://istiod.$opns.svc:$port OPCLIENT_ROOT=$root OPCLIENT_TOKEN_FILE=$T_DIR/token \
    OPCLIENT_IDENTITY=spiffe://cluster.local/ns/$ns/sa/reviews OPCLIENT_NODE=node-1 \
    OPCLIENT_OTHER_ROOT=$T_DIR/other.pem OPCLIENT_CONNECT_TO=127.0.0.1:$port \
    "$BUILD/tests/dataplane-test_opclient" >"$T_DIR/opclient.out" 2>&1
rc=$?
cat "$T_DIR/opclient.out" >>"$T_LOG"
t_eq "opclient live tests pass" 0 "$rc"
t_match "certificate test ran (not skipped)" '\[       OK \] test_live_certificate' "$(cat "$T_DIR/opclient.out")"
t_match "stream test ran (not skipped)" '\[       OK \] test_live_stream' "$(cat "$T_DIR/opclient.out")"
t_end
