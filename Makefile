# ExecStream: the two set-up commands on a fresh Debian 12 machine (as root, with a Swift 6.1+
# toolchain on PATH) are `make run` and `make test`. Both install what they need.
#
#   make run     install missing apt packages, build, start the server
#   make test    install apt packages and the Python test clients (.venv), build, run every
#                Swift test and every interop test; .ci/run runs exactly this
#   make soak    the registry's model-based test with 1,000,000 sequences (release build)
#   make bench   benchmarks (release build)
#   make fuzz    every decoder of peer bytes under libFuzzer, FUZZ_SECONDS each (Fuzz/README.md)

SHELL := /bin/bash
SWIFT ?= swift
VENV := .venv
PYTHON := $(VENV)/bin/python
BIN_DIR = $(shell $(SWIFT) build --show-bin-path)

# What building and testing need from Debian. libnghttp2-dev is the HTTP/2 engine; nghttp and
# h2load (nghttp2-client) and curl are test peers. Benchmarks also compare with nghttpd.
APT_PACKAGES := libnghttp2-dev pkg-config zlib1g-dev nghttp2-client curl systemd
BENCH_APT_PACKAGES := nghttp2-server

.PHONY: run test soak bench fuzz build deps apt-install venv swift-test interop-test clean

## Install missing apt packages (only those missing: no apt run when all are present).
deps:
	@$(MAKE) --no-print-directory apt-install PACKAGES="$(APT_PACKAGES)"

apt-install:
	@missing=""; \
	for package in $(PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$package 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$package"; \
	done; \
	python3 -c "import ensurepip, venv" 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
		echo "apt: installing$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

## The Python test clients, in a virtualenv inside the repository.
venv: $(VENV)/.installed
$(VENV)/.installed: Tests/Interop/requirements.txt | deps
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r Tests/Interop/requirements.txt
	touch $@

build: deps
	$(SWIFT) build

# The server with its embedded defaults: 127.0.0.1:10350 and /run/execstream/execstream.sock.
# `execstream` is linked into /usr/local/bin (unless another one is there) so that the client
# commands work from any terminal: execstream exec demo -- sh -c 'echo hi; exit 3'.
run: build
	@if [ -w /usr/local/bin ] && { [ ! -e /usr/local/bin/execstream ] || [ -L /usr/local/bin/execstream ]; }; then \
		ln -sf "$(BIN_DIR)/execstream" /usr/local/bin/execstream; \
	else \
		echo "execstream is $(BIN_DIR)/execstream"; \
	fi
	"$(BIN_DIR)/execstream" serve

swift-test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --parallel

interop-test: venv build
	EXECSTREAM_BIN="$(BIN_DIR)/execstream" $(PYTHON) -m pytest -n auto -q Tests/Interop

test: swift-test interop-test

soak: deps
	EXECSTREAM_MODEL_SEQUENCES=1000000 $(SWIFT) test -c release --filter IORegistryModelTests

bench: deps venv
	@$(MAKE) --no-print-directory apt-install PACKAGES="$(BENCH_APT_PACKAGES)"
	$(SWIFT) run -c release ExecStreamBenchmarks
	$(SWIFT) build -c release --product execstream
	$(SWIFT) build -c release --product ExecLatency
	$(SWIFT) build -c release --product StreamThroughput
	python3 Benchmarks/http2_throughput.py
	python3 Benchmarks/exec_bench.py
	$(PYTHON) Benchmarks/idle_sessions.py
	EXECSTREAM_BIN=.build/release/execstream $(PYTHON) Benchmarks/console_naive.py

# libFuzzer is in the toolchain. The driver is a package of its own (Fuzz/Driver): it has no main
# of its own, and gold cannot link it, so lld does.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
FUZZ_BUILD := .build-fuzz
fuzz: deps
	@# The driver depends on this package by path: plan its build anew, so moved files are seen.
	rm -f $(FUZZ_BUILD)/release.yaml
	cd Fuzz/Driver && $(SWIFT) build -c release --scratch-path ../../$(FUZZ_BUILD) \
		-Xswiftc -sanitize=fuzzer -Xswiftc -parse-as-library -Xswiftc -Xclang-linker -Xswiftc -fuse-ld=lld
	Fuzz/run.sh $(FUZZ_BUILD)/release/execstream-fuzz $(FUZZ_SECONDS) $(FUZZ_TARGETS)

clean:
	rm -rf .build $(VENV)
