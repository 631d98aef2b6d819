#!/usr/bin/env bash
# l4_hbone.sh — client pod on node 1 reaches a server pod on node 2 through two ambit-node
# agents over HBONE (mTLS + HTTP/2 CONNECT on 15008), by pod IP and by service VIP; the wire
# shows only TLS to 15008; non-mesh targets get plain TCP; services without endpoints fail
# fast; metrics and access logs carry the SPIFFE identities; config_dump has no private keys.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/test/lib/testlib.sh"
t_begin l4_hbone
. "$ROOT/test/netns/l4_lib.bash"
trap l4_cleanup EXIT

if [ "$(id -u)" != 0 ]; then
    echo "needs root"
    t_fail "running as root"
    t_end
    exit 1
fi

t_check "topology (netns, bridge, redirect rules, CA, app)" l4_topology
l4_config "$T_DIR/n1.json" node-1 "[$(l4_pod_json client-uid "$L4-a" 10.77.0.1)]"
l4_config "$T_DIR/n2.json" node-2 "[$(l4_pod_json server-uid "$L4-b" 10.77.0.2)]"
t_check "agent on node 1 ready" l4_agent n1 "$T_DIR/n1.json"
t_check "agent on node 2 ready" l4_agent n2 "$T_DIR/n2.json"

# capture everything on the bridge while the mesh traffic flows
ip netns exec "$L4-br" tcpdump -i br0 -nn -U -s 0 -w "$T_DIR/br.pcap" tcp >>"$T_LOG" 2>&1 &
TCPDUMP=$!
L4_PIDS+=($TCPDUMP)
sleep 1

MARK="amb-l4-secret-payload-$$"
out=$(l4_client a 10.77.0.2 8080 "$MARK-pod" 2>>"$T_LOG")
t_eq "client -> server pod IP over HBONE" "echo:$MARK-pod" "$out"
out=$(l4_client a 10.96.77.10 80 "$MARK-vip" 2>>"$T_LOG")
t_eq "client -> service VIP over HBONE" "echo:$MARK-vip" "$out"
t_match "server app saw the client pod's own address (original source preserved)" \
    'accepted from 10\.77\.0\.1:' "$(cat "$T_DIR/app-b.log")"
out=$(l4_client a 10.77.0.2 8080 x --size 4000000 2>>"$T_LOG")
t_eq "4 MB through the tunnel, both ways" "4000005" "$out"

sleep 1
kill -INT $TCPDUMP 2>/dev/null
wait $TCPDUMP 2>/dev/null
t_check "capture has TLS to port 15008" bash -c "tcpdump -nn -r '$T_DIR/br.pcap' 'tcp dst port 15008' 2>/dev/null | grep -q ."
t_expect_fail "capture never has port 8080 or 80" bash -c "tcpdump -nn -r '$T_DIR/br.pcap' 'tcp port 8080 or tcp port 80' 2>/dev/null | grep -q ."
t_expect_fail "capture never has the plaintext payload" grep -aq "$MARK" "$T_DIR/br.pcap"

# non-mesh destination (protocol TCP): plain passthrough from the source pod netns
out=$(l4_client a 10.77.0.3 8080 plain 2>>"$T_LOG")
t_eq "client -> non-mesh pod: plain TCP passthrough" "echo:plain" "$out"
# service without endpoints: fails fast
start=$(date +%s%N)
l4_client a 10.96.77.11 80 nothing >>"$T_LOG" 2>&1
rc=$?
ms=$((($(date +%s%N) - start) / 1000000))
t_eq "service without endpoints: connection refused/reset" "1" "$([ $rc -ne 0 ] && echo 1 || echo 0)"
t_eq "service without endpoints: fails fast (<1 s)" "1" "$([ $ms -lt 1000 ] && echo 1 || echo 0)"

# telemetry
m1=$(l4_ns n1 curl -sf http://127.0.0.1:15020/metrics)
m2=$(l4_ns n2 curl -sf http://127.0.0.1:15020/stats/prometheus)
t_match "source metrics: opened, reporter=source, mTLS, SPIFFE principals" \
    'istio_tcp_connections_opened_total\{reporter="source".*source_principal="spiffe://cluster.local/ns/l4/sa/l4-client".*destination_principal="spiffe://cluster.local/ns/l4/sa/l4-server".*connection_security_policy="mutual_tls"\} [1-9]' "$m1"
t_match "destination metrics: reporter=destination, service labels" \
    'istio_tcp_connections_closed_total\{reporter="destination".*source_principal="spiffe://cluster.local/ns/l4/sa/l4-client".*destination_service="server.l4.svc.cluster.local"|istio_tcp_connections_closed_total\{reporter="destination".*source_principal="spiffe://cluster.local/ns/l4/sa/l4-client"' "$m2"
t_match "received bytes counted (client->server 4 MB)" \
    'istio_tcp_received_bytes_total\{reporter="destination"[^}]*\} [0-9]{7,}' "$m2"
if command -v promtool >/dev/null; then
    t_check "promtool accepts the exposition" bash -c "promtool check metrics <<<\"\$1\"" _ "$m1"
fi
t_match "access log (source side) carries identities" \
    'scope=access.*src.identity=spiffe://cluster.local/ns/l4/sa/l4-client.*dst.hbone_addr=10.77.0.2:8080.*dst.identity=spiffe://cluster.local/ns/l4/sa/l4-server.*direction=outbound' \
    "$(cat "$T_DIR/n1.log")"
t_match "access log (destination side) carries identities" \
    'scope=access.*src.identity=spiffe://cluster.local/ns/l4/sa/l4-client.*direction=inbound' \
    "$(cat "$T_DIR/n2.log")"

dump=$(l4_ns n2 curl -sf http://127.0.0.1:15000/config_dump)
t_match "config_dump lists workloads, services, policies, certificates" \
    '"workloads".*"services".*"policies".*"certificates"|"certificates".*"workloads"' "$(tr -d '\n' <<<"$dump")"
t_match "config_dump shows the server certificate" 'spiffe://cluster.local/ns/l4/sa/l4-server' "$dump"
t_expect_fail "config_dump never has a private key" grep -q 'PRIVATE KEY' <<<"$dump"
t_match "admin port listens on localhost only" '127\.0\.0\.1:15000' "$(l4_ns n2 ss -ltnH)"
t_expect_fail "admin port not on any other address" bash -c "ip netns exec '$L4-n2' ss -ltnH | grep -q '0.0.0.0:15000'"
# ambitctl reads the dump through the API server's pod proxy on the metrics port
dump15020=$(l4_ns n2 curl -sf http://127.0.0.1:15020/config_dump)
t_match "config_dump also served read-only on the metrics port" 'spiffe://cluster.local/ns/l4/sa/l4-server' "$dump15020"
t_expect_fail "... without private keys" grep -q 'PRIVATE KEY' <<<"$dump15020"
t_eq "the metrics port refuses other admin paths" 404 \
    "$(l4_ns n2 curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:15020/quitquitquit)"


t_end
