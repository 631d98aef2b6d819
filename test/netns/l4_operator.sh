#!/usr/bin/env bash
# l4_operator.sh — the node agents take their mesh config and their workload certificates from
# the operator's endpoints (PROTOCOLS.md §2; a stand-in server, test/netns/l4_fake_operator.py):
# readiness waits for the first `synced`, the bearer token is sent, certificates come from CSRs,
# HBONE works end to end with them, and when the operator goes away the agents keep serving
# the last good config.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/test/lib/testlib.sh"
t_begin l4_operator
. "$ROOT/test/netns/l4_lib.bash"
trap l4_cleanup EXIT

t_check "topology (netns, bridge, redirect rules, CA, app)" l4_topology
l4_config "$T_DIR/full.json" node-x "[]"
# the mesh objects as a stream of upsert events (keys derived as the operator does)
python3 - "$T_DIR/full.json" >"$T_DIR/events.ndjson" <<'EOF'
import json, sys
cfg = json.load(open(sys.argv[1]))
v = 0
for kind, lst in (("workload", cfg["workloads"]), ("service", cfg["services"]), ("policy", cfg["policies"])):
    for o in lst:
        v += 1
        key = o["uid"] if kind == "workload" else (
            "%s/%s" % (o["namespace"], o["hostname"]) if kind == "service" else "%s/%s" % (o["namespace"], o["name"]))
        print(json.dumps({"type": "upsert", "version": v, "kind": kind, "key": key, "object": o}))
EOF
echo "{\"pods\": [$(l4_pod_json client-uid "$L4-a" 10.77.0.1)]}" >"$T_DIR/n1.json"
echo "{\"pods\": [$(l4_pod_json server-uid "$L4-b" 10.77.0.2)]}" >"$T_DIR/n2.json"
echo "amb-l4-token-$$" >"$T_DIR/token"

fake_operator() { # <node>
    ip netns exec "$L4-$1" python3 "$ROOT/test/netns/l4_fake_operator.py" 15012 "$T_DIR/events.ndjson" \
        "$T_DIR/pki/ca.pem" "$T_DIR/pki/ca.key" "amb-l4-token-$$" "$T_DIR/op-$1.log" >>"$T_LOG" 2>&1 &
    L4_PIDS+=($!)
    eval "OP_$1=$!"
    t_wait_for 5 l4_ns "$1" bash -c 'exec 3<>/dev/tcp/127.0.0.1/15012'
}
ip netns add "$L4-n1" 2>/dev/null; ip -n "$L4-n1" link set lo up
ip netns add "$L4-n2" 2>/dev/null; ip -n "$L4-n2" link set lo up
t_check "fake operator for node 1" fake_operator n1
t_check "fake operator for node 2" fake_operator n2

# agents without a file CA: identities come from the operator
op_agent() { # <node> <config>
    local n=$1 cfg=$2
    mkdir -p "$T_DIR/run-$n"
    ip netns exec "$L4-$n" env LOG_LEVEL=info "$NODE_BIN" --node "node-$n" --config "$cfg" \
        --run-dir "$T_DIR/run-$n" --workers 2 --operator http://127.0.0.1:15012 \
        --operator-token "$T_DIR/token" >>"$T_DIR/$n.log" 2>&1 &
    L4_PIDS+=($!)
    eval "L4_PID_$n=$!"
    t_wait_for 10 l4_ns "$n" curl -sf http://127.0.0.1:15021/healthz/ready
}
t_check "agent 1 ready after the operator's synced" op_agent n1 "$T_DIR/n1.json"
t_check "agent 2 ready after the operator's synced" op_agent n2 "$T_DIR/n2.json"
t_match "config stream sent the bearer token" 'GET /v1/config\?node=node-n1 auth=ok' "$(cat "$T_DIR/op-n1.log")"

out=$(l4_client a 10.96.77.10 80 via-operator 2>>"$T_LOG")
t_eq "client -> service VIP over HBONE with operator config and certificates" "echo:via-operator" "$out"
t_match "client identity certificate came from a CSR" 'signed spiffe://cluster.local/ns/l4/sa/l4-client' "$(cat "$T_DIR/op-n1.log")"
t_match "server identity certificate came from a CSR" 'signed spiffe://cluster.local/ns/l4/sa/l4-server' "$(cat "$T_DIR/op-n2.log")"
dump=$(l4_ns n2 curl -sf http://127.0.0.1:15000/config_dump)
t_match "config_dump: identity provider is the operator, config version 7" '"configVersion": 7' "$dump"
t_match "config_dump: workloads from the stream" 'Kubernetes//Pod/l4/server' "$dump"

# the operator goes away: last good config stays, connections keep working
kill "$OP_n1" "$OP_n2"
sleep 1
out=$(l4_client a 10.77.0.2 8080 operator-gone 2>>"$T_LOG")
t_eq "operator gone: traffic still flows on the last good config" "echo:operator-gone" "$out"
t_match "operator gone: the agent says it keeps the last good config" 'operator config stream ended, keeping the last good config' "$(cat "$T_DIR/n1.log")"
t_check "operator gone: still ready" l4_ns n1 curl -sf http://127.0.0.1:15021/healthz/ready

# a wrong token is refused by the operator: the agent reports it and does not become ready
echo "wrong" >"$T_DIR/badtoken"
t_check "fake operator back for node 1" fake_operator n1
mkdir -p "$T_DIR/run-n3"
ip netns add "$L4-n3" && ip -n "$L4-n3" link set lo up
ip netns exec "$L4-n3" python3 "$ROOT/test/netns/l4_fake_operator.py" 15012 "$T_DIR/events.ndjson" \
    "$T_DIR/pki/ca.pem" "$T_DIR/pki/ca.key" "amb-l4-token-$$" "$T_DIR/op-n3.log" >>"$T_LOG" 2>&1 &
L4_PIDS+=($!)
t_wait_for 5 l4_ns n3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/15012'
ip netns exec "$L4-n3" "$NODE_BIN" --node node-n3 --run-dir "$T_DIR/run-n3" --workers 1 \
    --operator http://127.0.0.1:15012 --operator-token "$T_DIR/badtoken" >>"$T_DIR/n3.log" 2>&1 &
L4_PIDS+=($!)
sleep 2
t_expect_fail "bad token: agent not ready" l4_ns n3 curl -sf -m 1 http://127.0.0.1:15021/healthz/ready
t_match "bad token: stream refused with 401, logged" 'operator config stream ended.*status=401' "$(cat "$T_DIR/n3.log")"

t_end
