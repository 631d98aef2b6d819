#!/usr/bin/env bash
# run-all.sh <layer>... — the body of `make test`: runs each layer, keeps going after a failing
# layer, and ends with one "N passed, N failed" line. Layers: unit, netns, fuzz, and any layer
# <name> for which a Makefile fragment defines `make test-<name>` (cluster, e2e, ...).
set -u
BUILD=${BUILD:-build}
mkdir -p "$BUILD/test-results"
rm -f "$BUILD"/test-results/*
status=0
for layer in "$@"; do
    echo "=============================== layer: $layer"
    case $layer in
    unit) test/lib/run-tests.sh unit $TEST_BINS || status=1 ;;
    netns) test/lib/run-tests.sh netns $(ls test/netns/*.sh 2>/dev/null | sort) || status=1 ;;
    fuzz) test/lib/run-tests.sh fuzz test/lib/fuzz-replay.sh || status=1 ;;
    *) make --no-print-directory "test-$layer" || status=1 ;;
    esac
done
passed=0
failed=0
for f in "$BUILD"/test-results/*; do
    [ -f "$f" ] || continue
    read -r p fl <"$f"
    passed=$((passed + p))
    failed=$((failed + fl))
done
[ $status -ne 0 ] && [ $failed -eq 0 ] && failed=1
echo "$passed passed, $failed failed"
exit $status
