#!/usr/bin/env bash
# smoke.sh — the local cluster's "done when": two Ready nodes, a 2-replica Deployment + Service
# with pods on both nodes, a client in another namespace reaching it by DNS name, helm install /
# uninstall, kubectl create token + TokenReview, RBAC denial, an in-pod projected token used
# against the API through the kubernetes Service, pod deletion cleanup, and (when this test
# started the cluster) a clean `cluster down`.
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
# shellcheck source=../../lib/testlib.sh
. "$REPO/test/lib/testlib.sh"
CL=$REPO/test/cluster/cluster.sh

t_begin cluster-smoke

started=0
if ! "$CL" status >/dev/null 2>&1; then
    t0=$SECONDS
    if "$CL" up >>"$T_LOG" 2>&1; then
        t_pass "cluster up ($((SECONDS - t0))s)"
        started=1
    else
        t_fail "cluster up" "see $T_LOG and /var/lib/ambit-cluster/logs"
        tail -40 "$T_LOG"
        cp -r /var/lib/ambit-cluster/logs "$T_DIR/cluster-logs" 2>/dev/null &&
            echo "cluster-smoke: component logs kept in $T_DIR/cluster-logs"
        "$CL" down >/dev/null 2>&1
        t_end
        exit 1
    fi
fi
eval "$("$CL" env)"
. "$REPO/test/cluster/config.sh"

keep_logs() {
    if [ "$T_FAILED" -gt 0 ] && [ -d "${AMBIT_CLUSTER_DIR:-/nonexistent}/logs" ] && [ ! -d "$T_DIR/cluster-logs" ]; then
        # keep the evidence: component logs and pod states survive `cluster down`
        kubectl get pods -A -o wide >"$T_DIR/pods.txt" 2>&1
        cp -r "$AMBIT_CLUSTER_DIR/logs" "$T_DIR/cluster-logs" 2>/dev/null
        echo "cluster-smoke: logs kept in $T_DIR (test.log, pods.txt, cluster-logs/)"
        tail -5 "$T_DIR"/cluster-logs/runner-node*.log 2>/dev/null
    fi
}
cleanup() {
    keep_logs
    kubectl delete ns "$NS_APP" "$NS_CLI" --wait=false >/dev/null 2>&1
    helm uninstall smoke-chart -n "$NS_CLI" >/dev/null 2>&1
    if [ "$started" = 1 ] && [ -z "${AMBIT_CLUSTER_KEEP:-}" ]; then "$CL" down >/dev/null 2>&1; fi
}
trap cleanup EXIT

sfx=$(printf '%04x' $((RANDOM % 65536)))
NS_APP=smoke-app-$sfx
NS_CLI=smoke-cli-$sfx

# ---------------------------------------------------------------- nodes
ready=$(kubectl get nodes -o jsonpath='{range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status} {end}')
t_eq "two Ready nodes" "amb-node1=True amb-node2=True" "$(echo $ready | tr ' ' '\n' | sort | xargs)"
t_eq "node podCIDRs" "10.244.1.0/24 10.244.2.0/24" \
    "$(kubectl get nodes -o jsonpath='{.items[*].spec.podCIDR}' | tr ' ' '\n' | sort | xargs)"

# ---------------------------------------------------------------- deployment + service + DNS
kubectl create ns "$NS_APP" >>"$T_LOG" 2>&1
kubectl create ns "$NS_CLI" >>"$T_LOG" 2>&1
cat <<EOF | kubectl apply -f - >>"$T_LOG" 2>&1
apiVersion: apps/v1
kind: Deployment
metadata: {name: httpbin, namespace: $NS_APP}
spec:
  replicas: 2
  selector: {matchLabels: {app: httpbin}}
  template:
    metadata: {labels: {app: httpbin}}
    spec:
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule,
         labelSelector: {matchLabels: {app: httpbin}}}
      containers:
      - name: httpbin
        image: mccutchen/go-httpbin:v2.18.3
        args: [-port, "8080"]
        env:
        - name: POD_NAME
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        ports: [{containerPort: 8080, name: http}]
        readinessProbe: {httpGet: {path: /status/200, port: http}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: httpbin, namespace: $NS_APP}
spec:
  selector: {app: httpbin}
  ports: [{port: 8000, targetPort: http, name: http}]
EOF
t_check "deployment available" kubectl -n "$NS_APP" wait deploy/httpbin --for=condition=Available --timeout=60s
pods=$(kubectl -n "$NS_APP" get pods -l app=httpbin -o jsonpath='{range .items[*]}{.status.phase} {.spec.nodeName} {.status.podIP}{"\n"}{end}')
echo "$pods" >>"$T_LOG"
t_eq "two Running pods" 2 "$(grep -c '^Running ' <<<"$pods")"
t_eq "pods on both nodes" "amb-node1 amb-node2" "$(awk '{print $2}' <<<"$pods" | sort -u | xargs)"
t_eq "pod IPs from the nodes' pod CIDRs" 2 "$(grep -cE ' 10\.244\.[12]\.[0-9]+$' <<<"$pods")"
t_eq "endpointslice has both pods" 2 \
    "$(kubectl -n "$NS_APP" get endpointslices -l kubernetes.io/service-name=httpbin -o jsonpath='{.items[*].endpoints[*].addresses[0]}' | wc -w)"

# the client runs on each node in turn, so both same-node and cross-node paths are used
for node in amb-node1 amb-node2; do
    cat <<EOF | kubectl apply -f - >>"$T_LOG" 2>&1
apiVersion: v1
kind: Pod
metadata: {name: client-$node, namespace: $NS_CLI}
spec:
  restartPolicy: Never
  nodeName: $node
  containers:
  - name: curl
    image: curlimages/curl:8.10.1
    command: [sh, -c, 'for i in 1 2 3 4 5 6 7 8 9 10; do curl -sS -m 3 http://httpbin.$NS_APP:8000/get && exit 0; sleep 1; done; exit 1']
EOF
done
for node in amb-node1 amb-node2; do
    t_check "client on $node reaches httpbin.$NS_APP by DNS name" \
        kubectl -n "$NS_CLI" wait "pod/client-$node" --for=jsonpath='{.status.phase}'=Succeeded --timeout=60s
    out=$(kubectl -n "$NS_CLI" logs "client-$node" 2>&1)
    t_match "client on $node got the httpbin answer (kubectl logs)" "\"url\": \"http://httpbin.$NS_APP:8000/get\"" "$out"
done

# ---------------------------------------------------------------- events, unmapped image
t_match "runner posts pod events (Started)" 'Started container httpbin' \
    "$(kubectl -n "$NS_APP" get events --field-selector reason=Started -o jsonpath='{.items[*].message}' 2>&1)"
kubectl -n "$NS_CLI" run unmapped --image=example.invalid/nothing:1 --restart=Never >>"$T_LOG" 2>&1
t_check "unmapped image waits with ErrImagePull" t_wait_for 20 bash -c \
    "kubectl -n $NS_CLI get pod unmapped -o jsonpath='{.status.containerStatuses[0].state.waiting.reason}' | grep -qx ErrImagePull"
kubectl -n "$NS_CLI" delete pod unmapped --wait=false >>"$T_LOG" 2>&1

# ---------------------------------------------------------------- LoadBalancer
kubectl -n "$NS_APP" expose deploy httpbin --name httpbin-lb --type LoadBalancer --port 80 --target-port 8080 >>"$T_LOG" 2>&1
t_check "LoadBalancer service gets an address" t_wait_for 20 bash -c \
    "kubectl -n $NS_APP get svc httpbin-lb -o jsonpath='{.status.loadBalancer.ingress[0].ip}' | grep -q ."
lb_ip=$(kubectl -n "$NS_APP" get svc httpbin-lb -o jsonpath='{.status.loadBalancer.ingress[0].ip}')
t_match "address from the LB range" '^10\.240\.1\.[0-9]+$' "$lb_ip"
t_check "reachable from outside the nodes (control-plane netns)" t_wait_for 15 \
    ip netns exec "$CP_NS" curl -sf -m 2 -o /dev/null "http://$lb_ip/get"

# ---------------------------------------------------------------- exec / port-forward
hb=$(kubectl -n "$NS_APP" get pods -l app=httpbin -o jsonpath='{.items[0].metadata.name}')
t_eq "kubectl exec sees the pod's projected files" "$NS_APP" \
    "$(kubectl -n "$NS_APP" exec "$hb" -- cat /var/run/secrets/kubernetes.io/serviceaccount/namespace 2>&1)"
kubectl -n "$NS_APP" exec "$hb" -- sh -c 'exit 3' >>"$T_LOG" 2>&1
t_eq "kubectl exec returns the exit code" 3 "$?"
pf_log=$T_DIR/pf.log
kubectl -n "$NS_APP" port-forward svc/httpbin :8000 >"$pf_log" 2>&1 &
pf=$!
t_wait_for 15 grep -q 'Forwarding from 127.0.0.1:' "$pf_log"
pf_port=$(sed -n 's/^Forwarding from 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$pf_log" | head -1)
t_eq "kubectl port-forward reaches the service" 200 \
    "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:${pf_port:-1}/get")"
kill "$pf" 2>/dev/null
wait "$pf" 2>/dev/null

# ---------------------------------------------------------------- DaemonSet, hostNetwork, per-node hostPath
cat <<EOF | kubectl apply -f - >>"$T_LOG" 2>&1
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: nodeprobe, namespace: $NS_APP}
spec:
  selector: {matchLabels: {app: nodeprobe}}
  template:
    metadata: {labels: {app: nodeprobe}}
    spec:
      hostNetwork: true
      terminationGracePeriodSeconds: 1
      containers:
      - name: probe
        image: busybox:1.36
        command: [sh, -c, 'echo \$NODE_NAME > /var/run/ambit/smoke-$sfx; exec sleep 3600']
        env: [{name: NODE_NAME, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}]
        volumeMounts:
        - {name: run, mountPath: /var/run/ambit}
        - {name: netns, mountPath: /host/var/run/netns, mountPropagation: HostToContainer}
      volumes:
      - {name: run, hostPath: {path: /var/run/ambit, type: DirectoryOrCreate}}
      - {name: netns, hostPath: {path: /var/run/netns}}
EOF
t_check "daemonset rolled out on both nodes" kubectl -n "$NS_APP" rollout status ds/nodeprobe --timeout=60s
ds=$(kubectl -n "$NS_APP" get pods -l app=nodeprobe -o jsonpath='{range .items[*]}{.spec.nodeName}={.status.podIP} {end}')
t_eq "hostNetwork pods have their node's IP" "amb-node1=10.240.0.11 amb-node2=10.240.0.12" \
    "$(echo $ds | tr ' ' '\n' | sort | xargs)"
for i in 1 2; do
    f=$AMBIT_CLUSTER_DIR/nodes/node$i/root/var/run/ambit/smoke-$sfx
    t_wait_for 10 test -s "$f"
    t_eq "hostPath is per node (node$i's own copy)" "amb-node$i" "$(cat "$f" 2>&1)"
done
# a netns created after the pod started is usable through its hostPath (HostToContainer)
late=${NS_PREFIX}smoke-$sfx
ip netns add "$late"
dsp=$(kubectl -n "$NS_APP" get pods -l app=nodeprobe -o jsonpath='{.items[0].metadata.name}')
t_check "netns created later is visible in the pod (mount propagation)" \
    kubectl -n "$NS_APP" exec "$dsp" -- nsenter --net="/host/var/run/netns/$late" true
ip netns del "$late"
t_eq "host's own /var/run/ambit untouched" no "$([ -e "/var/run/ambit/smoke-$sfx" ] && echo yes || echo no)"
t_check "delete daemonset" kubectl -n "$NS_APP" delete ds nodeprobe --wait=true --timeout=60s
rm -f "$AMBIT_CLUSTER_DIR"/nodes/node*/root/var/run/ambit/smoke-"$sfx"

# ---------------------------------------------------------------- helm
chart=$T_DIR/smoke-chart
mkdir -p "$chart/templates"
cat >"$chart/Chart.yaml" <<'EOF'
apiVersion: v2
name: smoke-chart
version: 0.1.0
EOF
cat >"$chart/values.yaml" <<'EOF'
message: hello
EOF
cat >"$chart/templates/cm.yaml" <<'EOF'
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-cm
data:
  message: {{ .Values.message | quote }}
EOF
t_check "helm install" helm install smoke-chart "$chart" -n "$NS_CLI" --set message=from-helm --wait --timeout 60s
t_eq "helm release object exists" from-helm \
    "$(kubectl -n "$NS_CLI" get cm smoke-chart-cm -o jsonpath='{.data.message}' 2>&1)"
t_check "helm uninstall" helm uninstall smoke-chart -n "$NS_CLI" --wait
t_expect_fail "helm uninstall removed the object" kubectl -n "$NS_CLI" get cm smoke-chart-cm

# ---------------------------------------------------------------- tokens + RBAC
kubectl -n "$NS_CLI" create serviceaccount reader >>"$T_LOG" 2>&1
kubectl -n "$NS_CLI" create role pod-reader --verb=get,list --resource=pods >>"$T_LOG" 2>&1
kubectl -n "$NS_CLI" create rolebinding reader --role=pod-reader --serviceaccount="$NS_CLI:reader" >>"$T_LOG" 2>&1
token=$(kubectl -n "$NS_CLI" create token reader --duration=10m 2>>"$T_LOG")
t_match "kubectl create token" '^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$' "$token"
review=$(printf '{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"%s"}}' "$token" |
    kubectl create -f - -o jsonpath='{.status.authenticated} {.status.user.username}' 2>&1)
t_eq "TokenReview authenticates the token" "true system:serviceaccount:$NS_CLI:reader" "$review"
sig=${token##*.}
[ "${sig:0:1}" = A ] && c=B || c=A
tampered=${token%.*}.$c${sig:1}
bad=$(printf '{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"%s"}}' "$tampered" |
    kubectl create -f - -o jsonpath='{.status.authenticated}' 2>&1)
t_match "TokenReview rejects a tampered token" '^(false)?$' "$bad"
t_check "RBAC allows what the Role grants (list pods with the token)" \
    kubectl --token="$token" --kubeconfig=/dev/null --server "https://127.0.0.1:$APISERVER_PORT" \
    --certificate-authority "$AMBIT_CLUSTER_DIR/pki/ca.crt" -n "$NS_CLI" get pods
denied=$(kubectl --token="$token" --kubeconfig=/dev/null --server "https://127.0.0.1:$APISERVER_PORT" \
    --certificate-authority "$AMBIT_CLUSTER_DIR/pki/ca.crt" -n "$NS_CLI" get secrets 2>&1)
t_match "RBAC denies what the Role does not grant (secrets)" 'Forbidden|forbidden' "$denied"

# a pod's projected token, used from inside the pod against https://kubernetes.default.svc
cat <<EOF | kubectl apply -f - >>"$T_LOG" 2>&1
apiVersion: v1
kind: Pod
metadata: {name: api-client, namespace: $NS_CLI}
spec:
  restartPolicy: Never
  serviceAccountName: reader
  containers:
  - name: curl
    image: curlimages/curl:8.10.1
    command:
    - sh
    - -c
    - |
      sa=/var/run/secrets/kubernetes.io/serviceaccount
      ns=\$(cat \$sa/namespace)
      curl -sSf -m 5 --cacert \$sa/ca.crt -H "Authorization: Bearer \$(cat \$sa/token)" \
        https://kubernetes.default.svc/api/v1/namespaces/\$ns/pods -o /dev/null || exit 1
      code=\$(curl -sS -m 5 --cacert \$sa/ca.crt -H "Authorization: Bearer \$(cat \$sa/token)" \
        -o /dev/null -w '%{http_code}' https://kubernetes.default.svc/api/v1/namespaces/\$ns/secrets)
      echo "secrets: \$code"
      [ "\$code" = 403 ]
EOF
t_check "in-pod projected token lists pods via kubernetes.default.svc and is denied secrets" \
    kubectl -n "$NS_CLI" wait pod/api-client --for=jsonpath='{.status.phase}'=Succeeded --timeout=60s
kubectl -n "$NS_CLI" logs api-client >>"$T_LOG" 2>&1

# ---------------------------------------------------------------- deletion
before=$(ip netns list | grep -c "^${NS_PREFIX}n[0-9]-")
t_check "delete deployment" kubectl -n "$NS_APP" delete deploy httpbin --wait=true --timeout=60s
t_check "its pods are gone" t_wait_for 60 bash -c "[ -z \"\$(kubectl -n $NS_APP get pods -o name)\" ]"
after=$(ip netns list | grep -c "^${NS_PREFIX}n[0-9]-")
t_eq "pod netns removed (CNI DEL + netns delete)" 2 "$((before - after))"

# ---------------------------------------------------------------- down (only when we brought it up)
keep_logs
if [ "$started" = 1 ] && [ -z "${AMBIT_CLUSTER_KEEP:-}" ]; then
    pids=$(cat "$AMBIT_CLUSTER_DIR"/pids/*.pid 2>/dev/null)
    t_check "cluster down" "$CL" down
    left=0
    for p in $pids; do [ -d "/proc/$p" ] && ! grep -q '^State:.*Z' "/proc/$p/status" 2>/dev/null && left=$((left + 1)); done
    t_eq "no cluster process left" 0 "$left"
    t_eq "no amb-k8s- netns left" 0 "$(ip netns list | grep -c "^$NS_PREFIX")"
    t_eq "run dir removed" no "$([ -e "$AMBIT_CLUSTER_DIR" ] && echo yes || echo no)"
    t_eq "no apiserver on host loopback" no \
        "$(ss -Htln "sport = :$APISERVER_PORT" | grep -q . && echo yes || echo no)"
    started=0
fi
t_end
