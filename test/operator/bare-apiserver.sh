#!/usr/bin/env bash
# bare-apiserver.sh start|stop|api-down|api-up <dir> | bounce <dir> <seconds> — a throwaway etcd + kube-apiserver on loopback for
# the operator layer when no test/cluster is running. Uses the cluster helper's cached binaries
# (/var/cache/ambit-tools/kubernetes-*/bin) and Debian's etcd; never builds anything.
# `start` writes <dir>/kubeconfig (static admin token) and prints its path. Ports are picked
# free at start. Everything lives in <dir>; `stop` kills what `start` started (by pid file).
set -euo pipefail
cmd=${1:?start|stop}
dir=${2:?dir}
K8S_BIN=${K8S_BIN:-$(ls -d /var/cache/ambit-tools/kubernetes-v*/bin 2>/dev/null | grep -v '\.tmp/' | tail -1)}

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

stop() {
    for n in kube-apiserver etcd; do
        if [ -s "$dir/$n.pid" ]; then
            kill "$(cat "$dir/$n.pid")" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$(cat "$dir/$n.pid")" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$(cat "$dir/$n.pid")" 2>/dev/null || true
            rm -f "$dir/$n.pid"
        fi
    done
}

if [ "$cmd" = stop ]; then
    stop
    exit 0
fi
if [ "$cmd" = api-down ] || [ "$cmd" = api-up ]; then
    if [ "$cmd" = api-down ]; then
        kill "$(cat "$dir/kube-apiserver.pid")" 2>/dev/null
        for _ in $(seq 100); do kill -0 "$(cat "$dir/kube-apiserver.pid")" 2>/dev/null || break; sleep 0.1; done
    else
        # shellcheck disable=SC2046
        setsid $(cat "$dir/kube-apiserver.cmd") </dev/null >>"$dir/kube-apiserver.log" 2>&1 &
        echo $! >"$dir/kube-apiserver.pid"
    fi
    exit 0
fi
if [ "$cmd" = bounce ]; then
    # kill the API server (etcd keeps running), wait, start it again with the same arguments:
    # an API server outage for the clients
    kill "$(cat "$dir/kube-apiserver.pid")" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$(cat "$dir/kube-apiserver.pid")" 2>/dev/null || break; sleep 0.1; done
    sleep "${3:-5}"
    # shellcheck disable=SC2046
    setsid $(cat "$dir/kube-apiserver.cmd") </dev/null >>"$dir/kube-apiserver.log" 2>&1 &
    echo $! >"$dir/kube-apiserver.pid"
    exit 0
fi
[ -x "$K8S_BIN/kube-apiserver" ] || { echo "bare-apiserver: no cached kube-apiserver" >&2; exit 77; }
command -v etcd >/dev/null || { echo "bare-apiserver: no etcd" >&2; exit 77; }
mkdir -p "$dir/pki" "$dir/etcd"
p=$dir/pki
openssl ecparam -name prime256v1 -genkey -noout -out "$p/ca.key" 2>/dev/null
openssl req -x509 -new -key "$p/ca.key" -subj "/CN=amb-bare-ca" -days 2 -out "$p/ca.crt" 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out "$p/server.key" 2>/dev/null
openssl req -new -key "$p/server.key" -subj "/CN=kube-apiserver" -out "$p/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$p/ext"
openssl x509 -req -in "$p/server.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial \
    -days 2 -extfile "$p/ext" -out "$p/server.crt" 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out "$p/sa.key" 2>/dev/null
openssl ec -in "$p/sa.key" -pubout -out "$p/sa.pub" 2>/dev/null
token=$(openssl rand -hex 16)
echo "$token,amb-admin,amb-admin,system:masters" >"$p/tokens.csv"
etcd_port=$(freeport)
etcd_peer=$(freeport)
api_port=$(freeport)
setsid etcd --data-dir "$dir/etcd" --listen-client-urls "http://127.0.0.1:$etcd_port" \
    --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer" </dev/null >"$dir/etcd.log" 2>&1 &
echo $! >"$dir/etcd.pid"
echo "http://127.0.0.1:$etcd_port" >"$dir/etcd.url"
echo "$K8S_BIN/kube-apiserver --etcd-servers http://127.0.0.1:$etcd_port \
    --bind-address 127.0.0.1 --secure-port $api_port --advertise-address 127.0.0.1 \
    --tls-cert-file $p/server.crt --tls-private-key-file $p/server.key \
    --client-ca-file $p/ca.crt --token-auth-file $p/tokens.csv \
    --service-account-key-file $p/sa.pub --service-account-signing-key-file $p/sa.key \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --api-audiences https://kubernetes.default.svc.cluster.local,istio-ca \
    --authorization-mode RBAC --service-cluster-ip-range 10.96.0.0/16 \
    --enable-admission-plugins NamespaceLifecycle,ServiceAccount" >"$dir/kube-apiserver.cmd"
# shellcheck disable=SC2046
setsid $(cat "$dir/kube-apiserver.cmd") </dev/null >"$dir/kube-apiserver.log" 2>&1 &
echo $! >"$dir/kube-apiserver.pid"
cat >"$dir/kubeconfig" <<EOK
apiVersion: v1
kind: Config
current-context: bare
clusters:
- name: bare
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority: pki/ca.crt
users:
- name: admin
  user:
    token: $token
contexts:
- name: bare
  context: {cluster: bare, user: admin}
EOK
for _ in $(seq 600); do
    if curl -sf --cacert "$p/ca.crt" -H "Authorization: Bearer $token" \
        "https://127.0.0.1:$api_port/readyz" >/dev/null 2>&1; then
        echo "$dir/kubeconfig"
        exit 0
    fi
    kill -0 "$(cat "$dir/kube-apiserver.pid")" 2>/dev/null || break
    sleep 0.2
done
echo "bare-apiserver: did not become ready; see $dir/kube-apiserver.log" >&2
tail -5 "$dir/kube-apiserver.log" >&2
stop
exit 1
