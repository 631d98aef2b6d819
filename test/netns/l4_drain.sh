#!/usr/bin/env bash
# l4_drain.sh — SIGTERM drains: an in-flight transfer through both agents completes, the
# draining agent stops accepting, readiness turns 503, and it exits once the connection ended;
# with a short deadline the agent exits at the deadline even with a connection still open.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/test/lib/testlib.sh"
t_begin l4_drain
. "$ROOT/test/netns/l4_lib.bash"
trap l4_cleanup EXIT

t_check "topology (netns, bridge, redirect rules, CA, app)" l4_topology
l4_config "$T_DIR/n1.json" node-1 "[$(l4_pod_json client-uid "$L4-a" 10.77.0.1)]"
l4_config "$T_DIR/n2.json" node-2 "[$(l4_pod_json server-uid "$L4-b" 10.77.0.2)]"
t_check "agent on node 1 ready" l4_agent n1 "$T_DIR/n1.json" --drain-ms 20000
t_check "agent on node 2 ready" l4_agent n2 "$T_DIR/n2.json" --drain-ms 20000

# a 4-second upload through the tunnel; SIGTERM both agents one second in
l4_client a 10.77.0.2 8080 x --size 400000 --slow 4 >"$T_DIR/slow.out" 2>>"$T_LOG" &
CL=$!
sleep 1
kill -TERM "$L4_PID_n1" "$L4_PID_n2"
sleep 0.5
t_expect_fail "draining: readiness is no longer 200" l4_ns n1 curl -sf -m 1 http://127.0.0.1:15021/healthz/ready
t_check "draining: agent 1 still running while the transfer is in flight" kill -0 "$L4_PID_n1"
l4_client a 10.77.0.2 8080 late >>"$T_LOG" 2>&1
t_eq "draining: new outbound connections are refused" "1" "$([ $? -ne 0 ] && echo 1 || echo 0)"
wait $CL
t_eq "in-flight transfer completed intact" "400005" "$(cat "$T_DIR/slow.out")"
t_check "agent 1 exits after the drain" t_wait_for 5 bash -c "! kill -0 $L4_PID_n1 2>/dev/null"
t_check "agent 2 exits after the drain" t_wait_for 5 bash -c "! kill -0 $L4_PID_n2 2>/dev/null"
t_match "drain logged" 'drain finished.*open_connections=0' "$(cat "$T_DIR/n1.log")"
t_match "server agent drained too (inbound HBONE connections got GOAWAY, stream finished)" \
    'drain finished.*open_connections=0' "$(cat "$T_DIR/n2.log")"

# deadline: a connection that never ends does not keep the agent alive
l4_agent n1 "$T_DIR/n1.json" --drain-ms 1000 >>"$T_LOG" 2>&1
t_check "agent 1 restarted (same pod, new listeners)" l4_ns n1 curl -sf http://127.0.0.1:15021/healthz/ready
l4_agent n2 "$T_DIR/n2.json" --drain-ms 1000 >>"$T_LOG" 2>&1
l4_client a 10.77.0.2 8080 x --size 100000 --slow 10 >/dev/null 2>&1 &
CL=$!
L4_PIDS+=($CL)
sleep 1
start=$SECONDS
kill -TERM "$L4_PID_n1"
t_check "deadline: agent exits within ~1 s despite an open connection" \
    t_wait_for 4 bash -c "! kill -0 $L4_PID_n1 2>/dev/null"
t_match "deadline logged" 'drain finished.*deadline_hit=true' "$(cat "$T_DIR/n1.log")"
kill "$CL" 2>/dev/null

t_end
