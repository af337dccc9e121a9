# sipwake — build, run, test, bench.
#
#   make          build server/sipwake (optimised, warnings on)
#   make run      install missing Debian packages, build, start with the embedded defaults
#   make test     install missing packages, build with ASan/UBSan, run every test with prove
#   make bench    REGISTER, call and offline MESSAGE benchmarks against Kamailio, push
#                 throughput against h2load (on tests/bench/build/h2sink and the APNs
#                 emulator), push latency, each three times (BENCH_RUNS), ending with the
#                 medians; about an hour (see README "Benchmark")
#   make bench-readme  the latest bench tables into README.md's bench blocks
#   make bench-push-latency  the push latency part alone
#   make soak     a 10-minute mixed soak with SIGKILLs (SOAK_SECONDS, KILLS; README "Soak")
#   make fmt      clang-format the C sources; make fmt-check fails on a difference

CC      ?= cc
PKGS    := libosip2 luajit libssl libcrypto sqlite3 jansson libnghttp2 libmicrohttpd libmongoc-1.0
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
WARN    := -Wall -Wextra -Wshadow -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes \
           -Wno-unused-parameter -Wnull-dereference -Wvla
# server/ is grouped by subsystem (README "Source layout"); every subsystem's directory is on the
# include path, so a file includes another's header by its name alone.
SRC_DIRS := $(sort $(dir $(wildcard server/*/*.c)))
INC_FLAGS := $(patsubst %/,-I%,$(SRC_DIRS))
BASE_CFLAGS := -std=gnu11 -D_GNU_SOURCE $(WARN) $(PKG_CFLAGS) $(INC_FLAGS) -MMD -MP
# jemalloc: osip2 allocates per header; jemalloc does that in ~10 % fewer instructions than
# glibc malloc and returns freed memory to the system (measured with callgrind; see README).
# The sanitizer build keeps the sanitizers' own allocator. SIPWAKE_JEMALLOC: the release code
# may use jemalloc's own API (util_malloc_lasting: bindings in an arena of their own).
LIBS    := $(PKG_LIBS) -lev -lpthread -lm
ALLOC_LIBS := -ljemalloc

RELEASE_CFLAGS := -O2 -g -DSIPWAKE_JEMALLOC
ASAN_CFLAGS    := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
                  -fno-sanitize-recover=undefined
ASAN_LDFLAGS   := -fsanitize=address,undefined

MIGRATIONS_C := server/store/store_sqlite_migrations.c
MONGO_MIGRATIONS_C := server/store/store_mongo_migrations.c
SRCS := $(sort $(filter-out $(MIGRATIONS_C) $(MONGO_MIGRATIONS_C),$(wildcard server/*/*.c)) \
          $(MIGRATIONS_C) $(MONGO_MIGRATIONS_C))
LIB_SRCS := $(filter-out server/core/main.c,$(SRCS))
MIGRATIONS := $(sort $(wildcard schemas/sqlite/*.sql))
MONGO_MIGRATIONS := $(sort $(wildcard schemas/mongo/*.json))

REL_OBJS  := $(SRCS:server/%.c=server/build-release/%.o)
ASAN_OBJS := $(SRCS:server/%.c=server/build-asan/%.o)
ASAN_LIB_OBJS := $(LIB_SRCS:server/%.c=server/build-asan/%.o)

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=tests/unit/build/%.t)

# Debian packages: what building needs, and what the tests need on top.
DEB_BUILD := build-essential pkg-config libosip2-dev libev-dev libluajit-5.1-dev libssl-dev \
             libsqlite3-dev libnghttp2-dev libjansson-dev libjemalloc-dev libmicrohttpd-dev \
             libmongoc-dev openssl
DEB_TEST  := sip-tester libio-socket-ssl-perl sqlite3 perl clang-format clang libclang-rt-14-dev \
             kamailio python3-h2 python3-jsonschema chromium iproute2 strace python3-pymongo
DEB_BENCH := kamailio kamailio-sqlite-modules sip-tester sqlite3 nghttp2-client python3-h2 \
             python3-cryptography libio-socket-ssl-perl tcpdump
DEB_SOAK  := sip-tester sqlite3 curl openssl python3-h2 python3-cryptography libio-socket-ssl-perl
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all run test unit-build fuzz fuzz-build bench bench-readme bench-push-latency soak deps deps-test deps-browser fmt fmt-check clean \
        readme-config hook-schemas
.DEFAULT_GOAL := all

all: server/sipwake

server/sipwake: $(REL_OBJS)
	$(CC) -o $@ $^ $(LIBS) $(ALLOC_LIBS)

server/build-asan/sipwake: $(ASAN_OBJS)
	$(CC) $(ASAN_LDFLAGS) -o $@ $^ $(LIBS)

server/build-release/%.o: server/%.c
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) $(RELEASE_CFLAGS) -c -o $@ $<

server/build-asan/%.o: server/%.c
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) $(ASAN_CFLAGS) -c -o $@ $<

tests/unit/build:
	mkdir -p $@

$(MIGRATIONS_C): $(MIGRATIONS) schemas/sqlite/embed.pl
	perl schemas/sqlite/embed.pl sqlite $(MIGRATIONS) > $@.tmp && mv $@.tmp $@

$(MONGO_MIGRATIONS_C): $(MONGO_MIGRATIONS) schemas/sqlite/embed.pl
	perl schemas/sqlite/embed.pl mongo $(MONGO_MIGRATIONS) > $@.tmp && mv $@.tmp $@

# Unit tests may #include the .c they test to reach its statics; they link every other
# module object.
tests/unit/build/%.t: tests/unit/%.c $(ASAN_LIB_OBJS) tests/unit/tap.h | tests/unit/build
	$(CC) $(BASE_CFLAGS) $(ASAN_CFLAGS) -Itests/unit -o $@ $< \
	  $(filter-out %/$(subst test_,,$*).o,$(ASAN_LIB_OBJS)) \
	  $(ASAN_LDFLAGS) $(LIBS)

REL_LIB_OBJS := $(LIB_SRCS:server/%.c=server/build-release/%.o)

# tests/unit/rel_*.c test what only the release build shows (the allocator that ships,
# jemalloc): built like server/sipwake, from the release objects, without the sanitizers.
REL_UNIT_SRCS := $(wildcard tests/unit/rel_*.c)
REL_UNIT_BINS := $(REL_UNIT_SRCS:tests/unit/%.c=tests/unit/build/%.t)
tests/unit/build/rel_%.t: tests/unit/rel_%.c $(REL_LIB_OBJS) tests/unit/tap.h | tests/unit/build
	$(CC) $(BASE_CFLAGS) $(RELEASE_CFLAGS) -Itests/unit -o $@ $< $(REL_LIB_OBJS) $(LIBS) $(ALLOC_LIBS)

unit-build: $(UNIT_BINS) $(REL_UNIT_BINS)

tests/bench/build/push_bench: tests/bench/push_bench.c $(REL_LIB_OBJS)
	@mkdir -p tests/bench/build
	$(CC) $(BASE_CFLAGS) $(RELEASE_CFLAGS) -o $@ $< $(REL_LIB_OBJS) $(LIBS) $(ALLOC_LIBS)

# The HTTP/2 sink push.sh measures sipwake's push client and h2load against (benchmarks only).
tests/bench/build/h2sink: tests/bench/h2sink.c
	@mkdir -p tests/bench/build
	$(CC) $(BASE_CFLAGS) $(RELEASE_CFLAGS) -o $@ $< $(LIBS)

# libFuzzer targets (clang): the SIP input through the real dispatch, the REGISTER path with
# Digest, the pn-* parser, the config parser, the MI. `make fuzz` fuzzes each for FUZZ_SECONDS;
# `make test` replays their seed corpora through them once (tests/fuzz/replay.t). The server's
# files are compiled once for all targets (with coverage for libFuzzer); the dispatch targets
# link tests/fuzz/fuzz_server.c, sipwake wired as main.c wires it without sockets.
FUZZ_SECONDS ?= 60
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS := -std=gnu11 -D_GNU_SOURCE $(PKG_CFLAGS) $(INC_FLAGS) -g -O1 -fno-omit-frame-pointer
FUZZ_TARGETS := sip_input register pn config admin_mi
FUZZ_BINS := $(FUZZ_TARGETS:%=tests/fuzz/build/fuzz_%)
FUZZ_LIB_OBJS := $(LIB_SRCS:server/%.c=tests/fuzz/build/obj/%.o)
# each target's seeds (the first directory of `make fuzz` is var/fuzz-corpus-TARGET)
FUZZ_CORPUS_sip_input := tests/fuzz/corpus tests/torture/rfc4475 tests/torture/rfc5118
FUZZ_CORPUS_register := tests/fuzz/corpus-register
FUZZ_CORPUS_pn := tests/fuzz/corpus-pn
FUZZ_CORPUS_config := tests/fuzz/corpus-config
FUZZ_CORPUS_admin_mi := tests/fuzz/corpus-mi
FUZZ_MAX_LEN_sip_input := 8192
FUZZ_MAX_LEN_register := 4096
FUZZ_MAX_LEN_pn := 1024
FUZZ_MAX_LEN_config := 4096
FUZZ_MAX_LEN_admin_mi := 4096

tests/fuzz/build/obj/%.o: server/%.c
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) -MMD -MP -fsanitize=fuzzer-no-link $(FUZZ_SAN) -c -o $@ $<

tests/fuzz/build/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_server.c tests/fuzz/fuzz_server.h \
                        $(FUZZ_LIB_OBJS)
	clang $(FUZZ_CFLAGS) -Itests/fuzz -fsanitize=fuzzer $(FUZZ_SAN) -o $@ $< \
	  tests/fuzz/fuzz_server.c $(FUZZ_LIB_OBJS) $(LIBS)

fuzz-build: $(FUZZ_BINS)

fuzz: deps-test fuzz-build
	$(foreach t,$(FUZZ_TARGETS),mkdir -p var/fuzz-corpus-$(t) && \
	  tests/fuzz/build/fuzz_$(t) -max_total_time=$(FUZZ_SECONDS) -max_len=$(FUZZ_MAX_LEN_$(t)) \
	    -artifact_prefix=var/fuzz-crash-$(t)- var/fuzz-corpus-$(t) $(FUZZ_CORPUS_$(t)) && ) true

.SECONDARY: $(FUZZ_LIB_OBJS)
-include $(FUZZ_LIB_OBJS:.o=.d)

deps:
	@missing=""; for p in $(DEB_BUILD) $(EXTRA_DEBS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' \
	    || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

deps-test:
	@$(MAKE) --no-print-directory deps EXTRA_DEBS="$(DEB_TEST)"
	@$(MAKE) --no-print-directory deps-browser

# The browser tests: Node.js (Debian's when the machine has none) and playwright-core from npm,
# as pinned in tests/browser/package-lock.json; it drives Debian's chromium, never a download.
deps-browser:
	@if ! command -v node >/dev/null || ! command -v npm >/dev/null; then \
	  echo "installing Debian packages: nodejs npm"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; \
	fi
	@[ -f tests/browser/node_modules/playwright-core/package.json ] || \
	  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)

run: deps
	@$(MAKE) --no-print-directory all
	./server/sipwake

test: deps-test
	@$(MAKE) --no-print-directory server/build-asan/sipwake unit-build fuzz-build
	SIPWAKE_BIN=$(CURDIR)/server/build-asan/sipwake \
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
	  prove -r $(PROVE_FLAGS) tests/unit/build tests/policy tests/fuzz tests/integration tests/browser tests/bench/t

# Each figure-producing script BENCH_RUNS times (tests/bench/runs.sh; push.sh once: it runs
# three rounds of both tools itself, push_latency.sh three runs itself), then every table, the
# medians (tests/bench/report.pl), as the README's bench blocks hold them (`make bench-readme`).
BENCH_RUNS ?= 3
bench:
	@$(MAKE) --no-print-directory deps EXTRA_DEBS="$(DEB_BENCH)"
	@$(MAKE) --no-print-directory all tests/bench/build/push_bench tests/bench/build/h2sink
	RUNS=$(BENCH_RUNS) TARGETS="kamailio-mem sipwake" tests/bench/runs.sh register tests/bench/register.sh
	RUNS=$(BENCH_RUNS) tests/bench/runs.sh calls tests/bench/calls.sh
	RUNS=1 tests/bench/runs.sh push tests/bench/push.sh
	RUNS=$(BENCH_RUNS) tests/bench/push_latency.sh
	RUNS=$(BENCH_RUNS) tests/bench/runs.sh messages tests/bench/messages.sh
	@tests/bench/report.pl --latest

# Copy the latest tables (var/bench/*-{register,calls,push,messages}/table.md) into README.md's
# bench blocks, byte for byte.
bench-readme:
	tests/bench/report.pl --readme README.md

# Push latency alone (README "Push latency"): about a minute.
bench-push-latency:
	@$(MAKE) --no-print-directory deps EXTRA_DEBS="$(DEB_BENCH)"
	@$(MAKE) --no-print-directory all
	tests/bench/push_latency.sh

# Bounded: SOAK_SECONDS (600) of load, then at most a minute of draining.
soak:
	@$(MAKE) --no-print-directory deps EXTRA_DEBS="$(DEB_SOAK)"
	@$(MAKE) --no-print-directory all
	tests/bench/soak.sh

# the C sources we write (not the generated migrations table)
FMT_SRCS = $(filter-out $(MIGRATIONS_C) $(MONGO_MIGRATIONS_C),$(wildcard server/*/*.[ch])) \
           $(wildcard tests/unit/*.[ch] tests/fuzz/*.c)

fmt:
	clang-format -i $(FMT_SRCS)

fmt-check:
	@clang-format --dry-run --Werror $(FMT_SRCS)

clean:
	rm -rf server/build-release server/build-asan server/sipwake tests/unit/build tests/fuzz/build \
	  tests/bench/build \
	  $(MIGRATIONS_C) $(MONGO_MIGRATIONS_C)

-include $(REL_OBJS:.o=.d) $(ASAN_OBJS:.o=.d)

# Regenerate the README's configuration table from the binary's own key table.
readme-config: server/sipwake
	./server/sipwake --config-doc > .config-doc.tmp
	perl -0pi -e 'my $$d = do { local $$/; open my $$f, "<", ".config-doc.tmp" or die; <$$f> }; $$d =~ s/\n\z//; s/(<!-- config-doc:begin -->\n).*?(\n<!-- config-doc:end -->)/$$1$$d$$2/s' README.md
	rm -f .config-doc.tmp

# Regenerate schemas/hooks/*.json from the binary's decision tables (server/policy/lua_hook_decision.c).
hook-schemas: server/sipwake
	./server/sipwake --hook-schemas schemas/hooks
