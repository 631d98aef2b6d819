#!/usr/bin/env bash
# The operator keeps its ValidatingWebhookConfiguration usable, against a real API server that
# really calls the webhook: a missing configuration is waited for; once it exists every entry's
# caBundle is the mesh root (which verifies the serving certificate, by name and IP); a dry run
# proves the path and failurePolicy goes Ignore -> Fail; the API server then rejects an invalid
# VirtualService through it and admits a valid one; a blanked caBundle is filled in again; the
# serving certificate is renewed after two thirds of its (shortened) life; a new `cacerts` CA
# moves caBundle (new + previous root) first and the webhook's certificate after it, with no
# admission call failing meanwhile; a re-created
# configuration (new uid) is filled in and verified again. Always a private API server: the
# webhook URL is 127.0.0.1, which only an API server on this host's loopback can call.
set -u
cd "$(dirname "$0")/../.."
. test/lib/testlib.sh
. test/operator/lib.sh
BUILD=${BUILD:-build}
t_begin operator-webhook
KUBECONFIG=
op_api_up || { t_fail "API server available"; t_end; exit 1; }
opns=amb-wh-sys-$$
vwc=amb-wh-$$
OP_PID=
cleanup() {
    [ -n "$OP_PID" ] && kill "$OP_PID" 2>/dev/null && wait "$OP_PID" 2>/dev/null
    kc delete validatingwebhookconfiguration "$vwc" >/dev/null 2>&1
    kc delete ns "$opns" --wait=false >/dev/null 2>&1
    op_crds_cleanup
    op_cleanup
}
trap cleanup EXIT
port=$(freeport)
mport=$(freeport)
wport=$(freeport)
LOG=$T_DIR/operator.log

op_crds_install >>"$T_LOG" 2>&1
op_test_namespaces "$opns" || { t_fail "test namespace"; t_end; exit 1; }

op_start --namespace "$opns" --root-namespace "$opns" --listen "127.0.0.1:$port" \
    --metrics-listen "127.0.0.1:$mport" --webhook-listen "127.0.0.1:$wport" --debounce-ms 50 \
    --write-selector "amb-test=$$" --no-leader-elect --webhook-config "$vwc" --serving-cert-ttl 9
t_check "operator ready" t_wait_for 30 curl -sf "http://127.0.0.1:$mport/healthz/ready"
t_check "a missing configuration is logged and waited for" \
    t_wait_for 10 grep -q "webhook configuration not found, watching for it.*name=$vwc" "$LOG"
root=$T_DIR/root.pem
root_published() { kc -n "$opns" get configmap istio-ca-root-cert -o jsonpath='{.data.root-cert\.pem}' >"$root" 2>/dev/null && [ -s "$root" ]; }
t_check "root published" t_wait_for 20 root_published

create_vwc() { # two entries, as Istio's charts have: both must be filled in
    cat <<EOF | kc apply -f - >>"$T_LOG" 2>&1
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: $vwc, labels: {amb-test: "$$"}}
webhooks:
- name: validation.ambit.dev
  admissionReviewVersions: [v1]
  sideEffects: None
  failurePolicy: Ignore
  timeoutSeconds: 5
  namespaceSelector: {matchLabels: {amb-test: "$$"}}
  clientConfig: {url: "https://127.0.0.1:$wport/validate"}
  rules:
  - {apiGroups: [networking.istio.io], apiVersions: ["*"], operations: [CREATE, UPDATE], resources: [virtualservices], scope: Namespaced}
- name: policies.validation.ambit.dev
  admissionReviewVersions: [v1]
  sideEffects: None
  failurePolicy: Ignore
  timeoutSeconds: 5
  namespaceSelector: {matchLabels: {amb-test: "$$"}}
  clientConfig: {url: "https://127.0.0.1:$wport/validate"}
  rules:
  - {apiGroups: [security.istio.io], apiVersions: ["*"], operations: [CREATE, UPDATE], resources: [authorizationpolicies], scope: Namespaced}
EOF
}
bundles() { kc get validatingwebhookconfiguration "$vwc" -o jsonpath='{range .webhooks[*]}{.clientConfig.caBundle}{"\n"}{end}' 2>/dev/null; }
policies() { kc get validatingwebhookconfiguration "$vwc" -o jsonpath='{.webhooks[*].failurePolicy}' 2>/dev/null; }
# every entry's caBundle decodes to the PEM in file $1
bundle_is() {
    local b n=0
    while read -r b; do
        [ "$(base64 -d <<<"$b" 2>/dev/null)" == "$(cat "$1")" ] || return 1
        n=$((n + 1))
    done < <(bundles)
    [ "$n" = 2 ]
}
serving_cert() { # the certificate the webhook port presents -> $1
    openssl s_client -connect "127.0.0.1:$wport" -servername "istiod.$opns.svc" </dev/null 2>/dev/null |
        openssl x509 -out "$1" 2>/dev/null
}
# the served certificate verifies with the caBundle as the only trust anchor, for the
# Service name the API server uses and for the IP of this test's URL
verifies_with_bundle() {
    bundles | head -1 | base64 -d >"$T_DIR/bundle.pem" 2>/dev/null
    openssl s_client -connect "127.0.0.1:$wport" -CAfile "$T_DIR/bundle.pem" -verify_return_error \
        -verify_hostname "istiod.$opns.svc" </dev/null >"$T_DIR/sclient.out" 2>&1 &&
        openssl s_client -connect "127.0.0.1:$wport" -CAfile "$T_DIR/bundle.pem" -verify_return_error \
            -verify_ip 127.0.0.1 </dev/null >>"$T_DIR/sclient.out" 2>&1
}
vs() { # vs <name> <regex>
    cat <<EOF
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: $1, namespace: $opns}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {regex: '$2'}}]
    route: [{destination: {host: reviews}}]
EOF
}
denied() { # the API server called us and we said no (not "failed calling webhook")
    local out
    out=$(vs "$1" '(unclosed' | kc apply -f - 2>&1)
    echo "$out" >>"$T_LOG"
    grep -qE 'admission webhook "validation.ambit.dev" denied the request: spec.http\[0\].match\[0\].uri: regex "\(unclosed" does not compile' <<<"$out"
}

create_vwc
t_check "caBundle of every entry = the mesh root" t_wait_for 15 bundle_is "$root"
t_check "the served certificate verifies with caBundle (name istiod.$opns.svc and 127.0.0.1)" verifies_with_bundle
fail_closed() { [ "$(policies)" = "Fail Fail" ]; }
t_check "after the dry run proved the path, failurePolicy Ignore -> Fail on every entry" t_wait_for 20 fail_closed
t_match "the switch is logged" 'admission webhook verified through the API server, failing closed' "$(cat "$LOG")"
t_check "an invalid VirtualService is rejected, naming the field" denied bad1
vs good '^/api' >"$T_DIR/good.yaml"
out=$(kc apply -f "$T_DIR/good.yaml" 2>&1)
t_match "a VirtualService with only a warning is admitted, the warning shown" \
    'Warning: .*Referenced host not found: "reviews".*virtualservice.networking.istio.io/good created' "$(tr "\n" " " <<<"$out")"

# someone blanks it (helm upgrade of an old chart, a human): filled in again
n_updates() { grep -c 'webhook configuration updated' "$LOG"; }
n0=$(n_updates)
t_check "test blanks the second entry's caBundle" kc patch validatingwebhookconfiguration "$vwc" --type=json \
    -p '[{"op":"replace","path":"/webhooks/1/clientConfig/caBundle","value":""}]'
refilled() { [ "$(n_updates)" -gt "$n0" ] && bundle_is "$root"; }
t_check "a blanked caBundle is filled in again" t_wait_for 15 refilled

# renewal: --serving-cert-ttl 9 -> a new certificate after 6 s, still verifying
serving_cert "$T_DIR/s1.pem"
s1=$(openssl x509 -in "$T_DIR/s1.pem" -noout -serial 2>&1)
t_match "serving certificate has the Service names" "DNS:istiod.$opns.svc, DNS:istiod.$opns.svc.cluster.local" \
    "$(openssl x509 -in "$T_DIR/s1.pem" -noout -ext subjectAltName 2>&1)"
renewed() { serving_cert "$T_DIR/s2.pem" && [ "$(openssl x509 -in "$T_DIR/s2.pem" -noout -serial 2>&1)" != "$s1" ]; }
t_check "serving certificate renewed before it expires" t_wait_for 12 renewed
t_check "the renewed certificate verifies with caBundle" verifies_with_bundle

# a new plug-in CA (cacerts): caBundle and serving certificate move together
d=$T_DIR/cacerts
mkdir -p "$d"
openssl ecparam -name prime256v1 -genkey -noout -out "$d/root-key.pem" 2>/dev/null
openssl req -x509 -new -key "$d/root-key.pem" -subj "/O=amb-test/CN=Webhook Root" -days 2 \
    -addext basicConstraints=critical,CA:true -addext keyUsage=critical,keyCertSign,cRLSign \
    -out "$d/root-cert.pem" 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out "$d/ca-key.pem" 2>/dev/null
openssl req -new -key "$d/ca-key.pem" -subj "/O=amb-test/CN=Webhook Intermediate" -out "$d/ca.csr" 2>/dev/null
printf 'basicConstraints=critical,CA:true,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n' >"$d/ext"
openssl x509 -req -in "$d/ca.csr" -CA "$d/root-cert.pem" -CAkey "$d/root-key.pem" -CAcreateserial \
    -days 2 -extfile "$d/ext" -out "$d/ca-cert.pem" 2>/dev/null
cat "$d/ca-cert.pem" "$d/root-cert.pem" >"$d/cert-chain.pem"
# admission is exercised all through the rotation: with failurePolicy Fail, a moment where the
# API server's caBundle and the served certificate disagree is a refused write
rotation_probe() {
    local i=0
    while [ ! -e "$T_DIR/rotation-done" ]; do
        i=$((i + 1))
        vs "rot$i" '(unclosed' | kc apply -f - 2>&1 | grep -v -e 'denied the request' -e '^Warning: ' | grep . |
            sed "s/^/attempt $i: /"
        sleep 0.1
    done >"$T_DIR/rotation-errors"
}
# and new TLS connections all the time, as a restarted API server or another replica's
# clients would make: none may see a certificate the API server's caBundle does not verify yet
handshakes() {
    while [ ! -e "$T_DIR/rotation-done" ]; do
        openssl s_client -connect "127.0.0.1:$wport" </dev/null >/dev/null 2>&1
        sleep 0.05
    done
}
rm -f "$T_DIR/rotation-done"
rotation_probe &
probe_pid=$!
handshakes &
hs_pid=$!
sleep 1
lines0=$(wc -l <"$LOG")
kc -n "$opns" create secret generic cacerts --from-file="$d/ca-cert.pem" --from-file="$d/ca-key.pem" \
    --from-file="$d/root-cert.pem" --from-file="$d/cert-chain.pem" >>"$T_LOG" 2>&1
new_root_in_bundle() { bundles | head -1 | base64 -d 2>/dev/null | grep -qF "$(sed -n 2p "$d/root-cert.pem")"; }
t_check "a cacerts change adds the new root to caBundle" t_wait_for 20 new_root_in_bundle
sleep 3
touch "$T_DIR/rotation-done"
wait "$probe_pid" "$hs_pid"
# order in the operator log after the change: CA reloaded, caBundle patched, only then the
# webhook port's new certificate (the node agent port is not held back)
rot_log=$(tail -n +"$((lines0 + 1))" "$LOG" | grep -n -e 'CA reloaded' -e 'webhook configuration updated' \
    -e "serving certificate issued.*server=127.0.0.1:$wport" | head -3 | sed -E 's/^[0-9]+:.*msg="([^"]*)".*/\1/' | paste -sd'|')
t_eq "the webhook port switches to the new CA only after caBundle holds it" \
    "CA reloaded|webhook configuration updated|serving certificate issued" "$rot_log"
t_eq "no admission call failed during the CA rotation (bundle and certificate move in step)" "" \
    "$(head -c 600 "$T_DIR/rotation-errors")"
cat "$d/root-cert.pem" "$root" >"$T_DIR/overlap.pem"
t_check "during the overlap caBundle holds the new root, then the previous one" bundle_is "$T_DIR/overlap.pem"
t_check "the served certificate now verifies with the new caBundle (through the intermediate)" \
    t_wait_for 5 verifies_with_bundle
t_check "admission still works after the CA change (Fail: a mismatch would be an error)" \
    t_wait_for 10 denied bad2

# a re-created configuration (helm reinstall): new uid, filled in and verified again
kc delete validatingwebhookconfiguration "$vwc" >>"$T_LOG" 2>&1
t_check "deletion noticed" t_wait_for 10 grep -q "webhook configuration deleted, watching for it.*name=$vwc" "$LOG"
create_vwc
t_check "re-created configuration filled in" t_wait_for 15 bundle_is "$T_DIR/overlap.pem"
t_check "and fails closed again after a new dry run" t_wait_for 20 fail_closed
t_eq "two verifications logged (one per configuration uid)" 2 \
    "$(grep -c 'admission webhook verified through the API server' "$LOG")"
t_check "operator alive" kill -0 "$OP_PID"
kill "$OP_PID" && wait "$OP_PID" 2>/dev/null
OP_PID=
t_end
