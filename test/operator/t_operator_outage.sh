#!/usr/bin/env bash
# The operator survives an API server outage: it keeps serving the last snapshot, its watches
# back off and come back, and changes made after the outage reach the event stream. Only with
# the throwaway API server (never bounces a shared cluster's).
set -u
cd "$(dirname "$0")/../.."
. test/lib/testlib.sh
. test/operator/lib.sh
BUILD=${BUILD:-build}
t_begin operator-outage
saved_kc=${KUBECONFIG:-}
KUBECONFIG= # always a private API server: this test kills it
op_api_up || { t_fail "API server available"; t_end; exit 1; }
[ -z "$OP_BARE_DIR" ] && { t_pass "skipped: no private API server"; t_end; exit 0; }
ns=amb-out-$$
OP_PID=
cleanup() {
    [ -n "$OP_PID" ] && kill "$OP_PID" 2>/dev/null && wait "$OP_PID" 2>/dev/null
    op_cleanup
}
trap cleanup EXIT
mport=$(freeport)
EV=$T_DIR/events.ndjson
kc create ns istio-system >/dev/null 2>&1
kc create ns "$ns" >/dev/null
op_start --events-out "$EV" --debounce-ms 50 --listen "127.0.0.1:$(freeport)" \
    --metrics-listen "127.0.0.1:$mport" --webhook-listen '' --no-leader-elect
t_check "operator ready" t_wait_for 30 curl -sf "http://127.0.0.1:$mport/healthz/ready"
kc -n "$ns" create service clusterip before --tcp=80:80 >>"$T_LOG" 2>&1
t_check "event before the outage" t_wait_for 10 ev_has ".key==\"$ns/before.$ns.svc.cluster.local\""
test/operator/bare-apiserver.sh bounce "$OP_BARE_DIR" 8
t_check "operator still alive during the outage" kill -0 "$OP_PID"
t_check "still ready (serves the last snapshot)" curl -sf "http://127.0.0.1:$mport/healthz/ready"
t_check "API server back" t_wait_for 60 kc get --raw /readyz
kc -n "$ns" create service clusterip after --tcp=80:80 >>"$T_LOG" 2>&1
t_check "a change after the outage is streamed" t_wait_for 45 ev_has ".key==\"$ns/after.$ns.svc.cluster.local\""
t_match "watch restart metric exported" '^ambit_operator_watch_restarts [0-9]' \
    "$(curl -s "http://127.0.0.1:$mport/metrics")"
t_check "operator never crashed" kill -0 "$OP_PID"
KUBECONFIG=$saved_kc
t_end
