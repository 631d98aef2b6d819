# make demo: the best end-to-end run available today (see test/demo/demo.sh and README.md)
.PHONY: demo demo-down
demo: all
	@test/demo/demo.sh up
demo-down:
	@test/demo/demo.sh down
