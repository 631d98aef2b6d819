#!/usr/bin/env bash
# ambit-operator's analyzer against a real API server: findings about VirtualServices,
# DestinationRules and PeerAuthentications appear in their status (Istio's validationMessages
# + a Valid condition with the text) within a bounded wait, disappear when the configuration is
# fixed, and an unchanged status is never rewritten (resourceVersion stays, also across an
# operator restart). ambitctl analyze reports the same findings from the cluster and files.
set -u
cd "$(dirname "$0")/../.."
. test/lib/testlib.sh
. test/operator/lib.sh
BUILD=${BUILD:-build}
t_begin analysis-status
op_api_up || { t_fail "API server available"; t_end; exit 1; }
ns=amb-an-$$
opns=amb-an-sys-$$
cleanup() {
    op_stop
    kc delete ns "$ns" "$opns" --wait=false >/dev/null 2>&1
    op_crds_cleanup
    op_cleanup
}
trap cleanup EXIT
lport=$(freeport)
mport=$(freeport)
start_op() {
    # --write-selector keeps this operator's writes inside the test's own namespaces
    op_start --namespace "$opns" --root-namespace "$opns" \
        --debounce-ms 50 --write-selector "amb-test=$$" --listen "127.0.0.1:$lport" \
        --metrics-listen "127.0.0.1:$mport" --webhook-listen '' --no-root-configmaps
}
# st <kind> <name>: the object's status as compact JSON ({} if none)
st() { kc -n "$ns" get "$1" "$2" -o json 2>/dev/null | jq -c '.status // {}'; }
# clean <kind> <name>: no findings of ours left (observedGeneration may stay)
clean() { st "$1" "$2" | jq -e '(.validationMessages // [] | length) == 0 and ([.conditions[]? | select(.type=="Valid")] | length) == 0' >/dev/null 2>&1; }
# st_has <kind> <name> <jq filter over .status>
st_has() { st "$1" "$2" | jq -e "$3" >/dev/null 2>&1; }
codes() { st "$1" "$2" | jq -r '[.validationMessages[]?.type.code] | join(",")'; }
cond_msg() { st "$1" "$2" | jq -r '.conditions[]? | select(.type=="Valid") | .message'; }
rv() { kc -n "$ns" get "$1" "$2" -o jsonpath='{.metadata.resourceVersion}'; }
pod() { # pod <name> <version>
    cat <<EOF2 | kc apply -f - >>"$T_LOG" 2>&1
apiVersion: v1
kind: Pod
metadata: {name: $1, namespace: $ns, labels: {app: reviews, version: $2}}
spec: {containers: [{name: c, image: none}]}
EOF2
}
vs() { # vs <weight v1> <weight v3>
    cat <<EOF2 | kc apply -f - >>"$T_LOG" 2>&1
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: $ns}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: $1}
    - {destination: {host: reviews, subset: v3}, weight: $2}
EOF2
}

op_test_namespaces "$opns" "$ns" || { t_fail "test namespaces"; t_end; exit 1; }
op_crds_install >/dev/null 2>&1
cat <<EOF2 | kc apply -f - >>"$T_LOG" 2>&1
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: $ns}
spec: {selector: {app: reviews}, ports: [{name: http, port: 9080}]}
EOF2
pod reviews-v1 v1
start_op
t_check "operator becomes ready" t_wait_for 30 grep -q 'first snapshot built' "$T_DIR/operator.log"

# 1. a subset no DestinationRule defines
vs 80 20
t_check "VirtualService to an undefined subset: IST0101 in status.validationMessages" \
    t_wait_for 10 st_has virtualservice reviews \
    '.validationMessages == [{"type":{"code":"IST0101","name":"ReferencedResourceNotFound"},"level":"ERROR","documentationUrl":"https://istio.io/latest/docs/reference/config/analysis/ist0101/"}]'
t_match "the Valid condition names the host+subset" \
    'Error \[IST0101\] spec.http\[0\].route\[0\].destination.subset: Referenced host\+subset in destinationrule not found: "reviews\+v1"' \
    "$(cond_msg virtualservice reviews)"
t_match "... and the second one" '"reviews\+v3"' "$(cond_msg virtualservice reviews)"
gen=$(kc -n "$ns" get virtualservice reviews -o jsonpath='{.metadata.generation}')
t_eq "observedGeneration is the object's generation" "$gen" \
    "$(st virtualservice reviews | jq -r '.observedGeneration')"
t_eq "condition: status False, reason ValidationErrors" "False ValidationErrors" \
    "$(st virtualservice reviews | jq -r '.conditions[] | select(.type=="Valid") | "\(.status) \(.reason)"')"

# 2. the DestinationRule defines the subsets, but v3 selects no pod
cat <<EOF2 | kc apply -f - >>"$T_LOG" 2>&1
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: $ns}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v3, labels: {version: v3}}
EOF2
t_check "subsets defined: the VirtualService status is cleared" \
    t_wait_for 10 clean virtualservice reviews
t_check "subset v3 selects no pod: IST0173 on the DestinationRule" \
    t_wait_for 10 st_has destinationrule reviews \
    '[.validationMessages[].type.code] == ["IST0173"]'
t_match "... with the subset named in the condition" 'subset "v3" selects no pod' \
    "$(cond_msg destinationrule reviews)"

# 3. a pod for v3 appears
pod reviews-v3 v3
t_check "a matching pod: the DestinationRule status is cleared" \
    t_wait_for 10 clean destinationrule reviews

# 4. weights summing to 90: a warning
vs 70 20
t_check "weights summing to 90: IST0133 WARNING" \
    t_wait_for 10 st_has virtualservice reviews \
    '[.validationMessages[] | "\(.type.code) \(.level)"] == ["IST0133 WARNING"]'
t_eq "condition reason ValidationWarnings" "ValidationWarnings" \
    "$(st virtualservice reviews | jq -r '.conditions[] | select(.type=="Valid") | .reason')"
t_match "condition text" 'destination weights sum to 90' "$(cond_msg virtualservice reviews)"

# ambitctl analyze: the same findings from the cluster; a fixed file over the cluster has none
out=$("$BUILD/bin/ambitctl" --kubeconfig "$KUBECONFIG" analyze -n "$ns" 2>&1); rc=$?
t_match "ambitctl analyze on the cluster prints the finding" \
    "^Warning \[IST0133\] \(VirtualService $ns/reviews\) destination weights sum to 90" "$out"
t_eq "... exit 0: warnings only in $ns" 0 "$rc"
cat >"$T_DIR/fixed.yaml" <<EOF2
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: $ns}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, subset: v1}, weight: 80}, {destination: {host: reviews, subset: v3}, weight: 20}]
EOF2
out=$("$BUILD/bin/ambitctl" --kubeconfig "$KUBECONFIG" analyze --use-kube -n "$ns" "$T_DIR/fixed.yaml" 2>&1); rc=$?
t_eq "ambitctl analyze --use-kube FILE: the file's version replaces the cluster's" \
    "0 ✔ No validation issues found." "$rc $out"
out=$("$BUILD/bin/ambitctl" analyze "$T_DIR/fixed.yaml" 2>&1); rc=$?
t_match "ambitctl analyze FILE alone: the Service is unknown without the cluster" \
    'Error \[IST0101\] .*Referenced host not found: "reviews"' "$out"
t_eq "... exit 1 on Error findings" 1 "$rc"

# someone else removes the messages: the live status is compared, so they come back
kc -n "$ns" patch virtualservice reviews --subresource=status --type=merge \
    -p '{"status":{"validationMessages":null}}' >>"$T_LOG" 2>&1
t_check "messages removed by another writer are restored" \
    t_wait_for 10 st_has virtualservice reviews '[.validationMessages[].type.code] == ["IST0133"]'

# 5. no rewrites while nothing changes: other changes trigger analysis passes meanwhile
rv1=$(rv virtualservice reviews)
writes1=$(grep -c "analysis findings written to status.*VirtualService/$ns/reviews" "$T_DIR/operator.log")
pod reviews-v1b v1
kc -n "$ns" label pod reviews-v1b extra=1 >>"$T_LOG" 2>&1
kc -n "$ns" annotate destinationrule reviews touched=1 >>"$T_LOG" 2>&1
sleep 3
t_eq "unchanged findings: resourceVersion unchanged" "$rv1" "$(rv virtualservice reviews)"
t_eq "unchanged findings: no further status write logged" "$writes1" \
    "$(grep -c "analysis findings written to status.*VirtualService/$ns/reviews" "$T_DIR/operator.log")"
op_stop
start_op
t_check "restarted operator ready" t_wait_for 30 bash -c \
    "[ \$(grep -c 'first snapshot built' '$T_DIR/operator.log') -ge 2 ]"
sleep 3
t_eq "restarted operator: status not rewritten" "$rv1" "$(rv virtualservice reviews)"

# 6. a spec change bumps observedGeneration even with the same finding
kc -n "$ns" patch virtualservice reviews --type=merge -p '{"spec":{"hosts":["reviews","reviews.x"]}}' >>"$T_LOG" 2>&1
gen=$(kc -n "$ns" get virtualservice reviews -o jsonpath='{.metadata.generation}')
t_check "new generation observed" t_wait_for 10 st_has virtualservice reviews \
    ".observedGeneration == $gen and (.conditions[0].observedGeneration == $gen)"

# 7. fixed: cleared
vs 80 20
t_check "weights fixed: status cleared" t_wait_for 10 clean virtualservice reviews

# 8. conflicting PeerAuthentications: the newer namespace-wide one is ignored
cat <<EOF2 | kc apply -f - >>"$T_LOG" 2>&1
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: first, namespace: $ns}
spec: {mtls: {mode: STRICT}}
EOF2
sleep 1.1 # creationTimestamp has one-second resolution
cat <<EOF2 | kc apply -f - >>"$T_LOG" 2>&1
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: second, namespace: $ns}
spec: {mtls: {mode: PERMISSIVE}}
EOF2
t_check "second namespace-wide PeerAuthentication: condition says it is ignored" \
    t_wait_for 10 bash -c "'$KUBECTL' -n '$ns' get peerauthentication second -o json | jq -e '.status.conditions[] | select(.type==\"Valid\") | .message | test(\"ConflictingPeerAuthentication.*older namespace-wide\")'"
t_check "... and the older one has no status" st_has peerauthentication first '. == {}'
kc -n "$ns" delete peerauthentication first >>"$T_LOG" 2>&1
t_check "the older one deleted: the conflict is cleared" \
    t_wait_for 10 clean peerauthentication second

# 9. objects outside --write-selector namespaces are analyzed but never written
other=amb-an-other-$$
kc create ns "$other" >/dev/null
cat <<EOF2 | kc apply -f - >>"$T_LOG" 2>&1
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: x, namespace: $other}
spec: {http: [{route: [{destination: {host: nosuch}}]}]}
EOF2
sleep 2
t_eq "namespace outside --write-selector: no status written" "{}" \
    "$(kc -n "$other" get virtualservice x -o json | jq -c '.status // {}')"
kc delete ns "$other" --wait=false >/dev/null 2>&1

m=$(curl -s "http://127.0.0.1:$mport/metrics")
t_match "metrics: findings of the last pass" 'ambit_operator_analysis_findings [1-9]' "$m"
t_match "metrics: status writes counted" 'ambit_operator_analysis_status_writes [1-9]' "$m"
t_match "metrics: no failed status writes" 'ambit_operator_analysis_status_write_errors 0' "$m"
op_stop
t_expect_fail "no status write failures logged" grep -q 'analysis status write failed' "$T_DIR/operator.log"
t_end
