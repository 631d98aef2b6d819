# cni_lib.bash — shared by test/netns/cni_*.sh and test/bench/cni_add.sh (sourced, not a test).
#
# Plays the container runtime: creates pod network namespaces and runs the CNI chain
# loopback, then bridge + host-local (the distribution's plugins in /usr/lib/cni) + ambit-cni
# from a conflist, the way libcni does (per-plugin config with name/cniVersion injected,
# prevResult threaded through ADD, cached result handed to CHECK/DEL, DEL in reverse order).
# The API server and node agent peers are the TEST RESPONDER in cni_responder.py.
#
# Everything it creates carries the amb-cni prefix and is removed by cni_cleanup (set a trap).

CNI_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CNI_BUILD=${BUILD:-build}
case "$CNI_BUILD" in /*) ;; *) CNI_BUILD="$CNI_ROOT/$CNI_BUILD" ;; esac
CNI_BIN="$CNI_BUILD/bin/ambit-cni"
CNI_RESPONDER="$CNI_ROOT/test/netns/cni_responder.py"
CNI_SYS_PLUGINS=${CNI_SYS_PLUGINS:-/usr/lib/cni}

CNI_TAG=${CNI_TAG:-$(printf '%04x' $(($$ % 65536)))}
CNI_BRIDGE="amb-cnibr$CNI_TAG"
CNI_NET3=$((($$ % 200) + 20))
CNI_SUBNET="10.251.$CNI_NET3.0/24"
CNI_GW="10.251.$CNI_NET3.1"
CNI_PIDS=()

cni_setup() {
    CNI_DIR=$(mktemp -d /tmp/amb-cni-test.XXXXXX)
    CNI_FIX="$CNI_DIR/fixtures"
    CNI_RUN="$CNI_DIR/run"
    CNI_SOCK="$CNI_DIR/run/cni.sock"
    CNI_CACHE="$CNI_DIR/cache"
    mkdir -p "$CNI_FIX" "$CNI_RUN" "$CNI_CACHE" "$CNI_DIR/ipam"
    CNI_VERSION_CHAIN=${CNI_VERSION_CHAIN:-1.0.0}
}

cni_cleanup() {
    local p ns
    for p in "${CNI_PIDS[@]}"; do kill "$p" 2>/dev/null; done
    # every netns this run created carries the unique amb-cni-<tag>- prefix
    for ns in $(ip netns list | awk -v p="amb-cni-$CNI_TAG-" 'index($1, p) == 1 {print $1}'); do
        ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null
        ip netns del "$ns" 2>/dev/null
    done
    ip link del "$CNI_BRIDGE" 2>/dev/null
    wait 2>/dev/null
    # a sanitizer build reports at exit (leaks) or aborts into these: fail the script on it
    local bad
    bad=$(grep -lE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$CNI_DIR"/agent.out \
        "$CNI_DIR"/plugins.stderr "$CNI_DIR"/*.log 2>/dev/null)
    if [ -n "$bad" ]; then
        echo "[  FAILED  ] sanitizer report in: $bad (kept $CNI_DIR)"
        exit 1
    fi
    [ -n "${CNI_KEEP:-}" ] || rm -rf "$CNI_DIR"
}

# ---- peers (TEST RESPONDER)

cni_start_api() {
    python3 "$CNI_RESPONDER" api "$CNI_FIX" 0 &
    CNI_PIDS+=($!)
    t_wait_for 5 test -s "$CNI_FIX/api.port" || return 1
    CNI_API_PORT=$(cat "$CNI_FIX/api.port")
    cat >"$CNI_DIR/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: amb-cni-test
  cluster: {server: "http://127.0.0.1:$CNI_API_PORT"}
users:
- name: amb-cni-test
  user: {token: amb-cni-test-token}
contexts:
- name: amb-cni-test
  context: {cluster: amb-cni-test, user: amb-cni-test}
current-context: amb-cni-test
EOF
}

# The node agent: the real ambit-node when it is built (CNI_FAKE_AGENT=1 forces the responder).
CNI_AGENT_BIN="$CNI_BUILD/bin/ambit-node"
cni_agent_kind() {
    if [ -z "${CNI_FAKE_AGENT:-}" ] && [ -x "$CNI_AGENT_BIN" ]; then echo real; else echo responder; fi
}

# cni_start_agent [responder] — start the agent on $CNI_SOCK
cni_start_agent() {
    rm -f "$CNI_SOCK"
    if [ "${1:-}" != responder ] && [ "$(cni_agent_kind)" = real ]; then
        # its metrics/ready/admin listeners need fixed ports: stay below the ephemeral range
        # and try another trio if one is taken
        local try base
        for try in 0 1 2 3 4; do
            base=$((20000 + (($$ + try * 977) % 4000) * 3))
            "$CNI_AGENT_BIN" --node amb-cni-node --run-dir "$CNI_RUN" --workers 1 --drain-ms 500 \
                --metrics "127.0.0.1:$base" --ready "127.0.0.1:$((base + 1))" \
                --admin "127.0.0.1:$((base + 2))" >>"$CNI_DIR/agent.out" 2>&1 &
            CNI_AGENT_PID=$!
            CNI_PIDS+=($!)
            CNI_AGENT_RUNNING=real
            local deadline=$((SECONDS + 10))
            while [ $SECONDS -lt $deadline ] && kill -0 $CNI_AGENT_PID 2>/dev/null && [ ! -S "$CNI_SOCK" ]; do
                sleep 0.1
            done
            [ -S "$CNI_SOCK" ] && return 0
            kill $CNI_AGENT_PID 2>/dev/null
            wait $CNI_AGENT_PID 2>/dev/null
        done
        return 1
    else
        python3 "$CNI_RESPONDER" agent "$CNI_FIX" "$CNI_SOCK" &
        CNI_AGENT_RUNNING=responder
    fi
    CNI_AGENT_PID=$!
    CNI_PIDS+=($!)
    t_wait_for 5 test -S "$CNI_SOCK"
}

cni_stop_agent() {
    kill "$CNI_AGENT_PID" 2>/dev/null
    wait "$CNI_AGENT_PID" 2>/dev/null
    rm -f "$CNI_SOCK"
}

# adoptions the agent reported so far (any uid, or one uid)
cni_agent_adoptions() {
    local n=0 m=0
    [ -f "$CNI_DIR/agent.out" ] && n=$(grep -c "msg=\"pod adopted\" uid=${1:-}" "$CNI_DIR/agent.out")
    [ -f "$CNI_FIX/agent.log" ] && m=$(grep '"method": "POST"' "$CNI_FIX/agent.log" | grep -c "\"uid\": \"${1:-}")
    echo $((n + m))
}

cni_agent_released() { # UID
    grep -q "msg=\"pod released\" uid=$1" "$CNI_DIR/agent.out" 2>/dev/null ||
        grep -q "\"DELETE\", \"path\": \"/v1/pods/$1\"" "$CNI_FIX/agent.log" 2>/dev/null
}

# cni_fixture_ns NAME [dataplane-mode]
cni_fixture_ns() {
    local labels='{}'
    [ -n "${2:-}" ] && labels="{\"istio.io/dataplane-mode\": \"$2\"}"
    printf '{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"%s","labels":%s}}\n' \
        "$1" "$labels" >"$CNI_FIX/ns-$1.json"
}

# cni_fixture_pod NS NAME UID [dataplane-mode]
cni_fixture_pod() {
    local labels='{"app":"demo"}'
    [ -n "${4:-}" ] && labels="{\"app\":\"demo\",\"istio.io/dataplane-mode\": \"$4\"}"
    printf '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"%s","namespace":"%s","uid":"%s","labels":%s},"spec":{"containers":[{"name":"c","image":"x"}]}}\n' \
        "$2" "$1" "$3" "$labels" >"$CNI_FIX/pod-$1-$2.json"
}

# ---- pods

# cni_new_netns NAME: creates amb-cni-<tag>-NAME, prints its name (cni_cleanup removes it)
cni_new_netns() {
    local ns="amb-cni-$CNI_TAG-$1"
    ip netns add "$ns" || return 1
    echo "$ns"
}

cni_conflist() {
    if [ -n "${CNI_CONFLIST_FILE:-}" ]; then # e.g. the conflist `ambit-cni install` wrote
        cat "$CNI_CONFLIST_FILE"
        return
    fi
    cat <<EOF
{
  "cniVersion": "$CNI_VERSION_CHAIN",
  "name": "amb-cni-net",
  "plugins": [
    {"type": "bridge", "bridge": "$CNI_BRIDGE", "isGateway": true, "ipMasq": false,
     "ipam": {"type": "host-local", "dataDir": "$CNI_DIR/ipam",
              "ranges": [[{"subnet": "$CNI_SUBNET", "gateway": "$CNI_GW"}]]}},
    {"type": "ambit-cni", "agent_socket": "$CNI_SOCK", "run_dir": "$CNI_RUN",
     "kubeconfig": "$CNI_DIR/kubeconfig", "kube_timeout_ms": ${CNI_KUBE_TIMEOUT_MS:-1000},
     "agent_timeout_ms": ${CNI_AGENT_TIMEOUT_MS:-2000}${CNI_EXTRA_CONF:-}}
  ]
}
EOF
}

# cni_exec_plugin TYPE CMD CID NETNS_PATH ARGS STDIN_FILE OUT_FILE — one plugin, as libcni does
cni_exec_plugin() {
    local type=$1 cmd=$2 cid=$3 nsp=$4 args=$5 in=$6 out=$7
    local exe
    for d in ${CNI_BIN_DIRS:-"$CNI_BUILD/bin" "$CNI_SYS_PLUGINS"}; do
        [ -x "$d/$type" ] && exe="$d/$type" && break
    done
    [ -n "$exe" ] || { echo "plugin $type not found" >"$out"; return 1; }
    local cpath=${CNI_BIN_DIRS:-"$CNI_BUILD/bin $CNI_SYS_PLUGINS"}
    cpath=${cpath// /:}
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin CNI_COMMAND="$cmd" CNI_CONTAINERID="$cid" \
        CNI_NETNS="$nsp" CNI_IFNAME=eth0 CNI_ARGS="$args" \
        CNI_PATH="$cpath" "$exe" <"$in" >"$out" 2>>"$CNI_DIR/plugins.stderr"
}

# cni_chain CMD CID NETNS PODNS PODNAME — run the whole conflist; the final result of ADD is
# left in $CNI_CACHE/CID.result (and printed on success); a failing plugin's output is in
# $CNI_CACHE/CID.err. Returns the failing plugin's status.
cni_chain() {
    local cmd=$1 cid=$2 ns=$3 podns=$4 pod=$5
    local nsp=/var/run/netns/$ns args="IgnoreUnknown=1;K8S_POD_NAMESPACE=$podns;K8S_POD_NAME=$pod;K8S_POD_INFRA_CONTAINER_ID=$cid"
    local list n i order prev="" in=$CNI_CACHE/$cid.in out=$CNI_CACHE/$cid.out rc
    list=$(cni_conflist)
    n=$(jq '.plugins | length' <<<"$list")
    if [ "$cmd" = ADD ]; then
        # the runtime brings lo up first (containerd runs the loopback plugin)
        echo '{"cniVersion":"0.3.1","name":"lo","type":"loopback"}' >"$in"
        cni_exec_plugin loopback ADD "$cid" "$nsp" "$args" "$in" "$out" || return 1
        order=$(seq 0 $((n - 1)))
    elif [ "$cmd" = DEL ]; then
        order=$(seq $((n - 1)) -1 0)
        [ -f "$CNI_CACHE/$cid.result" ] && prev=$(cat "$CNI_CACHE/$cid.result")
    else
        order=$(seq 0 $((n - 1)))
        prev=$(cat "$CNI_CACHE/$cid.result")
    fi
    for i in $order; do
        local conf type
        conf=$(jq --argjson i "$i" '.plugins[$i] + {cniVersion: .cniVersion, name: .name}' <<<"$list")
        [ -n "$prev" ] && conf=$(jq --argjson p "$prev" '. + {prevResult: $p}' <<<"$conf")
        type=$(jq -r .type <<<"$conf")
        printf '%s' "$conf" >"$in"
        cni_exec_plugin "$type" "$cmd" "$cid" "$nsp" "$args" "$in" "$out"
        rc=$?
        if [ $rc -ne 0 ]; then
            cp "$out" "$CNI_CACHE/$cid.err"
            return $rc
        fi
        if [ "$cmd" = ADD ]; then
            # remember what each plugin was given and returned (tests compare ambit's pair)
            cp "$in" "$CNI_CACHE/$cid.in.$type"
            cp "$out" "$CNI_CACHE/$cid.out.$type"
            prev=$(cat "$out")
        fi
    done
    if [ "$cmd" = ADD ]; then
        printf '%s\n' "$prev" >"$CNI_CACHE/$cid.result"
        cat "$CNI_CACHE/$cid.result"
    elif [ "$cmd" = DEL ]; then
        rm -f "$CNI_CACHE/$cid.result"
    fi
    return 0
}

# cni_pod_ip CID — first IPv4 of the pod from its cached result
cni_pod_ip() {
    jq -r '.ips[0].address' "$CNI_CACHE/$1.result" | cut -d/ -f1
}

# cni_direct CMD CID NETNS_PATH STDIN_JSON [ARGS] — ambit-cni alone; output in $CNI_OUT, rc returned
cni_direct() {
    local args=${5:-K8S_POD_NAMESPACE=amb-x;K8S_POD_NAME=x}
    printf '%s' "$4" >"$CNI_DIR/direct.in"
    cni_exec_plugin ambit-cni "$1" "$2" "$3" "$args" "$CNI_DIR/direct.in" "$CNI_DIR/direct.out"
    local rc=$?
    CNI_OUT=$(cat "$CNI_DIR/direct.out")
    return $rc
}
