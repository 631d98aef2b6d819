#!/usr/bin/env bash
# cluster.sh up|down|status|env — the local Kubernetes test cluster (see README.md).
#   up      build the pinned tools if needed, then start control plane, nodes, kube-proxy, CoreDNS.
#           A healthy running cluster is left alone; a partial/crashed one is torn down and restarted.
#   down    stop everything and remove every netns, link, route, nftables table and directory it made.
#   status  print what runs; exit 0 only when the cluster is healthy.
#   env     print `export KUBECONFIG=...` and `export PATH=...` lines.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/config.sh"

log() { echo "cluster: $*" >&2; }
die() {
    echo "cluster: error: $*" >&2
    exit 1
}

pidfile() { echo "$RUN/pids/$1.pid"; }
alive() {
    local f
    f=$(pidfile "$1")
    [ -s "$f" ] || return 1
    local pid
    pid=$(cat "$f")
    kill -0 "$pid" 2>/dev/null || return 1
    # a killed daemon may linger as a zombie until it is reaped: that is not alive
    ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null
}

# start_daemon <name> <cmd...>: run in background in its own session, log to $RUN/logs/<name>.log
start_daemon() {
    local name=$1
    shift
    mkdir -p "$RUN/logs" "$RUN/pids"
    setsid "$@" </dev/null >>"$RUN/logs/$name.log" 2>&1 9>&- &
    echo $! >"$(pidfile "$name")"
}

kc() { "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }

wait_for() { # wait_for <seconds> <what> cmd...
    local t=$1 what=$2
    shift 2
    local deadline=$((SECONDS + t))
    until "$@" >/dev/null 2>&1; do
        if [ $SECONDS -ge $deadline ]; then
            log "timed out after ${t}s waiting for $what"
            return 1
        fi
        sleep 0.5
    done
}

# ------------------------------------------------------------------ PKI (openssl)
mkkey_ec() { openssl ecparam -name prime256v1 -genkey -noout -out "$1" 2>/dev/null; }

# mkcert <name> <CN> <O or -> <usage: server|client|both> [SAN...]
mkcert() {
    local name=$1 cn=$2 org=$3 usage=$4
    shift 4
    local d=$RUN/pki subj="/CN=$cn" ext eku
    [ "$org" != "-" ] && subj="/O=$org/CN=$cn"
    case $usage in
    server) eku=serverAuth ;;
    client) eku=clientAuth ;;
    *) eku=serverAuth,clientAuth ;;
    esac
    ext=$d/$name.ext
    {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        echo "extendedKeyUsage=$eku"
        if [ $# -gt 0 ]; then
            local s sans=()
            for s in "$@"; do
                if [[ $s =~ ^[0-9.]+$ ]]; then sans+=("IP:$s"); else sans+=("DNS:$s"); fi
            done
            echo "subjectAltName=$(
                IFS=,
                echo "${sans[*]}"
            )"
        fi
    } >"$ext"
    mkkey_ec "$d/$name.key"
    openssl req -new -key "$d/$name.key" -subj "$subj" -out "$d/$name.csr" 2>/dev/null
    openssl x509 -req -in "$d/$name.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
        -days 3650 -sha256 -extfile "$ext" -out "$d/$name.crt" 2>/dev/null
    rm -f "$d/$name.csr" "$ext"
}

# mkkubeconfig <file> <server> <certname>
mkkubeconfig() {
    local f=$1 server=$2 cert=$3 d=$RUN/pki
    cat >"$f" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: ambit
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 <"$d/ca.crt")
users:
- name: $cert
  user:
    client-certificate-data: $(base64 -w0 <"$d/$cert.crt")
    client-key-data: $(base64 -w0 <"$d/$cert.key")
contexts:
- name: ambit
  context:
    cluster: ambit
    user: $cert
current-context: ambit
EOF
    chmod 600 "$f"
}

make_pki() {
    local d=$RUN/pki i
    mkdir -p "$d"
    mkkey_ec "$d/ca.key"
    openssl req -x509 -new -key "$d/ca.key" -subj "/CN=ambit-test-cluster-ca" -days 3650 -sha256 \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
        -out "$d/ca.crt" 2>/dev/null
    openssl genrsa -out "$d/sa.key" 2048 2>/dev/null
    openssl rsa -in "$d/sa.key" -pubout -out "$d/sa.pub" 2>/dev/null
    mkcert apiserver kube-apiserver - server 127.0.0.1 localhost "$CP_IP" "$KUBERNETES_SVC_IP" \
        kubernetes kubernetes.default kubernetes.default.svc "kubernetes.default.svc.$CLUSTER_DOMAIN"
    mkcert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters client
    mkcert admin kubernetes-admin system:masters client
    mkcert controller-manager system:kube-controller-manager - client
    mkcert scheduler system:kube-scheduler - client
    mkcert kube-proxy system:kube-proxy - client
    for i in $(seq 1 "$NUM_NODES"); do
        mkcert "node$i" "system:node:$(node_name "$i")" system:nodes client
        mkcert "node$i-serving" "$(node_name "$i")" - server "$(node_ip "$i")" "$(node_name "$i")"
    done
    local local_server=https://127.0.0.1:$APISERVER_PORT
    mkkubeconfig "$KUBECONFIG_ADMIN" "$local_server" admin
    mkkubeconfig "$RUN/controller-manager.kubeconfig" "$local_server" controller-manager
    mkkubeconfig "$RUN/scheduler.kubeconfig" "$local_server" scheduler
    mkkubeconfig "$RUN/kube-proxy.kubeconfig" "https://$CP_IP:$APISERVER_PORT" kube-proxy
    for i in $(seq 1 "$NUM_NODES"); do
        mkkubeconfig "$RUN/node$i.kubeconfig" "https://$CP_IP:$APISERVER_PORT" "node$i"
    done
}

# ------------------------------------------------------------------ network
make_network() {
    local i ns ip
    ip netns add "$CP_NS"
    ip -n "$CP_NS" link set lo up
    ip -n "$CP_NS" link add "$CP_BRIDGE" type bridge
    ip -n "$CP_NS" addr add "$CP_IP/24" dev "$CP_BRIDGE"
    ip -n "$CP_NS" link set "$CP_BRIDGE" up
    ip netns exec "$CP_NS" sysctl -qw net.ipv4.ip_forward=1
    for i in $(seq 1 "$NUM_NODES"); do
        ns=$(node_ns "$i")
        ip=$(node_ip "$i")
        ip netns add "$ns"
        ip -n "$ns" link set lo up
        # veth created inside the cp netns, one end moved into the node: nothing touches the host
        ip -n "$CP_NS" link add "n$i" type veth peer name eth0 netns "$ns"
        ip -n "$CP_NS" link set "n$i" master "$CP_BRIDGE" up
        ip -n "$ns" addr add "$ip/24" dev eth0
        ip -n "$ns" link set eth0 up
        ip -n "$ns" route add default via "$CP_IP"
        ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1
        # pod CIDR of this node is reachable from the control plane through the node
        ip -n "$CP_NS" route add "$(node_pod_cidr "$i")" via "$ip"
    done
    # LoadBalancer addresses: the control-plane netns ("outside") reaches them through node 1
    ip -n "$CP_NS" route add "$LB_CIDR" via "$(node_ip 1)"
    # routes from each node to the other nodes' pod CIDRs (direct, on the shared segment)
    local j
    for i in $(seq 1 "$NUM_NODES"); do
        for j in $(seq 1 "$NUM_NODES"); do
            [ "$i" = "$j" ] && continue
            ip -n "$(node_ns "$i")" route add "$(node_pod_cidr "$j")" via "$(node_ip "$j")"
        done
    done
}

write_node_files() {
    local i=$1 root=$RUN/nodes/node$i/root d
    for d in $NODE_DIRS; do mkdir -p "$root$d"; done
    cat >"$root/etc/cni/net.d/10-ambit-bridge.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "amb-k8s",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$(node_pod_cidr "$i")", "gateway": "$(node_pod_gw "$i")"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    }
  ]
}
EOF
}

# mountpoints for NODE_DIRS must exist on the host; remember the ones we create
make_host_mountpoints() {
    local d p
    : >"$RUN/created-host-dirs"
    for d in $NODE_DIRS; do
        p=$(readlink -m "$d")
        while [ ! -e "$p" ]; do
            echo "$p" >>"$RUN/created-host-dirs"
            p=$(dirname "$p")
        done
        mkdir -p "$(readlink -m "$d")"
    done
}

# ------------------------------------------------------------------ images map
write_images_map() {
    # resolve $REPO/$TOOLS-style variables once, so the runner reads plain paths
    sed -e "s#\$REPO#$REPO#g" -e "s#\$K8S_BIN#$K8S_BIN#g" -e "s#\$COREDNS_BIN#$COREDNS_BIN#g" \
        -e "s#\$FORTIO_BIN#$FORTIO_BIN#g" -e "s#\$HTTPBIN_BIN#$HTTPBIN_BIN#g" \
        -e "s#\$TOOLS#$TOOLS#g" "$CLUSTER_HERE/images.map" >"$RUN/images.map"
}

runner_bin() {
    local sum
    sum=$(cat "$CLUSTER_HERE"/noderunner/*.go "$CLUSTER_HERE"/noderunner/go.mod | sha256sum | cut -c1-12)
    echo "$TOOLS/noderunner-$K8S_VERSION-$sum/bin/ambit-noderunner"
}

# ------------------------------------------------------------------ components
start_etcd() {
    command -v etcd >/dev/null || die "etcd not found (apt-get install etcd-server)"
    mkdir -p "$RUN/etcd"
    start_daemon etcd ip netns exec "$CP_NS" etcd --name ambit --data-dir "$RUN/etcd" \
        --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster "ambit=http://127.0.0.1:$ETCD_PEER_PORT" \
        --listen-metrics-urls "" --quota-backend-bytes 2147483648 --snapshot-count 10000
    wait_for 30 etcd ip netns exec "$CP_NS" curl -sf "http://127.0.0.1:$ETCD_PORT/health"
}

start_apiserver() {
    local p=$RUN/pki
    start_daemon kube-apiserver ip netns exec "$CP_NS" "$K8S_BIN/kube-apiserver" \
        --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
        --bind-address 0.0.0.0 --secure-port "$APISERVER_PORT" --advertise-address "$CP_IP" \
        --tls-cert-file "$p/apiserver.crt" --tls-private-key-file "$p/apiserver.key" \
        --client-ca-file "$p/ca.crt" \
        --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
        --service-cluster-ip-range "$SERVICE_CIDR" \
        --service-account-issuer "https://kubernetes.default.svc.$CLUSTER_DOMAIN" \
        --service-account-key-file "$p/sa.pub" --service-account-signing-key-file "$p/sa.key" \
        --kubelet-client-certificate "$p/apiserver-kubelet-client.crt" \
        --kubelet-client-key "$p/apiserver-kubelet-client.key" \
        --kubelet-preferred-address-types InternalIP \
        --kubelet-certificate-authority "$p/ca.crt" \
        --enable-aggregator-routing=true --allow-privileged=true --profiling=false \
        --event-ttl 1h --v 1
    wait_for 120 "kube-apiserver /readyz" ip netns exec "$CP_NS" curl -sf --cacert "$p/ca.crt" \
        "https://127.0.0.1:$APISERVER_PORT/readyz"
}

start_forwarder() {
    # the host reaches the apiserver at 127.0.0.1:$APISERVER_PORT: a loopback listener in the
    # root netns whose connections are dialled from inside $CP_NS
    start_daemon apiserver-forwarder "$(runner_bin)" portfwd --listen "127.0.0.1:$APISERVER_PORT" \
        --netns "/run/netns/$CP_NS" --connect "127.0.0.1:$APISERVER_PORT"
    wait_for 20 "apiserver forwarder" kc get --raw /readyz
}

start_controllers() {
    local p=$RUN/pki
    start_daemon kube-controller-manager ip netns exec "$CP_NS" "$K8S_BIN/kube-controller-manager" \
        --kubeconfig "$RUN/controller-manager.kubeconfig" \
        --authentication-kubeconfig "$RUN/controller-manager.kubeconfig" \
        --authorization-kubeconfig "$RUN/controller-manager.kubeconfig" \
        --bind-address 127.0.0.1 --secure-port "$CM_PORT" \
        --service-account-private-key-file "$p/sa.key" --root-ca-file "$p/ca.crt" \
        --cluster-signing-cert-file "$p/ca.crt" --cluster-signing-key-file "$p/ca.key" \
        --use-service-account-credentials=true --leader-elect=false --cluster-name ambit \
        --service-cluster-ip-range "$SERVICE_CIDR" --cluster-cidr "$POD_CIDR" \
        --allocate-node-cidrs=false --controllers '*' --v 1
    start_daemon kube-scheduler ip netns exec "$CP_NS" "$K8S_BIN/kube-scheduler" \
        --kubeconfig "$RUN/scheduler.kubeconfig" \
        --authentication-kubeconfig "$RUN/scheduler.kubeconfig" \
        --authorization-kubeconfig "$RUN/scheduler.kubeconfig" \
        --bind-address 127.0.0.1 --secure-port "$SCHED_PORT" --leader-elect=false --v 1
    start_daemon lb-controller ip netns exec "$CP_NS" "$(runner_bin)" lb \
        --kubeconfig "$KUBECONFIG_ADMIN" --cidr "$LB_CIDR"
}

start_node() {
    local i=$1 ns name root
    ns=$(node_ns "$i")
    name=$(node_name "$i")
    root=$RUN/nodes/node$i/root
    mkdir -p "$RUN/nodes/node$i/state"
    # nsenter (not ip netns exec): the runner stays in the host mount namespace, so the pod
    # netns it creates under /run/netns are visible (and removable) from the host
    start_daemon "runner-node$i" nsenter --net="/run/netns/$ns" "$(runner_bin)" run \
        --node "$name" --node-ip "$(node_ip "$i")" --pod-cidr "$(node_pod_cidr "$i")" \
        --kubeconfig "$RUN/node$i.kubeconfig" --state-dir "$RUN/nodes/node$i/state" \
        --node-root "$root" --node-dirs "$NODE_DIRS" --netns-prefix "${NS_PREFIX}n$i-" \
        --cni-bin-dirs "$root/opt/cni/bin:/usr/lib/cni" --cni-conf-dir "$root/etc/cni/net.d" \
        --images-map "$RUN/images.map" --cluster-dns "$CLUSTER_DNS_IP" --cluster-domain "$CLUSTER_DOMAIN" \
        --kubernetes-service "$KUBERNETES_SVC_IP:443" --port "$RUNNER_PORT" \
        --tls-cert "$RUN/pki/node$i-serving.crt" --tls-key "$RUN/pki/node$i-serving.key" \
        --client-ca "$RUN/pki/ca.crt"
    start_daemon "kube-proxy-node$i" ip netns exec "$ns" "$K8S_BIN/kube-proxy" \
        --kubeconfig "$RUN/kube-proxy.kubeconfig" --proxy-mode nftables \
        --hostname-override "$name" --cluster-cidr "$POD_CIDR" \
        --bind-address "$(node_ip "$i")" --healthz-bind-address "127.0.0.1:$PROXY_HEALTH_PORT" \
        --metrics-bind-address "127.0.0.1:$PROXY_METRICS_PORT" \
        --conntrack-max-per-core 0 --conntrack-tcp-timeout-established 0 \
        --conntrack-tcp-timeout-close-wait 0 --v 1
}

apply_addons() {
    if [ "${AMBIT_CLUSTER_GATEWAY_API:-1}" != 0 ]; then
        kc apply --server-side -f "$GATEWAY_API_CRDS" >/dev/null
    fi
    sed -e "s/@CLUSTER_DNS_IP@/$CLUSTER_DNS_IP/g" -e "s/@CLUSTER_DOMAIN@/$CLUSTER_DOMAIN/g" \
        "$CLUSTER_HERE/addons/coredns.yaml" | kc apply -f - >/dev/null
}

nodes_ready() {
    local n
    n=$(kc get nodes -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' |
        grep -c '^True$')
    [ "$n" -ge "$NUM_NODES" ]
}

dns_ready() {
    [ "$(kc -n kube-system get deploy coredns -o jsonpath='{.status.readyReplicas}')" -ge 1 ]
}

# ------------------------------------------------------------------ commands
COMPONENTS() {
    local i
    echo etcd kube-apiserver apiserver-forwarder kube-controller-manager kube-scheduler lb-controller
    for i in $(seq 1 "$NUM_NODES"); do echo "runner-node$i kube-proxy-node$i"; done
}

healthy() {
    local c
    [ -f "$RUN/up" ] || return 1
    for c in $(COMPONENTS); do alive "$c" || return 1; done
    kc get --raw /readyz >/dev/null 2>&1 || return 1
    nodes_ready >/dev/null 2>&1 || return 1
}

cmd_status() {
    local c rc=0
    if [ ! -d "$RUN" ]; then
        echo "cluster: not running ($RUN absent)"
        return 1
    fi
    for c in $(COMPONENTS); do
        if alive "$c"; then printf '  %-26s running (pid %s)\n' "$c" "$(cat "$(pidfile "$c")")"; else
            printf '  %-26s NOT running\n' "$c"
            rc=1
        fi
    done
    if kc get --raw /readyz >/dev/null 2>&1; then
        echo "  apiserver https://127.0.0.1:$APISERVER_PORT ready; KUBECONFIG=$KUBECONFIG_ADMIN"
        kc get nodes -o wide 2>&1 | sed 's/^/  /'
        kc get pods -A -o wide 2>&1 | sed 's/^/  /'
    else
        echo "  apiserver not answering"
        rc=1
    fi
    [ $rc -eq 0 ] && healthy && echo "cluster: healthy" && return 0
    echo "cluster: NOT healthy"
    return 1
}

cmd_down() {
    local ns pid c
    # every process in our namespaces (control plane, runners, kube-proxy, all pod processes)
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$NS_PREFIX" || true); do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -TERM "$pid" 2>/dev/null || true; done
    done
    for c in $(COMPONENTS) apiserver-forwarder; do
        [ -f "$(pidfile "$c")" ] && kill -TERM "$(cat "$(pidfile "$c")")" 2>/dev/null || true
    done
    sleep 1
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$NS_PREFIX" || true); do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    done
    for c in $(COMPONENTS) apiserver-forwarder; do
        [ -f "$(pidfile "$c")" ] && kill -KILL "$(cat "$(pidfile "$c")")" 2>/dev/null || true
    done
    # pod netns first, then nodes, then the control plane (links and routes go with them,
    # and so do the nftables tables kube-proxy made inside the node netns)
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$NS_PREFIX" | sort -r || true); do
        ip netns del "$ns" 2>/dev/null || true
    done
    if [ -f "$RUN/created-host-dirs" ]; then
        # deepest first; only empty dirs
        sort -r "$RUN/created-host-dirs" | while read -r d; do rmdir "$d" 2>/dev/null || true; done
    fi
    if [ -d "$RUN" ]; then
        # mountpoints the runner created for container volumes (listed by each runner)
        cat "$RUN"/nodes/*/state/created-host-paths 2>/dev/null | sort -ru | while read -r d; do
            if [ -d "$d" ]; then rmdir "$d" 2>/dev/null || true; else [ -f "$d" ] && [ ! -s "$d" ] && rm -f "$d"; fi
        done
        rm -rf "$RUN"
    fi
    log "down"
}

cmd_up() {
    if healthy; then
        log "already up and healthy (KUBECONFIG=$KUBECONFIG_ADMIN)"
        return 0
    fi
    if [ -d "$RUN" ] || ip netns list 2>/dev/null | grep -q "^$NS_PREFIX"; then
        log "found leftovers of an earlier cluster: tearing them down first"
        cmd_down
    fi
    local t0=$SECONDS
    "$CLUSTER_HERE/build-tools.sh"
    local t1=$SECONDS
    log "tools ready ($((t1 - t0))s)"
    mkdir -p "$RUN/logs" "$RUN/pids"
    make_pki
    write_images_map
    make_host_mountpoints
    make_network
    local i
    for i in $(seq 1 "$NUM_NODES"); do write_node_files "$i"; done
    start_etcd
    start_apiserver
    start_forwarder
    start_controllers
    for i in $(seq 1 "$NUM_NODES"); do start_node "$i"; done
    wait_for 90 "nodes Ready" nodes_ready || {
        cmd_status || true
        die "nodes did not become Ready; logs in $RUN/logs"
    }
    apply_addons
    wait_for 120 "CoreDNS ready" dns_ready || {
        cmd_status || true
        die "CoreDNS did not become ready; logs in $RUN/logs"
    }
    touch "$RUN/up"
    log "up in $((SECONDS - t0))s (cluster start $((SECONDS - t1))s); KUBECONFIG=$KUBECONFIG_ADMIN"
}

cmd_env() {
    echo "export KUBECONFIG=$KUBECONFIG_ADMIN"
    echo "export PATH=$K8S_BIN:$HELM_BIN:$FORTIO_BIN:$HTTPBIN_BIN:\$PATH"
    echo "export AMBIT_CLUSTER_DIR=$RUN"
    echo "export AMBIT_GATEWAY_API_CRDS=$GATEWAY_API_CRDS"
}

[ "$(id -u)" = 0 ] || [ "${1:-}" = env ] || die "must run as root (network namespaces)"
lock() { # one cluster per machine: serialize up/down
    mkdir -p /run/lock
    exec 9>/run/lock/ambit-cluster.lock # fd 9 is closed in the daemons (start_daemon)
    flock 9
}
case ${1:-} in
up)
    lock
    cmd_up
    ;;
down)
    lock
    cmd_down
    ;;
status) cmd_status ;;
env) cmd_env ;;
*)
    echo "usage: $0 up|down|status|env" >&2
    exit 2
    ;;
esac
