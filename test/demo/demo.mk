# make demo: the L4 walkthrough on the local Kubernetes cluster (test/demo/k8s-demo.sh);
# make demo-netns: the same data path in bare network namespaces, no Kubernetes (test/demo/demo.sh)
.PHONY: demo demo-down demo-netns demo-netns-down
demo: all
	@test/demo/k8s-demo.sh up
demo-down:
	@test/demo/k8s-demo.sh down
demo-netns: all
	@test/demo/demo.sh up
demo-netns-down:
	@test/demo/demo.sh down
