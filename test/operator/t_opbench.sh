#!/usr/bin/env bash
# The operator benchmark's harness at small scale (OPBENCH_SCALE=0.05: 5 nodes/agents, 500 pods,
# 100 services, 25 policies, 13 changes) on its own private API server: every simulated agent
# receives the full snapshot over TLS with its bound token, every single-object change (pod
# label, pod create, pod delete, policy, service) reaches every agent, and the JSON report is
# complete. The full-scale run is `make bench-operator` (docs/benchmarks.md).
set -u
cd "$(dirname "$0")/../.."
. test/lib/testlib.sh
BUILD=${BUILD:-build}
t_begin opbench
OUT=$T_DIR/operator.json
OPBENCH_SCALE=0.05 OPBENCH_OUT=$OUT BUILD=$BUILD test/bench/operator.sh >>"$T_LOG" 2>&1
rc=$?
t_eq "harness exits 0 (all agents synced, every change seen)" 0 "$rc"
j() { jq -e "$1" "$OUT" >/dev/null 2>&1; }
t_check "report written" test -s "$OUT"
t_check "5 agents, all synced after the operator became ready" \
    j '.config.agents == 5 and .first_push.start_to_all_synced_ms >= .first_push.start_to_ready_ms'
t_check "snapshot carries at least every pod and service" \
    j '.first_push.snapshot_events_per_agent >= 600'
t_check "every change observed by every agent" \
    j '.incremental.changes >= 10 and .incremental.observed == .incremental.changes'
t_check "all five change kinds measured" j '(.incremental.by_kind_last_agent_ms | length) == 5'
t_check "latencies positive and ordered" \
    j '.incremental.last_agent_ms.p50 > 0 and .incremental.last_agent_ms.max >= .incremental.last_agent_ms.p99'
t_check "operator memory sampled" j '.operator.rss_peak_kib > 1000 and .operator.rss_steady_kib > 1000'
t_check "no stream was dropped" j '.agents.reconnects == 0 and (.failures | length) == 0'
t_end
