# config.sh — names, addresses, ports and paths of the local test cluster (sourced).
# Everything non-loopback lives in network namespaces this harness creates (prefix amb-k8s-).
CLUSTER_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$CLUSTER_HERE/../.." && pwd)
# shellcheck source=versions.env
. "$CLUSTER_HERE/versions.env"

TOOLS=${AMBIT_TOOLS_CACHE:-/var/cache/ambit-tools}
RUN=${AMBIT_CLUSTER_DIR:-/var/lib/ambit-cluster}
KUBECONFIG_ADMIN=$RUN/admin.kubeconfig

K8S_BIN=$TOOLS/kubernetes-$K8S_VERSION/bin
HELM_BIN=$TOOLS/helm-$HELM_VERSION/bin
COREDNS_BIN=$TOOLS/coredns-$COREDNS_VERSION/bin
FORTIO_BIN=$TOOLS/fortio-$FORTIO_VERSION/bin
HTTPBIN_BIN=$TOOLS/go-httpbin-$GO_HTTPBIN_VERSION/bin
GATEWAY_API_CRDS=$TOOLS/gateway-api-$GATEWAY_API_VERSION/crd

NUM_NODES=${AMBIT_CLUSTER_NODES:-2}
NS_PREFIX=amb-k8s-
CP_NS=${NS_PREFIX}cp             # control plane: etcd, apiserver, controller-manager, scheduler
CP_BRIDGE=amb-br0                # lives inside $CP_NS
CP_IP=10.240.0.1                 # the apiserver's address as seen from nodes and pods
NODE_SUBNET=10.240.0.0/24
POD_CIDR=10.244.0.0/16           # node i gets 10.244.i.0/24
SERVICE_CIDR=10.96.0.0/16
LB_CIDR=10.240.1.0/24            # Service type LoadBalancer addresses (routed from $CP_NS via node 1)
KUBERNETES_SVC_IP=10.96.0.1
CLUSTER_DNS_IP=10.96.0.10
CLUSTER_DOMAIN=cluster.local

# ports (non-default on purpose)
ETCD_PORT=12379                  # 127.0.0.1 inside $CP_NS
ETCD_PEER_PORT=12380
APISERVER_PORT=16443             # 0.0.0.0 inside $CP_NS; 127.0.0.1 on the host via the forwarder
CM_PORT=17257                    # controller-manager secure port, 127.0.0.1 inside $CP_NS
SCHED_PORT=17259
RUNNER_PORT=10250                # node runner's kubelet API (logs), node IP inside the node netns
PROXY_HEALTH_PORT=10256          # kube-proxy, inside each node netns
PROXY_METRICS_PORT=10249

# Per-node host directories: inside a node these host paths are the node's own copies under
# $RUN/nodes/<node>/root (bind-mounted over the real path in the private mount namespace of every
# container and CNI plugin the node runs), so a DaemonSet's hostPath behaves like on real machines.
NODE_DIRS="/etc/cni/net.d /opt/cni/bin /var/lib/cni /var/run/ambit /var/lib/ambit"

node_name() { echo "amb-node$1"; }
node_ns() { echo "${NS_PREFIX}node$1"; }
node_ip() { echo "10.240.0.$((10 + $1))"; }
node_pod_cidr() { echo "10.244.$1.0/24"; }
node_pod_gw() { echo "10.244.$1.1"; }
