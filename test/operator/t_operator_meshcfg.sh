#!/usr/bin/env bash
# ambit-operator against a real API server: the mesh config is read live from ConfigMap istio
# (key mesh) in the operator namespace — a new rootNamespace turns a namespace-less
# AuthorizationPolicy Global in the pushed stream and a new trustDomain reaches the workloads
# and the CA (certificates are issued in it, the old one is refused), without a restart; an invalid ConfigMap keeps the last good config and sets the Mesh Degraded
# (MeshConfigInvalid, naming the field); deleting it falls back to the defaults. The Mesh object
# `default` becomes the owner of istio-ca-secret and of the leader Lease.
set -u
cd "$(dirname "$0")/../.."
. test/lib/testlib.sh
. test/operator/lib.sh
BUILD=${BUILD:-build}
t_begin operator-meshcfg
op_api_up || { t_fail "API server available"; t_end; exit 1; }
ns=amb-mc-$$
opns=amb-mc-sys-$$
MESH_OURS=0
cleanup() {
    op_stop
    kc delete ns "$ns" "$opns" --wait=false >/dev/null 2>&1
    [ "$MESH_OURS" = 1 ] && kc delete mesh default --wait=false >/dev/null 2>&1
    op_crds_cleanup
    op_cleanup
}
trap cleanup EXIT
EV=$T_DIR/events.ndjson
# the newest event for a key satisfies the filter
ev_last() { [ -f "$EV" ] && jq -e -s "map(select(.key==\"$1\")) | last | $2" "$EV" >/dev/null 2>&1; }
mesh_cm() { # mesh_cm <MeshConfig YAML>: create or replace ConfigMap istio
    kc -n "$opns" create configmap istio --from-literal=mesh="$1" --dry-run=client -o yaml |
        kc apply -f - >>"$T_LOG" 2>&1
}
mesh_status() { kc get mesh default -o jsonpath="$1" 2>/dev/null; }
status_is() { [ "$(mesh_status "$1")" = "$2" ]; }

op_test_namespaces "$opns" "$ns" || { t_fail "test namespaces"; t_end; exit 1; }
kc -n "$opns" create serviceaccount ztunnel >/dev/null 2>&1
op_crds_install >/dev/null 2>&1
# Mesh `default` is a singleton: on a shared cluster with a mesh installed, leave it alone
if kc get mesh default >/dev/null 2>&1; then
    t_pass "Mesh default exists (a mesh is installed): Mesh status and owner checks skipped"
else
    cat <<EOF | kc apply -f - >>"$T_LOG" 2>&1
apiVersion: install.ambit.dev/v1alpha1
kind: Mesh
metadata: {name: default, labels: {amb-test: "$$"}}
spec: {profile: ambient}
EOF
    MESH_OURS=1
fi
mesh_cm "trustDomain: cluster.local
rootNamespace: $opns
accessLogEncoding: TEXT
outboundTrafficPolicy: {mode: ALLOW_ANY}"
cat <<EOF | kc apply -f - >>"$T_LOG" 2>&1
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-legacy, namespace: $ns}
spec: {action: DENY, rules: [{from: [{source: {namespaces: [legacy]}}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: agent-1, namespace: $opns}
spec: {nodeName: node-1, serviceAccountName: ztunnel, containers: [{name: c, image: none}]}
---
apiVersion: v1
kind: Pod
metadata: {name: app-1, namespace: $ns, labels: {app: app}, annotations: {ambient.istio.io/redirection: enabled}}
spec: {nodeName: node-1, containers: [{name: c, image: none}]}
EOF
kc -n "$ns" patch pod app-1 --subresource=status --type=merge \
    -p '{"status":{"podIP":"10.244.7.5","podIPs":[{"ip":"10.244.7.5"}],"conditions":[{"type":"Ready","status":"True"}]}}' >>"$T_LOG" 2>&1
# no --root-namespace / --trust-domain: the ConfigMap says; --write-selector keeps the writes
# inside this test's namespaces and Mesh object on a shared cluster
lport=$(freeport)
op_start --namespace "$opns" --events-out "$EV" --debounce-ms 50 \
    --write-selector "amb-test=$$" --listen "127.0.0.1:$lport" \
    --metrics-listen "127.0.0.1:$(freeport)" --webhook-listen ''
t_check "operator becomes ready" t_wait_for 30 grep -q 'first snapshot built' "$T_DIR/operator.log"
t_match "the ConfigMap's unknown fields are warned about" 'ignoring fields.*outboundTrafficPolicy' \
    "$(cat "$T_DIR/operator.log")"
pol="$ns/deny-legacy"
wl="Kubernetes//Pod/$ns/app-1"
t_check "policy without selector outside the root namespace: scope Namespace" \
    t_wait_for 10 ev_last "$pol" '.object.scope=="Namespace"'
t_check "workload in trust domain cluster.local" t_wait_for 10 ev_last "$wl" '.object.trustDomain=="cluster.local"'

# live change: root namespace and trust domain
mesh_cm "trustDomain: example.org
rootNamespace: $ns
accessLogEncoding: JSON"
t_check "rootNamespace change: the policy turns Global in the stream" \
    t_wait_for 10 ev_last "$pol" '.object.scope=="Global"'
t_check "trustDomain change: the workload is upserted in example.org" \
    t_wait_for 10 ev_last "$wl" '.object.trustDomain=="example.org"'
# the CA follows: a node agent's CSR is authorized against the new trust domain
root=$T_DIR/root.pem
kc -n "$ns" get configmap istio-ca-root-cert -o jsonpath='{.data.root-cert\.pem}' >"$root" 2>>"$T_LOG"
tok=$(kc -n "$opns" create token ztunnel --audience istio-ca --bound-object-kind Pod --bound-object-name agent-1)
csr_post() { # csr_post <identity> -> http code; body in $T_DIR/out.json
    openssl ecparam -name prime256v1 -genkey -noout -out "$T_DIR/k.pem" 2>/dev/null
    openssl req -new -key "$T_DIR/k.pem" -subj "/" -addext "subjectAltName=URI:$1" -out "$T_DIR/csr.pem" 2>/dev/null
    jq -n --rawfile csr "$T_DIR/csr.pem" --arg id "$1" '{csr: $csr, identity: $id, ttlSeconds: 3600}' >"$T_DIR/req.json"
    curl -s --cacert "$root" -o "$T_DIR/out.json" -w '%{http_code}' -H "Authorization: Bearer $tok" \
        --data @"$T_DIR/req.json" "https://127.0.0.1:$lport/v1/certificates"
}
t_eq "CSR in the new trust domain: 200" 200 "$(csr_post "spiffe://example.org/ns/$ns/sa/default")"
t_match "the certificate is issued for example.org" "URI:spiffe://example.org/ns/$ns/sa/default" \
    "$(jq -r '.certChain[0]' "$T_DIR/out.json" | openssl x509 -noout -ext subjectAltName 2>&1)"
t_eq "CSR in the old trust domain: 403" 403 "$(csr_post "spiffe://cluster.local/ns/$ns/sa/default")"
t_match "the refusal names the trust domain" 'trust domain' "$(cat "$T_DIR/out.json")"
t_eq "operator still the same process" "1" "$(grep -c 'first snapshot built' "$T_DIR/operator.log")"
t_match "change logged" 'mesh config applied.*trust_domain=example.org' "$(cat "$T_DIR/operator.log")"
if [ "$MESH_OURS" = 1 ]; then
    rv=$(kc -n "$opns" get cm istio -o jsonpath='{.metadata.resourceVersion}')
    t_check "Mesh status: the config in effect (rootNamespace, JSON, resourceVersion)" t_wait_for 10 status_is \
        '{.status.meshConfig.rootNamespace}/{.status.meshConfig.accessLogEncoding}/{.status.meshConfig.resourceVersion}/{.status.meshConfig.source}' \
        "$ns/JSON/$rv/ConfigMap $opns/istio"
    t_eq "Mesh status: Degraded=False AsExpected" "False/AsExpected" \
        "$(mesh_status '{.status.conditions[?(@.type=="Degraded")].status}/{.status.conditions[?(@.type=="Degraded")].reason}')"
fi

# invalid: the last good config stays
mesh_cm "trustDomain: example.org
rootNamespace: $opns
accessLogEncoding: XML"
t_check "invalid ConfigMap: one error naming the field" t_wait_for 10 grep -q \
    "mesh config rejected.*accessLogEncoding: must be TEXT or JSON, got 'XML'" "$T_DIR/operator.log"
if [ "$MESH_OURS" = 1 ]; then
    bad_rv=$(kc -n "$opns" get cm istio -o jsonpath='{.metadata.resourceVersion}')
    t_check "Mesh Degraded=True MeshConfigInvalid" t_wait_for 10 status_is \
        '{.status.conditions[?(@.type=="Degraded")].status}/{.status.conditions[?(@.type=="Degraded")].reason}' \
        "True/MeshConfigInvalid"
    t_match "Degraded message names ConfigMap, key and field" \
        "ConfigMap $opns/istio key mesh: accessLogEncoding: must be TEXT or JSON, got 'XML'" \
        "$(mesh_status '{.status.conditions[?(@.type=="Degraded")].message}')"
    t_eq "Mesh status keeps the last good config, observes the new version" "$ns/JSON/$rv/$bad_rv" \
        "$(mesh_status '{.status.meshConfig.rootNamespace}/{.status.meshConfig.accessLogEncoding}/{.status.meshConfig.resourceVersion}/{.status.meshConfig.observedResourceVersion}')"
fi
sleep 1
t_check "the policy stays Global (the rejected rootNamespace is not applied)" ev_last "$pol" '.object.scope=="Global"'
t_eq "the error is logged once" 1 "$(grep -c 'mesh config rejected' "$T_DIR/operator.log")"

# valid again, then deleted: the defaults (root namespace = --namespace, cluster.local)
mesh_cm "rootNamespace: $opns"
t_check "valid again: rootNamespace back, policy scope Namespace" \
    t_wait_for 10 ev_last "$pol" '.object.scope=="Namespace"'
t_check "absent trustDomain: the default cluster.local" t_wait_for 10 ev_last "$wl" '.object.trustDomain=="cluster.local"'
[ "$MESH_OURS" = 1 ] && t_check "Mesh Degraded=False again" t_wait_for 10 status_is \
    '{.status.conditions[?(@.type=="Degraded")].status}' False
mesh_cm "rootNamespace: $ns"
t_check "policy Global again" t_wait_for 10 ev_last "$pol" '.object.scope=="Global"'
kc -n "$opns" delete configmap istio >>"$T_LOG" 2>&1
t_check "ConfigMap deleted: back to the defaults (root namespace = operator namespace)" \
    t_wait_for 10 ev_last "$pol" '.object.scope=="Namespace"'
[ "$MESH_OURS" = 1 ] && t_check "Mesh status source: defaults" t_wait_for 10 status_is \
    '{.status.meshConfig.source}/{.status.meshConfig.rootNamespace}' "defaults/$opns"

# owner references: the Mesh object owns istio-ca-secret (created before the Mesh was seen)
# and the Lease, so that deleting it (helm uninstall) garbage-collects them
if [ "$MESH_OURS" = 1 ]; then
    uid=$(kc get mesh default -o jsonpath='{.metadata.uid}')
    owner_of() { kc -n "$opns" get "$1" -o jsonpath='{.metadata.ownerReferences[*].kind}/{.metadata.ownerReferences[*].uid}' 2>/dev/null; }
    owned() { [ "$(owner_of "$1")" = "Mesh/$uid" ]; }
    t_check "istio-ca-secret owned by Mesh default" t_wait_for 15 owned secret/istio-ca-secret
    t_check "Lease ambit-operator owned by Mesh default" t_wait_for 15 owned lease/ambit-operator
    t_match "the Lease is still held" '.+' "$(kc -n "$opns" get lease ambit-operator -o jsonpath='{.spec.holderIdentity}')"
    # a user's cacerts is never touched
    kc -n "$opns" create secret generic cacerts --from-literal=x=y >>"$T_LOG" 2>&1
    sleep 2
    t_eq "cacerts has no owner" "" "$(kc -n "$opns" get secret cacerts -o jsonpath='{.metadata.ownerReferences}')"
fi
op_stop
t_end
