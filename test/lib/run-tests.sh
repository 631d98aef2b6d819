#!/usr/bin/env bash
# run-tests.sh <layer> <executable>... — runs each test program (cmocka binary or bash script),
# echoes its output, and totals cmocka's summary lines. Writes "<passed> <failed>" to
# $BUILD/test-results/<layer> and prints "<layer>: N passed, N failed".
set -u
layer=$1
shift
BUILD=${BUILD:-build}
mkdir -p "$BUILD/test-results"
passed=0
failed=0
for t in "$@"; do
    out=$(mktemp)
    if [ -n "${TEST_TIMEOUT:-}" ]; then
        timeout "$TEST_TIMEOUT" "$t" 2>&1 | tee "$out"
    else
        "$t" 2>&1 | tee "$out"
    fi
    rc=${PIPESTATUS[0]}
    p=$(grep -E '^\[  PASSED  \] [0-9]+ test' "$out" | awk '{s += $4} END {print s + 0}')
    f=$(grep -E '^\[  FAILED  \] [0-9]+ test' "$out" | awk '{s += $4} END {print s + 0}')
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        # crashed or exited non-zero without a summary: count it as one failure
        echo "[  FAILED  ] $t exited with status $rc"
        f=1
    fi
    passed=$((passed + p))
    failed=$((failed + f))
    rm -f "$out"
done
echo "$passed $failed" >"$BUILD/test-results/$layer"
echo "$layer: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
