#!/usr/bin/env bash
# operator.sh — the operator benchmark (make bench-operator): a private etcd + kube-apiserver
# (test/operator/bare-apiserver.sh, never a shared cluster: it gets 100 fake nodes), the CRDs,
# then test/bench/opbench.py loads it (SCALE x 10 000 pods / 2 000 services / 500 policies),
# starts ambit-operator and 100 simulated agents ($BUILD/bench/opagents) and measures time to
# the first full push, incremental push latency and the operator's memory.
# Knobs: OPBENCH_SCALE (1), OPBENCH_CHANGES (250 x scale, at least 10), OPBENCH_DEBOUNCE_MS
# (operator default), OPBENCH_GAP_MS (200: quiet time between changes; 0 = back to back), OPBENCH_PLAINTEXT=1, OPBENCH_PERF=1 (perf record -g of the operator into
# $BUILD/bench/operator.perf.data), OPBENCH_OUT ($BUILD/bench/operator.json), OPBENCH_KEEP=1
# (keep the temp dir), OPBENCH_OPERATOR (another ambit-operator binary, for experiments). Exit 0 only when every agent synced and every change was seen.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
BUILD=${BUILD:-build}
SCALE=${OPBENCH_SCALE:-1}
OUT=${OPBENCH_OUT:-$BUILD/bench/operator.json}
mkdir -p "$BUILD/bench"
OPERATOR=${OPBENCH_OPERATOR:-$BUILD/bin/ambit-operator}
for b in "$OPERATOR" "$BUILD/bench/opagents"; do
    [ -x "$b" ] || { echo "bench-operator: build $b first (make bench-operator)"; exit 1; }
done
T_DIR=$(mktemp -d /tmp/amb-opbench.XXXXXX)
API_DIR=$T_DIR/api
cleanup() {
    test/operator/bare-apiserver.sh stop "$API_DIR" >/dev/null 2>&1
    if [ "${OPBENCH_KEEP:-0}" = 1 ]; then echo "bench-operator: kept $T_DIR"; else rm -rf "$T_DIR"; fi
}
trap cleanup EXIT
mkdir -p "$API_DIR"
echo "bench-operator: logs in $T_DIR (scale $SCALE)"
KUBECONFIG=$(test/operator/bare-apiserver.sh start "$API_DIR") || {
    rc=$?
    echo "bench-operator: no API server (rc $rc)"
    exit "$rc"
}
export KUBECONFIG
. test/operator/lib.sh
kc apply --server-side -f crds/ >"$T_DIR/crds.log" 2>&1 &&
    kc wait --for condition=established --timeout=60s crd --all >>"$T_DIR/crds.log" 2>&1 ||
    { echo "bench-operator: CRDs not established"; cat "$T_DIR/crds.log"; exit 1; }
args=(--kubeconfig "$KUBECONFIG" --operator "$OPERATOR"
    --agents "$BUILD/bench/opagents" --dir "$T_DIR" --out "$OUT" --scale "$SCALE")
[ -n "${OPBENCH_CHANGES:-}" ] && args+=(--changes "$OPBENCH_CHANGES")
[ -n "${OPBENCH_DEBOUNCE_MS:-}" ] && args+=(--debounce-ms "$OPBENCH_DEBOUNCE_MS")
[ -n "${OPBENCH_GAP_MS:-}" ] && args+=(--gap-ms "$OPBENCH_GAP_MS")
[ "${OPBENCH_PLAINTEXT:-0}" = 1 ] && args+=(--plaintext)
[ "${OPBENCH_PERF:-0}" = 1 ] && args+=(--perf "$BUILD/bench/operator.perf.data")
python3 test/bench/opbench.py "${args[@]}"
rc=$?
echo "bench-operator: wrote $OUT (exit $rc)"
exit $rc
