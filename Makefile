# pk — make test · make bench · make sanitize · make fuzz · make stress · make install
#
# Everything works on a bare Debian with a C compiler, make and pthreads. Optional tools (clang,
# g++, sanitizers, cmake, git, pkg-config, hyperfine, valgrind, the benchmark peers) are detected;
# a missing one is reported with the package that provides it and skipped, never a failure.

CC       ?= cc
PREFIX   ?= /usr/local
BUILD    ?= build
QUICK    ?=
FUZZ_SECONDS   ?= 60
STRESS_SECONDS ?= 60

HEADERS  := pk_cache.h pk_pool.h pk_exec.h pk_prof.h pk_dedup.h
VERSION  := 0.1.0

.PHONY: all test bench sanitize fuzz stress install uninstall clean help

all: test

help:
	@echo "make test       build and run every test: plain, ASan+UBSan, TSan; doc examples; packaging"
	@echo "make bench      run every benchmark and scenario; writes bench/results.{md,json,svg} (QUICK=1: ~1 min)"
	@echo "make sanitize   the test suite under ASan+UBSan, TSan, and valgrind memcheck"
	@echo "make fuzz       libFuzzer targets in tests/fuzz, FUZZ_SECONDS each (default 60)"
	@echo "make stress     tests/stress_*.c for STRESS_SECONDS each (default 60), plain and TSan"
	@echo "make install    headers to PREFIX/include, pk.pc to PREFIX/lib/pkgconfig (PREFIX=$(PREFIX))"

test:
	@CC="$(CC)" BUILD="$(BUILD)" bash tests/run.sh test

sanitize:
	@CC="$(CC)" BUILD="$(BUILD)" bash tests/run.sh sanitize

fuzz:
	@BUILD="$(BUILD)" FUZZ_SECONDS="$(FUZZ_SECONDS)" bash tests/run.sh fuzz

stress:
	@CC="$(CC)" BUILD="$(BUILD)" STRESS_SECONDS="$(STRESS_SECONDS)" bash tests/run.sh stress

bench:
	@CC="$(CC)" BUILD="$(BUILD)" QUICK="$(QUICK)" bash bench/run.sh

install:
	install -d "$(DESTDIR)$(PREFIX)/include" "$(DESTDIR)$(PREFIX)/lib/pkgconfig"
	install -m 644 $(wildcard $(HEADERS)) "$(DESTDIR)$(PREFIX)/include/"
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' pk.pc.in > "$(DESTDIR)$(PREFIX)/lib/pkgconfig/pk.pc"

uninstall:
	cd "$(DESTDIR)$(PREFIX)/include" && rm -f $(HEADERS)
	rm -f "$(DESTDIR)$(PREFIX)/lib/pkgconfig/pk.pc"

clean:
	rm -rf "$(BUILD)"
