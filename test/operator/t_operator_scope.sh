#!/usr/bin/env bash
# Per-node policy scoping of the config stream (docs/operator.md), against a real API server
# and the real operator: an agent on node-a does not receive an AuthorizationPolicy that only
# selects a pod on node-b, receives it as soon as such a pod is scheduled on node-a (with an IP),
# and gets its delete when that pod goes away; the agent on node-b has it all along; both get
# every workload. A stream token bound to a pod on another node is refused (when the API server
# reports the node of bound tokens). Resuming with a version of a previous operator process
# gets reset + full snapshot.
set -u
cd "$(dirname "$0")/../.."
. test/lib/testlib.sh
. test/operator/lib.sh
BUILD=${BUILD:-build}
t_begin operator-scope
op_api_up || { t_fail "API server available"; t_end; exit 1; }
opns=amb-sc-sys-$$
ns=amb-sc-$$
OP_PID=
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    [ -n "$OP_PID" ] && kill "$OP_PID" 2>/dev/null && wait "$OP_PID" 2>/dev/null
    kc delete ns "$ns" "$opns" --wait=false >/dev/null 2>&1
    op_crds_cleanup
    op_cleanup
}
trap cleanup EXIT
port=$(freeport)
mport=$(freeport)
base=http://127.0.0.1:$port

op_crds_install >/dev/null 2>&1
op_test_namespaces "$opns" "$ns" || { t_fail "test namespaces"; t_end; exit 1; }
kc -n "$opns" create serviceaccount ztunnel >/dev/null
pod() { # pod <ns> <name> <node> <app> [sa]
    cat <<EOF2
apiVersion: v1
kind: Pod
metadata: {name: $2, namespace: $1, labels: {app: "$4"}}
spec: {nodeName: $3, serviceAccountName: ${5:-default}, containers: [{name: c, image: none}]}
EOF2
}
running() { # running <ns> <name> <ip>
    kc -n "$1" patch pod "$2" --subresource=status --type=merge -p \
        "{\"status\":{\"phase\":\"Running\",\"podIP\":\"$3\",\"podIPs\":[{\"ip\":\"$3\"}],\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}]}}" >>"$T_LOG" 2>&1
}
{ pod "$opns" agent-a node-a agent ztunnel; echo ---; pod "$opns" agent-b node-b agent ztunnel; echo ---
  pod "$ns" web-1 node-a web; echo ---; pod "$ns" db-1 node-b db; } | kc apply -f - >>"$T_LOG" 2>&1
running "$ns" web-1 10.244.1.10
running "$ns" db-1 10.244.2.10
cat <<EOF2 | kc apply -f - >>"$T_LOG" 2>&1
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-db, namespace: $ns}
spec:
  selector: {matchLabels: {app: db}}
  action: ALLOW
  rules: [{from: [{source: {principals: [cluster.local/ns/$ns/sa/web]}}]}]
EOF2
op_start --namespace "$opns" --root-namespace "$opns" --plaintext \
    --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$mport" --webhook-listen '' \
    --debounce-ms 50 --write-selector "amb-test=$$"
t_check "operator ready" t_wait_for 30 curl -sf "http://127.0.0.1:$mport/healthz/ready"
toka=$(kc -n "$opns" create token ztunnel --audience istio-ca --bound-object-kind Pod --bound-object-name agent-a)
tokb=$(kc -n "$opns" create token ztunnel --audience istio-ca --bound-object-kind Pod --bound-object-name agent-b)
curl -sN -H "Authorization: Bearer $toka" "$base/v1/config?node=node-a" >"$T_DIR/a.ndjson" 2>>"$T_LOG" &
PIDS+=($!)
curl -sN -H "Authorization: Bearer $tokb" "$base/v1/config?node=node-b" >"$T_DIR/b.ndjson" 2>>"$T_LOG" &
PIDS+=($!)
has() { jq -e -s "map(select($2)) | length > 0" "$T_DIR/$1.ndjson" >/dev/null 2>&1; }
pol="$ns/allow-db"
t_check "node-a stream synced" t_wait_for 10 has a '.type=="synced"'
t_check "node-b stream synced" t_wait_for 10 has b '.type=="synced"'
t_check "node-b (where db-1 runs) receives the policy" has b ".type==\"upsert\" and .kind==\"policy\" and .key==\"$pol\""
t_expect_fail "node-a does not receive the policy" has a ".kind==\"policy\" and .key==\"$pol\""
t_check "node-a receives the workload on node-b all the same" \
    has a ".type==\"upsert\" and .key==\"Kubernetes//Pod/$ns/db-1\""
pod "$ns" db-2 node-a db | kc apply -f - >>"$T_LOG" 2>&1
running "$ns" db-2 10.244.1.11
t_check "a db pod scheduled on node-a brings the policy to node-a" t_wait_for 10 has a \
    ".type==\"upsert\" and .kind==\"policy\" and .key==\"$pol\""
t_check "db-2's workload on node-a lists the policy" has a \
    ".type==\"upsert\" and .key==\"Kubernetes//Pod/$ns/db-2\" and .object.authorizationPolicies==[\"$pol\"]"
kc -n "$ns" delete pod db-2 --grace-period=0 --force >>"$T_LOG" 2>&1
t_check "the pod gone, node-a gets the policy's delete" t_wait_for 10 has a \
    ".type==\"delete\" and .kind==\"policy\" and .key==\"$pol\""
t_expect_fail "node-b keeps the policy (no delete)" has b ".type==\"delete\" and .key==\"$pol\""
# a token bound to agent-a asking for node-b's scope
code=$(curl -s -m 5 -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $toka" "$base/v1/config?node=node-b")
if grep -q 'token_node' "$T_DIR/operator.log" || [ "$code" = 403 ]; then
    t_eq "a stream token bound to another node is refused" 403 "$code"
else
    echo "(the API server reports no node for bound tokens: node check not exercised)"
fi
# policy status follows an update (the operator skips unchanged policies on later pushes)
cond_is() { [ "$(kc -n "$ns" get authorizationpolicy "$1" -o jsonpath='{.status.conditions[0].type}={.status.conditions[0].status}/{.status.conditions[0].reason}' 2>/dev/null)" = "$2" ]; }
t_check "policy status ZtunnelAccepted=True" t_wait_for 20 cond_is allow-db ZtunnelAccepted=True/Accepted
kc -n "$ns" patch authorizationpolicy allow-db --type=merge \
    -p '{"spec":{"rules":[{"to":[{"operation":{"methods":["GET"]}}]}]}}' >>"$T_LOG" 2>&1
t_check "updated to HTTP-only rules: ZtunnelAccepted=False UnsupportedValue" \
    t_wait_for 20 cond_is allow-db ZtunnelAccepted=False/UnsupportedValue
kc -n "$ns" patch authorizationpolicy allow-db --type=merge \
    -p '{"spec":{"rules":[{"from":[{"source":{"namespaces":["x"]}}]}]}}' >>"$T_LOG" 2>&1
t_check "and back to L4 rules: ZtunnelAccepted=True" \
    t_wait_for 20 cond_is allow-db ZtunnelAccepted=True/Accepted
for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
PIDS=()
# resume across an operator restart: a version of the previous process is never replayed from
# the new one's history (the new snapshot has more objects than the old version number counts)
v=$(jq -s '[.[]|select(.type=="synced")|.version]|min' "$T_DIR/a.ndjson")
kill "$OP_PID" 2>/dev/null
wait "$OP_PID" 2>/dev/null
OP_PID=
for i in 1 2 3; do kc -n "$ns" create service clusterip "extra-$i" --tcp=80:80 >>"$T_LOG" 2>&1; done
op_start --namespace "$opns" --root-namespace "$opns" --plaintext \
    --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$mport" --webhook-listen '' \
    --debounce-ms 50 --write-selector "amb-test=$$"
t_check "operator ready again" t_wait_for 30 curl -sf "http://127.0.0.1:$mport/healthz/ready"
curl -sN -m 3 -H "Authorization: Bearer $toka" "$base/v1/config?node=node-a&since=$v" >"$T_DIR/again.ndjson" 2>>"$T_LOG"
t_eq "resuming with a version of the previous process: reset first" reset \
    "$(head -1 "$T_DIR/again.ndjson" | jq -r .type)"
t_check "... then the full snapshot with the new services" \
    has again ".type==\"upsert\" and .key==\"$ns/extra-3.$ns.svc.cluster.local\""
kill "$OP_PID" 2>/dev/null
wait "$OP_PID" 2>/dev/null
OP_PID=
t_end
