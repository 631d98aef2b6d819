# ambit — top-level build.
#
# Layout rules (so that new files need no Makefile edits):
#   dataplane/*.c                 -> build/lib/libambit.a
#   <prog>/*.c (with main.c)      -> build/bin/<binary>   (see PROGRAMS below)
#   <dir>/tests/test_*.c          -> build/tests/<dir>-test_*   (cmocka; links <dir>'s objects
#                                    minus main.c, plus libambit). Extra link flags for one test
#                                    (e.g. -Wl,--wrap=socket) go in <dir>/tests/test_x.ldflags.
#   <dir>/fuzz/fuzz_*.c           -> build/fuzz/<dir>-fuzz_*   (clang libFuzzer + ASan);
#                                    corpus in <dir>/fuzz/corpus/<name>/
#   test/netns/*.sh, test/cluster/tests/*.sh, test/e2e/*.sh: integration layers (bash, test/lib)
#
# Component fragments: every `*/*.mk` and `test/*/*.mk` is included, so each area owns its
# own extra targets (cluster-up, bench-l4, ...) without editing this file.

SHELL := /bin/bash
.DEFAULT_GOAL := all

SANITIZE ?=
ifeq ($(SANITIZE),)
BUILD ?= build
else
BUILD ?= build/san
endif

CC ?= cc
ifeq ($(origin CC),default)
CC := gcc
endif
FUZZCC ?= clang

PKGS := jansson yaml-0.1 libcurl openssl libnghttp2 libmnl libnftnl libnl-3.0 libnl-route-3.0
# Recursively expanded on purpose: `make deps test` on a fresh machine installs the -dev packages
# in the same make run, so pkg-config must be asked when a recipe runs, not when make starts.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CMOCKA_LIBS = $(shell pkg-config --libs cmocka 2>/dev/null || echo -lcmocka)

WARN := -Wall -Wextra -Wshadow -Wformat=2 -Wvla -Werror
CFLAGS ?= -O2 -g
CFLAGS += -std=gnu11 -D_GNU_SOURCE $(WARN) -fno-strict-aliasing -iquote . -iquote dataplane $(PKG_CFLAGS)
LDLIBS = $(PKG_LIBS) -lpthread -lm
ifneq ($(SANITIZE),)
CFLAGS += -fsanitize=$(SANITIZE) -fno-sanitize-recover=all -fno-omit-frame-pointer -O1
LDFLAGS += -fsanitize=$(SANITIZE)
# test runs of sanitized binaries: leaks count, and reports carry stacks
export ASAN_OPTIONS ?= detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS ?= print_stacktrace=1:halt_on_error=1
endif
DEPFLAGS = -MMD -MP

# quiet by default; `make V=1` prints full commands
ifeq ($(V),1)
Q :=
msg = @true
else
Q := @
msg = @printf '  %-6s %s\n' $1 $2
endif

# program dir -> binary name
PROGRAMS := operator:ambit-operator cni-plugin:ambit-cni node-agent:ambit-node \
            waypoint:ambit-waypoint ctl:ambitctl
prog_dir = $(word 1,$(subst :, ,$1))
prog_bin = $(word 2,$(subst :, ,$1))

DP_SRCS := $(wildcard dataplane/*.c)
DP_OBJS := $(DP_SRCS:%.c=$(BUILD)/obj/%.o)
LIBAMBIT := $(BUILD)/lib/libambit.a

# objects of a program dir, excluding main.c (shared with its unit tests and fuzzers)
dir_srcs = $(filter-out $1/main.c,$(wildcard $1/*.c))
dir_objs = $(patsubst %.c,$(BUILD)/obj/%.o,$(call dir_srcs,$1))

BINS :=
define PROGRAM_RULES
$(if $(wildcard $(call prog_dir,$1)/main.c),$(eval BINS += $(BUILD)/bin/$(call prog_bin,$1)))
$(BUILD)/bin/$(call prog_bin,$1): $(BUILD)/obj/$(call prog_dir,$1)/main.o $(call dir_objs,$(call prog_dir,$1)) $(LIBAMBIT)
	@mkdir -p $$(@D)
	$$(call msg,LD,$$@)
	$$(Q)$$(CC) $$(LDFLAGS) -o $$@ $$^ $$(LDLIBS)
endef
$(foreach p,$(PROGRAMS),$(eval $(call PROGRAM_RULES,$p)))

# unit tests
TEST_DIRS := dataplane $(foreach p,$(PROGRAMS),$(call prog_dir,$p))
TEST_SRCS := $(foreach d,$(TEST_DIRS),$(wildcard $d/tests/test_*.c))
test_bin = $(BUILD)/tests/$(subst /tests/,-,$(basename $1))
TEST_BINS := $(foreach t,$(TEST_SRCS),$(call test_bin,$t))
define TEST_RULES
$(call test_bin,$1): $(BUILD)/obj/$(basename $1).o $(if $(filter dataplane/%,$1),,$(call dir_objs,$(patsubst %/tests/,%,$(dir $1)))) $(LIBAMBIT)
	@mkdir -p $$(@D)
	$$(call msg,LD,$$@)
	$$(Q)$$(CC) $$(LDFLAGS) -o $$@ $$^ $$(LDLIBS) $$(CMOCKA_LIBS) $$(shell cat $(basename $1).ldflags 2>/dev/null)
endef
$(foreach t,$(TEST_SRCS),$(eval $(call TEST_RULES,$t)))

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(call msg,CC,$<)
	$(Q)$(CC) $(CFLAGS) $(DEPFLAGS) -c -o $@ $<

$(LIBAMBIT): $(DP_OBJS)
	@mkdir -p $(@D)
	$(call msg,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

.PHONY: all lib tests
all: $(LIBAMBIT) $(BINS)
lib: $(LIBAMBIT)
tests: $(TEST_BINS)

# ---------------------------------------------------------------- fuzzing (clang libFuzzer)
FUZZ_BUILD := build/fuzz
FUZZ_CFLAGS = -g -O1 -std=gnu11 -D_GNU_SOURCE -iquote . -iquote dataplane $(PKG_CFLAGS) -fno-omit-frame-pointer
FUZZ_SRCS := $(foreach d,$(TEST_DIRS),$(wildcard $d/fuzz/fuzz_*.c))
fuzz_bin = $(FUZZ_BUILD)/bin/$(subst /fuzz/,-,$(basename $1))
FUZZ_BINS := $(foreach f,$(FUZZ_SRCS),$(call fuzz_bin,$f))
FUZZ_DP_OBJS := $(DP_SRCS:%.c=$(FUZZ_BUILD)/obj/%.o)
define FUZZ_RULES
$(call fuzz_bin,$1): $(FUZZ_BUILD)/obj/$(basename $1).o $(if $(filter dataplane/%,$1),,$(patsubst $(BUILD)/obj/%,$(FUZZ_BUILD)/obj/%,$(call dir_objs,$(patsubst %/fuzz/,%,$(dir $1))))) $(FUZZ_DP_OBJS)
	@mkdir -p $$(@D)
	$$(call msg,FUZZLD,$$@)
	$$(Q)$(FUZZCC) -fsanitize=fuzzer,address,undefined -o $$@ $$^ $$(LDLIBS)
endef
$(foreach f,$(FUZZ_SRCS),$(eval $(call FUZZ_RULES,$f)))
$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(call msg,FUZZCC,$<)
	$(Q)$(FUZZCC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all $(DEPFLAGS) -c -o $@ $<

.PHONY: fuzz fuzz-replay
fuzz: $(FUZZ_BINS)
fuzz-replay: $(FUZZ_BINS)
	@test/lib/fuzz-replay.sh $(FUZZ_BINS)

# ---------------------------------------------------------------- tests
.PHONY: test test-unit test-netns
test-unit: $(TEST_BINS)
	@BUILD=$(BUILD) test/lib/run-tests.sh unit $(TEST_BINS)

test-netns: all
	@BUILD=$(BUILD) test/lib/run-tests.sh netns $(sort $(wildcard test/netns/*.sh))

# make test: every layer that exists. TEST_LAYERS can be narrowed from the command line.
TEST_LAYERS ?= unit fuzz apps charts netns cluster e2e operator images $(EXTRA_TEST_LAYERS)
test: all $(TEST_BINS) $(if $(filter fuzz,$(TEST_LAYERS)),$(FUZZ_BINS))
	@BUILD=$(BUILD) FUZZ_BINS="$(FUZZ_BINS)" TEST_BINS="$(TEST_BINS)" \
	    test/lib/run-all.sh $(TEST_LAYERS)

# ---------------------------------------------------------------- housekeeping
DEPS_APT := build-essential pkg-config clang clang-tidy clang-format cppcheck valgrind \
	libcurl4-openssl-dev libjansson-dev libyaml-dev libssl-dev libnl-3-dev libnl-route-3-dev \
	libmnl-dev libnftnl-dev nftables libcmocka-dev libnghttp2-dev iproute2 \
	containernetworking-plugins prometheus libclang-rt-14-dev nghttp2-client nghttp2-server \
	tcpdump etcd-server openssl curl jq git python3 podman buildah debootstrap containerd
.PHONY: deps
deps:
	@missing=$$(for p in $(DEPS_APT); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
	    | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "deps: installing $$missing"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update -qq && apt-get install -y -qq $$missing >/dev/null || exit 1; \
	else echo "deps: all present"; fi

ALL_C := $(shell find dataplane operator cni-plugin node-agent waypoint ctl test -name '*.[ch]' 2>/dev/null)
.PHONY: format tidy cppcheck clean
format:
	clang-format -i $(ALL_C)
tidy:
	clang-tidy --quiet $(filter %.c,$(ALL_C)) -- $(CFLAGS)
cppcheck:
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability -I dataplane $(filter %.c,$(ALL_C))
clean:
	rm -rf build

-include $(wildcard */*.mk test/*/*.mk)
-include $(shell find $(BUILD)/obj $(FUZZ_BUILD)/obj -name '*.d' 2>/dev/null)
