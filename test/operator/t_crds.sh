#!/usr/bin/env bash
# The CRDs in crds/ install on a real API server, become Established, serve every version with
# short names, accept crds/tests/valid.yaml and reject each object of crds/tests/invalid.yaml.
set -u
cd "$(dirname "$0")/../.."
. test/lib/testlib.sh
. test/operator/lib.sh
t_begin operator-crds
op_api_up || { t_fail "API server available"; t_end; exit 1; }
ns=amb-crd-test
ns=amb-crd-test-$$
cleanup_ns() { kc delete ns "$ns" --wait=false >/dev/null 2>&1; kc delete mesh amb-crd-test >/dev/null 2>&1; }
trap 'cleanup_ns; op_crds_cleanup; op_cleanup' EXIT

t_check "apply crds/, all Established" op_crds_install
for sn in vs dr gw se pa ap ra telemetry mesh; do
    t_check "short/singular name $sn resolves" kc get "$sn" -A
done
for v in v1 v1beta1 v1alpha3; do
    t_check "networking.istio.io/$v served" kc get --raw "/apis/networking.istio.io/$v"
done
t_check "security.istio.io/v1beta1 served" kc get --raw /apis/security.istio.io/v1beta1
t_check "telemetry.istio.io/v1alpha1 served" kc get --raw /apis/telemetry.istio.io/v1alpha1

kc create ns "$ns" >/dev/null 2>&1
t_check "valid objects accepted" kc apply -n "$ns" -f <(sed "s/namespace: amb-crd-test/namespace: $ns/" crds/tests/valid.yaml)
out=$(kc get ap -n "$ns" productpage-viewer 2>&1)
t_match "printer column ACTION shows ALLOW" 'productpage-viewer +ALLOW' "$out"
out=$(kc get pa -n "$ns" default 2>&1)
t_match "printer column MODE shows STRICT" 'default +STRICT' "$out"

# every invalid object, one at a time, must be refused
python3 - crds/tests/invalid.yaml "$T_DIR" <<'PY'
import sys, re
docs = re.split(r'^---\s*$', open(sys.argv[1]).read(), flags=re.M)
for i, d in enumerate(docs):
    open(f"{sys.argv[2]}/invalid-{i:02d}.yaml", "w").write(d)
PY
for f in "$T_DIR"/invalid-*.yaml; do
    what=$(grep -m1 '^# ' "$f" | grep -v 'must reject' | sed 's/^# //')
    [ -z "$what" ] && what=$(grep -m2 '^# ' "$f" | tail -1 | sed 's/^# //')
    name=$(grep -m1 'name:' "$f" | sed 's/.*name: \([^,}]*\).*/\1/')
    sed -i "s/namespace: amb-crd-test/namespace: $ns/" "$f"
    if kc apply -f "$f" >"$T_DIR/out" 2>&1; then
        t_fail "rejects $name ($what)" "$(cat "$T_DIR/out")"
    elif grep -q 'is invalid' "$T_DIR/out"; then
        t_pass "rejects $name ($what)"
    else
        t_fail "rejects $name ($what)" "wrong error: $(cat "$T_DIR/out")"
    fi
done
t_end
