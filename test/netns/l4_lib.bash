# l4_lib.bash — shared topology for the node agent's L4 netns tests (sourced by l4_*.sh; not a
# test itself, hence .bash).
#
#   netns ${L4}-br  : bridge br0 joining every pod (the "network" between nodes; tcpdump here)
#   netns ${L4}-n1  : node 1, runs ambit-node #1 (metrics/admin on its own loopback)
#   netns ${L4}-n2  : node 2, runs ambit-node #2
#   netns ${L4}-a   : pod "client" on node 1   10.77.0.1  sa l4-client   (adopted, redirected)
#   netns ${L4}-b   : pod "server" on node 2   10.77.0.2  sa l4-server   (adopted, redirected)
#   netns ${L4}-c   : pod "outsider"           10.77.0.3  not in the mesh (no agent, no rules)
#   service server.l4.svc.cluster.local  VIP 10.96.77.10:80 -> server:8080
#
# Every name starts with amb-l4-<pid> and everything is removed by l4_cleanup (trap).

L4=amb-l4-$$
L4_ID=$(($$ % 100000))
ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
NODE_BIN=$BUILD/bin/ambit-node
APP="python3 $ROOT/test/netns/l4_app.py"
L4_PIDS=()

l4_ns() { ip netns exec "$L4-$1" "${@:2}"; }

l4_cleanup() {
    local p
    # SIGTERM first so the agents exit through their own shutdown (a sanitizer build then
    # reports leaks into <node>.log); SIGKILL whatever is still there after 10 s
    for p in "${L4_PIDS[@]}"; do kill "$p" 2>/dev/null; done
    local deadline=$((SECONDS + 10))
    for p in "${L4_PIDS[@]}"; do
        while kill -0 "$p" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
        kill -9 "$p" 2>/dev/null
    done
    for p in "${L4_PIDS[@]}"; do wait "$p" 2>/dev/null; done
    for n in a b c n1 n2 n3 br; do ip netns del "$L4-$n" 2>/dev/null; done
    # a sanitizer build reports at exit (leaks) or aborts: fail the script if any agent did
    local bad
    bad=$(grep -lE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$T_DIR"/*.log 2>/dev/null)
    if [ -n "$bad" ]; then
        echo "[  FAILED  ] sanitizer report in: $bad"
        exit 1
    fi
    return 0
}

# l4_pod <name> <ip>: netns with eth0 on the bridge
l4_pod() {
    local n=$1 ip=$2 v=l4${L4_ID}$1
    ip netns add "$L4-$n"
    ip link add "$v" type veth peer name eth0 netns "$L4-$n"
    ip link set "$v" netns "$L4-br"
    ip -n "$L4-br" link set "$v" master br0 up
    ip -n "$L4-$n" link set lo up
    ip -n "$L4-$n" addr add "$ip/24" dev eth0
    ip -n "$L4-$n" link set eth0 up
    ip -n "$L4-$n" route add default dev eth0
}

# the certificates: mesh CA, a foreign CA, and an expired leaf from the mesh CA
l4_certs() {
    local d=$T_DIR/pki
    mkdir -p "$d"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -subj "/O=amb-l4 mesh CA" -keyout "$d/ca.key" -out "$d/ca.pem" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        >>"$T_LOG" 2>&1 || return 1
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -subj "/O=amb-l4 foreign CA" -keyout "$d/foreign-ca.key" -out "$d/foreign-ca.pem" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        >>"$T_LOG" 2>&1 || return 1
    printf 'subjectAltName=critical,URI:spiffe://cluster.local/ns/l4/sa/l4-client\nextendedKeyUsage=clientAuth,serverAuth\nkeyUsage=critical,digitalSignature\n' >"$d/leaf.ext"
    # foreign leaf: right SPIFFE ID, wrong CA
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/" \
        -keyout "$d/foreign.key" -out "$d/foreign.csr" >>"$T_LOG" 2>&1 || return 1
    openssl x509 -req -in "$d/foreign.csr" -CA "$d/foreign-ca.pem" -CAkey "$d/foreign-ca.key" \
        -set_serial 7 -days 1 -extfile "$d/leaf.ext" -out "$d/foreign.pem" >>"$T_LOG" 2>&1 || return 1
    # expired leaf from the mesh CA (openssl ca lets us pick the validity window)
    mkdir -p "$d/db" && : >"$d/db/index.txt" && echo 10 >"$d/db/serial"
    cat >"$d/ca.cnf" <<EOF
[ca]
default_ca = l4
[l4]
dir = $d/db
database = $d/db/index.txt
serial = $d/db/serial
new_certs_dir = $d/db
default_md = sha256
policy = anything
copy_extensions = none
[anything]
EOF
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/O=expired" \
        -keyout "$d/expired.key" -out "$d/expired.csr" >>"$T_LOG" 2>&1 || return 1
    openssl ca -batch -config "$d/ca.cnf" -cert "$d/ca.pem" -keyfile "$d/ca.key" \
        -startdate 20200101000000Z -enddate 20200102000000Z -extfile "$d/leaf.ext" \
        -in "$d/expired.csr" -out "$d/expired.pem" >>"$T_LOG" 2>&1 || return 1
}

# l4_config <file> <node> <pods json> [policies json] [server authorizationPolicies json]
l4_config() {
    local f=$1 node=$2 pods=$3 policies=${4:-[]} srvpol=${5:-[]}
    cat >"$f" <<EOF
{
  "pods": $pods,
  "workloads": [
    {"uid": "Kubernetes//Pod/l4/client", "name": "client", "namespace": "l4", "node": "node-1",
     "addresses": ["10.77.0.1"], "serviceAccount": "l4-client", "protocol": "HBONE",
     "workloadName": "client", "canonicalName": "client", "canonicalRevision": "v1",
     "labels": {"app": "client", "version": "v1"}},
    {"uid": "Kubernetes//Pod/l4/server", "name": "server", "namespace": "l4", "node": "node-2",
     "addresses": ["10.77.0.2"], "serviceAccount": "l4-server", "protocol": "HBONE",
     "workloadName": "server", "canonicalName": "server", "canonicalRevision": "v1",
     "labels": {"app": "server", "version": "v1"},
     "services": {"l4/server.l4.svc.cluster.local": {"80": 8080}},
     "authorizationPolicies": $srvpol},
    {"uid": "Kubernetes//Pod/l4/outsider", "name": "outsider", "namespace": "l4",
     "node": "node-3", "addresses": ["10.77.0.3"], "serviceAccount": "default", "protocol": "TCP"}
  ],
  "services": [
    {"name": "server", "namespace": "l4", "hostname": "server.l4.svc.cluster.local",
     "vips": ["10.96.77.10"], "ports": [{"port": 80, "targetPort": 8080}]},
    {"name": "empty", "namespace": "l4", "hostname": "empty.l4.svc.cluster.local",
     "vips": ["10.96.77.11"], "ports": [{"port": 80, "targetPort": 8080}]}
  ],
  "policies": $policies
}
EOF
}

l4_pod_json() { # uid netns ip
    printf '{"uid": "%s", "netns": "/var/run/netns/%s", "ips": ["%s"], "namespace": "l4"}' "$1" "$2" "$3"
}

# l4_agent <node> <config> [args...] — start ambit-node inside the node netns, log to $T_DIR/<node>.log
l4_agent() {
    local n=$1 cfg=$2
    shift 2
    mkdir -p "$T_DIR/run-$n"
    ip netns exec "$L4-$n" env LOG_LEVEL=${L4_LOG_LEVEL:-info} "$NODE_BIN" --node "node-$n" \
        --config "$cfg" --run-dir "$T_DIR/run-$n" --workers 2 \
        --ca-cert "$T_DIR/pki/ca.pem" --ca-key "$T_DIR/pki/ca.key" "$@" \
        >>"$T_DIR/$n.log" 2>&1 &
    L4_PIDS+=($!)
    eval "L4_PID_$n=$!"
    t_wait_for 10 l4_ns "$n" curl -sf http://127.0.0.1:15021/healthz/ready
}

# l4_topology: netns, bridge, pods a/b/c, rules in a and b, CA, app server in b on 8080
l4_topology() {
    ip netns add "$L4-br" || return 1
    ip -n "$L4-br" link add br0 type bridge
    ip -n "$L4-br" link set br0 up
    ip -n "$L4-br" link set lo up
    l4_pod a 10.77.0.1 && l4_pod b 10.77.0.2 && l4_pod c 10.77.0.3 || return 1
    ip netns add "$L4-n1" && ip -n "$L4-n1" link set lo up
    ip netns add "$L4-n2" && ip -n "$L4-n2" link set lo up
    "$NODE_BIN" redirect add "/var/run/netns/$L4-a" >>"$T_LOG" 2>&1 || return 1
    "$NODE_BIN" redirect add "/var/run/netns/$L4-b" >>"$T_LOG" 2>&1 || return 1
    l4_certs || return 1
    ip netns exec "$L4-b" $APP serve 8080 >>"$T_DIR/app-b.log" 2>&1 &
    L4_PIDS+=($!)
    ip netns exec "$L4-c" $APP serve 8080 >>"$T_DIR/app-c.log" 2>&1 &
    L4_PIDS+=($!)
    t_wait_for 5 l4_ns b bash -c 'exec 3<>/dev/tcp/127.0.0.1/8080'
}

l4_client() { # <pod> <host> <port> <msg> [args]
    local p=$1
    shift
    l4_ns "$p" $APP client "$@"
}
