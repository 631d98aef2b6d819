#!/usr/bin/env bash
# Debounce semantics against a real API server: a change after a quiet spell is pushed at once
# (--debounce-settle-ms), a change that closely follows a push waits for the burst debounce
# (--debounce-ms), and a burst never waits past --debounce-max-ms; status-only updates of the
# kinds whose status the operator writes itself (policies, Gateways, Mesh) cause no rebuild.
# Windows are seconds wide so the checks hold on a loaded machine.
set -u
cd "$(dirname "$0")/../.."
. test/lib/testlib.sh
. test/operator/lib.sh
BUILD=${BUILD:-build}
t_begin operator-debounce
op_api_up || { t_fail "API server available"; t_end; exit 1; }
ns=amb-deb-$$
OP_PID=
cleanup() {
    [ -n "$OP_PID" ] && kill "$OP_PID" 2>/dev/null && wait "$OP_PID" 2>/dev/null
    kc delete ns "$ns" --wait=false >/dev/null 2>&1
    op_crds_cleanup
    op_cleanup
}
trap cleanup EXIT
mport=$(freeport)
EV=$T_DIR/events.ndjson
svc_key() { echo "$ns/$1.$ns.svc.cluster.local"; }
now_ms() { date +%s%3N; }
ev_lacks() { ! ev_has "$1"; }
# ms until the event for Service $1 shows up (polling every 20 ms), or 99999
wait_ms() {
    local t0=$2 i
    for ((i = 0; i < 1000; i++)); do
        ev_has ".key==\"$(svc_key "$1")\"" && { echo $(($(now_ms) - t0)); return; }
        sleep 0.02
    done
    echo 99999
}
op_crds_install >>"$T_LOG" 2>&1
kc create ns istio-system >/dev/null 2>&1
kc create ns "$ns" >/dev/null
op_start --events-out "$EV" --debounce-ms 2000 --debounce-settle-ms 10 \
    --debounce-max-ms 5000 --write-selector "amb-test=$$" --listen "127.0.0.1:$(freeport)" \
    --metrics-listen "127.0.0.1:$mport" --webhook-listen '' --no-leader-elect
t_check "operator ready" t_wait_for 30 curl -sf "http://127.0.0.1:$mport/healthz/ready"
# a quiet spell: twice --debounce-ms (readiness may still be followed by late informer syncs)
sleep 4.5

t0=$(now_ms)
kc -n "$ns" create service clusterip quiet --tcp=80:80 >>"$T_LOG" 2>&1
ms=$(wait_ms quiet "$t0")
echo "isolated change pushed after ${ms} ms" >>"$T_LOG"
t_check "an isolated change is pushed well before the 2 s burst debounce (${ms} ms)" [ "$ms" -lt 1200 ]

# right after that push: a burst, pushed only after 2 s without further changes
t0=$(now_ms)
kc -n "$ns" create service clusterip burst1 --tcp=80:80 >>"$T_LOG" 2>&1
sleep 0.5
kc -n "$ns" create service clusterip burst2 --tcp=80:80 >>"$T_LOG" 2>&1
t1=$(now_ms)
sleep 1
t_check "a change following a push waits for the burst debounce" \
    ev_lacks ".key==\"$(svc_key burst1)\""
ms=$(wait_ms burst2 "$t1")
echo "burst pushed ${ms} ms after its last change" >>"$T_LOG"
t_check "the burst arrives debounce-ms after its last change (${ms} ms, window 1500-4500)" \
    [ "$ms" -ge 1500 -a "$ms" -lt 4500 ]
t_check "both changes of the burst in the stream" ev_has ".key==\"$(svc_key burst1)\""

# a trickle (a change every second) is pushed by --debounce-max-ms, not starved
sleep 4.5
kc -n "$ns" create service clusterip lead >>"$T_LOG" 2>&1 --tcp=80:80
t_check "lead change pushed" t_wait_for 5 ev_has ".key==\"$(svc_key lead)\""
t0=$(now_ms)
for i in 1 2 3 4 5 6 7 8 9; do
    kc -n "$ns" create service clusterip "trickle$i" --tcp=80:80 >>"$T_LOG" 2>&1
    sleep 0.7
done
t_check "a steady trickle is pushed within debounce-max-ms" ev_has ".key==\"$(svc_key trickle1)\""

# status-only updates (another writer here: --write-selector keeps the operator off $ns) do not
# rebuild; a spec change does. The rebuild gauge is sampled every 2 s.
rebuilds() { curl -s "http://127.0.0.1:$mport/metrics" | awk '/^ambit_operator_snapshot_rebuilds /{print $2}'; }
rebuilds_moved_from() { [ "$(rebuilds)" != "$1" ]; }
cat <<EOF2 | kc apply -f - >>"$T_LOG" 2>&1
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-all, namespace: $ns}
spec: {action: DENY, rules: [{}]}
EOF2
t_check "policy pushed" t_wait_for 10 ev_has ".key==\"$ns/deny-all\""
sleep 5
r1=$(rebuilds)
for i in 1 2 3; do
    kc -n "$ns" patch authorizationpolicy deny-all --subresource=status --type=merge -p \
        "{\"status\":{\"conditions\":[{\"type\":\"Other\",\"status\":\"True\",\"reason\":\"R$i\"}]}}" >>"$T_LOG" 2>&1
    sleep 0.3
done
sleep 4.5
r2=$(rebuilds)
echo "rebuilds before/after status writes: $r1 $r2" >>"$T_LOG"
t_check "status-only updates cause no rebuild ($r1 -> $r2)" [ -n "$r1" -a "$r1" = "$r2" ]
kc -n "$ns" patch authorizationpolicy deny-all --type=merge -p '{"spec":{"action":"ALLOW"}}' >>"$T_LOG" 2>&1
t_check "a spec change rebuilds" t_wait_for 10 rebuilds_moved_from "$r2"
t_check "operator never crashed" kill -0 "$OP_PID"
t_end
