# mxwarden - top-level commands. Every target installs missing Debian packages first
# (scripts/install-deps), then drives CMake/CTest. See README.md.

BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
FUZZ_SECONDS ?= 600

.PHONY: all build deps run check check-unit check-asan fuzz fuzz-smoke bench clean

all: build

deps:
	@scripts/install-deps build

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

# Until the gateway lands, "run" scans the shipped example messages.
# The gateway on the embedded default (SQLite + LMDB under var/), in the foreground.
run: build
	@for f in examples/*.eml; do echo "== $$f"; ./$(BUILD)/mxwarden scan "$$f" | tail -2; done
	@echo
	@echo "Starting the milter on unix:$(CURDIR)/var/milter.sock (Ctrl-C stops it)."
	@echo "Connect Postfix with, in main.cf:"
	@echo "    smtpd_milters = unix:$(CURDIR)/var/milter.sock"
	@echo "    milter_default_action = tempfail"
	@echo "    milter_protocol = 6"
	@echo
	@./$(BUILD)/mxwarden serve

# A short fuzz run of every parser, the unit tests under ASan+UBSan (leak
# checking on), then the normal build with every test, whose summary is the
# last thing printed.
check: build
	@$(MAKE) --no-print-directory fuzz-smoke
	@$(MAKE) --no-print-directory check-asan
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

check-asan: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DMXW_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	@cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS) -L unit

$(FUZZ_BUILD)/.configured: CMakeLists.txt
	@cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	    -DMXW_FUZZ=ON >/dev/null
	@touch $@

fuzz-smoke: deps $(FUZZ_BUILD)/.configured
	@cmake --build $(FUZZ_BUILD) -j $(JOBS)
	@tests/fuzz/run $(FUZZ_BUILD) 60

fuzz: deps $(FUZZ_BUILD)/.configured
	@cmake --build $(FUZZ_BUILD) -j $(JOBS)
	@tests/fuzz/run $(FUZZ_BUILD) $(FUZZ_SECONDS)

bench: build
	@scripts/install-deps bench
	@bench/parse
	@bench/accuracy
	@bench/bayes
	@bench/agreement
	@bench/scan
	@bench/holdqueue
	@bench/smtp
	@bench/milter

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
