# test/e2e: the user's walkthrough against the local cluster (see test/e2e/README.md).
.PHONY: test-e2e e2e
e2e: test-e2e

# t_install.sh brings the cluster up when it is not running, and down again if it did
test-e2e:
	@BUILD=$(BUILD) test/lib/run-tests.sh e2e test/e2e/t_install.sh test/e2e/t_walkthrough.sh
