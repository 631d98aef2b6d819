# operator.mk — the operator's extra targets (auto-included by the top-level Makefile).
#
#   make bench-snapshot   snapshot pipeline microbenchmark at the scale of issue #6 (10 000 pods,
#                         2 000 services, 500 policies, 100 nodes), in memory, no API server.
#                         BENCH_ARGS="--pods 1000 --rounds 3" to change the scale.

SNAPSHOT_BENCH := $(BUILD)/bench/snapshot_bench

$(SNAPSHOT_BENCH): $(BUILD)/obj/test/bench/snapshot_bench.o $(call dir_objs,operator) $(LIBAMBIT)
	@mkdir -p $(@D)
	$(call msg,LD,$@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

.PHONY: bench-snapshot
bench-snapshot: $(SNAPSHOT_BENCH)
	$(SNAPSHOT_BENCH) $(BENCH_ARGS)
