#!/usr/bin/env bash
# l4.sh — L4 benchmark: no-mesh baseline vs the ambit node-agent pair, same netns topology
# (test/netns/l4_lib.bash: client pod on node 1, server pod on node 2, one bridge).
#
#   baseline : client pod -> server pod, plain TCP (no redirect rules, no agents)
#   ambit    : same pods, in-pod redirection + two ambit-node agents, HBONE (mTLS + h2 CONNECT)
#
# Measures (both runs): single-stream throughput, 1 KiB request/response latency at a fixed
# rate (default 1000 rps), new connections per second; for the ambit run also CPU seconds per
# 1000 rps, RSS and private anonymous memory of each agent, and memory per idle connection
# (growth of anonymous memory while 1000 connections are held). Writes $BUILD/bench/l4.json.
# Knobs: L4B_SECS (10), L4B_RATE (1000), L4B_IDLE (1000), L4B_WORKERS (1).
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/test/lib/testlib.sh"
T_DIR=$(mktemp -d /tmp/ambit-bench-l4.XXXXXX)
T_LOG=$T_DIR/bench.log
. "$ROOT/test/netns/l4_lib.bash"
trap l4_cleanup EXIT
LOAD=$BUILD/bench/l4load
SECS=${L4B_SECS:-10}
RATE=${L4B_RATE:-1000}
IDLE=${L4B_IDLE:-1000}
WORKERS=${L4B_WORKERS:-1}
OUT=$BUILD/bench/l4.json
mkdir -p "$BUILD/bench"
[ -x "$LOAD" ] || { echo "build $LOAD first (make bench-l4)"; exit 1; }
[ "$(id -u)" = 0 ] || { echo "bench-l4 needs root (network namespaces)"; exit 1; }

echo "bench-l4: logs in $T_DIR"
ip netns add "$L4-br" && ip -n "$L4-br" link add br0 type bridge && ip -n "$L4-br" link set br0 up
l4_pod a 10.77.0.1 && l4_pod b 10.77.0.2 || exit 1
ip netns add "$L4-n1" && ip -n "$L4-n1" link set lo up
ip netns add "$L4-n2" && ip -n "$L4-n2" link set lo up
l4_certs || { echo "cert setup failed"; exit 1; }
ip netns exec "$L4-b" "$LOAD" server 9000 >>"$T_LOG" 2>&1 &
L4_PIDS+=($!)
t_wait_for 5 l4_ns b bash -c 'exec 3<>/dev/tcp/127.0.0.1/9000' || { echo "server did not start"; exit 1; }

run() { # <label> -> sets R_tp R_rr R_cps (rr first, so RSS reflects the 1000 rps load only)
    echo "bench-l4: $1: 1 KiB rr at $RATE rps ${SECS}s"
    R_rr_cpu0=$(agent_cpu)
    R_rr=$(l4_ns a "$LOAD" rr 10.77.0.2 9000 "$RATE" "$SECS" 1024 4)
    R_rr_cpu1=$(agent_cpu)
    echo "  $R_rr"
    R_rss=$(agent_rss)
    R_anon=$(agent_anon)
    echo "bench-l4: $1: throughput ${SECS}s"
    R_tp=$(l4_ns a "$LOAD" throughput 10.77.0.2 9000 "$SECS")
    echo "  $R_tp"
    echo "bench-l4: $1: new connections/s 5s"
    R_cps=$(l4_ns a "$LOAD" cps 10.77.0.2 9000 5 4)
    echo "  $R_cps"
}

TCK=$(getconf CLK_TCK)
cpu_of() { awk -v t="$TCK" '{printf "%.3f", ($14 + $15) / t}' "/proc/$1/stat" 2>/dev/null || echo 0; }
rss_of() { awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; } # KiB
anon_of() { awk '/^Anonymous/ {print $2}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; } # KiB
agent_anon() { [ -n "${L4_PID_n1:-}" ] && echo "$(anon_of "$L4_PID_n1") $(anon_of "$L4_PID_n2")" || echo "0 0"; }
agent_cpu() { [ -n "${L4_PID_n1:-}" ] && echo "$(cpu_of "$L4_PID_n1") $(cpu_of "$L4_PID_n2")" || echo "0 0"; }
agent_rss() { [ -n "${L4_PID_n1:-}" ] && echo "$(rss_of "$L4_PID_n1") $(rss_of "$L4_PID_n2")" || echo "0 0"; }

run baseline
B_tp=$R_tp B_rr=$R_rr B_cps=$R_cps

# ---- ambit: rules + agents
"$NODE_BIN" redirect add "/var/run/netns/$L4-a" >>"$T_LOG" 2>&1 || exit 1
"$NODE_BIN" redirect add "/var/run/netns/$L4-b" >>"$T_LOG" 2>&1 || exit 1
l4_config "$T_DIR/n1.json" node-1 "[$(l4_pod_json client-uid "$L4-a" 10.77.0.1)]"
l4_config "$T_DIR/n2.json" node-2 "[$(l4_pod_json server-uid "$L4-b" 10.77.0.2)]"
L4_LOG_LEVEL=warn l4_agent n1 "$T_DIR/n1.json" --workers "$WORKERS" || { echo "agent 1 failed"; exit 1; }
L4_LOG_LEVEL=warn l4_agent n2 "$T_DIR/n2.json" --workers "$WORKERS" || { echo "agent 2 failed"; exit 1; }
# warm the HBONE pool (one handshake) so the rr run measures steady state
l4_ns a "$LOAD" cps 10.77.0.2 9000 0.5 1 >/dev/null
run ambit
read -r c0a c0b <<<"$R_rr_cpu0"
read -r c1a c1b <<<"$R_rr_cpu1"
read -r rss_a rss_b <<<"$R_rss"
read -r anon_a anon_b <<<"$R_anon"

echo "bench-l4: ambit: $IDLE idle connections"
idle_before=$(agent_anon)
l4_ns a "$LOAD" idle 10.77.0.2 9000 "$IDLE" 6 >"$T_DIR/idle.json" &
IDLEPID=$!
sleep 4
idle_during=$(agent_anon)
wait $IDLEPID
echo "  $(cat "$T_DIR/idle.json") anonymous memory before: $idle_before during: $idle_during (KiB)"
read -r ib_a ib_b <<<"$idle_before"
read -r id_a id_b <<<"$idle_during"
idle_open=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["open"])' "$T_DIR/idle.json" 2>/dev/null || echo 0)

python3 - "$OUT" <<EOF
import json, sys
def j(s):
    try: return json.loads(s)
    except Exception: return {}
b_tp, b_rr, b_cps = j('''$B_tp'''), j('''$B_rr'''), j('''$B_cps''')
a_tp, a_rr, a_cps = j('''$R_tp'''), j('''$R_rr'''), j('''$R_cps''')
secs, rate = float("$SECS"), float("$RATE")
rps = a_rr.get("rps", 0) or 1
cpu = [float("$c1a") - float("$c0a"), float("$c1b") - float("$c0b")]
vcpu_per_krps = [c / secs / (rps / 1000.0) for c in cpu]
idle_open = int("$idle_open") or 1
load = open("/proc/loadavg").read().split()[:3]
idle_kib = [(int("$id_a") - int("$ib_a")) / idle_open, (int("$id_b") - int("$ib_b")) / idle_open]
def ratio(a, b): return round(a / b, 3) if b else None
res = {
  "config": {"loadavg_at_end": load, "seconds": secs, "rate_rps": rate, "rr_size": 1024, "rr_connections": 4,
             "agent_workers": int("$WORKERS"), "idle_connections": int("$IDLE")},
  "baseline": {"throughput_gbps": b_tp.get("gbps"), "rr": b_rr, "cps": b_cps.get("cps")},
  "ambit": {"throughput_gbps": a_tp.get("gbps"), "rr": a_rr, "cps": a_cps.get("cps"),
            "agent_cpu_s": cpu, "vcpu_per_1000rps": vcpu_per_krps,
            "agent_rss_kib": [int("$rss_a"), int("$rss_b")],
            "agent_anon_kib": [int("$anon_a"), int("$anon_b")],
            "idle_open": idle_open, "rss_per_idle_conn_kib": idle_kib},
  "ratios": {"throughput": ratio(a_tp.get("gbps", 0), b_tp.get("gbps", 0)),
             "p50": ratio(a_rr.get("p50_ms", 0), b_rr.get("p50_ms", 0)),
             "p90": ratio(a_rr.get("p90_ms", 0), b_rr.get("p90_ms", 0)),
             "p99": ratio(a_rr.get("p99_ms", 0), b_rr.get("p99_ms", 0)),
             "cps": ratio(a_cps.get("cps", 0), b_cps.get("cps", 0))},
  "added_ms": {"p50": round(a_rr.get("p50_ms", 0) - b_rr.get("p50_ms", 0), 4),
               "p90": round(a_rr.get("p90_ms", 0) - b_rr.get("p90_ms", 0), 4),
               "p99": round(a_rr.get("p99_ms", 0) - b_rr.get("p99_ms", 0), 4)},
}
t = res
res["targets"] = {
  "added_p90_le_0.10ms": t["added_ms"]["p90"] <= 0.10,
  "vcpu_per_1000rps_le_0.04": max(vcpu_per_krps) <= 0.04,
  "rss_le_8MB": max(int("$rss_a"), int("$rss_b")) <= 8192,
  "private_anon_le_8MB": max(int("$anon_a"), int("$anon_b")) <= 8192,
  "idle_conn_le_2KiB": max(idle_kib) <= 2.0,
  "throughput_ge_40pct": (t["ratios"]["throughput"] or 0) >= 0.40,
}
json.dump(res, open(sys.argv[1], "w"), indent=2)
print(json.dumps(res, indent=2))
EOF
echo "bench-l4: wrote $OUT"
