#!/usr/bin/env bash
# Nothing is lost across a frozen operator + API server restart + etcd compaction: the operator
# is stopped (SIGSTOP), the API server goes down, etcd moves on and is compacted after more
# changes, and when the operator thaws the changes (including a delete that happened while it
# was frozen) reach the event stream — whether the server resumes its watches (kube-apiserver
# sends bookmarks on shutdown and serves from its watch cache) or answers 410 and it relists
# (that path is proven with a scripted server in dataplane/tests/test_kube_informer.c).
# Private API server only (it compacts etcd and restarts the API server).
set -u
cd "$(dirname "$0")/../.."
. test/lib/testlib.sh
. test/operator/lib.sh
BUILD=${BUILD:-build}
t_begin operator-resume
saved_kc=${KUBECONFIG:-}
KUBECONFIG=
op_api_up || { t_fail "API server available"; t_end; exit 1; }
ns=amb-rl-$$
OP_PID=
cleanup() {
    [ -n "$OP_PID" ] && kill -CONT "$OP_PID" 2>/dev/null && kill "$OP_PID" 2>/dev/null && wait "$OP_PID" 2>/dev/null
    op_cleanup
}
trap cleanup EXIT
mport=$(freeport)
EV=$T_DIR/events.ndjson
etcd=$(cat "$OP_BARE_DIR/etcd.url")
kc create ns istio-system >/dev/null 2>&1
kc create ns "$ns" >/dev/null
kc -n "$ns" create service clusterip doomed --tcp=80:80 >>"$T_LOG" 2>&1
op_start --events-out "$EV" --debounce-ms 50 --listen "127.0.0.1:$(freeport)" \
    --metrics-listen "127.0.0.1:$mport" --webhook-listen '' --no-leader-elect
t_check "operator ready" t_wait_for 30 curl -sf "http://127.0.0.1:$mport/healthz/ready"
t_check "initial service streamed" t_wait_for 10 ev_has ".key==\"$ns/doomed.$ns.svc.cluster.local\""
# freeze the operator, restart the API server under it (its watches die unread), change things
# and compact etcd: when it thaws, its last resourceVersion is gone
kill -STOP "$OP_PID"
test/operator/bare-apiserver.sh api-down "$OP_BARE_DIR"
# a write straight into etcd while the API server is down moves the revision past the one the
# operator resumes from (the API server sends a bookmark on shutdown), so the restarted API
# server's watch cache starts after it
curl -sf -X POST "$etcd/v3/kv/put" -d '{"key":"YW1iLWZpbGxlcg==","value":"eA=="}' >>"$T_LOG" 2>&1
test/operator/bare-apiserver.sh api-up "$OP_BARE_DIR"
t_check "API server back" t_wait_for 60 kc get --raw /readyz
kc -n "$ns" delete service doomed >>"$T_LOG" 2>&1
for i in 1 2 3; do kc -n "$ns" create service clusterip "new-$i" --tcp=80:80 >>"$T_LOG" 2>&1; done
rev=$(curl -s -X POST "$etcd/v3/kv/range" -d '{"key":"AA=="}' | jq -r .header.revision)
t_check "etcd compacted at revision $rev" \
    curl -sf -X POST "$etcd/v3/kv/compaction" -d "{\"revision\":\"$rev\",\"physical\":true}"
kill -CONT "$OP_PID"
t_check "objects created while frozen are streamed" t_wait_for 60 ev_has ".key==\"$ns/new-3.$ns.svc.cluster.local\""
t_check "the delete that happened while frozen is streamed" t_wait_for 10 ev_has \
    ".type==\"delete\" and .key==\"$ns/doomed.$ns.svc.cluster.local\""
t_check "operator never crashed" kill -0 "$OP_PID"
KUBECONFIG=$saved_kc
t_end
