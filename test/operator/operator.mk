# test/operator — the operator/kube layer against a real kube-apiserver: test/cluster's when its
# KUBECONFIG is exported (eval "$(make -s cluster-env)"), otherwise a throwaway etcd +
# kube-apiserver from the cached binaries (test/operator/bare-apiserver.sh).
.PHONY: test-operator
test-operator: all $(BUILD)/tests/dataplane-test_kube_live $(BUILD)/tests/dataplane-test_opclient
	@BUILD=$(BUILD) test/lib/run-tests.sh operator $(sort $(wildcard test/operator/t_*.sh))
