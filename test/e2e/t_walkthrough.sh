#!/usr/bin/env bash
# t_walkthrough.sh — the L4 half of WALKTHROUGH.md against the local cluster, with assertions:
#   B4   Bookinfo (productpage, details, reviews v1-v3, ratings) and bar/curl answer without a mesh
#   C6   `kubectl label namespace bookinfo istio.io/dataplane-mode=ambient`: every pod enrolled
#        (annotation, in-pod rules) with no restart (same UIDs and restart counts)
#        and the wire between the nodes carries only HBONE (15008), never the app's plaintext
#   C7   ambitctl ztunnel-config workloads lists the bookinfo pods with PROTOCOL HBONE;
#        certificates lists their SPIFFE identities
#   C8   access logs carry both SPIFFE identities; istio_tcp_connections_opened_total with
#        connection_security_policy="mutual_tls" grows
#   E17  PeerAuthentication STRICT: bar/curl exits 56 (connection reset), meshed traffic works
#   E18  L4 AuthorizationPolicy on app=productpage allowing one principal: that client gets in,
#        a meshed client with another identity and bar/curl are refused
#   C6'  removing the label takes the pods out again, without restarts
#   E21  a `cacerts` Secret (root + intermediate from `ambitctl x ca`) created before the install:
#        workload certificates chain to that root (openssl verify), the published root is it
# The mesh is installed with the charts (as t_install.sh does) and uninstalled at the end.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/lib.bash"
e2e_setup e2e-walkthrough
BI=bookinfo-$sfx   # application namespaces of this run
BAR=bar-$sfx
CLI=client-$sfx

cleanup() {
    [ -n "${CAP_PID:-}" ] && kill "$CAP_PID" 2>/dev/null
    kubectl delete ns "$BI" "$BAR" "$CLI" --wait=false >/dev/null 2>&1
    e2e_teardown
    kubectl delete ns "$NS" --wait=false >/dev/null 2>&1
}
trap cleanup EXIT
e2e_require_no_mesh
e2e_map_images

annotations() { kubectl -n "$BI" get pods -o jsonpath='{range .items[*]}{.metadata.annotations.ambient\.istio\.io/redirection}{"\n"}{end}'; }
all_enrolled() { [ "$(annotations | grep -c '^enabled$')" = 6 ]; }
none_enrolled() { [ "$(annotations | grep -c enabled)" = 0 ]; }
pods_state() { kubectl -n "$BI" get pods -o jsonpath='{range .items[*]}{.metadata.name} {.metadata.uid} {.status.containerStatuses[0].restartCount}{"\n"}{end}' | sort; }
pod_of() { kubectl -n "$1" get pods -l "$2" -o jsonpath='{.items[0].metadata.name}'; }
# http code of a curl run inside a pod (exec: the host's curl in the pod's netns)
code_from() { # <ns> <pod> <url>
    kubectl -n "$1" exec "$2" -- curl -s -m 5 -o /dev/null -w '%{http_code}' "$3" 2>>"$T_LOG"
}
exit_from() { # <ns> <pod> <url> -> curl's exit code
    kubectl -n "$1" exec "$2" -- curl -s -m 5 -o /dev/null "$3" >>"$T_LOG" 2>&1
    echo $?
}
code_200() { [ "$(code_from "$@")" = 200 ]; }
metric_mtls() { # sum of istio_tcp_connections_opened_total{connection_security_policy="mutual_tls"}
    local p total=0 v
    for p in $(kubectl -n "$NS" get pods -l app=ambit-node -o jsonpath='{.items[*].metadata.name}'); do
        v=$(kubectl get --raw "/api/v1/namespaces/$NS/pods/$p:15020/proxy/stats/prometheus" 2>/dev/null |
            grep '^istio_tcp_connections_opened_total{' | grep 'connection_security_policy="mutual_tls"' |
            awk '{s += $NF} END {print s + 0}')
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

# ---------------------------------------------------------------- E21: plug-in CA before install
CA=$T_DIR/ca
t_check "E21: ambitctl x ca root + intermediate" bash -c "
    '$BIN/ambitctl' x ca root --dir '$CA' && '$BIN/ambitctl' x ca intermediate --root-dir '$CA' --out '$CA/cluster1'"
t_check "E21: Secret cacerts in $NS before the install" bash -c "
    kubectl create ns $NS && kubectl create secret generic cacerts -n $NS \
        --from-file='$CA/cluster1/ca-cert.pem' --from-file='$CA/cluster1/ca-key.pem' \
        --from-file='$CA/cluster1/root-cert.pem' --from-file='$CA/cluster1/cert-chain.pem'"

# ---------------------------------------------------------------- install (A1-A2)
t_check "install: base, control-plane, cni, node-agent" e2e_install_mesh
t_check "mesh pods Ready" t_wait_for 60 all_ready "$NS"

# ---------------------------------------------------------------- B4: the apps, no mesh yet
for n in "$BI" "$BAR" "$CLI"; do kubectl create ns "$n" >>"$T_LOG" 2>&1; done
kubectl -n "$BI" apply -f "$REPO/test/apps/bookinfo.yaml" >>"$T_LOG" 2>&1
kubectl -n "$BAR" apply -f "$REPO/test/apps/curl.yaml" >>"$T_LOG" 2>&1
kubectl -n "$CLI" apply -f "$REPO/test/apps/curl.yaml" >>"$T_LOG" 2>&1
kubectl label ns "$CLI" istio.io/dataplane-mode=ambient >>"$T_LOG" 2>&1
t_check "B4: bookinfo pods Ready" t_wait_for 120 all_ready "$BI"
t_check "B4: curl pods Ready" bash -c "$(declare -f all_ready t_wait_for); t_wait_for 60 all_ready $BAR && t_wait_for 60 all_ready $CLI"
BARC=$(pod_of "$BAR" app=curl)
CLIC=$(pod_of "$CLI" app=curl)
PP=$(pod_of "$BI" app=productpage)
RT=$(pod_of "$BI" app=ratings)
URL=http://productpage.$BI:9080/productpage
t_check "B4: bar/curl -> productpage 200 (no mesh)" t_wait_for 30 code_200 "$BAR" "$BARC" "$URL"
page=$(kubectl -n "$BAR" exec "$BARC" -- curl -s -m 10 "$URL" 2>>"$T_LOG")
t_match "B4: the page shows details and reviews" 'William Shakespeare.*Reviews served by' "$(tr -d '\n' <<<"$page")"

# ---------------------------------------------------------------- C6: join the mesh
before=$(pods_state)
kubectl label ns "$BI" istio.io/dataplane-mode=ambient >>"$T_LOG" 2>&1
t_check "C6: every bookinfo pod enrolled (ambient.istio.io/redirection=enabled)" t_wait_for 60 all_enrolled
t_eq "C6: no pod restarted or replaced (same UIDs and restart counts)" "$before" "$(pods_state)"
ppns_node=$(kubectl -n "$BI" get pod "$PP" -o jsonpath='{.spec.nodeName}' | sed 's/[^0-9]//g')
ppns=$(ip netns list | awk '{print $1}' | grep -E "^${NS_PREFIX}n[0-9]+-$(kubectl -n "$BI" get pod "$PP" -o jsonpath='{.metadata.uid}' | cut -c1-8)" | head -1)
t_match "C6: redirection rules inside productpage's netns" 'redirect to :15001' \
    "$(ip netns exec "$ppns" nft list table inet ambit 2>&1)"

# the wire between the nodes while productpage (and its calls to reviews/details) is used
cpns=${NS_PREFIX}cp
ip netns exec "$cpns" tcpdump -i any -nn -s 0 -U -w "$T_DIR/wire.pcap" 'tcp and not port 16443' >>"$T_LOG" 2>&1 &
CAP_PID=$!
sleep 1
m0=$(metric_mtls)
ok=0
for i in 1 2 3 4 5 6; do [ "$(code_from "$CLI" "$CLIC" "$URL")" = 200 ] && ok=$((ok + 1)); done
t_eq "C6: meshed client -> productpage over HBONE: 6/6 answered" 6 "$ok"
sleep 1
kill -INT "$CAP_PID" 2>/dev/null
wait "$CAP_PID" 2>/dev/null
CAP_PID=
hbone=$( (tcpdump -nn -r "$T_DIR/wire.pcap" 'tcp port 15008' 2>/dev/null || true) | wc -l)
app=$( (tcpdump -nn -r "$T_DIR/wire.pcap" 'tcp port 9080' 2>/dev/null || true) | wc -l)
plain=$( (tcpdump -nn -A -r "$T_DIR/wire.pcap" 2>/dev/null || true) | grep -c 'GET /reviews\|GET /details\|Simple Bookstore')
t_match "C6: HBONE (15008) between the nodes" '^[1-9]' "$hbone"
t_eq "C6: no app-port (9080) packets between the nodes" 0 "$app"
t_eq "C6: no plaintext HTTP between the nodes" 0 "$plain"

# ---------------------------------------------------------------- C7, C8: evidence
wl=$("$BIN/ambitctl" ztunnel-config workloads 2>&1)
echo "$wl" >>"$T_LOG"
t_eq "C7: ambitctl lists the 6 bookinfo pods with PROTOCOL HBONE" 6 "$(grep -c "^$BI .* HBONE *\$" <<<"$wl")"
t_match "C7: workloads columns" '^NAMESPACE +POD NAME +ADDRESS +NODE +WAYPOINT +PROTOCOL' "$wl"
t_match "C7: the non-mesh curl is TCP" "^$BAR +curl-.* TCP *\$" "$wl"
certs=$("$BIN/ambitctl" ztunnel-config certificates 2>&1)
t_match "C7: certificates lists productpage's identity, valid" \
    "spiffe://cluster.local/ns/$BI/sa/bookinfo-productpage +Leaf +Available +true" "$certs"
# E21: the certificate productpage's node agent holds chains to the plug-in root
ppnode=$(kubectl -n "$BI" get pod "$PP" -o jsonpath='{.spec.nodeName}')
agent=$(kubectl -n "$NS" get pods -l app=ambit-node --field-selector "spec.nodeName=$ppnode" -o jsonpath='{.items[0].metadata.name}')
kubectl get --raw "/api/v1/namespaces/$NS/pods/$agent:15020/proxy/config_dump" >"$T_DIR/dump.json" 2>>"$T_LOG"
jq -r --arg id "spiffe://cluster.local/ns/$BI/sa/bookinfo-productpage" \
    '.certificates[] | select(.identity == $id) | .certChain[0].pem' "$T_DIR/dump.json" >"$T_DIR/leaf.pem" 2>>"$T_LOG"
t_check "E21: productpage's leaf verifies against the plug-in root (via the intermediate)" \
    openssl verify -CAfile "$CA/root-cert.pem" -untrusted "$CA/cluster1/ca-cert.pem" "$T_DIR/leaf.pem"
"$BIN/ambitctl" x ca root --dir "$T_DIR/other-ca" --bits 2048 >>"$T_LOG" 2>&1
t_expect_fail "E21: ... and not against another root" \
    openssl verify -CAfile "$T_DIR/other-ca/root-cert.pem" -untrusted "$CA/cluster1/ca-cert.pem" "$T_DIR/leaf.pem"
t_eq "E21: istio-ca-root-cert in $BI is the plug-in root" \
    "$(openssl x509 -in "$CA/root-cert.pem" -noout -fingerprint -sha256)" \
    "$(kubectl -n "$BI" get configmap istio-ca-root-cert -o jsonpath='{.data.root-cert\.pem}' | openssl x509 -noout -fingerprint -sha256 2>&1)"
logs=$(kubectl -n "$NS" logs -l app=ambit-node --tail=-1 2>&1)
t_match "C8: access log with both SPIFFE identities" \
    "scope=access .*src.identity=spiffe://cluster.local/ns/$BI/sa/bookinfo-productpage .*dst.identity=spiffe://cluster.local/ns/$BI/sa/bookinfo-(reviews|details)" "$logs"
m1=$(metric_mtls)
t_check "C8: istio_tcp_connections_opened_total{mutual_tls} grew ($m0 -> $m1)" test "$m1" -gt "$m0"

# ---------------------------------------------------------------- E17: STRICT
cat <<EOF | kubectl apply -f - >>"$T_LOG" 2>&1
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: $BI}
spec: {mtls: {mode: STRICT}}
EOF
strict_reset() { [ "$(exit_from "$BAR" "$BARC" "$URL")" = 56 ]; }
t_check "E17: STRICT: bar/curl is reset (curl exit 56)" t_wait_for 20 strict_reset
t_eq "E17: STRICT: again exit 56" 56 "$(exit_from "$BAR" "$BARC" "$URL")"
t_eq "E17: STRICT: meshed client still 200" 200 "$(code_from "$CLI" "$CLIC" "$URL")"
# kubelet (here: the node runner) probes keep working under STRICT: the node agent's host table
# SNATs them to 169.254.7.127, which the in-pod rules let through uncaptured
t_match "E17: productpage's IP is in the node's probe set (inet ambit-host)" \
    "$(kubectl -n "$BI" get pod "$PP" -o jsonpath='{.status.podIP}' | sed 's/\./\\./g')" \
    "$(ip netns exec "$(node_ns "${ppns_node:-1}")" nft list table inet ambit-host 2>&1)"
sleep 6 # three readiness periods of the sample apps
t_check "E17: STRICT: every bookinfo pod still Ready (probes bypass capture)" all_ready "$BI"
kubectl -n "$BI" delete peerauthentication default >>"$T_LOG" 2>&1
t_check "E17: without STRICT bar/curl gets in again" t_wait_for 20 code_200 "$BAR" "$BARC" "$URL"

# ---------------------------------------------------------------- E18: L4 AuthorizationPolicy
cat <<EOF | kubectl apply -f - >>"$T_LOG" 2>&1
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: productpage-viewer, namespace: $BI}
spec:
  selector: {matchLabels: {app: productpage}}
  action: ALLOW
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/$CLI/sa/curl"]}
EOF
other_denied() { [ "$(exit_from "$BI" "$RT" "$URL")" != 0 ]; }
t_check "E18: a meshed client with another identity (ratings) is refused" t_wait_for 20 other_denied
t_eq "E18: the allowed principal ($CLI/curl) gets 200" 200 "$(code_from "$CLI" "$CLIC" "$URL")"
t_check "E18: bar/curl (no identity) is refused" bash -c "[ \$(kubectl -n $BAR exec $BARC -- curl -s -m 5 -o /dev/null $URL >/dev/null 2>&1; echo \$?) != 0 ]"
t_match "E18: the refusal is logged with the policy" "policy rejection|allow policies exist, but none allowed" \
    "$(kubectl -n "$NS" logs -l app=ambit-node --tail=200 2>&1)"
kubectl -n "$BI" delete authorizationpolicy productpage-viewer >>"$T_LOG" 2>&1
t_check "E18: policy deleted: ratings gets in again" t_wait_for 20 code_200 "$BI" "$RT" "$URL"

# ---------------------------------------------------------------- C6': leave the mesh
before=$(pods_state)
kubectl label ns "$BI" istio.io/dataplane-mode- >>"$T_LOG" 2>&1
t_check "C6': label removed: annotations gone" t_wait_for 60 none_enrolled
t_check "C6': label removed: no redirection table in productpage's netns" \
    t_wait_for 30 bash -c "! ip netns exec $ppns nft list table inet ambit"
t_eq "C6': no pod restarted" "$before" "$(pods_state)"
t_eq "C6': bar/curl -> productpage 200 (plain again)" 200 "$(code_from "$BAR" "$BARC" "$URL")"
t_end
