# test/bench/bench.mk — the operator benchmark (auto-included by the top-level Makefile).
#
#   make bench-operator   private kube-apiserver loaded with 10 000 pods / 2 000 services /
#                         500 policies, ambit-operator, 100 simulated agents (opagents.c)
#                         -> build/bench/operator.json (docs/benchmarks.md explains)
#                         knobs: OPBENCH_SCALE (1), OPBENCH_CHANGES, OPBENCH_PERF=1 (perf record)

OPAGENTS := $(BUILD)/bench/opagents

$(OPAGENTS): test/bench/opagents.c
	@mkdir -p $(@D)
	$(call msg,CC,$@)
	$(Q)$(CC) -O2 -g -std=gnu11 -D_GNU_SOURCE $(WARN) -o $@ $< $(shell pkg-config --cflags --libs openssl 2>/dev/null || echo -lssl -lcrypto)

.PHONY: bench-operator
bench-operator: all $(OPAGENTS)
	@BUILD=$(BUILD) test/bench/operator.sh

# test/operator/t_opbench.sh (the harness at small scale) needs the simulated agents
test-operator: $(OPAGENTS)
