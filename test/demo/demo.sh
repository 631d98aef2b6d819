#!/usr/bin/env bash
# demo.sh up|down|status — the L4 walkthrough on this machine, in network namespaces.
#
#   two "nodes", each running ambit-node (ztunnel's role), and the Bookinfo sample apps as pods:
#     node 1: productpage, a meshed client (bookinfo/curl)
#     node 2: details, reviews-v2, ratings
#     outside the mesh: bar/curl (no agent, no capture)
#   Pods join the mesh the way the CNI plugin enrols them: ambit-node adopts the pod netns
#   (POST /v1/pods on cni.sock) and the shared nftables builder installs the redirection.
#   Mesh objects come from a config file per node (docs/mesh-objects.md), as the operator's
#   stream would deliver them.
#
# `up` drives traffic and prints the evidence: the workloads table with PROTOCOL HBONE, access log
# lines with both SPIFFE identities, istio_tcp_connections_opened_total{connection_security_policy=
# "mutual_tls"}, a capture between the nodes with no plaintext, and PeerAuthentication STRICT
# turning the non-mesh curl into a connection reset (exit 56) while meshed traffic still works.
# Everything stays up for poking; `down` removes every netns, process and file it made.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build}
BIN=$BUILD/bin
D=${AMBIT_DEMO_DIR:-/var/lib/ambit-demo}
P=amb-demo
APPS=$ROOT/test/apps/bookinfo.py

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() {
    echo "demo: error: $*" >&2
    exit 1
}
ns() { ip netns exec "$P-$1" "${@:2}"; }

down() {
    if [ -d "$D/pids" ]; then
        for f in "$D"/pids/*; do
            [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
        done
        sleep 0.3
        for f in "$D"/pids/*; do
            [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null || true
        done
    fi
    for n in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$P-" || true); do
        ip netns del "$n" 2>/dev/null || true
    done
    rm -rf "$D"
}

start() { # start <name> <netns> cmd... — background process, pid and log under $D
    local name=$1 where=$2
    shift 2
    ip netns exec "$P-$where" "$@" >>"$D/logs/$name.log" 2>&1 &
    echo $! >"$D/pids/$name"
}

wait_for() { # wait_for <seconds> cmd...
    local end=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -ge $end ] && return 1
        sleep 0.2
    done
}

# pod <name> <ip> — netns with eth0 on the demo network bridge
pod() {
    local n=$1 ip=$2 v=dm-$1
    ip netns add "$P-$n"
    ip link add "${v:0:15}" type veth peer name eth0 netns "$P-$n"
    ip link set "${v:0:15}" netns "$P-net"
    ip -n "$P-net" link set "${v:0:15}" master br0 up
    ip -n "$P-$n" link set lo up
    ip -n "$P-$n" addr add "$ip/24" dev eth0
    ip -n "$P-$n" link set eth0 up
    ip -n "$P-$n" route add default dev eth0
}

workload() { # workload <name> <ip> <sa> <node> <app> <version> [services json]
    printf '{"uid": "Kubernetes//Pod/%s/%s", "name": "%s", "namespace": "%s", "node": "%s",
      "addresses": ["%s"], "serviceAccount": "%s", "protocol": "%s", "workloadName": "%s",
      "canonicalName": "%s", "canonicalRevision": "%s",
      "labels": {"app": "%s", "version": "%s"}, "services": %s, "authorizationPolicies": %s}' \
        "$NSPACE" "$1" "$1" "$NSPACE" "$4" "$2" "$3" "${PROTO:-HBONE}" "$1" "$5" "$6" "$5" "$6" \
        "${7:-{\}}" "${POLICIES:-[]}"
}

svc() { # svc <name> <vip>
    printf '{"name": "%s", "namespace": "bookinfo", "hostname": "%s.bookinfo.svc.cluster.local",
      "vips": ["%s"], "ports": [{"port": 9080, "targetPort": 9080, "appProtocol": "http"}]}' "$1" "$1" "$2"
}

write_config() { # write_config <strict:0|1>
    local strict=$1 pol='[]' wpol='[]' n
    if [ "$strict" = 1 ]; then
        pol='[{"name": "istio_converted_static_strict", "namespace": "istio-system",
               "scope": "WorkloadSelector", "action": "Deny",
               "rules": [[[{"notPrincipals": [{"presence": true}]}]]]}]'
        wpol='["istio-system/istio_converted_static_strict"]'
    fi
    local sref='{"bookinfo/%s.bookinfo.svc.cluster.local": {"9080": 9080}}'
    local wls
    wls=$(
        NSPACE=bookinfo POLICIES=$wpol
        workload productpage-v1 10.44.0.11 bookinfo-productpage node-1 productpage v1 "$(printf "$sref" productpage)"
        echo ,
        workload details-v1 10.44.0.21 bookinfo-details node-2 details v1 "$(printf "$sref" details)"
        echo ,
        workload reviews-v2 10.44.0.22 bookinfo-reviews node-2 reviews v2 "$(printf "$sref" reviews)"
        echo ,
        workload ratings-v1 10.44.0.23 bookinfo-ratings node-2 ratings v1 "$(printf "$sref" ratings)"
        echo ,
        workload curl 10.44.0.12 curl node-1 curl v1
        echo ,
        NSPACE=bar PROTO=TCP POLICIES='[]' workload curl 10.44.0.99 curl none curl v1
    )
    for n in 1 2; do
        local pods
        if [ "$n" = 1 ]; then
            pods="[$(podj productpage-v1 productpage 10.44.0.11), $(podj curl curl 10.44.0.12)]"
        else
            pods="[$(podj details-v1 details 10.44.0.21), $(podj reviews-v2 reviews 10.44.0.22),
                   $(podj ratings-v1 ratings 10.44.0.23)]"
        fi
        cat >"$D/node-$n.json.tmp" <<EOF
{"pods": $pods,
 "workloads": [$wls],
 "services": [$(svc productpage 10.96.44.1), $(svc details 10.96.44.2), $(svc reviews 10.96.44.3),
              $(svc ratings 10.96.44.4)],
 "policies": $pol}
EOF
        mv "$D/node-$n.json.tmp" "$D/node-$n.json"
    done
}

podj() { printf '{"uid": "uid-%s", "name": "%s", "namespace": "bookinfo", "netns": "/var/run/netns/%s-%s", "ips": ["%s"]}' "$1" "$1" "$P" "$2" "$3"; }

up() {
    [ "$(id -u)" = 0 ] || die "needs root (network namespaces)"
    for b in ambit-node ambitctl; do
        [ -x "$BIN/$b" ] || die "$BIN/$b missing: run make first"
    done
    down
    mkdir -p "$D/logs" "$D/pids" "$D/pki"

    say "1. A network, two nodes and the Bookinfo pods (network namespaces)"
    ip netns add "$P-net"
    ip -n "$P-net" link add br0 type bridge
    ip -n "$P-net" link set br0 up
    ip -n "$P-net" link set lo up
    for n in n1 n2; do
        ip netns add "$P-$n"
        ip -n "$P-$n" link set lo up
    done
    pod productpage 10.44.0.11
    pod curl 10.44.0.12
    pod details 10.44.0.21
    pod reviews 10.44.0.22
    pod ratings 10.44.0.23
    pod bar 10.44.0.99
    echo "node-1: productpage 10.44.0.11, bookinfo/curl 10.44.0.12"
    echo "node-2: details 10.44.0.21, reviews-v2 10.44.0.22, ratings 10.44.0.23"
    echo "outside the mesh: bar/curl 10.44.0.99"
    local env="DETAILS_HOSTNAME=10.96.44.2 REVIEWS_HOSTNAME=10.96.44.3 RATINGS_HOSTNAME=10.96.44.4"
    start productpage productpage env $env POD_NAME=productpage-v1 python3 "$APPS" productpage
    start details details env $env POD_NAME=details-v1 python3 "$APPS" details
    start reviews reviews env $env SERVICE_VERSION=v2 POD_NAME=reviews-v2 python3 "$APPS" reviews
    start ratings ratings env $env POD_NAME=ratings-v1 python3 "$APPS" ratings

    say "2. The mesh CA and one ambit-node per node"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -subj "/O=ambit demo/CN=Root CA" -keyout "$D/pki/ca.key" -out "$D/pki/ca.pem" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" \
        >/dev/null 2>&1
    write_config 0
    for n in 1 2; do
        mkdir -p "$D/run-$n"
        start "agent-$n" "n$n" env LOG_LEVEL=info "$BIN/ambit-node" --node "node-$n" \
            --config "$D/node-$n.json" --run-dir "$D/run-$n" --workers 2 \
            --ca-cert "$D/pki/ca.pem" --ca-key "$D/pki/ca.key"
    done
    for n in 1 2; do
        wait_for 15 ns "n$n" curl -sf http://127.0.0.1:15021/healthz/ready ||
            die "agent on node-$n not ready (see $D/logs/agent-$n.log)"
    done
    echo "ambit-node ready on both nodes (readiness :15021, metrics :15020, admin :15000)"

    say "3. Enrol the bookinfo pods: redirection inside each pod netns (what ambit-cni installs)"
    for p in productpage curl details reviews ratings; do
        "$BIN/ambit-node" redirect add "/var/run/netns/$P-$p" >>"$D/logs/redirect.log" 2>&1
        ns "$p" nft list tables | sed "s/^/  $p: /"
    done
    wait_for 10 ns productpage curl -sf http://127.0.0.1:9080/health || die "productpage did not start"

    say "4. Traffic: bookinfo/curl -> productpage (VIP 10.96.44.1:9080) -> details, reviews -> ratings"
    ns net tcpdump -i br0 -nn -s 0 -w "$D/capture.pcap" >/dev/null 2>&1 &
    echo $! >"$D/pids/tcpdump"
    sleep 1
    local page ok=0
    for i in 1 2 3 4 5; do
        page=$(ns curl curl -s -m 10 http://10.96.44.1:9080/productpage) && ok=$((ok + 1))
    done
    echo "$ok/5 requests answered"
    echo "$page" | grep -o 'Reviews served by: <u>[^<]*</u>' | sed 's/<[^>]*>//g' | head -1
    echo "$page" | grep -q 'color="black"' && echo "reviews-v2 shows black stars (ratings reached over the mesh)"
    sleep 1
    kill -INT "$(cat "$D/pids/tcpdump")" 2>/dev/null || true # SIGINT: tcpdump flushes the file
    wait_for 5 bash -c "! kill -0 $(cat "$D/pids/tcpdump") 2>/dev/null" || true

    say "5. ambitctl ztunnel-config workloads (from both agents' /config_dump)"
    for n in 1 2; do ns "n$n" curl -s http://127.0.0.1:15000/config_dump >"$D/dump-$n.json"; done
    jq -s . "$D/dump-1.json" "$D/dump-2.json" >"$D/dumps.json"
    "$BIN/ambitctl" ztunnel-config workloads --file "$D/dumps.json"
    echo
    "$BIN/ambitctl" ztunnel-config certificates --file "$D/dumps.json" | head -5

    say "6. Access log lines carry both SPIFFE identities"
    grep -h 'src.identity="\?spiffe://cluster.local/ns/bookinfo/sa/bookinfo-productpage' \
        "$D"/logs/agent-*.log | grep 'direction="\?inbound' | head -2 || true

    say "7. Metrics: istio_tcp_connections_opened_total{connection_security_policy=\"mutual_tls\"}"
    for n in 1 2; do
        ns "n$n" curl -s http://127.0.0.1:15020/stats/prometheus |
            grep '^istio_tcp_connections_opened_total' | grep 'mutual_tls' | head -3 |
            sed "s/^/  node-$n: /" | cut -c1-240
    done

    say "8. The wire between the nodes: only TLS to port 15008"
    local tcp hbone app plain
    set +o pipefail # a capture cut short makes tcpdump exit 1 after printing every packet
    tcp=$(tcpdump -nn -r "$D/capture.pcap" tcp 2>/dev/null | wc -l)
    hbone=$(tcpdump -nn -r "$D/capture.pcap" 'tcp port 15008' 2>/dev/null | wc -l)
    app=$(tcpdump -nn -r "$D/capture.pcap" 'tcp port 9080' 2>/dev/null | wc -l)
    plain=$(tcpdump -nn -A -r "$D/capture.pcap" tcp 2>/dev/null |
        grep -c 'Simple Bookstore\|GET /reviews\|GET /ratings' || true)
    echo "$tcp TCP packets on the bridge: $hbone to/from port 15008 (HBONE), $app to/from the app port 9080"
    set -o pipefail
    echo "packets carrying plaintext HTTP between pods: $plain"

    say "9. PeerAuthentication STRICT for bookinfo"
    local code
    set +e
    ns bar curl -s -o /dev/null -m 5 -w '%{http_code}' http://10.44.0.11:9080/productpage
    echo "  <- bar/curl (not in the mesh) before STRICT, exit $?"
    write_config 1
    kill -HUP "$(cat "$D/pids/agent-1")" "$(cat "$D/pids/agent-2")"
    sleep 1
    ns bar curl -s -o /dev/null -m 5 http://10.44.0.11:9080/productpage
    code=$?
    echo "bar/curl after STRICT: curl exit $code (56 = connection reset)"
    ns curl curl -s -o /dev/null -m 10 -w 'bookinfo/curl (meshed) after STRICT: HTTP %{http_code}\n' \
        http://10.96.44.1:9080/productpage
    set -e
    write_config 0
    kill -HUP "$(cat "$D/pids/agent-1")" "$(cat "$D/pids/agent-2")"

    say "Done. The demo keeps running:"
    cat <<EOF
  ip netns exec $P-curl curl -s http://10.96.44.1:9080/productpage     # a meshed request
  ip netns exec $P-bar curl -s http://10.44.0.11:9080/productpage      # from outside the mesh
  ip netns exec $P-n1 curl -s localhost:15000/config_dump | jq .       # what node-1's agent knows
  ip netns exec $P-n2 curl -s localhost:15020/metrics                  # node-2's metrics
  tail -f $D/logs/agent-1.log            # access logs
  make demo-netns-down                   # remove everything
EOF
}

case ${1:-up} in
up) up ;;
down) down && echo "demo: removed" ;;
status) ip netns list | grep "^$P-" || echo "demo: not running" ;;
*) die "usage: demo.sh up|down|status" ;;
esac
