#!/usr/bin/env bash
# noderunner_unit.sh — the node runner's Go unit tests (image map rules, $(VAR) expansion,
# per-node paths, log tail), reported in the cluster layer's format.
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
# shellcheck source=../../lib/testlib.sh
. "$REPO/test/lib/testlib.sh"
t_begin noderunner-unit
[ -x /usr/local/go/bin/go ] && export PATH=/usr/local/go/bin:$PATH
out=$(cd "$REPO/test/cluster/noderunner" && GOFLAGS="-trimpath -mod=mod -buildvcs=false" GOTOOLCHAIN=local \
    go test -count=1 -v . 2>&1)
rc=$?
echo "$out" >>"$T_LOG"
while read -r status name; do
    case $status in
    PASS:) t_pass "$name" ;;
    FAIL:) t_fail "$name" "see $T_LOG" ;;
    esac
done < <(sed -n 's/^--- \(PASS:\|FAIL:\) \([^ ]*\).*/\1 \2/p' <<<"$out")
[ $rc -eq 0 ] || grep -q '^--- FAIL' <<<"$out" || t_fail "go test" "exit $rc: $(tail -3 <<<"$out")"
t_end
