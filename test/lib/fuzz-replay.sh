#!/usr/bin/env bash
# fuzz-replay.sh <fuzz-binary>... — replays each target's committed corpus once (no mutation).
# The corpus of build/fuzz/bin/<dir>-fuzz_<name> lives in <dir>/fuzz/corpus/<name>/.
set -u
[ $# -eq 0 ] && set -- ${FUZZ_BINS:-}
passed=0
failed=0
for bin in "$@"; do
    base=$(basename "$bin")
    dir=${base%%-fuzz_*}
    name=${base#*-fuzz_}
    corpus="$dir/fuzz/corpus/$name"
    if [ ! -d "$corpus" ] || [ -z "$(ls -A "$corpus")" ]; then
        echo "[  FAILED  ] $base: no committed corpus in $corpus"
        failed=$((failed + 1))
        continue
    fi
    n=$(ls "$corpus" | wc -l)
    if "$bin" -runs=0 "$corpus"/* >/tmp/fuzz-replay.$$.log 2>&1; then
        echo "[       OK ] $base: $n inputs replayed"
        passed=$((passed + 1))
    else
        tail -30 /tmp/fuzz-replay.$$.log
        echo "[  FAILED  ] $base: corpus replay crashed"
        failed=$((failed + 1))
    fi
    rm -f /tmp/fuzz-replay.$$.log
done
echo "[  PASSED  ] $passed test(s)."
[ "$failed" -gt 0 ] && echo "[  FAILED  ] $failed test(s), listed above"
[ "$failed" -eq 0 ]
