# node-agent.mk — the node agent's extra targets (auto-included by the top-level Makefile).
#
#   make bench-l4      no-mesh baseline vs the ambit node-agent pair in one netns topology
#                      -> build/bench/l4.json (+ a table on stdout; docs/benchmarks.md explains)
#   make test-l4       only the node agent's netns tests (test/netns/l4_*.sh)

L4LOAD := $(BUILD)/bench/l4load

$(L4LOAD): test/bench/l4load.c
	@mkdir -p $(@D)
	$(CC) -O2 -g -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror -o $@ $< -lpthread

.PHONY: bench-l4 test-l4
bench-l4: all $(L4LOAD)
	@BUILD=$(BUILD) test/bench/l4.sh

test-l4: all
	@BUILD=$(BUILD) test/lib/run-tests.sh l4 $(sort $(wildcard test/netns/l4_*.sh))
