# trailhound: build, run, test, install.
#
#   make run      build, then tail the bundled examples with the bundled rules
#   make test     every test: luacheck, C units, fuzz harnesses (a short fixed-seed
#                 run), busted specs (Lua units and the binary end to end), the same
#                 end-to-end specs under ASan+UBSan, and a valgrind replay; ends with
#                 "N passed, N failed"
#   make install  PREFIX=/usr/local DESTDIR=
#   make fuzz     by hand, with clang: libFuzzer builds of the fuzz harnesses for
#                 long runs (tests/fuzz/README.md)
#   make bench    by hand: throughput, memory and alert latency next to jq, grep
#                 and a lua-cjson loop on one CloudTrail corpus (tests/bench/README.md)

PREFIX  ?= /usr/local
DESTDIR ?=
VERSION := 0.1.0

DEBS := liblua5.4-dev lua5.4 lua-cjson libuv1-dev lua-busted lua-check zlib1g-dev libseccomp-dev pkg-config valgrind \
        libcurl4-openssl-dev python3 lua-yaml libmaxminddb-dev

# libcurl (libcurl4-openssl-dev) is not linked: its headers are used, and the library is opened
# with dlopen when an HTTP output is (host/curlloop.h).
# lua-yaml (LibYAML's binding, module lyaml) reads Sigma rules' YAML: `trailhound import`, in the
# command's own Lua state, and the specs; the host process and the workers never load it.
# libmaxminddb (libmaxminddb-dev) reads MaxMind's GeoLite2/GeoIP2 databases for source.as.* and
# source.geo.* (--geoip-asn, --geoip-city), in the workers.
PKGS    := lua5.4 libuv zlib libseccomp libmaxminddb
CC      ?= cc
CFLAGS  ?= -O2 -g
WARN    := -std=c11 -Wall -Wextra -Werror -D_XOPEN_SOURCE=700
DEFS    := -DTH_VERSION='"$(VERSION)"' -DTH_SRCDIR='"$(CURDIR)"'
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) libcurl)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS))
SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer

SRCS := $(wildcard host/*.c host/worker/*.c)
HDRS := $(wildcard host/*.h host/worker/*.h)
LIB_SRCS := $(filter-out host/main.c,$(SRCS))

BIN      := build/trailhound
ASAN_BIN := build/asan/trailhound
# The test build with a deliberate hole in the Lua sandbox (engine.c,
# TH_TEST_HOLE), to show that the workers' seccomp filter holds on its own.
HOLE_BIN := build/hole/trailhound

.PHONY: all deps run test install uninstall clean asan bench fuzz

all: $(BIN)

# Install any missing Debian package; quick and silent when all are there.
deps:
	@missing=""; for p in $(DEBS); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

$(BIN): $(SRCS) $(HDRS) Makefile | deps
	@mkdir -p $(dir $@)
	$(CC) $(WARN) $(CFLAGS) $(DEFS) $(PKG_CFLAGS) -o $@ $(SRCS) $(PKG_LIBS)

# The sanitizer build's objects, compiled once for the binary, the C tests and the fuzz drivers.
SAN_OBJS := $(patsubst %.c,build/san-obj/%.o,$(LIB_SRCS))

build/san-obj/%.o: %.c $(HDRS) Makefile | deps
	@mkdir -p $(dir $@)
	$(CC) $(WARN) -O1 -g $(SAN) $(DEFS) -Ihost $(PKG_CFLAGS) -c -o $@ $<

$(ASAN_BIN): build/san-obj/host/main.o $(SAN_OBJS) | deps
	@mkdir -p $(dir $@)
	$(CC) $(SAN) -o $@ $^ $(PKG_LIBS)

asan: $(ASAN_BIN)

$(HOLE_BIN): $(SRCS) $(HDRS) Makefile | deps
	@mkdir -p $(dir $@)
	$(CC) $(WARN) $(CFLAGS) $(DEFS) -DTH_TEST_HOLE $(PKG_CFLAGS) -o $@ $(SRCS) $(PKG_LIBS)

# C unit tests, built with the sanitizers.
build/tests/%: tests/c/%.c tests/c/tap.h $(SAN_OBJS) $(HDRS) | deps
	@mkdir -p $(dir $@)
	$(CC) $(WARN) -O1 -g $(SAN) $(DEFS) -Ihost $(PKG_CFLAGS) -o $@ $< $(SAN_OBJS) $(PKG_LIBS)

C_TESTS := $(patsubst tests/c/%.c,build/tests/%,$(wildcard tests/c/*.c))

# Fuzz harnesses (tests/fuzz/README.md), one per parser of untrusted bytes. In
# `make test` each runs under driver.c, built with the sanitizers like the C
# tests: its seed corpus, then fixed-seed mutations of it.
FUZZ_NAMES   := $(patsubst tests/fuzz/%_fuzz.c,%,$(wildcard tests/fuzz/*_fuzz.c))
FUZZ_DRIVERS := $(addprefix build/fuzz/,$(FUZZ_NAMES))
FUZZ_COMMON  := tests/fuzz/fuzz.c tests/fuzz/fuzz.h

build/fuzz/%: tests/fuzz/%_fuzz.c tests/fuzz/driver.c $(FUZZ_COMMON) $(SAN_OBJS) $(HDRS) | deps
	@mkdir -p $(dir $@)
	$(CC) $(WARN) -O1 -g $(SAN) $(DEFS) -DFUZZ_NAME='"$*"' -Ihost $(PKG_CFLAGS) -o $@ \
	  $< tests/fuzz/driver.c tests/fuzz/fuzz.c $(SAN_OBJS) $(PKG_LIBS)

# The same harnesses linked with libFuzzer, for long runs by hand: needs clang
# (apt-get install clang; not installed by `make deps`). clang warns of the
# fields libseccomp's SCMP_A0(op, value) leaves to zero (seccomp.c); gcc does not.
FUZZ_CC    ?= clang
LIBFUZZERS := $(addprefix build/libfuzzer/,$(FUZZ_NAMES))

build/libfuzzer/%: tests/fuzz/%_fuzz.c $(FUZZ_COMMON) $(LIB_SRCS) $(HDRS) | deps
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(WARN) -Wno-missing-field-initializers -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	  -fno-omit-frame-pointer $(DEFS) -Ihost $(PKG_CFLAGS) -o $@ \
	  $< tests/fuzz/fuzz.c $(LIB_SRCS) $(PKG_LIBS)

fuzz:
	@command -v $(FUZZ_CC) >/dev/null || { echo "make fuzz needs $(FUZZ_CC) with libFuzzer: apt-get install clang"; exit 1; }
	@$(MAKE) --no-print-directory $(LIBFUZZERS)
	@mkdir -p build/fuzz/failures $(addprefix build/fuzz-corpus/,$(FUZZ_NAMES))
	@echo "built $(LIBFUZZERS); to run one, see tests/fuzz/README.md, e.g.:"
	@echo "  nice build/libfuzzer/glob -dict=tests/fuzz/glob.dict \\"
	@echo "    -max_len=4096 -max_total_time=600 -artifact_prefix=build/fuzz/failures/ \\"
	@echo "    build/fuzz-corpus/glob tests/fuzz/corpus/glob"

# A fresh state each time, so every `make run` shows the examples' alerts.
run: deps $(BIN)
	@rm -f build/make-run.state
	$(BIN) run --state build/make-run.state examples/cloudtrail/*.ndjson examples/ecs/*.ndjson examples/s3/*.json.gz

# The builds on every core (the sanitizer objects once for all), then the tests.
test: deps
	@$(MAKE) --no-print-directory -j$$(nproc) $(BIN) $(ASAN_BIN) $(HOLE_BIN) $(C_TESTS) $(FUZZ_DRIVERS)
	@bash tests/run.sh

# Figures, not tests: run by hand, never by `make test`.
bench: deps $(BIN)
	@bash tests/bench/run.sh

install: $(BIN)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/trailhound/scripts/commands \
	  $(DESTDIR)$(PREFIX)/share/trailhound/rules
	install -m 755 $(BIN) $(DESTDIR)$(PREFIX)/bin/trailhound
	install -m 644 scripts/*.lua $(DESTDIR)$(PREFIX)/share/trailhound/scripts/
	install -m 644 scripts/commands/*.lua $(DESTDIR)$(PREFIX)/share/trailhound/scripts/commands/
	install -m 644 rules/*.lua $(DESTDIR)$(PREFIX)/share/trailhound/rules/
	install -d $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/bash-completion/completions \
	  $(DESTDIR)$(PREFIX)/lib/systemd/system $(DESTDIR)$(PREFIX)/share/doc/trailhound
	install -m 644 man/trailhound.1 $(DESTDIR)$(PREFIX)/share/man/man1/trailhound.1
	install -m 644 completion/trailhound.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/trailhound
	sed 's|/usr/local/|$(PREFIX)/|g' examples/trailhound.service > $(DESTDIR)$(PREFIX)/lib/systemd/system/trailhound.service
	sed 's|/usr/local/|$(PREFIX)/|g' examples/trailhound.lua > $(DESTDIR)$(PREFIX)/share/doc/trailhound/trailhound.lua

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/trailhound $(DESTDIR)$(PREFIX)/share/man/man1/trailhound.1 \
	  $(DESTDIR)$(PREFIX)/share/bash-completion/completions/trailhound \
	  $(DESTDIR)$(PREFIX)/lib/systemd/system/trailhound.service
	rm -rf $(DESTDIR)$(PREFIX)/share/trailhound $(DESTDIR)$(PREFIX)/share/doc/trailhound

clean:
	rm -rf build
