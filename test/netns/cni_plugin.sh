#!/usr/bin/env bash
# cni_plugin.sh — ambit-cni chained after the distribution's bridge + host-local, invoked the way
# a container runtime invokes it (CNI_* environment + config on stdin), against real network
# namespaces and real nftables. The node agent is the real ambit-node when it is built (it opens
# its listeners in the pod netns on adoption); CNI_FAKE_AGENT=1 — and the "agent refuses" case —
# use the TEST RESPONDER in cni_responder.py instead. The API server is always the responder.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib/testlib.sh"
. "$HERE/cni_lib.bash"

t_begin cni_plugin
if [ "$(id -u)" != 0 ]; then
    echo "cni_plugin: needs root (network namespaces)"
    t_fail "running as root"
    t_end
    exit 1
fi
cni_setup
trap cni_cleanup EXIT

rules_in() { ip netns exec "$1" nft list ruleset 2>&1; }
has_table() { ip netns exec "$1" nft list table inet ambit >/dev/null 2>&1; }
err_code() { jq -r .code 2>/dev/null <<<"$1"; }

t_check "ambit-cni built" test -x "$CNI_BIN"
t_check "bridge/host-local/loopback present" test -x "$CNI_SYS_PLUGINS/bridge" -a \
    -x "$CNI_SYS_PLUGINS/host-local" -a -x "$CNI_SYS_PLUGINS/loopback"
t_check "API server responder up" cni_start_api
t_check "node agent up ($(cni_agent_kind))" cni_start_agent

cni_fixture_ns amb-mesh ambient
cni_fixture_ns amb-plain
cni_fixture_pod amb-mesh web uid-web-1
cni_fixture_pod amb-mesh optout uid-optout-1 none
cni_fixture_pod amb-plain labelled uid-labelled-1 ambient
cni_fixture_pod amb-plain plain uid-plain-1

# ---------------------------------------------------------------- VERSION
out=$(echo '{"cniVersion":"1.0.0"}' | CNI_COMMAND=VERSION "$CNI_BIN")
t_eq "VERSION lists 0.3.1..1.1.0" "0.3.1 0.4.0 1.0.0 1.1.0" \
    "$(jq -r '[.supportedVersions[] | select(. != "0.3.0")] | join(" ")' <<<"$out")"

# ---------------------------------------------------------------- ADD, ambient by namespace
P1=$(cni_new_netns web)
t_check "ADD ambient pod (namespace label) through the chain" cni_chain ADD amb-cni-c1 "$P1" amb-mesh web
t_eq "ambit-cni printed prevResult unchanged" \
    "$(jq -S .prevResult "$CNI_CACHE/amb-cni-c1.in.ambit-cni")" \
    "$(jq -S . "$CNI_CACHE/amb-cni-c1.out.ambit-cni")"
t_eq "agent adopted the pod" 1 "$(cni_agent_adoptions uid-web-1)"
IP1=$(cni_pod_ip amb-cni-c1)
if [ "$CNI_AGENT_RUNNING" = real ]; then
    t_match "agent adopted uid with the runtime's netns path" \
        "msg=\"pod adopted\" uid=uid-web-1 netns=/var/run/netns/$P1" "$(cat "$CNI_DIR/agent.out")"
    ls_=$(ip netns exec "$P1" ss -ltnp 2>&1)
    t_match "agent's listeners are up in the pod netns" '0.0.0.0:15001 .*ambit-node' "$ls_"
else
    post=$(grep '"method": "POST"' "$CNI_FIX/agent.log" | tail -1)
    t_eq "adopt request carries uid, netns, pod and ips" \
        "uid-web-1 /var/run/netns/$P1 amb-mesh web amb-cni-c1 $IP1" \
        "$(jq -r '.body | "\(.uid) \(.netns) \(.namespace) \(.name) \(.containerId) \(.ips[0])"' <<<"$post")"
fi
rs=$(rules_in "$P1")
t_match "pod netns has ambit's inet table" 'table inet ambit' "$rs"
t_match "outbound TCP redirected to 15001" 'meta mark & 0x00000fff != 0x00000539 redirect to :15001' "$rs"
t_match "inbound TCP (not 15008) redirected to 15006" 'tcp dport != 15008 meta mark & 0x00000fff != 0x00000539 redirect to :15006' "$rs"
t_match "kubelet probe source bypass" 'ip saddr 169.254.7.127 meta l4proto tcp accept' "$rs"
t_match "connmark 0x111 set for agent traffic" 'ct mark set ct mark & 0xfffff111 \| 0x00000111' "$rs"
t_match "mark restored from connmark" 'ct mark & 0x00000fff == 0x00000111 meta mark set ct mark' "$rs"
t_match "own pod address over lo accepted" 'oifname "lo" accept' "$rs"
t_match "IPv6 rules too" 'ip6 daddr != ::1 meta l4proto tcp meta mark & 0x00000fff != 0x00000539 redirect to :15001' "$rs"
t_match "fwmark rule -> table 100" '32764:.*fwmark 0x111/0xfff lookup 100' "$(ip -n "$P1" rule)"
t_match "local route in table 100" 'local default dev lo' "$(ip -n "$P1" route show table 100)"
t_check "pod state recorded" test -s "$CNI_RUN/cni-pods/amb-cni-c1.json"
t_match "log file in the run dir" 'msg="pod captured".*uid=uid-web-1' "$(cat "$CNI_RUN/ambit-cni.log")"

# a connection from the pod really lands on 15001 inside the pod netns: with the real agent,
# through its outbound proxy to a server in a second (plain) pod; with the responder, on a
# listener the test puts on 15001
connect_from() { # NETNS IP PORT
    ip netns exec "$1" python3 -c '
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
print(s.recv(64).decode().strip())' "$2" "$3" 2>&1
}
if [ "$CNI_AGENT_RUNNING" = real ]; then
    cni_fixture_pod amb-plain srv uid-srv-1
    PS=$(cni_new_netns srv)
    t_check "ADD a plain server pod" cni_chain ADD amb-cni-cs "$PS" amb-plain srv
    IPS=$(cni_pod_ip amb-cni-cs)
    ip netns exec "$PS" python3 "$CNI_RESPONDER" listen 8080 "$CNI_DIR/srv.log" &
    CNI_PIDS+=($!)
    t_wait_for 5 test -e "$CNI_DIR/srv.log.ready"
    t_eq "pod -> server answered (through the agent)" "ambit-test-listener" "$(connect_from "$P1" "$IPS" 8080)"
    t_wait_for 3 grep -q "direction=outbound" "$CNI_DIR/agent.out"
    t_match "agent's 15001 carried it (access log)" \
        "msg=\"connection complete\" src.addr=$IP1:[0-9]+ .*dst.addr=$IPS:8080 .*direction=outbound" \
        "$(cat "$CNI_DIR/agent.out")"
    t_match "server saw the pod's address (plain passthrough)" "^$IP1 " "$(cat "$CNI_DIR/srv.log")"
else
    ip netns exec "$P1" python3 "$CNI_RESPONDER" listen 15001 "$CNI_DIR/listen.log" &
    CNI_PIDS+=($!)
    t_wait_for 5 test -e "$CNI_DIR/listen.log.ready"
    t_eq "outbound connection answered by the 15001 listener" "ambit-test-listener" \
        "$(connect_from "$P1" "10.251.$CNI_NET3.200" 8080)"
    t_match "listener saw the original destination" "10.251.$CNI_NET3.200:8080" "$(cat "$CNI_DIR/listen.log" 2>/dev/null)"
fi

# the same ADD again (runtime retry) is harmless: still exactly one table, no duplicate rules
cni_direct ADD amb-cni-c1 "/var/run/netns/$P1" "$(cat "$CNI_CACHE/amb-cni-c1.in.ambit-cni")" \
    "K8S_POD_NAMESPACE=amb-mesh;K8S_POD_NAME=web"
t_eq "repeated ADD succeeds" 0 $?
t_eq "repeated ADD: no duplicate rules" 2 "$(rules_in "$P1" | grep -c 'redirect to :15001')"
t_eq "repeated ADD: one fwmark rule" 1 "$(ip -n "$P1" rule | grep -c 'fwmark 0x111/0xfff')"

# ---------------------------------------------------------------- CHECK
t_check "CHECK on a captured pod" cni_chain CHECK amb-cni-c1 "$P1" amb-mesh web
ip netns exec "$P1" nft delete table inet ambit
cni_chain CHECK amb-cni-c1 "$P1" amb-mesh web >/dev/null
rc=$?
t_eq "CHECK notices missing rules (code 101)" "1 101" "$rc $(err_code "$(cat "$CNI_CACHE/amb-cni-c1.err")")"

# ---------------------------------------------------------------- DEL twice
t_check "DEL" cni_chain DEL amb-cni-c1 "$P1" amb-mesh web
t_expect_fail "DEL removed the table" has_table "$P1"
t_eq "DEL removed the fwmark rule" 0 "$(ip -n "$P1" rule | grep -c 'fwmark 0x111')"
t_expect_fail "DEL removed the pod state" test -e "$CNI_RUN/cni-pods/amb-cni-c1.json"
t_check "agent told about the DEL" cni_agent_released uid-web-1
t_check "DEL again succeeds" cni_chain DEL amb-cni-c1 "$P1" amb-mesh web

# ---------------------------------------------------------------- who is (not) enrolled
P2=$(cni_new_netns plain)
posts=$(cni_agent_adoptions)
t_check "ADD non-ambient pod" cni_chain ADD amb-cni-c2 "$P2" amb-plain plain
t_expect_fail "non-ambient pod: no rules" has_table "$P2"
t_eq "non-ambient pod: agent not asked" "$posts" "$(cni_agent_adoptions)"
t_eq "non-ambient pod: prevResult passed through" \
    "$(jq -S .prevResult "$CNI_CACHE/amb-cni-c2.in.ambit-cni")" "$(jq -S . "$CNI_CACHE/amb-cni-c2.out.ambit-cni")"

P3=$(cni_new_netns optout)
t_check "ADD pod opting out (=none) in ambient namespace" cni_chain ADD amb-cni-c3 "$P3" amb-mesh optout
t_expect_fail "opted-out pod: no rules" has_table "$P3"

P4=$(cni_new_netns labelled)
t_check "ADD pod labelled ambient in plain namespace" cni_chain ADD amb-cni-c4 "$P4" amb-plain labelled
t_check "pod label alone enrols" has_table "$P4"

# per-pod annotations (reference §1.11): DNS capture on, inbound capture off ("ingress mode")
printf '%s' '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"gw","namespace":"amb-mesh","uid":"uid-gw-1","annotations":{"ambient.istio.io/dns-capture":"true","ambient.istio.io/bypass-inbound-capture":"true"}},"spec":{}}' \
    >"$CNI_FIX/pod-amb-mesh-gw.json"
PA=$(cni_new_netns gw)
t_check "ADD pod with redirection annotations" cni_chain ADD amb-cni-ca "$PA" amb-mesh gw
rs=$(rules_in "$PA")
t_match "dns-capture annotation: DNS redirected to 15053" 'udp dport 53 .*redirect to :15053' "$rs"
t_match "dns-capture annotation: conntrack zone for DNS" 'ct zone set 1' "$rs"
t_eq "bypass-inbound-capture annotation: no inbound redirect" 0 "$(grep -c 'redirect to :15006' <<<"$rs")"
t_match "bypass-inbound-capture annotation: outbound still captured" 'redirect to :15001' "$rs"
t_check "DEL annotated pod" cni_chain DEL amb-cni-ca "$PA" amb-mesh gw
t_expect_fail "annotated pod: table gone" has_table "$PA"

# kube-system is excluded without even asking the API server (no fixture exists for it)
P5=$(cni_new_netns kubesys)
t_check "ADD in kube-system passes through" cni_chain ADD amb-cni-c5 "$P5" kube-system coredns
t_expect_fail "kube-system pod: no rules" has_table "$P5"

# ---------------------------------------------------------------- failures: agent
cni_fixture_pod amb-mesh web2 uid-web-2
P6=$(cni_new_netns down)
cni_stop_agent
cni_chain ADD amb-cni-c6 "$P6" amb-mesh web2 >/dev/null
rc=$?
e=$(cat "$CNI_CACHE/amb-cni-c6.err")
t_eq "agent down: ambient ADD fails with code 11" "1 11" "$rc $(err_code "$e")"
t_match "agent down: message names the agent socket" "$CNI_SOCK" "$(jq -r .msg <<<"$e")"
t_expect_fail "agent down: no rules left behind" has_table "$P6"
cni_chain DEL amb-cni-c6 "$P6" amb-mesh web2 >/dev/null
P7=$(cni_new_netns downplain)
t_check "agent down: non-ambient ADD still succeeds" cni_chain ADD amb-cni-c7 "$P7" amb-plain plain
t_check "agent down: DEL of a captured-then-released pod succeeds" cni_chain DEL amb-cni-c4 "$P4" amb-plain labelled
t_check "an agent back (the responder, to play a 503)" cni_start_agent responder

# an agent that answers 503 (cannot adopt now)
echo refuse >"$CNI_FIX/agent-mode"
cni_chain ADD amb-cni-c6 "$P6" amb-mesh web2 >/dev/null
rc=$?
t_eq "agent refuses (503): ADD fails with code 11" "1 11" "$rc $(err_code "$(cat "$CNI_CACHE/amb-cni-c6.err")")"
t_match "agent refuses: its reason is in the message" "told to refuse" "$(jq -r .msg "$CNI_CACHE/amb-cni-c6.err")"
t_expect_fail "agent refuses: no rules" has_table "$P6"
rm -f "$CNI_FIX/agent-mode"
cni_chain DEL amb-cni-c6 "$P6" amb-mesh web2 >/dev/null
cni_stop_agent
t_check "node agent back ($(cni_agent_kind))" cni_start_agent

# ---------------------------------------------------------------- failures: API server
echo 3 >"$CNI_FIX/delay"
start=$SECONDS
cni_chain ADD amb-cni-c6 "$P6" amb-mesh web2 >/dev/null
rc=$?
t_eq "API server timeout: ADD fails with code 11" "1 11" "$rc $(err_code "$(cat "$CNI_CACHE/amb-cni-c6.err")")"
t_check "API server timeout: bounded by kube_timeout_ms" test $((SECONDS - start)) -le 3
t_expect_fail "API server timeout: no rules" has_table "$P6"
rm -f "$CNI_FIX/delay"
cni_chain DEL amb-cni-c6 "$P6" amb-mesh web2 >/dev/null
cni_direct ADD amb-cni-c9 "/var/run/netns/$P6" \
    "{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"type\":\"ambit-cni\",\"kubeconfig\":\"$CNI_DIR/kubeconfig\",\"run_dir\":\"$CNI_RUN\",\"agent_socket\":\"$CNI_SOCK\",\"prevResult\":{\"cniVersion\":\"1.0.0\",\"ips\":[]}}" \
    "K8S_POD_NAMESPACE=amb-mesh;K8S_POD_NAME=ghost"
rc=$?
t_eq "unknown pod (404): ADD fails with code 11 and names the pod" "1 11 yes" \
    "$rc $(err_code "$CNI_OUT") $(jq -r .msg <<<"$CNI_OUT" | grep -q 'amb-mesh/ghost' && echo yes)"

# The installer's own pod during a rolling update: the kubeconfig on the node still holds the old
# installer pod's token, which the API server rejects once that pod is deleted. The new installer
# pod must start anyway (it writes the fresh kubeconfig); every other pod still fails closed.
sed 's/amb-cni-test-token/amb-cni-old-installer-token/' "$CNI_DIR/kubeconfig" >"$CNI_DIR/kubeconfig-revoked"
echo amb-cni-old-installer-token >"$CNI_FIX/revoked-tokens"
P10=$(cni_new_netns inst)
rev="\"name\":\"n\",\"type\":\"ambit-cni\",\"run_dir\":\"$CNI_RUN\",\"agent_socket\":\"$CNI_SOCK\",\"kubeconfig\":\"$CNI_DIR/kubeconfig-revoked\",\"mesh_namespace\":\"amb-mesh\""
prev10='"prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"eth0"}],"ips":[{"address":"10.9.9.10/24","interface":0}]}'
cni_direct ADD amb-cni-c10 "/var/run/netns/$P10" "{\"cniVersion\":\"1.0.0\",$rev,$prev10}" \
    "K8S_POD_NAMESPACE=amb-mesh;K8S_POD_NAME=ambit-cni-node-x7k2p"
t_eq "revoked token: the installer's own pod is added (prevResult back, no API lookup)" "0 10.9.9.10/24" \
    "$? $(jq -r '.ips[0].address' <<<"$CNI_OUT" 2>/dev/null)"
t_expect_fail "revoked token: no rules in the installer pod" has_table "$P10"
cni_direct ADD amb-cni-c11 "/var/run/netns/$P10" "{\"cniVersion\":\"1.0.0\",$rev,$prev10}" \
    "K8S_POD_NAMESPACE=amb-mesh;K8S_POD_NAME=web"
t_eq "revoked token: any other pod fails closed with code 11 (401)" "1 11 yes" \
    "$? $(err_code "$CNI_OUT") $(jq -r .msg <<<"$CNI_OUT" | grep -q 401 && echo yes)"
cni_direct ADD amb-cni-c12 "/var/run/netns/$P10" "{\"cniVersion\":\"1.0.0\",$rev,$prev10}" \
    "K8S_POD_NAMESPACE=amb-plain;K8S_POD_NAME=ambit-cni-node-x7k2p"
t_eq "revoked token: the installer's pod name outside the mesh namespace is looked up (fails)" "1 11" \
    "$? $(err_code "$CNI_OUT")"
rm -f "$CNI_FIX/revoked-tokens"

# ---------------------------------------------------------------- bad input
NSP="/var/run/netns/$P2"
base="\"name\":\"n\",\"type\":\"ambit-cni\",\"run_dir\":\"$CNI_RUN\",\"agent_socket\":\"$CNI_SOCK\",\"kubeconfig\":\"$CNI_DIR/kubeconfig\""
prev='"prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"eth0"}],"ips":[{"address":"10.9.9.9/24","interface":0}]}'
cni_direct ADD c "$NSP" '{"cniVersion":"1.0.0",'
t_eq "malformed JSON: code 6" "1 6" "$? $(err_code "$CNI_OUT")"
cni_direct ADD c "$NSP" "{\"cniVersion\":\"1.0.0\",$base}"
t_eq "missing prevResult: code 7" "1 7" "$? $(err_code "$CNI_OUT")"
cni_direct ADD c "$NSP" "{\"cniVersion\":\"1.0.0\",$base,\"prevResult\":{\"ips\":[{\"address\":\"banana\"}]}}"
t_eq "bad prevResult address: code 7 naming the field" "1 7 prevResult.ips[0].address" \
    "$? $(err_code "$CNI_OUT") $(jq -r .msg <<<"$CNI_OUT" | cut -d: -f1)"
cni_direct ADD c "$NSP" "{\"cniVersion\":\"0.2.0\",$base,$prev}"
t_eq "unsupported cniVersion: code 1" "1 1" "$? $(err_code "$CNI_OUT")"
printf '%s' "{\"cniVersion\":\"1.0.0\",$base,$prev}" >"$CNI_DIR/ok.json"
out=$(env -i CNI_CONTAINERID=c CNI_NETNS="$NSP" CNI_IFNAME=eth0 "$CNI_BIN" <"$CNI_DIR/ok.json")
t_eq "missing CNI_COMMAND: code 4" "1 4" "$? $(err_code "$out")"
out=$(env -i CNI_COMMAND=ADD CNI_NETNS="$NSP" CNI_IFNAME=eth0 "$CNI_BIN" <"$CNI_DIR/ok.json")
t_eq "missing CNI_CONTAINERID: code 4" "1 4" "$? $(err_code "$out")"
out=$(env -i CNI_COMMAND=ADD CNI_CONTAINERID=c CNI_IFNAME=eth0 "$CNI_BIN" <"$CNI_DIR/ok.json")
t_eq "missing CNI_NETNS: code 4" "1 4" "$? $(err_code "$out")"
out=$(env -i CNI_COMMAND=ADD CNI_CONTAINERID=c CNI_NETNS="$NSP" "$CNI_BIN" <"$CNI_DIR/ok.json")
t_eq "missing CNI_IFNAME: code 4" "1 4" "$? $(err_code "$out")"
cni_direct ADD c /var/run/netns/amb-cni-does-not-exist "{\"cniVersion\":\"1.0.0\",$base,$prev}"
t_eq "nonexistent netns: code 3" "1 3" "$? $(err_code "$CNI_OUT")"
head -c 2000000 /dev/zero | tr '\0' ' ' >"$CNI_DIR/big.json"
out=$(env -i CNI_COMMAND=ADD CNI_CONTAINERID=c CNI_NETNS="$NSP" CNI_IFNAME=eth0 "$CNI_BIN" <"$CNI_DIR/big.json")
t_eq "oversized stdin: code 6" "1 6" "$? $(err_code "$out")"

# ---------------------------------------------------------------- STATUS, GC, DEL without netns
cni_direct STATUS "" "" "{\"cniVersion\":\"1.1.0\",$base}"
t_eq "STATUS (1.1.0) succeeds" 0 $?
cni_direct STATUS "" "" "{\"cniVersion\":\"1.0.0\",$base}"
t_eq "STATUS with 1.0.0 config: code 1" "1 1" "$? $(err_code "$CNI_OUT")"
cni_direct GC "" "" "{\"cniVersion\":\"1.1.0\",$base}"
t_eq "GC (1.1.0) succeeds" 0 $?
cni_direct CHECK amb-cni-c2 "$NSP" "{\"cniVersion\":\"0.3.1\",$base,$prev}"
t_eq "CHECK with 0.3.1 config: code 1" "1 1" "$? $(err_code "$CNI_OUT")"

# DEL when the netns is already gone (runtime removed it first)
P8=$(cni_new_netns gone)
cni_fixture_pod amb-mesh gone uid-gone-1
t_check "ADD pod whose netns will vanish" cni_chain ADD amb-cni-c8 "$P8" amb-mesh gone
ip netns del "$P8"
cni_direct DEL amb-cni-c8 "/var/run/netns/$P8" "{\"cniVersion\":\"1.0.0\",$base}" "K8S_POD_NAMESPACE=amb-mesh;K8S_POD_NAME=gone"
t_eq "DEL with netns gone succeeds" 0 $?
cni_direct DEL amb-cni-c8 "" "{\"cniVersion\":\"1.0.0\",$base}"
t_eq "DEL without CNI_NETNS succeeds" 0 $?
t_expect_fail "DEL cleared the state of the vanished pod" test -e "$CNI_RUN/cni-pods/amb-cni-c8.json"

# older chain versions: 0.3.1 and 0.4.0 configs work end to end
for v in 0.3.1 0.4.0; do
    CNI_VERSION_CHAIN=$v
    P9=$(cni_new_netns "v${v//./}")
    t_check "ADD ambient pod with cniVersion $v" cni_chain ADD "amb-cni-v${v//./}" "$P9" amb-mesh web
    t_check "rules present with cniVersion $v" has_table "$P9"
    t_check "DEL with cniVersion $v" cni_chain DEL "amb-cni-v${v//./}" "$P9" amb-mesh web
done
CNI_VERSION_CHAIN=1.0.0

t_end
