#!/usr/bin/env bash
# t_install.sh — WALKTHROUGH part A (install) and G (leave cleanly) against the local cluster:
# helm install of base, control-plane, cni and node-agent in the walkthrough's order with --wait,
# every mesh pod Ready, four `deployed` releases, `kubectl get mesh` Ready and not Degraded,
# `helm upgrade` of meshConfig applied live (a policy without selector turns Global in the node
# agents' config when its namespace becomes the root namespace; no pod restarts, pod templates
# unchanged), a hand-broken ConfigMap istio reported as Degraded MeshConfigInvalid with the last
# good config kept, least-privilege RBAC of the three service accounts against the real API,
# ambient pods enrolled through the chain; the validating webhook (caBundle filled in by the
# operator and verifying its certificate from the API server's netns, fail closed once proven,
# invalid / valid / warning-only VirtualServices, Istio writes refused but others fine while the
# operator is down, RBAC limited to its own configuration); then
# helm uninstall in reverse order: no ambit object (istio-ca-secret and the leader Lease go
# with the Mesh object that owns them), no plugin in any node's conflist, no
# nftables table of ours in node or pod netns, and the remaining pods keep their networking.
#
# The charts run this worktree's binaries: the test maps a per-run image prefix to
# $REPO/build/bin in the cluster's images map (whichever worktree started the cluster), and
# installs with image.repository set to it. It builds nothing (make test builds first).
# Brings the cluster up if needed, down again if it did (AMBIT_CLUSTER_KEEP=1 keeps it).
set -u
. "$(dirname "${BASH_SOURCE[0]}")/lib.bash"
e2e_setup e2e-install
NS_APP=e2e-app-$sfx
NS_PLAIN=e2e-plain-$sfx
NS_ROOT=e2e-root-$sfx

cleanup() {
    kubectl delete ns "$NS_APP" "$NS_PLAIN" "$NS_ROOT" --wait=false >/dev/null 2>&1
    e2e_teardown
    # last resort after a failed run (the checks below report it): a plugin left in a node's
    # chain with a revoked token stops every later pod on that node of the shared cluster
    local d
    for d in "$RUN"/nodes/node*/root; do
        if grep -qs '"type": *"ambit-cni"' "$d"/etc/cni/net.d/*.conflist || [ -e "$d/opt/cni/bin/ambit-cni" ]; then
            echo "cleanup: removing a leftover ambit-cni from $d" >>"$T_LOG"
            "$BIN/ambit-cni" uninstall --bin-dir "$d/opt/cni/bin" --conf-dir "$d/etc/cni/net.d" >>"$T_LOG" 2>&1
        fi
    done
}
trap cleanup EXIT
e2e_require_no_mesh
e2e_map_images

conflists() { cat "$RUN"/nodes/node*/root/etc/cni/net.d/*.conflist 2>/dev/null; }
node_tables() { # nftables tables in every node netns, minus kube-proxy's
    local i
    for i in $(seq 1 "$NUM_NODES"); do
        ip netns exec "$(node_ns "$i")" nft list tables 2>/dev/null | grep -v ' kube-proxy$' | sed "s/^/node$i: /"
    done
}
pod_tables() { # nftables tables in every pod netns
    local n
    for n in $(ip netns list | awk '{print $1}' | grep -E "^${NS_PREFIX}n[0-9]+-"); do
        ip netns exec "$n" nft list tables 2>/dev/null | sed "s/^/$n: /"
    done
}
curl_from() { # curl_from <ns> <pod> <url> -> http code (retries: kube-proxy / config propagation)
    local code i
    for i in 1 2 3 4 5 6 7 8 9 10; do
        code=$(kubectl -n "$1" exec "$2" -- curl -sS -m 3 -o /dev/null -w '%{http_code}' "$3" 2>>"$T_LOG")
        [ "$code" = 200 ] && break
        sleep 1
    done
    echo "$code"
}

# ---------------------------------------------------------------- A.1-2: install in order
t0=$SECONDS
t_check "helm install ambit-base (CRDs)" \
    helm install ambit-base "$REPO/charts/base" -n "$NS" --create-namespace --wait --timeout "$WAIT"
t_check "helm install istiod (control-plane, profile=ambient)" \
    helm install istiod "$REPO/charts/control-plane" -n "$NS" --set profile=ambient \
    --set image.repository="$HUB/ambit-operator" --wait --timeout "$WAIT"
t_check "helm install ambit-cni" \
    helm install ambit-cni "$REPO/charts/cni" -n "$NS" --set image.repository="$HUB/ambit-cni" \
    --wait --timeout "$WAIT"
t_check "helm install ambit-node (node-agent)" \
    helm install ambit-node "$REPO/charts/node-agent" -n "$NS" --set image.repository="$HUB/ambit-node" \
    --wait --timeout "$WAIT"
echo "install took $((SECONDS - t0))s" >>"$T_LOG"
kubectl -n "$NS" get pods -o wide >>"$T_LOG" 2>&1

t_eq "helm list -n $NS: four deployed releases" "ambit-base=deployed ambit-cni=deployed ambit-node=deployed istiod=deployed" \
    "$(helm list -n "$NS" -o json 2>>"$T_LOG" | jq -r '.[] | "\(.name)=\(.status)"' | sort | xargs)"
t_check "every pod in $NS Running and Ready" t_wait_for 60 all_ready "$NS"
t_eq "operator pods Ready" 1 \
    "$(kubectl -n "$NS" get pods -l app=ambit-operator -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True)"
t_eq "cni pod Ready on every node" "$NUM_NODES" \
    "$(kubectl -n "$NS" get pods -l app=ambit-cni-node -o jsonpath='{range .items[*]}{.spec.nodeName} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c ' True$')"
t_eq "node agent Ready on every node (host network)" "$NUM_NODES" \
    "$(kubectl -n "$NS" get pods -l app=ambit-node -o jsonpath='{range .items[*]}{.spec.hostNetwork} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c '^true True$')"
t_eq "pods run this worktree's images" 3 \
    "$(kubectl -n "$NS" get pods -o jsonpath='{range .items[*]}{.spec.containers[0].image}{"\n"}{end}' | grep "^$HUB/" | sort -u -t: -k1,1 | wc -l)"

# node agents reached the operator through istiod.istio-system.svc (hostNetwork DNS)
logs=$(kubectl -n "$NS" logs -l app=ambit-node --tail=-1 2>&1)
echo "$logs" >>"$T_LOG"
t_eq "every node agent synced its config from istiod.$NS.svc:15012" "$NUM_NODES" \
    "$(grep -c 'msg="operator config synced"' <<<"$logs")"

# ---------------------------------------------------------------- install state (Mesh)
mesh_ready() { [ "$(kubectl get mesh default -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]; }
t_check "Mesh default: Ready=True" t_wait_for 30 mesh_ready
kubectl get mesh -o wide >>"$T_LOG" 2>&1
t_match "kubectl get mesh shows READY True in its printer columns" '^default +ambient +cluster\.local +[^ ]+ +True ' \
    "$(kubectl get mesh --no-headers 2>&1)"
t_eq "Mesh status: operator component ready" "operator=true" \
    "$(kubectl get mesh default -o jsonpath='{range .status.components[?(@.name=="operator")]}{.name}={.ready}{end}')"
mesh_nodes() {
    [ "$(kubectl get mesh default -o jsonpath='{range .status.components[?(@.name!="operator")]}{.name}={.ready}/{.desired}/{.available} {end}' | xargs)" = \
        "nodeAgent=true/$NUM_NODES/$NUM_NODES cni=true/$NUM_NODES/$NUM_NODES" ]
}
t_check "Mesh status: nodeAgent and cni ready on all $NUM_NODES nodes (desired/available)" t_wait_for 30 mesh_nodes
kubectl get mesh default -o jsonpath='{.status}' >>"$T_LOG" 2>&1
degraded() { kubectl get mesh default -o jsonpath='{.status.conditions[?(@.type=="Degraded")].status}/{.status.conditions[?(@.type=="Degraded")].reason}' 2>/dev/null; }
degraded_is() { [ "$(degraded)" = "$1" ]; }
t_check "Mesh default: Degraded=False AsExpected" t_wait_for 30 degraded_is False/AsExpected
t_eq "Mesh status: the mesh config in effect comes from ConfigMap istio" "ConfigMap $NS/istio cluster.local $NS TEXT" \
    "$(kubectl get mesh default -o jsonpath='{.status.meshConfig.source} {.status.meshConfig.trustDomain} {.status.meshConfig.rootNamespace} {.status.meshConfig.accessLogEncoding}')"

# ---------------------------------------------------------------- live mesh config (helm upgrade)
# A policy without selector in namespace NS_ROOT: scope Namespace, until a `helm upgrade` makes
# NS_ROOT the root namespace; the node agents' config must follow without any pod restarting.
kubectl create ns "$NS_ROOT" >>"$T_LOG" 2>&1
kubectl apply -f - >>"$T_LOG" 2>&1 <<YAML
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mesh-wide, namespace: $NS_ROOT}
spec: {action: DENY, rules: [{from: [{source: {namespaces: [e2e-nowhere]}}]}]}
YAML
agent=$(kubectl -n "$NS" get pods -l app=ambit-node -o jsonpath='{.items[0].metadata.name}')
agent_node=$(kubectl -n "$NS" get pod "$agent" -o jsonpath='{.spec.nodeName}')
# an agent only receives the Namespace policies of namespaces with a workload on its node
kubectl apply -f - >>"$T_LOG" 2>&1 <<YAML
apiVersion: v1
kind: Pod
metadata: {name: anchor, namespace: $NS_ROOT}
spec:
  nodeName: $agent_node
  terminationGracePeriodSeconds: 1
  containers:
  - {name: curl, image: "curlimages/curl:8.10.1", command: [sleep, "3600"]}
YAML
t_check "a pod in $NS_ROOT on $agent_node" kubectl -n "$NS_ROOT" wait pod/anchor --for=condition=Ready --timeout=60s
scope_in_agent() { # the policy's scope in the node agent's config_dump (through the API server's pod proxy)
    kubectl get --raw "/api/v1/namespaces/$NS/pods/$agent:15020/proxy/config_dump" 2>/dev/null |
        jq -r --arg ns "$NS_ROOT" '.policies[] | select(.namespace==$ns and .name=="mesh-wide") | .scope' 2>/dev/null
}
scope_is() { [ "$(scope_in_agent)" = "$1" ]; }
t_check "policy without selector outside the root namespace: scope Namespace in $agent's config" \
    t_wait_for 30 scope_is Namespace
pods_state() { # every mesh pod: name uid restartCounts
    kubectl -n "$NS" get pods -o jsonpath='{range .items[*]}{.metadata.name} {.metadata.uid} {.status.containerStatuses[*].restartCount}{"\n"}{end}' | sort
}
workloads_state() { # generation + pod template of the operator Deployment and both DaemonSets
    kubectl -n "$NS" get deploy/ambit-operator ds/ambit-node ds/ambit-cni-node \
        -o jsonpath='{range .items[*]}{.metadata.name} {.metadata.generation} {.spec.template}{"\n"}{end}'
}
pods_before=$(pods_state)
workloads_before=$(workloads_state)
echo "$pods_before" >>"$T_LOG"
t_check "helm upgrade istiod: meshConfig.rootNamespace=$NS_ROOT, accessLogEncoding=JSON" \
    helm upgrade istiod "$REPO/charts/control-plane" -n "$NS" --reuse-values \
    --set meshConfig.rootNamespace="$NS_ROOT" --set meshConfig.accessLogEncoding=JSON --wait --timeout "$WAIT"
t_check "the policy turns Global in the node agent's config (live, within 30 s)" t_wait_for 30 scope_is Global
mesh_cfg_is() { [ "$(kubectl get mesh default -o jsonpath='{.status.meshConfig.rootNamespace} {.status.meshConfig.accessLogEncoding}')" = "$1" ]; }
t_check "Mesh status: rootNamespace $NS_ROOT, accessLogEncoding JSON" t_wait_for 15 mesh_cfg_is "$NS_ROOT JSON"
t_eq "no mesh pod restarted or was replaced by the upgrade (same UIDs and restart counts)" "$pods_before" "$(pods_state)"
t_eq "Deployment and DaemonSets: generation and pod template unchanged" "$workloads_before" "$(workloads_state)"
good_rv=$(kubectl get mesh default -o jsonpath='{.status.meshConfig.resourceVersion}')

# a hand-broken ConfigMap: reported, the last good config stays in effect
bad=$(kubectl -n "$NS" get cm istio -o jsonpath='{.data.mesh}' | sed 's/^accessLogEncoding: .*/accessLogEncoding: XML/')
t_check "ConfigMap istio patched with accessLogEncoding: XML" \
    kubectl -n "$NS" patch cm istio --type=merge -p "$(jq -n --arg m "$bad" '{data: {mesh: $m}}')"
t_check "Mesh Degraded=True MeshConfigInvalid" t_wait_for 15 degraded_is True/MeshConfigInvalid
t_match "Degraded message names the ConfigMap, key and field" \
    "ConfigMap $NS/istio key mesh: accessLogEncoding: must be TEXT or JSON, got 'XML'" \
    "$(kubectl get mesh default -o jsonpath='{.status.conditions[?(@.type=="Degraded")].message}')"
t_eq "the previous config stays in effect (Mesh status)" "$NS_ROOT JSON $good_rv" \
    "$(kubectl get mesh default -o jsonpath='{.status.meshConfig.rootNamespace} {.status.meshConfig.accessLogEncoding} {.status.meshConfig.resourceVersion}')"
t_eq "the policy stays Global" Global "$(scope_in_agent)"
kubectl get mesh -o wide >>"$T_LOG" 2>&1
t_check "helm upgrade istiod back to the default rootNamespace and TEXT" \
    helm upgrade istiod "$REPO/charts/control-plane" -n "$NS" --reuse-values \
    --set meshConfig.rootNamespace= --set meshConfig.accessLogEncoding=TEXT --wait --timeout "$WAIT"
t_check "Mesh Degraded=False again" t_wait_for 15 degraded_is False/AsExpected
t_check "Mesh status: rootNamespace $NS, TEXT" t_wait_for 15 mesh_cfg_is "$NS TEXT"
t_check "the policy is scoped to its namespace again" t_wait_for 30 scope_is Namespace
t_eq "still no mesh pod restarted or replaced" "$pods_before" "$(pods_state)"
t_eq "still the same generations and pod templates" "$workloads_before" "$(workloads_state)"
kubectl delete ns "$NS_ROOT" --wait=false >>"$T_LOG" 2>&1

# uninstall removes what the operator created: it is owned by the Mesh object
mesh_uid=$(kubectl get mesh default -o jsonpath='{.metadata.uid}')
owner_of() { kubectl -n "$NS" get "$1" -o jsonpath='{.metadata.ownerReferences[*].kind}/{.metadata.ownerReferences[*].uid}' 2>/dev/null; }
owned() { [ "$(owner_of "$1")" = "Mesh/$mesh_uid" ]; }
t_check "istio-ca-secret owned by Mesh default" t_wait_for 15 owned secret/istio-ca-secret
t_check "the leader Lease owned by Mesh default" t_wait_for 15 owned lease/ambit-operator

# ---------------------------------------------------------------- RBAC least privilege
sa() { echo "system:serviceaccount:$NS:$1"; }
for acct in ambit-operator ambit-node ambit-cni; do
    for q in "get secrets -n default" "list secrets -n kube-system" "delete pods -n default" \
        "delete pods -n $NS" "create pods -n default" "update deployments -n default"; do
        # shellcheck disable=SC2086
        t_eq "RBAC: $acct cannot $q" no "$(kubectl auth can-i --as="$(sa $acct)" $q 2>/dev/null)"
    done
done
t_eq "RBAC: ambit-node cannot read secrets in $NS" no "$(kubectl auth can-i --as="$(sa ambit-node)" get secrets -n "$NS" 2>/dev/null)"
t_eq "RBAC: ambit-cni cannot read secrets in $NS" no "$(kubectl auth can-i --as="$(sa ambit-cni)" get secrets -n "$NS" 2>/dev/null)"
# and the grants they need are there (the same checks would pass for an empty role otherwise)
t_eq "RBAC: ambit-operator can watch pods cluster-wide" yes "$(kubectl auth can-i --as="$(sa ambit-operator)" watch pods -A 2>/dev/null)"
t_eq "RBAC: ambit-node can watch pods cluster-wide" yes "$(kubectl auth can-i --as="$(sa ambit-node)" watch pods -A 2>/dev/null)"
t_eq "RBAC: ambit-cni can get pods" yes "$(kubectl auth can-i --as="$(sa ambit-cni)" get pods -n default 2>/dev/null)"
# the webhook configuration: the operator may touch its own and no other
VWC=ambit-validator-$NS
for v in get list watch patch; do
    t_eq "RBAC: ambit-operator can $v validatingwebhookconfigurations/$VWC" yes \
        "$(kubectl auth can-i --as="$(sa ambit-operator)" "$v" "validatingwebhookconfigurations/$VWC" 2>/dev/null)"
done
for q in "patch validatingwebhookconfigurations/other" "update validatingwebhookconfigurations/$VWC" \
    "delete validatingwebhookconfigurations/$VWC" "create validatingwebhookconfigurations" \
    "list validatingwebhookconfigurations" "patch mutatingwebhookconfigurations/$VWC" \
    "create virtualservices.networking.istio.io -n default"; do
    # shellcheck disable=SC2086
    t_eq "RBAC: ambit-operator cannot $q" no "$(kubectl auth can-i --as="$(sa ambit-operator)" $q 2>/dev/null)"
done

# ---------------------------------------------------------------- workloads: ambient and plain
kubectl create ns "$NS_APP" >>"$T_LOG" 2>&1
kubectl label ns "$NS_APP" istio.io/dataplane-mode=ambient >>"$T_LOG" 2>&1
kubectl create ns "$NS_PLAIN" >>"$T_LOG" 2>&1
for n in "$NS_APP" "$NS_PLAIN"; do
    cat <<EOF | kubectl apply -f - >>"$T_LOG" 2>&1
apiVersion: v1
kind: Pod
metadata: {name: httpbin, namespace: $n, labels: {app: httpbin}}
spec:
  nodeName: amb-node1
  terminationGracePeriodSeconds: 1
  containers:
  - {name: httpbin, image: "mccutchen/go-httpbin:v2.18.3", args: [-port, "8080"], ports: [{containerPort: 8080}],
     readinessProbe: {httpGet: {path: /status/200, port: 8080}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {name: httpbin, namespace: $n}
spec:
  selector: {app: httpbin}
  ports: [{port: 8000, targetPort: 8080, name: http}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: $n}
spec:
  nodeName: amb-node2
  terminationGracePeriodSeconds: 1
  containers:
  - {name: curl, image: "curlimages/curl:8.10.1", command: [sleep, "3600"]}
EOF
done
t_check "plain pods Ready with the ambit plugin in the chain" t_wait_for 60 all_ready "$NS_PLAIN"
t_check "ambient pods Ready (adopted by the node agent through cni.sock)" t_wait_for 60 all_ready "$NS_APP"
kubectl get pods -n "$NS_APP" -o wide >>"$T_LOG" 2>&1
t_eq "plain client -> plain httpbin (cross-node, by service name)" 200 \
    "$(curl_from "$NS_PLAIN" client "http://httpbin.$NS_PLAIN:8000/get")"
t_eq "ambient client -> ambient httpbin (cross-node, through the node agents)" 200 \
    "$(curl_from "$NS_APP" client "http://httpbin.$NS_APP:8000/get")"
t_match "ambient pods have ambit's nftables table in their netns" . "$(pod_tables)"
pod_tables >>"$T_LOG"

# ---------------------------------------------------------------- validating webhook (#6, #7)
# The API server calls istiod.$NS.svc:443 at the operator pod's IP (--enable-aggregator-routing:
# endpoints, not the ClusterIP) from the control-plane netns, verifying the certificate against
# the caBundle the operator filled in.
cabundles() { kubectl get validatingwebhookconfiguration "$VWC" -o jsonpath='{range .webhooks[*]}{.clientConfig.caBundle}{"\n"}{end}' 2>/dev/null; }
filled() { [ -n "$(cabundles)" ] && [ -z "$(cabundles | grep -v .)" ]; }
t_check "webhook configuration $VWC: caBundle filled in on every entry" t_wait_for 30 filled
cabundles | head -1 | base64 -d >"$T_DIR/cabundle.pem" 2>>"$T_LOG"
kubectl -n "$NS" get configmap istio-ca-root-cert -o jsonpath='{.data.root-cert\.pem}' >"$T_DIR/root.pem" 2>>"$T_LOG"
t_check "caBundle is the mesh root (istio-ca-root-cert)" cmp -s "$T_DIR/cabundle.pem" "$T_DIR/root.pem"
opip=$(kubectl -n "$NS" get pods -l app=ambit-operator -o jsonpath='{.items[0].status.podIP}')
t_check "the operator's 15017 certificate verifies with caBundle for istiod.$NS.svc (from the API server's netns)" \
    ip netns exec "$CP_NS" openssl s_client -connect "$opip:15017" -servername "istiod.$NS.svc" \
    -CAfile "$T_DIR/cabundle.pem" -verify_return_error -verify_hostname "istiod.$NS.svc" </dev/null
fail_closed() { [ "$(kubectl get validatingwebhookconfiguration "$VWC" -o jsonpath='{.webhooks[*].failurePolicy}')" = Fail ]; }
t_check "failurePolicy Fail once the operator's dry run was denied by its webhook" t_wait_for 30 fail_closed
kubectl -n "$NS" logs -l app=ambit-operator --tail=-1 2>&1 | grep -i webhook >>"$T_LOG"
vs() { # vs <name> <host> <regex>
    cat <<VS
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: $1, namespace: $NS_APP}
spec:
  hosts: [httpbin]
  http:
  - match: [{uri: {regex: '$3'}}]
    route: [{destination: {host: $2}}]
VS
}
out=$(vs wh-bad httpbin '(unclosed' | kubectl apply -f - 2>&1)
echo "$out" >>"$T_LOG"
t_match "kubectl apply of a VirtualService with an invalid regex is rejected, naming the field" \
    'admission webhook "validation.ambit.dev" denied the request: spec\.http\[0\]\.match\[0\]\.uri: regex "\(unclosed" does not compile' "$out"
t_expect_fail "the rejected VirtualService was not stored" kubectl -n "$NS_APP" get virtualservice wh-bad
out=$(vs wh-good httpbin '^/get' | kubectl apply -f - 2>&1)
t_eq "a valid VirtualService is admitted without warnings" "virtualservice.networking.istio.io/wh-good created" "$out"
out=$(vs wh-warn nosuchservice '^/x' | kubectl apply -f - 2>&1)
t_match "a VirtualService with only a warning is admitted, kubectl shows the warning" \
    'Warning: .*Referenced host not found: "nosuchservice".* virtualservice.networking.istio.io/wh-warn created' "$(tr "\n" " " <<<"$out")"
kubectl -n "$NS_APP" delete virtualservice wh-good wh-warn >>"$T_LOG" 2>&1
# operator down: fail closed for Istio kinds only, the rest of the cluster is unaffected
t_check "operator scaled to 0" kubectl -n "$NS" scale deploy/ambit-operator --replicas=0
op_gone() { [ -z "$(kubectl -n "$NS" get pods -l app=ambit-operator -o name 2>/dev/null)" ]; }
t_check "operator pod gone" t_wait_for 60 op_gone
out=$(vs wh-down httpbin '^/get' | kubectl apply -f - 2>&1)
echo "$out" >>"$T_LOG"
t_match "operator down: a VirtualService write is refused (failurePolicy Fail)" \
    'failed calling webhook "validation.ambit.dev"' "$out"
t_check "operator down: other writes are unaffected" kubectl -n "$NS_APP" create configmap wh-down --from-literal=a=b
t_check "operator scaled back to 1" kubectl -n "$NS" scale deploy/ambit-operator --replicas=1
t_check "operator Ready again" kubectl -n "$NS" rollout status deploy/ambit-operator --timeout="$WAIT"
admitted() { vs wh-down httpbin '^/get' | kubectl apply -f - >/dev/null 2>&1; }
t_check "operator back: the VirtualService is admitted" t_wait_for 30 admitted
kubectl -n "$NS_APP" delete virtualservice wh-down >>"$T_LOG" 2>&1
kubectl -n "$NS_APP" delete configmap wh-down >>"$T_LOG" 2>&1

# ---------------------------------------------------------------- rolling update keeps capture
# a restarted DaemonSet pod is an update, not an uninstall: plugin and in-pod rules stay
tables_before=$(pod_tables | sort)
n_tables=$(wc -l <<<"$tables_before")
watch_gaps() { # record any moment the plugin or an in-pod table is missing during the update
    while [ ! -e "$T_DIR/rollout-done" ]; do
        local c t
        c=$(conflists | grep -c '"type": *"ambit-cni"')
        t=$(pod_tables | wc -l)
        [ "$c" != "$NUM_NODES" ] && echo "conflist entries: $c"
        [ "$t" != "$n_tables" ] && echo "in-pod tables: $t"
        sleep 0.1
    done >"$T_DIR/rollout-gaps"
}
rm -f "$T_DIR/rollout-done"
watch_gaps &
watcher=$!
t_check "rollout restart ambit-cni-node" kubectl -n "$NS" rollout restart ds/ambit-cni-node
t_check "rollout restart ambit-node" kubectl -n "$NS" rollout restart ds/ambit-node
t_check "cni rollout completes" kubectl -n "$NS" rollout status ds/ambit-cni-node --timeout="$WAIT"
t_check "node agent rollout completes" kubectl -n "$NS" rollout status ds/ambit-node --timeout="$WAIT"
touch "$T_DIR/rollout-done"
wait "$watcher"
t_eq "plugin and in-pod rules never went away during the update" "" "$(sort -u "$T_DIR/rollout-gaps" | xargs)"
# the new installer pods passed the plugin without the API server: the kubeconfig on the node
# still held the old pod's token, revoked once that pod was deleted
own_pod_logged() {
    grep -hs "pod=$1 namespace=$NS reason=\"the installer's own pod" "$RUN"/nodes/node*/root/{var/run,run}/ambit/ambit-cni.log | grep -q .
}
for p in $(kubectl -n "$NS" get pods -l app=ambit-cni-node -o jsonpath='{.items[*].metadata.name}'); do
    t_check "new installer pod $p added without an API lookup" own_pod_logged "$p"
done
t_eq "plugin stayed in every node's conflist across the update" "$NUM_NODES" \
    "$(conflists | grep -c '"type": *"ambit-cni"')"
t_eq "in-pod rules stayed across the update" "$tables_before" "$(pod_tables | sort)"
t_eq "ambient client -> ambient httpbin after the update" 200 \
    "$(curl_from "$NS_APP" client "http://httpbin.$NS_APP:8000/get")"

[ -n "${E2E_STOP_BEFORE_UNINSTALL:-}" ] && { trap - EXIT; t_end; exit 1; }
# ---------------------------------------------------------------- G.25: uninstall in reverse order
for ((i = ${#RELEASES[@]} - 1; i >= 0; i--)); do
    t_check "helm uninstall ${RELEASES[$i]}" helm uninstall "${RELEASES[$i]}" -n "$NS" --wait --timeout "$WAIT"
done
RELEASES=()
gone() { [ -z "$(kubectl -n "$NS" get pods -o name 2>/dev/null)" ]; }
t_check "every mesh pod is gone" t_wait_for 60 gone
t_eq "helm list -n $NS is empty" "" "$(helm list -n "$NS" -q 2>&1)"

# root ConfigMaps are owned by the Mesh object: garbage-collected once it is deleted
roots_gone() { [ -z "$(kubectl get cm -A -o name --field-selector metadata.name=istio-ca-root-cert 2>/dev/null)" ]; }
t_check "istio-ca-root-cert ConfigMaps garbage-collected in every namespace" t_wait_for 30 roots_gone
left=$(
    kubectl get clusterrole,clusterrolebinding,validatingwebhookconfiguration,mutatingwebhookconfiguration,priorityclass -o name 2>/dev/null |
        grep -i -e ambit -e istio
    kubectl get mesh -o name 2>/dev/null
    kubectl get cm,secret,sa,role,rolebinding,lease -A -o name -l app.kubernetes.io/part-of=ambit 2>/dev/null
)
t_eq "no ambit object left outside $NS (CRDs are kept on purpose)" "" "$(xargs <<<"$left")"
t_expect_fail "webhook configuration $VWC is gone" kubectl get validatingwebhookconfiguration "$VWC"
# istio-ca-secret and the leader Lease are owned by the Mesh object as well
ca_gone() { [ -z "$(kubectl -n "$NS" get secret/istio-ca-secret lease/ambit-operator -o name 2>/dev/null)" ]; }
t_check "istio-ca-secret and the leader Lease garbage-collected with the Mesh" t_wait_for 30 ca_gone
t_eq "nothing of ambit stays in $NS" "" \
    "$(kubectl get all,cm,secret,sa,role,rolebinding,lease,pdb -n "$NS" -o name 2>/dev/null |
        grep -v -e '^configmap/kube-root-ca.crt$' -e '^serviceaccount/default$' | sort | xargs)"
t_eq "no ambit-cni in any node's conflist" "" "$(conflists | grep -o '"type": *"ambit-cni"')"
t_eq "plugin kubeconfig (a token) removed from every node" "" "$(ls "$RUN"/nodes/node*/root/etc/cni/net.d/ambit-cni-kubeconfig 2>/dev/null)"
t_eq "plugin binary removed from every node" "" "$(ls "$RUN"/nodes/node*/root/opt/cni/bin/ambit-cni 2>/dev/null)"
t_eq "no nftables table of ours in the node netns" "" "$(node_tables | xargs)"
t_eq "no nftables table in any pod netns" "" "$(pod_tables | xargs)"

# the pods that stayed keep their networking
t_eq "plain client -> plain httpbin still works" 200 "$(curl_from "$NS_PLAIN" client "http://httpbin.$NS_PLAIN:8000/get")"
t_eq "formerly ambient client -> httpbin still works" 200 "$(curl_from "$NS_APP" client "http://httpbin.$NS_APP:8000/get")"
t_eq "plain client -> formerly ambient httpbin works" 200 "$(curl_from "$NS_PLAIN" client "http://httpbin.$NS_APP:8000/get")"
kubectl delete pod -n "$NS_PLAIN" client --wait=false >>"$T_LOG" 2>&1
cat <<EOF | kubectl apply -f - >>"$T_LOG" 2>&1
apiVersion: v1
kind: Pod
metadata: {name: client2, namespace: $NS_APP}
spec:
  nodeName: amb-node1
  terminationGracePeriodSeconds: 1
  containers:
  - {name: curl, image: "curlimages/curl:8.10.1", command: [sleep, "3600"]}
EOF
t_check "a new pod in the ambient namespace starts without ambit" \
    kubectl -n "$NS_APP" wait pod/client2 --for=condition=Ready --timeout=60s
t_eq "new pod reaches httpbin" 200 "$(curl_from "$NS_APP" client2 "http://httpbin.$NS_APP:8000/get")"

kubectl delete ns "$NS_APP" "$NS_PLAIN" --wait=false >>"$T_LOG" 2>&1
t_check "namespace $NS deleted" kubectl delete ns "$NS" --wait=true --timeout=60s
t_end
