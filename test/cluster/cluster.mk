# test/cluster: the local Kubernetes test cluster (see test/cluster/README.md).
.PHONY: cluster-tools cluster-up cluster-down cluster-status cluster-env test-cluster

cluster-tools:
	@test/cluster/build-tools.sh

cluster-up:
	@test/cluster/cluster.sh up

cluster-down:
	@test/cluster/cluster.sh down

cluster-status:
	@test/cluster/cluster.sh status

cluster-env:
	@test/cluster/cluster.sh env

# the smoke test brings the cluster up when it is not running, and down again if it did
test-cluster: cluster-tools
	@BUILD=$(BUILD) test/lib/run-tests.sh cluster $(sort $(wildcard test/cluster/tests/*.sh))
