#!/usr/bin/env bash
# l4_enrol.sh — the node agent's enrolment loop (node-agent/enrol.h) against a real
# kube-apiserver (test/cluster's when KUBECONFIG answers, else test/operator/bare-apiserver.sh):
# pod objects bound to a fake node, status patched to Running with the IP of a real netns.
#   namespace labelled after the pod started -> listeners 15001/15006/15008 (fwmark 0x539) in
#   the pod netns, ambit's nft table + policy routing, annotation redirection=enabled, no restart;
#   a pod opting out (label none) is left alone; label removed -> listeners, rules, annotation gone;
#   agent stopped -> rules stay (pod still captured); agent restarted -> listeners back;
#   label removed while the agent is down -> cleaned up on start; pod deleted -> released.
# The netns search order is exercised too: pod "app" is found by scanning /var/run/netns for its
# IP, pod "st" through a CNI plugin state file (its dnsCapture is honoured), pod "pr" through a
# /proc cgroup scan (AMBIT_PROC_ROOT points at a tree whose cgroup file names the pod UID and
# whose ns/net links to a real process in that netns).
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
. test/lib/testlib.sh
. test/operator/lib.sh
t_begin l4_enrol
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
NODE_BIN=$BUILD/bin/ambit-node

ID=$$
NS=amb-en-$ID
NODE=amb-en-node-$ID
PODNS=amb-en-$ID-a   # enrolled pod's netns
OPTNS=amb-en-$ID-b   # opted-out pod's netns
STNS=amb-en-$ID-s    # netns recorded in a CNI state file
PRNS=amb-en-$ID-p    # netns found through the /proc scan
IP_A=10.213.$((ID % 250)).$((ID / 250 % 200 + 10))
IP_B=10.214.$((ID % 250)).$((ID / 250 % 200 + 10))
IP_S=10.215.$((ID % 250)).$((ID / 250 % 200 + 10))
IP_P=10.216.$((ID % 250)).$((ID / 250 % 200 + 10))
AGENT_PID=
SLEEP_PID=
PROC=$T_DIR/proc
RUN=$T_DIR/run

cleanup() {
    if [ -n "$AGENT_PID" ]; then
        kill -9 "$AGENT_PID" 2>/dev/null
        wait "$AGENT_PID" 2>/dev/null
    fi
    if [ -n "$SLEEP_PID" ]; then
        kill -9 "$SLEEP_PID" 2>/dev/null
        wait "$SLEEP_PID" 2>/dev/null
    fi
    for n in "$PODNS" "$OPTNS" "$STNS" "$PRNS"; do ip netns del "$n" 2>/dev/null; done
    kc delete ns "$NS" --wait=false >/dev/null 2>&1
    op_cleanup
    return 0
}

if ! { [ -n "${KUBECONFIG:-}" ] && "$KUBECTL" get --raw /readyz >/dev/null 2>&1; } &&
    ! { [ -x "${K8S_BIN:-}/kube-apiserver" ] && command -v etcd >/dev/null; }; then
    echo "l4_enrol: skipped — no API server (KUBECONFIG) and no cached kube-apiserver/etcd"
    exit 0
fi
op_api_up >>"$T_LOG" 2>&1 || { t_fail "API server available"; t_end; exit 1; }
trap cleanup EXIT

P_METRICS=$(freeport)
P_READY=$(freeport)
P_ADMIN=$(freeport)

mkns() { # <netns> <ip>
    ip netns add "$1" || return 1
    ip -n "$1" link set lo up
    ip -n "$1" link add eth0 type veth peer name eth1 || return 1
    ip -n "$1" link set eth1 up
    ip -n "$1" addr add "$2/32" dev eth0
    ip -n "$1" link set eth0 up
}
mkns "$PODNS" "$IP_A" && mkns "$OPTNS" "$IP_B" && mkns "$STNS" "$IP_S" && mkns "$PRNS" "$IP_P" ||
    { t_fail "create pod netns"; t_end; exit 1; }

kc create ns "$NS" >>"$T_LOG" 2>&1
kc -n "$NS" create serviceaccount default >>"$T_LOG" 2>&1
cat <<EOF | kc apply -f - >>"$T_LOG" 2>&1
apiVersion: v1
kind: Pod
metadata: {name: app, namespace: $NS, labels: {app: app}}
spec: {nodeName: $NODE, automountServiceAccountToken: false, containers: [{name: c, image: none}]}
---
apiVersion: v1
kind: Pod
metadata: {name: optout, namespace: $NS, labels: {istio.io/dataplane-mode: none}}
spec: {nodeName: $NODE, automountServiceAccountToken: false, containers: [{name: c, image: none}]}
---
apiVersion: v1
kind: Pod
metadata: {name: st, namespace: $NS}
spec: {nodeName: $NODE, automountServiceAccountToken: false, containers: [{name: c, image: none}]}
---
apiVersion: v1
kind: Pod
metadata: {name: pr, namespace: $NS}
spec: {nodeName: $NODE, automountServiceAccountToken: false, containers: [{name: c, image: none}]}
EOF
running() { # <pod> <ip>
    kc -n "$NS" patch pod "$1" --subresource=status --type=merge \
        -p "{\"status\":{\"phase\":\"Running\",\"podIP\":\"$2\",\"podIPs\":[{\"ip\":\"$2\"}]}}"
}
t_check "pod app Running with $IP_A (status subresource)" running app "$IP_A"
t_check "pod optout Running with $IP_B" running optout "$IP_B"
t_check "pod st Running with $IP_S" running st "$IP_S"
t_check "pod pr Running with $IP_P" running pr "$IP_P"
uid() { kc -n "$NS" get pod "$1" -o jsonpath='{.metadata.uid}'; }
APP_UID=$(uid app)
# the CNI plugin's record (cni-plugin/cni_cmd.h), DNS capture on
mkdir -p "$RUN/cni-pods"
printf '{"uid":"%s","namespace":"%s","name":"st","containerId":"c-st","netns":"/var/run/netns/%s","ips":["%s"],"dnsCapture":true,"ipv6":false}' \
    "$(uid st)" "$NS" "$STNS" "$IP_S" >"$RUN/cni-pods/c-st.json"
# a process of pod pr, seen through a proc tree that carries its cgroup (the cluster has none)
ip netns exec "$PRNS" sleep 3600 &
SLEEP_PID=$!
mkdir -p "$PROC/$SLEEP_PID/ns"
echo "0::/kubepods/besteffort/pod$(uid pr)/0123456789abcdef" >"$PROC/$SLEEP_PID/cgroup"
ln -s "/proc/$SLEEP_PID/ns/net" "$PROC/$SLEEP_PID/ns/net"

start_agent() {
    local before
    before=$(grep -c "pods and namespaces synced" "$T_DIR/agent.log")
    LOG_LEVEL=info AMBIT_PROC_ROOT=$PROC "$NODE_BIN" --node "$NODE" --kubeconfig "$KUBECONFIG" --run-dir "$RUN" \
        --workers 2 --drain-ms 300 --metrics "127.0.0.1:$P_METRICS" \
        --ready "127.0.0.1:$P_READY" --admin "127.0.0.1:$P_ADMIN" >>"$T_DIR/agent.log" 2>&1 &
    AGENT_PID=$!
    t_wait_for 10 curl -sf "http://127.0.0.1:$P_READY/healthz/ready" &&
        t_wait_for 15 bash -c "[ \$(grep -c 'pods and namespaces synced' $T_DIR/agent.log) -gt $before ]"
}
stop_agent() {
    kill -TERM "$AGENT_PID" 2>/dev/null
    wait "$AGENT_PID" 2>/dev/null
    AGENT_PID=
}
nlisten() { ip netns exec "$1" ss -ltnH 2>/dev/null | wc -l; }
has_listeners() { [ "$(nlisten "$1")" -ge 3 ]; }
no_listeners() { [ "$(nlisten "$1")" -eq 0 ]; }
has_table() { ip netns exec "$1" nft list table inet ambit >/dev/null 2>&1; }
no_table() { ! has_table "$1"; }
annotation() {
    kc -n "$NS" get pod "$1" -o jsonpath='{.metadata.annotations.ambient\.istio\.io/redirection}' 2>/dev/null
}
annotated() { [ "$(annotation "$1")" = enabled ]; }
not_annotated() { [ -z "$(annotation "$1")" ]; }
waitfor() { t_wait_for "${WAIT:-15}" "$@"; }

mkdir -p "$RUN"
: >"$T_DIR/agent.log"
t_check "agent starts with --kubeconfig and syncs pods + namespaces" start_agent
sleep 0.5
t_eq "namespace not labelled: no listeners in the pod netns" "0" "$(nlisten "$PODNS")"
t_check "namespace not labelled: no redirection table" no_table "$PODNS"
t_check "namespace not labelled: no annotation" not_annotated app

# --- late enrolment: label the namespace, no restart
kc label ns "$NS" istio.io/dataplane-mode=ambient >>"$T_LOG" 2>&1
t_check "namespace labelled -> listeners appear in the running pod's netns" waitfor has_listeners "$PODNS"
listeners=$(ip netns exec "$PODNS" ss -ltne 2>/dev/null)
for p in 15001 15006 15008; do
    t_match "listener :$p in the pod netns, fwmark 0x539" "0.0.0.0:$p .*fwmark:0x539" "$listeners"
done
t_check "redirection table inet ambit installed" has_table "$PODNS"
t_match "outbound TCP redirected to 15001" 'redirect to :15001' \
    "$(ip netns exec "$PODNS" nft list table inet ambit 2>&1)"
t_match "policy routing: fwmark 0x111/0xfff lookup 100" 'fwmark 0x111/0xfff lookup 100' \
    "$(ip -n "$PODNS" rule 2>&1)"
t_check "annotation ambient.istio.io/redirection=enabled" waitfor annotated app
t_eq "agent was not restarted" "1" "$(grep -c 'ambit-node ready' "$T_DIR/agent.log")"
t_match "app: netns found by the /var/run/netns scan" "pod=$NS/app .*found_by=\"?netns dir" "$(cat "$T_DIR/agent.log")"
t_check "st: enrolled" waitfor has_listeners "$STNS"
t_match "st: netns found through the CNI state file" "pod=$NS/st .*found_by=\"?cni state" "$(cat "$T_DIR/agent.log")"
t_match "st: the state file's DNS capture is honoured" 'redirect to :15053' \
    "$(ip netns exec "$STNS" nft list table inet ambit 2>&1)"
t_check "st: annotated" waitfor annotated st
t_check "pr: enrolled" waitfor has_listeners "$PRNS"
t_match "pr: netns found by the /proc cgroup scan" "pod=$NS/pr .*found_by=\"?proc scan" "$(cat "$T_DIR/agent.log")"
t_check "pr: redirection installed" has_table "$PRNS"
t_check "pr: annotated" waitfor annotated pr
kc -n "$NS" annotate pod pr ambient.istio.io/bypass-inbound-capture=true >>"$T_LOG" 2>&1
no_inbound() { ! ip netns exec "$PRNS" nft list table inet ambit | grep -q 'redirect to :15006'; }
t_check "pr: bypass-inbound-capture annotation rewrites the rules in place" waitfor no_inbound
t_match "pr: outbound still captured" 'redirect to :15001' \
    "$(ip netns exec "$PRNS" nft list table inet ambit 2>&1)"
kc -n "$NS" annotate pod pr ambient.istio.io/bypass-inbound-capture- >>"$T_LOG" 2>&1
t_check "pr: annotation removed -> inbound captured again" waitfor bash -c \
    "ip netns exec $PRNS nft list table inet ambit | grep -q 'redirect to :15006'"
t_eq "opted-out pod: no listeners" "0" "$(nlisten "$OPTNS")"
t_check "opted-out pod: no redirection table" no_table "$OPTNS"
t_check "opted-out pod: no annotation" not_annotated optout
t_match "config_dump lists the enrolled pod" "\"$NS\"" \
    "$(curl -s "http://127.0.0.1:$P_ADMIN/config_dump")"

# --- un-enrol: remove the label
kc label ns "$NS" istio.io/dataplane-mode- >>"$T_LOG" 2>&1
t_check "label removed -> listeners gone" waitfor no_listeners "$PODNS"
t_check "label removed -> redirection table gone" waitfor no_table "$PODNS"
t_eq "label removed -> policy routing gone" "" "$(ip -n "$PODNS" rule 2>&1 | grep 'lookup 100')"
t_check "label removed -> annotation removed" waitfor not_annotated app
t_check "label removed -> the agent's records are gone" \
    waitfor bash -c "! ls $RUN/cni-pods/enrol-*.json 2>/dev/null | grep -q ."
t_check "label removed -> st released too" waitfor no_listeners "$STNS"
t_check "label removed -> pr released too" waitfor no_listeners "$PRNS"
t_check "label removed -> st rules gone" waitfor no_table "$STNS"
t_check "label removed -> pr rules gone" waitfor no_table "$PRNS"
t_check "label removed -> st annotation removed" waitfor not_annotated st
t_check "label removed -> pr annotation removed" waitfor not_annotated pr

# --- pod label alone enrols it; agent restart keeps it captured
kc -n "$NS" label pod app istio.io/dataplane-mode=ambient >>"$T_LOG" 2>&1
t_check "pod label -> enrolled" waitfor has_listeners "$PODNS"
t_check "pod label -> annotated" waitfor annotated app
t_check "enrolment recorded in the run dir" test -s "$RUN/cni-pods/enrol-$(uid app).json"
stop_agent
t_check "agent stopped: redirection stays (pod still captured)" has_table "$PODNS"
t_check "agent stopped: annotation stays" annotated app
t_check "agent restarted" start_agent
t_check "agent restarted -> listeners back in the pod netns" waitfor has_listeners "$PODNS"
t_check "agent restarted -> redirection still present" has_table "$PODNS"
t_check "agent restarted -> still annotated" annotated app
t_eq "agent restarted -> still exactly 3 listeners" "3" "$(nlisten "$PODNS")"
t_match "agent restarted -> netns from its own record, no scan" \
    "pod=$NS/app .*found_by=\"?agent record" "$(tail -n 20 "$T_DIR/agent.log")"

# --- label removed while the agent is down: cleaned up when it comes back
stop_agent
kc -n "$NS" label pod app istio.io/dataplane-mode- >>"$T_LOG" 2>&1
STALE=$RUN/cni-pods/enrol-00000000-0000-4000-8000-$(printf '%012d' "$ID").json
echo '{"uid":"gone","netns":"/var/run/netns/amb-en-none","ips":["10.0.0.1"]}' >"$STALE"
t_check "agent restarted after the label went" start_agent
t_check "records of pods that no longer exist are dropped on start" waitfor test ! -e "$STALE"
t_check "stale enrolment: redirection removed on start" waitfor no_table "$PODNS"
t_check "stale enrolment: annotation removed on start" waitfor not_annotated app
t_eq "stale enrolment: no listeners" "0" "$(nlisten "$PODNS")"

# --- pod deletion releases it
kc label ns "$NS" istio.io/dataplane-mode=ambient >>"$T_LOG" 2>&1
t_check "re-labelled -> enrolled" waitfor has_listeners "$PODNS"

# --- a new sandbox for the same pod (what CNI DEL + ADD do): the plugin's adoption is kept
ip netns del "$PODNS"
mkns "$PODNS" "$IP_A"
cnisock() { curl -s -m 5 --unix-socket "$RUN/cni.sock" -o /dev/null -w '%{http_code}' "$@"; }
t_eq "plugin adopts the new sandbox over cni.sock" "200" "$(cnisock -XPOST http://agent/v1/pods \
    -d "{\"uid\": \"$APP_UID\", \"namespace\": \"$NS\", \"name\": \"app\", \"containerId\": \"c-app2\", \"netns\": \"/var/run/netns/$PODNS\", \"ips\": [\"$IP_A\"]}")"
t_check "plugin installs the rules in the new sandbox" "$NODE_BIN" redirect add "/var/run/netns/$PODNS"
printf '{"uid":"%s","namespace":"%s","name":"app","containerId":"c-app2","netns":"/var/run/netns/%s","ips":["%s"],"dnsCapture":false,"ipv6":true}' \
    "$APP_UID" "$NS" "$PODNS" "$IP_A" >"$RUN/cni-pods/c-app2.json"
released_before=$(grep -c "msg=\"pod released\" uid=$APP_UID" "$T_DIR/agent.log")
enrolled_before=$(grep -c "msg=\"pod enrolled\" pod=$NS/app " "$T_DIR/agent.log")
kc -n "$NS" annotate pod app amb-en-touch=1 >>"$T_LOG" 2>&1
t_check "loop notices the new sandbox and re-enrols from the plugin's record" waitfor bash -c \
    "[ \$(grep -c 'msg=\"pod enrolled\" pod=$NS/app ' $T_DIR/agent.log) -gt $enrolled_before ]"
t_match "new sandbox found through the plugin's state" "pod=$NS/app .*found_by=\"?cni state" \
    "$(tail -n 5 "$T_DIR/agent.log")"
t_eq "the plugin's adoption was not released" "$released_before" \
    "$(grep -c "msg=\"pod released\" uid=$APP_UID" "$T_DIR/agent.log")"
t_eq "new sandbox: 3 listeners" "3" "$(nlisten "$PODNS")"
t_check "new sandbox: redirection present" has_table "$PODNS"
rm -f "$RUN/cni-pods/c-app2.json"
kc -n "$NS" delete pod app --grace-period=0 --force >>"$T_LOG" 2>&1
t_check "pod deleted -> listeners gone" waitfor no_listeners "$PODNS"
t_check "pod deleted -> redirection removed" waitfor no_table "$PODNS"
t_check "pod deleted -> its record removed" waitfor test ! -e "$RUN/cni-pods/enrol-$APP_UID.json"
t_check "agent still ready" curl -sf "http://127.0.0.1:$P_READY/healthz/ready"
t_eq "opted-out pod never touched" "0" "$(nlisten "$OPTNS")"

t_end
