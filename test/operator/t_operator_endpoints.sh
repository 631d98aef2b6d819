#!/usr/bin/env bash
# ambit-operator's node agent endpoints over TLS against a real API server: /v1/roots verifies
# with the published root, CSR signing authorized by TokenReview + pods on the caller's node
# (200 / 403 other node / 401 bad token / 403 wrong account / 400 SAN mismatch), the config
# stream (full snapshot, synced, live deltas, resume with since), metrics and readiness.
set -u
cd "$(dirname "$0")/../.."
. test/lib/testlib.sh
. test/operator/lib.sh
BUILD=${BUILD:-build}
t_begin operator-endpoints
op_api_up || { t_fail "API server available"; t_end; exit 1; }
opns=amb-ep-sys-$$
ns=amb-ep-$$
OP_PID=
STREAM_PID=
cleanup() {
    [ -n "$STREAM_PID" ] && kill "$STREAM_PID" 2>/dev/null
    [ -n "$OP_PID" ] && kill "$OP_PID" 2>/dev/null && wait "$OP_PID" 2>/dev/null
    kc delete validatingwebhookconfiguration "amb-ep-$$" >/dev/null 2>&1
    kc delete ns "$ns" "$opns" --wait=false >/dev/null 2>&1
    op_crds_cleanup
    op_cleanup
}
trap cleanup EXIT
port=$(freeport)
mport=$(freeport)
wport=$(freeport)
base=https://127.0.0.1:$port

op_crds_install >/dev/null 2>&1
op_test_namespaces "$opns" "$ns" || { t_fail "test namespaces"; t_end; exit 1; }
kc -n "$opns" create serviceaccount ztunnel >/dev/null
kc -n "$ns" create serviceaccount reviews >/dev/null
cat <<EOF2 | kc apply -f - >>"$T_LOG" 2>&1
apiVersion: v1
kind: Pod
metadata: {name: agent-1, namespace: $opns}
spec: {nodeName: node-1, serviceAccountName: ztunnel, containers: [{name: c, image: none}]}
---
apiVersion: v1
kind: Pod
metadata: {name: agent-2, namespace: $opns}
spec: {nodeName: node-2, serviceAccountName: ztunnel, containers: [{name: c, image: none}]}
---
apiVersion: v1
kind: Pod
metadata: {name: reviews-1, namespace: $ns}
spec: {nodeName: node-1, serviceAccountName: reviews, containers: [{name: c, image: none}]}
EOF2
op_start --namespace "$opns" --root-namespace "$opns" --listen "127.0.0.1:$port" \
    --metrics-listen "127.0.0.1:$mport" --debounce-ms 50 --write-selector "amb-test=$$" \
    --webhook-listen "127.0.0.1:$wport"
t_check "operator ready (/healthz/ready on the metrics port)" \
    t_wait_for 30 curl -sf "http://127.0.0.1:$mport/healthz/ready"
root=$T_DIR/root.pem
kc -n "$ns" get configmap istio-ca-root-cert -o jsonpath='{.data.root-cert\.pem}' >"$root" 2>>"$T_LOG"
t_check "TLS verifies against the published root" curl -sf --cacert "$root" "$base/v1/roots" -o "$T_DIR/roots.pem"
t_check "/v1/roots is the published root" cmp -s "$root" "$T_DIR/roots.pem"
t_expect_fail "plaintext HTTP is refused on the TLS port" curl -sf "http://127.0.0.1:$port/v1/roots"

# projected tokens bound to the agent pods (node identity comes from the bound pod)
tok1=$(kc -n "$opns" create token ztunnel --audience istio-ca --bound-object-kind Pod --bound-object-name agent-1)
tok2=$(kc -n "$opns" create token ztunnel --audience istio-ca --bound-object-kind Pod --bound-object-name agent-2)
tokapp=$(kc -n "$ns" create token reviews --audience istio-ca)
tokaud=$(kc -n "$opns" create token ztunnel --audience someone-else --bound-object-kind Pod --bound-object-name agent-1)

csr() { # csr <identity-in-SAN> <identity-requested> -> request body file
    local f=$T_DIR/req-$RANDOM.json
    openssl ecparam -name prime256v1 -genkey -noout -out "$T_DIR/k.pem" 2>/dev/null
    openssl req -new -key "$T_DIR/k.pem" -subj "/" -addext "subjectAltName=URI:$1" -out "$T_DIR/csr.pem" 2>/dev/null
    jq -n --rawfile csr "$T_DIR/csr.pem" --arg id "$2" '{csr: $csr, identity: $id, ttlSeconds: 3600}' >"$f"
    echo "$f"
}
post() { # post <token> <body file> -> prints http code, body in $T_DIR/out.json
    curl -s --cacert "$root" -o "$T_DIR/out.json" -w '%{http_code}' -H "Authorization: Bearer $1" \
        --data @"$2" "$base/v1/certificates"
}
id=spiffe://cluster.local/ns/$ns/sa/reviews
req=$(csr "$id" "$id")
t_eq "CSR for a pod on the caller's node: 200" 200 "$(post "$tok1" "$req")"
jq -r '.certChain[]' "$T_DIR/out.json" >"$T_DIR/chain.pem" 2>>"$T_LOG"
jq -r '.certChain[0]' "$T_DIR/out.json" >"$T_DIR/leaf.pem" 2>>"$T_LOG"
t_check "leaf verifies against the root" openssl verify -CAfile "$root" "$T_DIR/leaf.pem"
t_match "leaf carries the SPIFFE URI SAN" "URI:$id" "$(openssl x509 -in "$T_DIR/leaf.pem" -noout -ext subjectAltName 2>&1)"
t_eq "CSR refused for a pod on another node: 403" 403 "$(post "$tok2" "$req")"
t_match "the refusal says why" 'no running pod' "$(cat "$T_DIR/out.json")"
t_eq "bad token: 401" 401 "$(post not-a-token "$req")"
t_eq "token for another audience: 401" 401 "$(post "$tokaud" "$req")"
t_eq "application service account: 403" 403 "$(post "$tokapp" "$req")"
other=spiffe://cluster.local/ns/$ns/sa/other
t_eq "CSR SAN differs from the requested identity: 400" 400 "$(post "$tok1" "$(csr "$other" "$id")")"
t_eq "no token: 401" 401 "$(curl -s --cacert "$root" -o /dev/null -w '%{http_code}' --data @"$req" "$base/v1/certificates")"

# config stream
curl -sN --cacert "$root" -H "Authorization: Bearer $tok1" "$base/v1/config?node=node-1" >"$T_DIR/stream.ndjson" 2>>"$T_LOG" &
STREAM_PID=$!
st_has() { jq -e -s "map(select($1)) | length > 0" "$T_DIR/stream.ndjson" >/dev/null 2>&1; }
t_check "stream starts with the snapshot and synced" t_wait_for 10 st_has '.type=="synced"'
kc -n "$ns" create service clusterip ratings --tcp=9080:9080 >>"$T_LOG" 2>&1
t_check "a new Service arrives as an upsert on the open stream" t_wait_for 10 st_has \
    ".type==\"upsert\" and .key==\"$ns/ratings.$ns.svc.cluster.local\""
v=$(jq -s '[.[]|select(.type=="synced")|.version]|max' "$T_DIR/stream.ndjson")
kc -n "$ns" delete service ratings >>"$T_LOG" 2>&1
t_check "the delete arrives too" t_wait_for 10 st_has ".type==\"delete\" and .key==\"$ns/ratings.$ns.svc.cluster.local\""
t_eq "metrics count one connected agent" 1 \
    "$(curl -s "http://127.0.0.1:$mport/metrics" | awk '/^ambit_operator_connected_agents /{print $2}')"
kill "$STREAM_PID" 2>/dev/null
STREAM_PID=
# resume: only the events after v
curl -sN -m 2 --cacert "$root" -H "Authorization: Bearer $tok1" "$base/v1/config?node=node-1&since=$v" >"$T_DIR/resume.ndjson" 2>>"$T_LOG"
t_eq "resume with since sends only the missed delete" "delete" \
    "$(jq -r -s '[.[]|select(.type!="synced" and .type!="ping")]|map(.type)|join(",")' "$T_DIR/resume.ndjson")"
curl -sN -m 2 --cacert "$root" -H "Authorization: Bearer $tok1" "$base/v1/config?node=node-1&since=999999" >"$T_DIR/reset.ndjson" 2>>"$T_LOG"
t_eq "an unknown since gets reset + full snapshot" reset "$(head -1 "$T_DIR/reset.ndjson" | jq -r .type)"
t_eq "config stream refused for an application account" 403 \
    "$(curl -s --cacert "$root" -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $tokapp" "$base/v1/config?node=node-1")"
t_eq "config stream needs node=" 400 \
    "$(curl -s --cacert "$root" -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $tok1" "$base/v1/config")"
m=$(curl -s "http://127.0.0.1:$mport/metrics")
t_match "metrics: signed CSRs counted" 'ambit_operator_csr_total\{result="signed"\} [1-9]' "$m"
t_match "metrics: denied CSRs counted" 'ambit_operator_csr_total\{result="denied"\} [1-9]' "$m"
if command -v promtool >/dev/null; then
    t_check "metrics exposition passes promtool" bash -c "curl -s http://127.0.0.1:$mport/metrics | promtool check metrics"
fi
# validating admission webhook (15017 role): registered here by the test with the mesh root as
# caBundle; failurePolicy Ignore + a namespaceSelector so a leftover never blocks anyone else
cat <<EOF2 | kc apply -f - >>"$T_LOG" 2>&1
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: amb-ep-$$}
webhooks:
- name: validation.ambit.dev
  admissionReviewVersions: [v1]
  sideEffects: None
  failurePolicy: Ignore
  timeoutSeconds: 5
  namespaceSelector: {matchLabels: {amb-test: "$$"}}
  clientConfig:
    url: https://127.0.0.1:$wport/validate
    caBundle: $(base64 -w0 <"$root")
  rules:
  - {apiGroups: [networking.istio.io], apiVersions: ["*"], operations: [CREATE, UPDATE], resources: [virtualservices, destinationrules], scope: Namespaced}
  - {apiGroups: [security.istio.io], apiVersions: ["*"], operations: [CREATE, UPDATE], resources: [authorizationpolicies, requestauthentications], scope: Namespaced}
EOF2
vs() { # vs <name> <weight1> <weight2> <regex>
    cat <<EOF2
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: $1, namespace: $ns}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {regex: '$4'}}]
    route: [{destination: {host: reviews}, weight: $2}, {destination: {host: ratings}, weight: $3}]
EOF2
}
sleep 1 # the webhook registration becomes effective asynchronously
vs good 80 20 '^/api' >"$T_DIR/vs-good.yaml"
t_check "webhook admits a valid VirtualService" t_wait_for 10 kc apply -f "$T_DIR/vs-good.yaml"
vs badweights 70 20 '^/api' >"$T_DIR/vs-w.yaml"
out=$(kc apply -f "$T_DIR/vs-w.yaml" 2>&1)
# Istio accepts (and normalizes) such weights: a warning, not a denial
t_match "webhook admits weights that do not sum to 100 with a warning" 'Warning: .*sum to 90' "$out"
vs badregex 80 20 '(unclosed' >"$T_DIR/vs-r.yaml"
out=$(kc apply -f "$T_DIR/vs-r.yaml" 2>&1)
t_match "webhook rejects an invalid regex" 'denied the request.*does not compile' "$out"
vs warned 50 50 '^/x' >"$T_DIR/vs-warn.yaml"
t_match "webhook admits with a warning about unknown hosts" 'Warning: .*Referenced host not found: "ratings"' \
    "$(kc apply -f "$T_DIR/vs-warn.yaml" 2>&1)"
t_end
