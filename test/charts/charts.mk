# Helm chart checks: lint, golden `helm template` output, bad values. Uses the pinned helm that
# test/cluster builds (test/cluster/build-tools.sh helm).
.PHONY: test-charts charts-golden
test-charts:
	@test/lib/run-tests.sh charts test/charts/test_charts.sh
charts-golden:
	@GOLDEN_UPDATE=1 test/charts/test_charts.sh
