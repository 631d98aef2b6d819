.PHONY: test-apps
test-apps:
	@test/lib/run-tests.sh apps test/apps/test_bookinfo.sh
