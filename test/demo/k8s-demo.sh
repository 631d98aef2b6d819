#!/usr/bin/env bash
# k8s-demo.sh up|down — the L4 walkthrough (WALKTHROUGH.md A1-A2, B4, C6-C8, E17) on the local
# Kubernetes cluster (test/cluster): install the four charts the way Istio ambient is installed,
# deploy the Bookinfo sample apps and a curl in `bar`, label `bookinfo` ambient (no restarts),
# drive traffic and print the evidence. Everything stays up; `down` uninstalls and stops the
# cluster if this script started it.
set -euo pipefail
# the install and images-map helpers the e2e scripts use (HUB, e2e_map_images, e2e_install_mesh,
# all_ready); the demo's image prefix and map tag are fixed, so `down` finds them again
. "$(cd "$(dirname "$0")/../e2e" && pwd)/lib.bash"
sfx=demo
HUB=ambit-demo.local/ambit
WAIT=180s
STATE=/var/lib/ambit-demo-k8s

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() {
    echo "demo: error: $*" >&2
    exit 1
}
pod_of() { kubectl -n "$1" get pods -l "$2" -o jsonpath='{.items[0].metadata.name}'; }
all_enrolled() {
    local s
    s=$(kubectl -n bookinfo get pods -o jsonpath='{range .items[*]}{.metadata.annotations.ambient\.istio\.io/redirection} {end}')
    [ -n "$s" ] && [ -z "$(tr ' ' '\n' <<<"$s" | grep -v '^enabled$' | grep .)" ]
}

up() {
    [ "$(id -u)" = 0 ] || die "needs root (network namespaces)"
    for b in ambit-operator ambit-node ambit-cni ambitctl; do
        [ -x "$BIN/$b" ] || die "$BIN/$b missing: run make first"
    done
    mkdir -p "$STATE"

    say "A1. The local Kubernetes cluster (real etcd, kube-apiserver, controllers, 2 nodes)"
    if ! "$CL" status >/dev/null 2>&1; then
        "$CL" up
        touch "$STATE/started-cluster"
    fi
    eval "$("$CL" env)"
    . "$REPO/test/cluster/config.sh"
    MAP=$RUN/images.map
    e2e_map_images
    kubectl get nodes

    say "A2. helm install base, control-plane, cni, node-agent into $NS"
    if ! helm status ambit-base -n "$NS" >/dev/null 2>&1; then
        e2e_install_mesh
    fi
    helm list -n "$NS"
    t_wait_for 60 all_ready "$NS" || die "mesh pods not Ready: kubectl -n $NS get pods"
    kubectl -n "$NS" get pods -o wide
    kubectl get mesh

    say "B4. Bookinfo in namespace bookinfo, curl in namespace bar (not in the mesh)"
    kubectl create ns bookinfo --dry-run=client -o yaml | kubectl apply -f - >/dev/null
    kubectl create ns bar --dry-run=client -o yaml | kubectl apply -f - >/dev/null
    kubectl -n bookinfo apply -f "$REPO/test/apps/bookinfo.yaml" >/dev/null
    kubectl -n bar apply -f "$REPO/test/apps/curl.yaml" >/dev/null
    t_wait_for 120 all_ready bookinfo || die "bookinfo pods not Ready: kubectl -n bookinfo get pods"
    t_wait_for 60 all_ready bar || die "curl pod not Ready"
    kubectl -n bookinfo get pods -o wide
    local curl_pod
    curl_pod=$(pod_of bar app=curl)
    kubectl -n bookinfo get pods -o jsonpath='{range .items[*]}{.metadata.name} {.metadata.uid} {.status.containerStatuses[0].restartCount}{"\n"}{end}' \
        >"$STATE/pods-before"

    say "C6. kubectl label namespace bookinfo istio.io/dataplane-mode=ambient"
    kubectl label ns bookinfo istio.io/dataplane-mode=ambient --overwrite
    t_wait_for 60 all_enrolled || die "pods not enrolled (annotation ambient.istio.io/redirection)"
    kubectl -n bookinfo get pods -o jsonpath='{range .items[*]}{.metadata.name}: redirection={.metadata.annotations.ambient\.istio\.io/redirection}{"\n"}{end}'
    kubectl -n bookinfo get pods -o jsonpath='{range .items[*]}{.metadata.name} {.metadata.uid} {.status.containerStatuses[0].restartCount}{"\n"}{end}' \
        >"$STATE/pods-after"
    if cmp -s "$STATE/pods-before" "$STATE/pods-after"; then
        echo "no pod restarted (same UIDs, same restart counts)"
    else
        echo "WARNING: pods changed:"
        diff "$STATE/pods-before" "$STATE/pods-after" || true
    fi

    say "Traffic: bar/curl -> productpage.bookinfo:9080 (productpage -> details, reviews -> ratings over HBONE)"
    local ok=0 i
    for i in $(seq 1 10); do
        if kubectl -n bar exec "$curl_pod" -- curl -s -m 10 -o /dev/null -w '%{http_code}\n' \
            http://productpage.bookinfo:9080/productpage 2>/dev/null | grep -q 200; then
            ok=$((ok + 1))
        fi
    done
    echo "$ok/10 requests answered 200"

    say "C7. ambitctl ztunnel-config workloads / certificates"
    "$BIN/ambitctl" ztunnel-config workloads || true
    echo
    "$BIN/ambitctl" ztunnel-config certificates | head -8 || true

    say "C8. Access logs with both SPIFFE identities"
    kubectl -n "$NS" logs -l app=ambit-node --tail=-1 2>/dev/null |
        grep 'scope=access' | grep 'src.identity=spiffe://cluster.local/ns/bookinfo/sa/bookinfo-productpage' |
        head -2 || true

    say "C8. istio_tcp_connections_opened_total{connection_security_policy=\"mutual_tls\"}"
    local p
    for p in $(kubectl -n "$NS" get pods -l app=ambit-node -o jsonpath='{.items[*].metadata.name}'); do
        kubectl get --raw "/api/v1/namespaces/$NS/pods/$p:15020/proxy/stats/prometheus" 2>/dev/null |
            grep '^istio_tcp_connections_opened_total' | grep 'mutual_tls' | head -2 | cut -c1-220 |
            sed "s/^/  $p: /" || true
    done

    say "E17. PeerAuthentication STRICT in bookinfo: bar/curl is reset, meshed traffic still works"
    kubectl apply -f - <<'EOF'
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: bookinfo}
spec:
  mtls: {mode: STRICT}
EOF
    sleep 3
    set +e
    kubectl -n bar exec "$curl_pod" -- curl -s -m 5 -o /dev/null http://productpage.bookinfo:9080/productpage
    echo "bar/curl with STRICT: curl exit $? (56 = connection reset)"
    set -e
    local pp
    pp=$(pod_of bookinfo app=productpage)
    kubectl -n bookinfo exec "$pp" -- curl -s -m 10 -o /dev/null \
        -w 'productpage -> reviews (meshed) with STRICT: HTTP %{http_code}\n' http://reviews:9080/reviews/0 || true
    kubectl -n bookinfo delete peerauthentication default >/dev/null

    say "Done. Everything keeps running:"
    cat <<EOF
  eval "\$(make -s cluster-env)"                  # kubectl, helm, KUBECONFIG
  kubectl -n bookinfo get pods -o wide
  kubectl -n bar exec $curl_pod -- curl -s http://productpage.bookinfo:9080/productpage
  build/bin/ambitctl ztunnel-config workloads
  kubectl -n $NS logs -l app=ambit-node -f       # access logs
  make demo-down                                 # uninstall and stop the cluster
EOF
}

down() {
    if "$CL" status >/dev/null 2>&1; then
        eval "$("$CL" env)"
        . "$REPO/test/cluster/config.sh"
        kubectl delete ns bookinfo bar --wait=false >/dev/null 2>&1 || true
        local r
        for r in ambit-node ambit-cni istiod ambit-base; do
            helm uninstall "$r" -n "$NS" --wait --timeout 60s >/dev/null 2>&1 || true
        done
        MAP=$RUN/images.map
        e2e_unmap_images
        if [ -f "$STATE/started-cluster" ]; then "$CL" down; fi
    fi
    rm -rf "$STATE"
}

case ${1:-up} in
up) up ;;
down) down && echo "demo: removed" ;;
*) die "usage: k8s-demo.sh up|down" ;;
esac
