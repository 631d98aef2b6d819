#!/usr/bin/env bash
# cni_install.sh — `ambit-cni install|uninstall` as the cni DaemonSet runs it, on throw-away bin
# and conf dirs: the distribution's bridge config is converted to a conflist with ambit-cni
# last, the binary lands in the bin dir, and a runtime reading that conflist from those dirs
# then captures an ambient pod. Watch mode puts the plugin back when the primary CNI rewrites
# its file; uninstall removes exactly our entry. Peers as in cni_plugin.sh.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib/testlib.sh"
. "$HERE/cni_lib.bash"

t_begin cni_install
if [ "$(id -u)" != 0 ]; then
    t_fail "running as root"
    t_end
    exit 1
fi
cni_setup
trap cni_cleanup EXIT
BIN="$CNI_DIR/opt-cni-bin"
CONF="$CNI_DIR/etc-cni-net.d"
mkdir -p "$BIN" "$CONF" || exit 1
for p in bridge host-local loopback; do cp "$CNI_SYS_PLUGINS/$p" "$BIN/"; done

printf '%s\n' "{\"cniVersion\": \"1.0.0\", \"name\": \"amb-cni-inst\", \"type\": \"bridge\",
 \"bridge\": \"$CNI_BRIDGE\", \"isGateway\": true, \"ipam\": {\"type\": \"host-local\",
 \"dataDir\": \"$CNI_DIR/ipam\", \"ranges\": [[{\"subnet\": \"$CNI_SUBNET\", \"gateway\": \"$CNI_GW\"}]]}}" \
    >"$CONF/10-amb-bridge.conf"
echo '{"cniVersion":"1.0.0","name":"zz","plugins":[{"type":"ptp"}]}' >"$CONF/99-other.conflist"

inst() {
    "$CNI_BIN" "$@" --bin-dir "$BIN" --conf-dir "$CONF" --agent-socket "$CNI_SOCK" \
        --run-dir "$CNI_RUN" --kubeconfig "$CNI_DIR/kubeconfig" >>"$CNI_DIR/install.log" 2>&1
}
# background form: exec, so $! is ambit-cni itself (signals reach it, not a wrapper shell)
inst_watch() {
    exec "$CNI_BIN" install --watch "$@" --bin-dir "$BIN" --conf-dir "$CONF" \
            --agent-socket "$CNI_SOCK" --run-dir "$CNI_RUN" --kubeconfig "$CNI_DIR/kubeconfig" \
        >>"$CNI_DIR/install.log" 2>&1
}
types() { jq -r '[.plugins[].type] | join(" ")' "$1"; }
LIST="$CONF/10-amb-bridge.conflist"

t_check "install" inst install
t_check "binary copied into the bin dir" cmp "$CNI_BIN" "$BIN/ambit-cni"
t_check "binary executable" test -x "$BIN/ambit-cni"
t_expect_fail "single .conf converted away" test -e "$CONF/10-amb-bridge.conf"
t_eq "conflist: bridge then ambit-cni" "bridge ambit-cni" "$(types "$LIST")"
t_eq "conflist keeps name and cniVersion" "amb-cni-inst 1.0.0" "$(jq -r '"\(.name) \(.cniVersion)"' "$LIST")"
t_eq "our entry carries the settings" "$CNI_SOCK $CNI_RUN" \
    "$(jq -r '.plugins[1] | "\(.agent_socket) \(.run_dir)"' "$LIST")"
t_eq "other configs untouched" "ptp" "$(types "$CONF/99-other.conflist")"
before=$(stat -c '%i %Y' "$LIST")
sleep 1
t_check "install again" inst install
t_eq "install again: file not rewritten" "$before" "$(stat -c '%i %Y' "$LIST")"

# the runtime uses what install left behind
t_check "API server responder up" cni_start_api
t_check "node agent up ($(cni_agent_kind))" cni_start_agent
cni_fixture_ns amb-mesh ambient
cni_fixture_pod amb-mesh web uid-inst-1
P1=$(cni_new_netns web)
export CNI_CONFLIST_FILE=$LIST CNI_BIN_DIRS=$BIN
t_check "ADD through the installed conflist and bin dir" cni_chain ADD amb-cni-i1 "$P1" amb-mesh web
t_check "pod captured" ip netns exec "$P1" nft list table inet ambit
t_check "DEL through the installed conflist" cni_chain DEL amb-cni-i1 "$P1" amb-mesh web
unset CNI_CONFLIST_FILE CNI_BIN_DIRS

# watch mode: the primary CNI rewrites its file without us -> we are put back
inst_watch &
WPID=$!
CNI_PIDS+=($WPID)
t_wait_for 5 grep -q 'watching' "$CNI_DIR/install.log"
jq '.plugins |= map(select(.type != "ambit-cni"))' "$LIST" >"$CNI_DIR/rewritten" &&
    mv "$CNI_DIR/rewritten" "$LIST"
last_is_ours() { jq -e '.plugins[-1].type == "ambit-cni"' "$LIST" >/dev/null; }
t_check "watch: plugin re-inserted after the primary CNI rewrote the file" t_wait_for 5 last_is_ours
t_check "watch: readiness file while installed" test -e "$CNI_RUN/cni-ready"
t_eq "watch: exactly one entry of ours" 1 "$(jq '[.plugins[] | select(.type == "ambit-cni")] | length' "$LIST")"
kill -TERM $WPID
wait $WPID
t_eq "watch: exits 0 on SIGTERM" 0 $?
t_expect_fail "watch: readiness file removed on exit" test -e "$CNI_RUN/cni-ready"
t_eq "watch: plugin left in place on exit" "bridge ambit-cni" "$(types "$LIST")"

: >"$CNI_DIR/install.log"
inst_watch --uninstall-on-exit &
WPID=$!
CNI_PIDS+=($WPID)
t_wait_for 5 grep -q 'watching' "$CNI_DIR/install.log"
kill -TERM $WPID
wait $WPID
t_eq "watch --uninstall-on-exit: exits 0" 0 $?
t_eq "watch --uninstall-on-exit: entry removed" "bridge" "$(types "$LIST")"

t_check "install" inst install
t_check "uninstall" inst uninstall
t_eq "uninstall: our entry gone, primary kept" "bridge" "$(types "$LIST")"
t_expect_fail "uninstall: binary gone" test -e "$BIN/ambit-cni"
t_check "uninstall again" inst uninstall

# kubeconfig for the plugin from the pod's service account
SA="$CNI_DIR/sa"
mkdir -p "$SA"
printf 'ca-bytes\n' >"$SA/ca.crt"
printf 'sa-token\n' >"$SA/token"
t_check "install --write-kubeconfig" env AMBIT_SA_DIR="$SA" KUBERNETES_SERVICE_HOST=10.96.0.1 \
    KUBERNETES_SERVICE_PORT=443 "$CNI_BIN" install --bin-dir "$BIN" --conf-dir "$CONF" --write-kubeconfig
KC="$CONF/ambit-cni-kubeconfig"
t_eq "kubeconfig mode 0600" 600 "$(stat -c %a "$KC")"
t_eq "kubeconfig server and token" "https://10.96.0.1:443 sa-token" \
    "$(jq -r '"\(.clusters[0].cluster.server) \(.users[0].user.token)"' "$KC")"
t_eq "conflist points the plugin at it" "$KC" "$(jq -r '.plugins[-1].kubeconfig' "$LIST")"
t_eq "the runtime ignores the kubeconfig file (still one primary)" "bridge ambit-cni" "$(types "$LIST")"
# in the DaemonSet the host's conf dir is mounted under /host: paths in the conflist are the
# host's, the file is written where the installer sees it; settings come from the ConfigMap env
t_check "install as the chart runs it (env settings, host path mapping)" env AMBIT_SA_DIR="$SA" \
    KUBERNETES_SERVICE_HOST=10.96.0.1 KUBERNETES_SERVICE_PORT=443 EXCLUDE_NAMESPACES=kube-system,amb-x \
    AMBIENT_DNS_CAPTURE=true AMBIENT_IPV6=false LOG_LEVEL=debug POD_NAMESPACE=amb-mesh-sys \
    "$CNI_BIN" install --bin-dir="$BIN" --conf-dir="$CONF" --host-conf-dir=/etc/cni/net.d --run-dir="$CNI_RUN"
t_eq "conflist: host path of the kubeconfig" "/etc/cni/net.d/ambit-cni-kubeconfig" \
    "$(jq -r '.plugins[-1].kubeconfig' "$LIST")"
t_eq "conflist: settings from the environment" "kube-system,amb-x true false debug" \
    "$(jq -r '.plugins[-1] | "\(.exclude_namespaces | join(",")) \(.dns_capture) \(.ipv6) \(.log_level)"' "$LIST")"
t_eq "conflist: the release namespace (the plugin knows its installer's pods by it)" amb-mesh-sys \
    "$(jq -r '.plugins[-1].mesh_namespace' "$LIST")"
t_check "kubeconfig written in the mounted dir" test -s "$KC"
out=$(env -u KUBERNETES_SERVICE_HOST "$CNI_BIN" install --bin-dir "$BIN" --conf-dir "$CONF" \
    --kubeconfig "$CNI_DIR/kc-2" --write-kubeconfig 2>&1)
t_eq "--write-kubeconfig outside a pod fails" 1 $?
t_match "... naming what is missing" 'KUBERNETES_SERVICE_HOST' "$out"
t_expect_fail "install without --conf-dir is a usage error" "$CNI_BIN" install --bin-dir "$BIN"
t_check "uninstall" inst uninstall
t_expect_fail "uninstall removes the kubeconfig (a token) too" test -e "$KC"

# helm uninstall while the API server is slow: the installer asks again within its grace period
# instead of leaving the plugin (and a token nobody refreshes) in the node's chain
TA="$CNI_DIR/tlsapi"
SA2="$CNI_DIR/sa2"
mkdir -p "$TA" "$SA2"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=amb-cni-api \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$TA/key.pem" -out "$TA/cert.pem" >/dev/null 2>&1
cp "$TA/cert.pem" "$SA2/ca.crt"
echo amb-cni-sa2-token >"$SA2/token"
# the installer pod exists, its DaemonSet does not (404): the release is being removed
echo '{"kind":"Pod","metadata":{"name":"ambit-cni-node-t1","namespace":"amb-sys","ownerReferences":[{"kind":"DaemonSet","name":"ambit-cni-node"}]}}' \
    >"$TA/pod-amb-sys-ambit-cni-node-t1.json"
python3 "$CNI_RESPONDER" api "$TA" 0 "$TA/cert.pem" "$TA/key.pem" &
CNI_PIDS+=($!)
t_check "HTTPS API server responder up" t_wait_for 5 test -s "$TA/api.port"
: >"$CNI_DIR/install.log"
(
    export AMBIT_SA_DIR="$SA2" KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT="$(cat "$TA/api.port")" \
        POD_NAME=ambit-cni-node-t1 POD_NAMESPACE=amb-sys
    inst_watch
) &
WPID=$!
CNI_PIDS+=($WPID)
installed() { last_is_ours && test -s "$CONF/ambit-cni-kubeconfig"; }
t_check "watch in a pod: installed with its kubeconfig" t_wait_for 5 installed
echo 4 >"$TA/delay" # the first answer comes after the client's 3 s timeout
kill -TERM $WPID
sleep 1
rm -f "$TA/delay"
wait $WPID
t_eq "SIGTERM, API slow at first: exits 0" 0 $?
t_eq "SIGTERM, API slow at first: entry removed once the API answered" "bridge" "$(types "$LIST")"
t_expect_fail "... plugin binary removed" test -e "$BIN/ambit-cni"
t_expect_fail "... kubeconfig removed" test -e "$CONF/ambit-cni-kubeconfig"
t_match "... the log says why" 'uninstalled on exit.*DaemonSet deleted' "$(cat "$CNI_DIR/install.log")"
t_end
