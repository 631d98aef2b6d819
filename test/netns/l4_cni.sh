#!/usr/bin/env bash
# l4_cni.sh — the node agent's cni.sock contract (PROTOCOLS.md §3) and in-pod listeners:
# POST /v1/pods answers {"adopted":true} only once 15001/15006/15008 listen inside the pod
# netns with SO_MARK 0x539; adopt is idempotent; DELETE is idempotent and closes them; a
# missing netns is 503; malformed bodies are 400; readiness and metrics endpoints answer;
# garbage on 15001 without redirection is refused without harming the agent; a restarted agent
# re-opens the listeners of the pods it had adopted (state file in the run dir).
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/test/lib/testlib.sh"
t_begin l4_cni
. "$ROOT/test/netns/l4_lib.bash"
trap l4_cleanup EXIT

ip netns add "$L4-n1" && ip -n "$L4-n1" link set lo up
ip netns add "$L4-a" && ip -n "$L4-a" link set lo up
l4_certs
echo '{}' >"$T_DIR/empty.json"
t_check "agent ready (no pods)" l4_agent n1 "$T_DIR/empty.json"
SOCK=$T_DIR/run-n1/cni.sock
cni() { curl -s -m 5 --unix-socket "$SOCK" -o "$T_DIR/cni.out" -w '%{http_code}' "$@"; }
BODY="{\"uid\": \"pod-1\", \"namespace\": \"l4\", \"name\": \"p\", \"containerId\": \"c1\", \"netns\": \"/var/run/netns/$L4-a\", \"ips\": [\"10.77.0.1\"]}"

t_eq "POST /v1/pods -> 200" "200" "$(cni -XPOST http://agent/v1/pods -d "$BODY")"
t_match "answer is adopted:true" '"adopted": *true' "$(cat "$T_DIR/cni.out")"
listeners=$(l4_ns a ss -ltne 2>/dev/null)
for p in 15001 15006 15008; do
    t_match "listener :$p inside the pod netns, marked 0x539" "0.0.0.0:$p .*fwmark:0x539" "$listeners"
done
t_eq "adopt again (idempotent) -> 200" "200" "$(cni -XPOST http://agent/v1/pods -d "$BODY")"
t_eq "still exactly 3 listeners" "3" "$(l4_ns a ss -ltnH | wc -l)"
t_match "config_dump lists the pod" '"pod-1"' "$(l4_ns n1 curl -s http://127.0.0.1:15000/config_dump)"
t_match "metrics: one active proxy" 'ambit_active_pods 1' "$(l4_ns n1 curl -s http://127.0.0.1:15020/metrics)"

# garbage straight to 15001 (no redirect rules here): refused, agent unharmed
l4_ns a bash -c 'printf "GET / HTTP/1.1\r\n\r\n\x00\xff" >/dev/tcp/127.0.0.1/15001' 2>/dev/null
t_check "agent alive after garbage on 15001" l4_ns n1 curl -sf http://127.0.0.1:15021/healthz/ready
t_match "refusal logged" 'self-call|no original destination' "$(cat "$T_DIR/n1.log")"

t_eq "DELETE /v1/pods/pod-1 -> 200" "200" "$(cni -XDELETE http://agent/v1/pods/pod-1)"
t_eq "listeners gone" "0" "$(l4_ns a ss -ltnH | wc -l)"
t_eq "DELETE again (idempotent) -> 200" "200" "$(cni -XDELETE http://agent/v1/pods/pod-1)"
t_eq "DELETE unknown pod -> 200" "200" "$(cni -XDELETE http://agent/v1/pods/never-seen)"
t_eq "missing netns -> 503" "503" "$(cni -XPOST http://agent/v1/pods -d '{"uid": "x", "netns": "/var/run/netns/amb-l4-does-not-exist"}')"
t_match "503 body says why" 'error.*does-not-exist' "$(cat "$T_DIR/cni.out")"
t_eq "not a netns -> 503" "503" "$(cni -XPOST http://agent/v1/pods -d '{"uid": "x", "netns": "/etc/hostname"}')"
t_eq "malformed JSON -> 400" "400" "$(cni -XPOST http://agent/v1/pods -d '{"uid": ')"
t_eq "missing netns field -> 400" "400" "$(cni -XPOST http://agent/v1/pods -d '{"uid": "x"}')"
t_eq "unknown path -> 404" "404" "$(cni http://agent/v1/nothing)"
t_eq "re-adopt after delete -> 200" "200" "$(cni -XPOST http://agent/v1/pods -d "$BODY")"
t_eq "listeners back" "3" "$(l4_ns a ss -ltnH | wc -l)"

# restart: the agent re-opens the listeners of pods it had adopted, without a new POST
t_match "state file lists the pod" '"pod-1"' "$(cat "$T_DIR/run-n1/pods.json")"
kill -TERM "$L4_PID_n1"
t_check "agent stopped" t_wait_for 5 bash -c "! kill -0 $L4_PID_n1 2>/dev/null"
t_eq "listeners closed while the agent is down" "0" "$(l4_ns a ss -ltnH | wc -l)"
t_check "agent restarted with the same run dir" l4_agent n1 "$T_DIR/empty.json"
t_eq "restart: listeners re-opened from the state file" "3" "$(l4_ns a ss -ltnH | wc -l)"
t_match "restart: logged" 'pods restored from the state file.*restored=1' "$(cat "$T_DIR/n1.log")"
t_eq "DELETE after restart -> 200" "200" "$(cni -XDELETE http://agent/v1/pods/pod-1)"
kill -TERM "$L4_PID_n1"
t_wait_for 5 bash -c "! kill -0 $L4_PID_n1 2>/dev/null"
l4_agent n1 "$T_DIR/empty.json" >>"$T_LOG" 2>&1
t_eq "restart after DELETE: nothing re-opened" "0" "$(l4_ns a ss -ltnH | wc -l)"

t_end
