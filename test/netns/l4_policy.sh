#!/usr/bin/env bash
# l4_policy.sh — PeerAuthentication STRICT and L4 AuthorizationPolicy through two ambit-node
# agents: PERMISSIVE lets a non-mesh client in over 15006; STRICT resets it while the meshed
# client still works; DENY by principal answers 401 (the client's connection is closed);
# ALLOW for another principal denies; ALLOW for the client's principal allows; certificates
# from a foreign CA or expired ones are rejected on 15008.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/test/lib/testlib.sh"
t_begin l4_policy
. "$ROOT/test/netns/l4_lib.bash"
trap l4_cleanup EXIT

t_check "topology (netns, bridge, redirect rules, CA, app)" l4_topology
PODS1="[$(l4_pod_json client-uid "$L4-a" 10.77.0.1)]"
PODS2="[$(l4_pod_json server-uid "$L4-b" 10.77.0.2)]"
l4_config "$T_DIR/n1.json" node-1 "$PODS1"
l4_config "$T_DIR/n2.json" node-2 "$PODS2"
t_check "agent on node 1 ready" l4_agent n1 "$T_DIR/n1.json"
t_check "agent on node 2 ready" l4_agent n2 "$T_DIR/n2.json"

# reconfigure node 2 (policies live on the destination side) and wait for the reload
reconfigure() { # <policies json> <server authorizationPolicies json>
    l4_config "$T_DIR/n2.json" node-2 "$PODS2" "$1" "$2"
    local before
    before=$(grep -c 'config reloaded' "$T_DIR/n2.log")
    kill -HUP "$L4_PID_n2"
    t_wait_for 5 bash -c "[ \$(grep -c 'config reloaded' '$T_DIR/n2.log') -gt $before ]"
}

STRICT='{"name": "istio_converted_static_strict", "namespace": "istio-system", "scope": "WorkloadSelector", "action": "Deny", "rules": [[[{"notPrincipals": [{"presence": true}]}]]]}'
DENY_CLIENT='{"name": "deny-client", "namespace": "l4", "scope": "WorkloadSelector", "action": "Deny", "rules": [[[{"principals": [{"exact": "cluster.local/ns/l4/sa/l4-client"}]}]]]}'
ALLOW_OTHER='{"name": "allow-other", "namespace": "l4", "scope": "WorkloadSelector", "action": "Allow", "rules": [[[{"principals": [{"exact": "cluster.local/ns/other/sa/x"}]}]]]}'
ALLOW_CLIENT='{"name": "allow-client", "namespace": "l4", "scope": "WorkloadSelector", "action": "Allow", "rules": [[[{"principals": [{"suffix": "/sa/l4-client"}]}], [{"destinationPorts": [8080]}]]]}'

# PERMISSIVE (no PeerAuthentication): the outsider's plaintext goes through 15006
out=$(l4_client c 10.77.0.2 8080 permissive 2>>"$T_LOG")
t_eq "permissive: non-mesh client reaches the server over 15006" "echo:permissive" "$out"
out=$(l4_client a 10.77.0.2 8080 meshed 2>>"$T_LOG")
t_eq "permissive: meshed client over HBONE" "echo:meshed" "$out"

t_check "reload: STRICT for the server" reconfigure "[$STRICT]" '["istio-system/istio_converted_static_strict"]'
l4_client c 10.77.0.2 8080 strict >>"$T_LOG" 2>&1
t_eq "strict: non-mesh client is reset (no answer)" "2" "$?"
# what users see (walkthrough step 17): curl exits 56, "connection reset by peer", every time
codes=""
for i in 1 2 3 4 5 6 7 8; do
    l4_ns c curl -s -o /dev/null -m 5 http://10.77.0.2:8080/ >>"$T_LOG" 2>&1
    codes="$codes$? "
done
t_eq "strict: curl from the non-mesh pod always exits 56" "56 56 56 56 56 56 56 56 " "$codes"
out=$(l4_client a 10.77.0.2 8080 strict-meshed 2>>"$T_LOG")
t_eq "strict: meshed client still works" "echo:strict-meshed" "$out"
t_match "strict: counted as a failed connection with response_flags DENY" \
    'istio_tcp_connections_failed_total\{reporter="destination".*response_flags="DENY",connection_security_policy="unknown"\} [1-9]' \
    "$(l4_ns n2 curl -s http://127.0.0.1:15020/metrics)"
t_match "strict: the destination logs the policy rejection" \
    'connection closed due to policy rejection.*explicitly denied by: istio-system/istio_converted_static_strict|explicitly denied by: istio-system/istio_converted_static_strict' \
    "$(cat "$T_DIR/n2.log")"

# an established connection survives a config change that would now deny it
l4_client a 10.77.0.2 8080 x --size 200000 --slow 3 >"$T_DIR/slow.out" 2>>"$T_LOG" &
SLOW=$!
sleep 1
t_check "reload: DENY the client principal" reconfigure "[$DENY_CLIENT]" '["l4/deny-client"]'
wait $SLOW
t_eq "config change: the in-flight transfer completed intact" "200005" "$(cat "$T_DIR/slow.out")"
l4_client a 10.77.0.2 8080 denied >>"$T_LOG" 2>&1
rc=$?
t_eq "deny: meshed client gets no answer" "1" "$([ $rc -ne 0 ] && echo 1 || echo 0)"
t_match "deny: destination access log says DENY" 'direction=inbound.*response_flags=DENY' "$(cat "$T_DIR/n2.log")"
t_match "deny: source sees 401" 'direction=outbound.*(401|DENY)' "$(cat "$T_DIR/n1.log")"

t_check "reload: ALLOW only another principal" reconfigure "[$ALLOW_OTHER]" '["l4/allow-other"]'
l4_client a 10.77.0.2 8080 other >>"$T_LOG" 2>&1
rc=$?
t_eq "allow-other: client denied (allow policies exist, none allowed)" "1" "$([ $rc -ne 0 ] && echo 1 || echo 0)"

t_check "reload: ALLOW the client principal (suffix) on port 8080" reconfigure "[$ALLOW_OTHER, $ALLOW_CLIENT]" '["l4/allow-other", "l4/allow-client"]'
out=$(l4_client a 10.77.0.2 8080 allowed 2>>"$T_LOG")
t_eq "allow-client: client allowed" "echo:allowed" "$out"
l4_client c 10.77.0.2 8080 plaintext-allow >>"$T_LOG" 2>&1
t_eq "allow-client: identity-less peer is not allowed by a principal rule" "2" "$?"

# certificates: a foreign-CA leaf and an expired mesh-CA leaf presented to 15008
tls_probe() { # <cert> <key> -> prints s_client output
    l4_ns c bash -c "printf 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n' | timeout 5 openssl s_client -connect 10.77.0.2:15008 \
        -tls1_3 -alpn h2 -noservername -cert '$1' -key '$2' -CAfile '$T_DIR/pki/ca.pem' -ign_eof 2>&1"
}
out=$(tls_probe "$T_DIR/pki/foreign.pem" "$T_DIR/pki/foreign.key")
echo "$out" >>"$T_LOG"
t_match "foreign-CA client certificate: rejected with alert unknown ca" 'alert unknown ca' "$out"
out=$(tls_probe "$T_DIR/pki/expired.pem" "$T_DIR/pki/expired.key")
echo "$out" >>"$T_LOG"
t_match "expired client certificate: rejected with alert certificate expired" 'alert certificate expired' "$out"
t_match "server logs why: unknown CA" 'inbound hbone connection closed.*reason="unknown CA"' "$(cat "$T_DIR/n2.log")"
t_match "server logs why: expired" 'inbound hbone connection closed.*reason="peer certificate expired"' "$(cat "$T_DIR/n2.log")"
# sanity: the same probe with no client certificate is refused too
out=$(l4_ns c bash -c "printf 'x' | timeout 5 openssl s_client -connect 10.77.0.2:15008 -tls1_3 -alpn h2 -noservername -ign_eof 2>&1")
t_match "no client certificate: rejected with an alert" 'alert' "$out"

t_end
