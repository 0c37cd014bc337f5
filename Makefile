# ExecStream: the two set-up commands on a fresh Debian 12 machine (as root, with a Swift 6.1+
# toolchain on PATH) are `make run` and `make test`. Both install what they need.
#
#   make run     install missing apt packages, build, start the server
#   make test    install apt packages and the Python test clients (.venv), build, run every
#                Swift test and every interop test; .ci/run runs exactly this
#   make soak    the registry's model-based test with 1,000,000 sequences (release build)
#   make bench   benchmarks (release build)

SHELL := /bin/bash
SWIFT ?= swift
VENV := .venv
PYTHON := $(VENV)/bin/python
BIN_DIR = $(shell $(SWIFT) build --show-bin-path)

# What building and testing need from Debian. libnghttp2-dev is the HTTP/2 engine.
APT_PACKAGES := libnghttp2-dev pkg-config zlib1g-dev

.PHONY: run test soak bench build deps venv swift-test interop-test clean

## Install missing apt packages (only those missing: no apt run when all are present).
deps:
	@missing=""; \
	for package in $(APT_PACKAGES); do \
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

# Until the server lands (issue 4) `execstream` has no `serve`; `make run` prints its help.
run: build
	"$(BIN_DIR)/execstream" --help

swift-test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --parallel

interop-test: venv build
	EXECSTREAM_BIN="$(BIN_DIR)/execstream" $(PYTHON) -m pytest -n auto -q Tests/Interop

test: swift-test interop-test

soak: deps
	EXECSTREAM_MODEL_SEQUENCES=1000000 $(SWIFT) test -c release --filter IORegistryModelTests

bench: deps
	$(SWIFT) run -c release ExecStreamBenchmarks

clean:
	rm -rf .build $(VENV)
