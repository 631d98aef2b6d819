#!/usr/bin/env bash
# test_charts.sh — helm lint every chart, compare `helm template` with golden files, and check that
# bad values fail with a message naming the value. GOLDEN_UPDATE=1 rewrites the golden files.
set -u
cd "$(dirname "$0")/../.."
. test/lib/testlib.sh
t_begin charts

HELM=${HELM:-}
if [ -z "$HELM" ]; then
    test/cluster/build-tools.sh helm >/dev/null 2>&1 || true
    . test/cluster/versions.env
    HELM=${AMBIT_TOOLS_CACHE:-/var/cache/ambit-tools}/helm-$HELM_VERSION/bin/helm
    [ -x "$HELM" ] || HELM=$(ls ${AMBIT_TOOLS_CACHE:-/var/cache/ambit-tools}/helm-*/bin/helm 2>/dev/null | head -1)
fi
if [ ! -x "$HELM" ]; then
    t_fail "helm available" "no helm binary (test/cluster/build-tools.sh helm failed?)"
    t_end
    exit 1
fi

for c in charts/*/; do
    c=${c%/}
    [ -f "$c/Chart.yaml" ] || continue
    t_check "helm lint $c" "$HELM" lint --strict "$c"
done

golden=test/charts/golden
while read -r name chart ns args; do
    case $name in '#'* | '') continue ;; esac
    # shellcheck disable=SC2086
    out=$("$HELM" template "r-$name" "charts/$chart" -n "$ns" $args 2>&1)
    rc=$?
    if [ $rc -ne 0 ]; then
        t_fail "template $name" "$out"
        continue
    fi
    if [ -n "${GOLDEN_UPDATE:-}" ]; then
        printf '%s\n' "$out" >"$golden/$name.yaml"
        t_pass "golden $name rewritten"
    elif diff -u "$golden/$name.yaml" <(printf '%s\n' "$out") >"$T_DIR/$name.diff"; then
        t_pass "template $name matches golden"
    else
        t_fail "template $name matches golden" "see $T_DIR/$name.diff ($(head -c 600 "$T_DIR/$name.diff"))"
    fi
done <test/charts/cases.txt

# every rendered object parses, and CRDs in base are exactly the files in crds/
ncrd=$(cat crds/*.yaml 2>/dev/null | grep -c '^kind: CustomResourceDefinition')
nren=$("$HELM" template x charts/base | grep -c '^kind: CustomResourceDefinition')
t_eq "base renders every CRD in crds/" "$ncrd" "$nren"
# (base is not a golden case: its content is crds/, which changes on its own)
t_eq "base: every CRD kept on uninstall" "$ncrd" \
    "$("$HELM" template x charts/base | grep -c 'helm.sh/resource-policy: keep')"
t_eq "base: keepCRDs=false drops the annotation" 0 \
    "$("$HELM" template x charts/base --set keepCRDs=false | grep -c 'helm.sh/resource-policy')"
for f in crds/*.yaml; do
    n=$(awk '/^  name: /{print $2; exit}' "$f")
    [ -n "$n" ] || continue
    if "$HELM" template x charts/base | grep -q "^  name: $n\$"; then
        t_pass "base renders $n"
    else
        t_fail "base renders $n" "not in the rendered chart"
    fi
done

# bad values fail with a message naming the value
expect_fail() {
    local what=$1 pattern=$2
    shift 2
    local out
    if out=$("$HELM" template x "$@" 2>&1); then
        t_fail "$what" "install succeeded"
    else
        t_match "$what" "$pattern" "$out"
    fi
}
for ch in control-plane cni node-agent; do
    expect_fail "$ch: unknown profile rejected" 'profile' charts/$ch --set profile=sidecar
done
expect_fail "control-plane: meshConfig not a map" 'meshConfig' charts/control-plane --set meshConfig=oops
expect_fail "control-plane: meshConfig.trustDomain wrong type" 'meshConfig.trustDomain' \
    charts/control-plane --set-json 'meshConfig.trustDomain=5'
expect_fail "control-plane: unknown meshConfig field" 'meshConfig' \
    charts/control-plane --set meshConfig.noSuchField=1
expect_fail "control-plane: bad accessLogEncoding" 'accessLogEncoding' \
    charts/control-plane --set meshConfig.accessLogEncoding=XML
expect_fail "control-plane: bad certificates.ttl" 'certificates.ttl' \
    charts/control-plane --set certificates.ttl=forever
expect_fail "node-agent: bad logFormat" 'logFormat' charts/node-agent --set logFormat=xml
expect_fail "cni: relative cniBinDir" 'cniBinDir' charts/cni --set cniBinDir=opt/cni

# meshConfig is read live from ConfigMap istio: changing it must not change the operator's pod
# template (else `helm upgrade` would restart the operator), but must change the ConfigMap
deploy_of() { "$HELM" template r charts/control-plane -n istio-system "$@" | awk '/^kind: Deployment$/{d=1} /^---/{d=0} d'; }
cm_of() { "$HELM" template r charts/control-plane -n istio-system "$@" | awk '/^kind: ConfigMap$/{d=1} /^---/{d=0} d'; }
mc=(--set meshConfig.trustDomain=example.org --set meshConfig.rootNamespace=mesh-root
    --set meshConfig.accessLogEncoding=JSON --set meshConfig.enableTracing=true)
t_match "control-plane: the Deployment renders" 'kind: Deployment' "$(deploy_of)"
t_eq "control-plane: a meshConfig change leaves the Deployment as it was" "$(deploy_of)" "$(deploy_of "${mc[@]}")"
t_match "control-plane: a meshConfig change reaches ConfigMap istio" 'rootNamespace: mesh-root' "$(cm_of "${mc[@]}")"

# least privilege: rendered RBAC never grants secrets cluster-wide nor pod deletion
rbac=$(for ch in control-plane cni node-agent; do "$HELM" template x charts/$ch -n istio-system; done)
crole_secrets=$(printf '%s\n' "$rbac" | awk '/^kind: ClusterRole$/{c=1} /^---/{c=0} c' | grep -c 'secrets')
t_eq "no ClusterRole grants secrets" 0 "$crole_secrets"
pod_delete=$(printf '%s\n' "$rbac" | awk '/^kind: (Cluster)?Role$/{c=1} /^---/{c=0} c' |
    grep -A3 -E 'resources: \[(pods|"\*")' | grep -c 'delete')
t_eq "no role grants pod deletion" 0 "$pod_delete"
expect_fail "control-plane: bad webhook.failurePolicy" 'failurePolicy' \
    charts/control-plane --set webhook.failurePolicy=Maybe

# the validating webhook: shipped fail-open (the operator decides when to fail closed), its RBAC
# limited to its own configuration, and nothing of it when disabled
cp=$("$HELM" template x charts/control-plane -n mesh-a)
t_eq "webhook: one ValidatingWebhookConfiguration, named after the namespace" "ambit-validator-mesh-a" \
    "$(printf '%s\n' "$cp" | awk '/^kind: ValidatingWebhookConfiguration$/{v=1} v && /^  name: /{print $2; exit}')"
t_eq "webhook: every entry ships failurePolicy Ignore" "Ignore" \
    "$(printf '%s\n' "$cp" | awk '/^kind: ValidatingWebhookConfiguration$/{v=1} /^---/{v=0} v' | awk '/failurePolicy:/{print $2}' | sort -u | xargs)"
t_eq "webhook: no caBundle in the chart (the operator owns it)" 0 "$(printf '%s\n' "$cp" | grep -c '^ *caBundle:')"
t_eq "webhook: configuration RBAC restricted to its name" \
    "resourceNames: [ambit-validator-mesh-a] verbs: [get, list, watch, patch]" \
    "$(printf '%s\n' "$cp" | grep -A2 'resources: \[validatingwebhookconfigurations\]' | tail -2 | xargs)"
t_match "webhook: operator told the configuration and the policy" 'WEBHOOK_CONFIG_NAME value: ambit-validator-mesh-a - name: WEBHOOK_FAILURE_POLICY value: Fail' \
    "$(printf '%s\n' "$cp" | grep -A1 -E 'name: WEBHOOK_(CONFIG_NAME|FAILURE_POLICY)' | xargs)"
t_eq "webhook Fail: the dry-run probe may create virtualservices" 1 \
    "$(printf '%s\n' "$cp" | grep -c 'resources: \[virtualservices\]')"
ign=$("$HELM" template x charts/control-plane -n mesh-a --set webhook.failurePolicy=Ignore)
t_eq "webhook Ignore: no virtualservices create grant" 0 "$(printf '%s\n' "$ign" | grep -c 'resources: \[virtualservices\]')"
t_match "webhook Ignore: operator told to stay fail-open" 'WEBHOOK_FAILURE_POLICY value: Ignore' \
    "$(printf '%s\n' "$ign" | grep -A1 'name: WEBHOOK_FAILURE_POLICY' | xargs)"
off=$("$HELM" template x charts/control-plane -n mesh-a --set webhook.enabled=false)
t_eq "webhook disabled: no configuration, no grants, no env" 0 \
    "$(printf '%s\n' "$off" | grep -c -E 'ValidatingWebhookConfiguration|validatingwebhookconfigurations|WEBHOOK_|virtualservices\]')"

t_end
