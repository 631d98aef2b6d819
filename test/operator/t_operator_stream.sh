#!/usr/bin/env bash
# ambit-operator against a real API server: CA bootstrap (istio-ca-secret), root ConfigMaps in
# every namespace, and the pushed event stream (--events-out) for create/update/delete of
# pods, services, waypoints; a restarted operator keeps the same CA; a plug-in `cacerts` wins.
set -u
cd "$(dirname "$0")/../.."
. test/lib/testlib.sh
. test/operator/lib.sh
BUILD=${BUILD:-build}
t_begin operator-stream
op_api_up || { t_fail "API server available"; t_end; exit 1; }
ns=amb-op-$$
opns=amb-op-sys-$$
cleanup() {
    op_stop
    kc delete ns "$ns" "$opns" --wait=false >/dev/null 2>&1
    op_crds_cleanup
    op_cleanup
}
trap cleanup EXIT
EV=$T_DIR/events.ndjson
lport=$(freeport)
mport=$(freeport)
start_op() {
    # --write-selector keeps this operator's writes inside the test's own namespaces, so it
    # never fights a real operator on a shared cluster
    op_start --namespace "$opns" --root-namespace "$opns" --events-out "$EV" \
        --debounce-ms 50 --write-selector "amb-test=$$" --listen "127.0.0.1:$lport" \
        --metrics-listen "127.0.0.1:$mport" --webhook-listen ''
}

op_test_namespaces "$opns" "$ns" || { t_fail "test namespaces"; t_end; exit 1; }
op_crds_install >/dev/null 2>&1
start_op
t_check "operator becomes ready" t_wait_for 30 grep -q 'first snapshot built' "$T_DIR/operator.log"
t_check "self-signed CA stored in istio-ca-secret" kc -n "$opns" get secret istio-ca-secret
ca1=$(kc -n "$opns" get secret istio-ca-secret -o jsonpath='{.data.ca-cert\.pem}')
t_check "root ConfigMap published in the test namespace" \
    t_wait_for 20 kc -n "$ns" get configmap istio-ca-root-cert
root=$(kc -n "$ns" get configmap istio-ca-root-cert -o jsonpath='{.data.root-cert\.pem}')
t_eq "published root is the CA certificate" "$(base64 -d <<<"$ca1")" "$root"
kc create ns "$ns-late" >/dev/null
kc label ns "$ns-late" "amb-test=$$" >/dev/null
t_check "root ConfigMap follows a new namespace" \
    t_wait_for 20 kc -n "$ns-late" get configmap istio-ca-root-cert
kc delete ns "$ns-late" --wait=false >/dev/null

cat <<EOF2 | kc apply -f - >>"$T_LOG" 2>&1
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: $ns}
spec: {selector: {app: reviews}, ports: [{name: http, port: 9080, targetPort: http}]}
---
apiVersion: v1
kind: Pod
metadata: {name: reviews-1, namespace: $ns, labels: {app: reviews, version: v1}, annotations: {ambient.istio.io/redirection: enabled}}
spec: {nodeName: node-1, containers: [{name: c, image: none, ports: [{name: http, containerPort: 8080}]}]}
EOF2
t_check "service upsert streamed" t_wait_for 10 ev_has \
    ".type==\"upsert\" and .kind==\"service\" and .key==\"$ns/reviews.$ns.svc.cluster.local\""
t_expect_fail "no workload before the pod has an IP" ev_has ".kind==\"workload\" and .object.name==\"reviews-1\""
kc -n "$ns" patch pod reviews-1 --subresource=status --type=merge \
    -p '{"status":{"podIP":"10.244.1.5","podIPs":[{"ip":"10.244.1.5"}],"conditions":[{"type":"Ready","status":"True"}]}}' >>"$T_LOG" 2>&1
wl="Kubernetes//Pod/$ns/reviews-1"
t_check "workload upsert streamed with HBONE, Healthy, named target port resolved" t_wait_for 10 ev_has \
    ".type==\"upsert\" and .key==\"$wl\" and .object.protocol==\"HBONE\" and .object.status==\"Healthy\" and .object.services[\"$ns/reviews.$ns.svc.cluster.local\"][\"9080\"]==8080"
kc -n "$ns" patch pod reviews-1 --subresource=status --type=merge \
    -p '{"status":{"conditions":[{"type":"Ready","status":"False"}]}}' >>"$T_LOG" 2>&1
t_check "readiness change streamed as Unhealthy" t_wait_for 10 ev_has \
    ".type==\"upsert\" and .key==\"$wl\" and .object.status==\"Unhealthy\""

# a waypoint (Gateway API CRDs from the cluster helper's cache, if present)
gwdir=$(ls -d /var/cache/ambit-tools/gateway-api-v*/crd 2>/dev/null | grep -v '\.tmp/' | tail -1)
if kc get crd gateways.gateway.networking.k8s.io >/dev/null 2>&1 ||
    { [ -n "$gwdir" ] && kc apply --server-side -f "$gwdir/gateway.networking.k8s.io_gatewayclasses.yaml" \
        -f "$gwdir/gateway.networking.k8s.io_gateways.yaml" >>"$T_LOG" 2>&1; }; then
    kc wait --for condition=established --timeout=30s crd/gateways.gateway.networking.k8s.io >>"$T_LOG" 2>&1
    # a Ready node with an address to host the waypoint: a bare API server has none, so write
    # one by hand (never on a shared cluster, where the scheduler could use it)
    [ -n "$OP_BARE_DIR" ] && cat <<EOF2 | kc apply -f - >>"$T_LOG" 2>&1
apiVersion: v1
kind: Node
metadata: {name: amb-node-$$}
EOF2
    [ -n "$OP_BARE_DIR" ] && kc patch node "amb-node-$$" --subresource=status --type=merge -p \
        '{"status":{"conditions":[{"type":"Ready","status":"True","reason":"Test","message":"test","lastHeartbeatTime":null,"lastTransitionTime":null}],"addresses":[{"type":"InternalIP","address":"192.0.2.10"}]}}' >>"$T_LOG" 2>&1
    kc label ns "$ns" istio.io/use-waypoint=waypoint >>"$T_LOG" 2>&1
    cat <<EOF2 | kc apply -f - >>"$T_LOG" 2>&1
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: $ns}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
EOF2
    t_check "operator creates the waypoint ServiceAccount" t_wait_for 30 kc -n "$ns" get serviceaccount waypoint
    t_check "operator creates the waypoint Service" t_wait_for 10 kc -n "$ns" get service waypoint
    t_eq "waypoint Service port 15008/hbone" "15008 hbone" \
        "$(kc -n "$ns" get service waypoint -o jsonpath='{.spec.ports[0].port} {.spec.ports[0].appProtocol}')"
    # (on a real cluster the waypoint may be placed on another Ready node: any node address will do)
    t_check "waypoint EndpointSlice lists the hosting node" t_wait_for 10 bash -c \
        "'$KUBECTL' -n '$ns' get endpointslice waypoint-ambit -o jsonpath='{.endpoints[*].addresses[0]}' 2>/dev/null | grep -Eq '^[0-9.]+$'"
    t_check "Gateway status Programmed" t_wait_for 20 bash -c \
        "'$KUBECTL' -n '$ns' get gateway waypoint -o jsonpath='{.status.conditions[?(@.type==\"Programmed\")].status}' | grep -q True"
    vip=$(kc -n "$ns" get service waypoint -o jsonpath='{.spec.clusterIP}')
    t_match "Gateway status addresses carry the ClusterIP" "$vip" \
        "$(kc -n "$ns" get gateway waypoint -o jsonpath='{.status.addresses[*].value}')"
    t_check "GatewayClass istio-waypoint applied" kc get gatewayclass istio-waypoint
    t_check "waypoint upsert streamed" t_wait_for 30 ev_has \
        ".type==\"upsert\" and .kind==\"waypoint\" and .key==\"$ns/waypoint\" and (.object.addresses|length)==1 and (.object.nodes|length)==1"
    t_check "service bound to the waypoint" t_wait_for 10 ev_has \
        ".type==\"upsert\" and .key==\"$ns/reviews.$ns.svc.cluster.local\" and .object.waypoint.key==\"$ns/waypoint\""
    [ -n "$OP_BARE_DIR" ] && kc delete node "amb-node-$$" >>"$T_LOG" 2>&1
else
    t_pass "waypoint part skipped (no Gateway API CRDs cached)"
fi

kc -n "$ns" delete pod reviews-1 --grace-period=0 --force >>"$T_LOG" 2>&1
t_check "pod delete streamed" t_wait_for 10 ev_has ".type==\"delete\" and .key==\"$wl\""
kc -n "$ns" delete service reviews >>"$T_LOG" 2>&1
t_check "service delete streamed" t_wait_for 10 ev_has \
    ".type==\"delete\" and .key==\"$ns/reviews.$ns.svc.cluster.local\""
t_check "every batch ends with synced" bash -c "tail -1 '$EV' | jq -e '.type==\"synced\"'"
t_check "versions strictly increase" bash -c \
    "jq -s '[.[]|select(.type!=\"synced\")|.version] as \$v | \$v == (\$v|sort|unique)' '$EV' | grep -q true"

# status: AuthorizationPolicy conditions and Mesh install state
cat <<EOF2 | kc apply -f - >>"$T_LOG" 2>&1
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: l4-ok, namespace: $ns}
spec: {action: DENY, rules: [{from: [{source: {namespaces: [legacy]}}]}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: http-only, namespace: $ns}
spec: {selector: {matchLabels: {app: reviews}}, action: ALLOW, rules: [{to: [{operation: {methods: [GET]}}]}]}
---
apiVersion: install.ambit.dev/v1alpha1
kind: Mesh
metadata: {name: amb-mesh-$$, labels: {amb-test: "$$"}}
spec: {profile: ambient}
EOF2
cond_is() { [ "$(kc -n "$ns" get authorizationpolicy "$1" -o jsonpath='{.status.conditions[0].type}={.status.conditions[0].status}/{.status.conditions[0].reason}' 2>/dev/null)" = "$2" ]; }
mesh_ready() { kc get mesh "amb-mesh-$$" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -q True; }
t_check "L4 policy: ZtunnelAccepted=True" t_wait_for 20 cond_is l4-ok ZtunnelAccepted=True/Accepted
t_check "HTTP-only policy: ZtunnelAccepted=False UnsupportedValue" \
    t_wait_for 20 cond_is http-only ZtunnelAccepted=False/UnsupportedValue
t_check "Mesh status Ready=True" t_wait_for 20 mesh_ready
kc delete mesh "amb-mesh-$$" >>"$T_LOG" 2>&1
t_match "the operator holds the ambit-operator Lease" '.+' \
    "$(kc -n "$opns" get lease ambit-operator -o jsonpath='{.spec.holderIdentity}' 2>&1)"
# restart: same CA
op_stop
t_eq "a stopped operator releases the Lease" "" \
    "$(kc -n "$opns" get lease ambit-operator -o jsonpath='{.spec.holderIdentity}' 2>&1)"
start_op
t_check "restarted operator ready" t_wait_for 30 bash -c "grep -c 'first snapshot built' '$T_DIR/operator.log' | grep -q 2"
ca2=$(kc -n "$opns" get secret istio-ca-secret -o jsonpath='{.data.ca-cert\.pem}')
t_eq "CA survives a restart" "$ca1" "$ca2"
t_match "restart reused the stored CA" 'CA ready.*source=istio-ca-secret' "$(tail -20 "$T_DIR/operator.log")"
op_stop

# plug-in CA: cacerts wins
d=$T_DIR/cacerts
mkdir -p "$d"
openssl ecparam -name prime256v1 -genkey -noout -out "$d/root-key.pem" 2>/dev/null
openssl req -x509 -new -key "$d/root-key.pem" -subj "/O=amb-test/CN=Root CA" -days 2 \
    -addext basicConstraints=critical,CA:true -addext keyUsage=critical,keyCertSign,cRLSign \
    -out "$d/root-cert.pem" 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out "$d/ca-key.pem" 2>/dev/null
openssl req -new -key "$d/ca-key.pem" -subj "/O=amb-test/CN=Intermediate CA" -out "$d/ca.csr" 2>/dev/null
printf 'basicConstraints=critical,CA:true,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n' >"$d/ext"
openssl x509 -req -in "$d/ca.csr" -CA "$d/root-cert.pem" -CAkey "$d/root-key.pem" -CAcreateserial \
    -days 2 -extfile "$d/ext" -out "$d/ca-cert.pem" 2>/dev/null
cat "$d/ca-cert.pem" "$d/root-cert.pem" >"$d/cert-chain.pem"
kc -n "$opns" create secret generic cacerts --from-file="$d/ca-cert.pem" --from-file="$d/ca-key.pem" \
    --from-file="$d/root-cert.pem" --from-file="$d/cert-chain.pem" >>"$T_LOG" 2>&1
start_op
t_check "operator with cacerts ready" t_wait_for 30 bash -c "grep -c 'first snapshot built' '$T_DIR/operator.log' | grep -q 3"
t_match "plug-in CA used" 'CA ready.*source=cacerts' "$(tail -20 "$T_DIR/operator.log")"
root_is_plugin() {
    [ "$(kc -n "$ns" get configmap istio-ca-root-cert -o jsonpath='{.data.root-cert\.pem}')" == "$(cat "$d/root-cert.pem")" ]
}
t_check "plug-in root published" t_wait_for 20 root_is_plugin
# hot reload: a new plug-in CA replaces the old one without a restart
d2=$T_DIR/cacerts2
mkdir -p "$d2"
openssl ecparam -name prime256v1 -genkey -noout -out "$d2/ca-key.pem" 2>/dev/null
openssl req -x509 -new -key "$d2/ca-key.pem" -subj "/O=amb-test/CN=Second Root" -days 2 \
    -addext basicConstraints=critical,CA:true -addext keyUsage=critical,keyCertSign,cRLSign \
    -out "$d2/ca-cert.pem" 2>/dev/null
cp "$d2/ca-cert.pem" "$d2/root-cert.pem"
cp "$d2/ca-cert.pem" "$d2/cert-chain.pem"
kc -n "$opns" create secret generic cacerts --from-file="$d2/ca-cert.pem" --from-file="$d2/ca-key.pem" \
    --from-file="$d2/root-cert.pem" --from-file="$d2/cert-chain.pem" --dry-run=client -o yaml |
    kc apply -f - >>"$T_LOG" 2>&1
root_is_second() {
    [ "$(kc -n "$ns" get configmap istio-ca-root-cert -o jsonpath='{.data.root-cert\.pem}')" == "$(cat "$d2/root-cert.pem")" ]
}
t_check "a changed cacerts is reloaded and its root published without a restart" \
    t_wait_for 30 root_is_second
t_match "reload logged" 'CA reloaded.*source=cacerts' "$(cat "$T_DIR/operator.log")"
op_stop
t_end
