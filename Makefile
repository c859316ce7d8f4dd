# espfast — the README's two commands are `make demo` and `make test`.
# Both install what they need (apt packages, a venv with the Python packages),
# build the C dataplane, and are cheap to run again.

SHELL      := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON     ?= python3
VENV       := .venv
PY         := $(VENV)/bin/python
BUILD      := build

# System packages (Debian 12). The peers (strongSwan, iperf3) are real test dependencies;
# systemd for `systemd-analyze verify` of packaging/espfast.service, shellcheck for .ci/.
# CI runs the suite in a fresh minimal Debian root with nothing but these
# (.ci/freshroot): a package missing here fails there, and `make preflight` names it.
APT_PKGS := build-essential pkg-config libssl-dev libffi-dev python3-dev python3-venv \
            iproute2 iputils-ping iperf3 tcpdump nftables procps openssl \
            strongswan-charon strongswan-swanctl libcharon-extra-plugins strongswan-pki \
            libstrongswan-standard-plugins libcharon-extauth-plugins \
            clang-14 libclang-rt-14-dev systemd shellcheck freeradius
# (freeradius: the RADIUS server of the EAP-RADIUS tests, run from a private config dir;
# libcharon-extauth-plugins: charon's eap-mschapv2; clang-14 for the fuzzers;
# libclang-rt-14-dev ships libFuzzer's runtime, libclang_rt.fuzzer, beside the ASan/UBSan
# ones that -fsanitize=fuzzer,... links)
BENCH_APT_PKGS := wireguard-go wireguard-tools openvpn ethtool linux-perf

CC       ?= gcc
CWARN    := -Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wstrict-prototypes
CFLAGS_C := -std=gnu11 -O2 -g $(CWARN) -D_GNU_SOURCE -pthread
SAN      := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
CSRC     := $(wildcard csrc/*.c)
CHDR     := $(wildcard csrc/*.h) csrc/api.cdef
CTESTS   := $(wildcard csrc/tests/*.c)
EXT_STAMP := $(BUILD)/.ext-stamp

.PHONY: demo test deps apt venv ext preflight lint typecheck ctest fuzz-smoke fuzz pytest bench bench-roam \
        bench-rwload \
        freshroot clean

demo: deps ext
	$(VENV)/bin/espfast demo

test: deps ext preflight lint typecheck ctest fuzz-smoke pytest

# `make test` in a brand-new minimal Debian root (what CI runs: .ci/run); as root.
freshroot:
	.ci/freshroot make test

deps: apt venv

apt:
	@missing=""; for p in $(APT_PKGS) $(EXTRA_APT); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing$$missing"; \
	  apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Use-Pty=0 --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.installed

# espfast is installed into the venv by pip, through the same build (pyproject.toml,
# setup.py's cffi_modules) as `pip install .` and a wheel: editable, so the tests and the
# demo run this tree's Python code; pip builds the C extension in place.
$(VENV)/.installed: pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel cffi
	$(PY) -m pip install -q -e '.[test]'
	touch $@
	mkdir -p $(BUILD) && touch $(EXT_STAMP)

# The cffi extension, rebuilt (by pip, as above) whenever the C sources change; and the
# bytecode of this tree's Python, written now (compileall skips what is current) so that
# every start of a daemon reads it, even under PYTHONDONTWRITEBYTECODE (set in many
# container images), instead of compiling ~80 modules again (ready in 0.4-0.5 s, not 0.75).
ext: $(EXT_STAMP)
	@$(PY) -m compileall -q espfast control > /dev/null

$(EXT_STAMP): $(CSRC) $(CHDR) csrc/build_ffi.py $(VENV)/.installed
	mkdir -p $(BUILD)
	$(PY) -m pip install -q --no-build-isolation --no-deps -e .
	touch $@

# Every outside program the tests drive works (charon and its plugins, pki, iperf3, nft,
# /dev/net/tun ...); otherwise one line per problem naming the package to install.
preflight: deps ext
	$(PY) -m tests.preflight

lint: venv
	$(VENV)/bin/ruff check espfast control tests bench
	$(VENV)/bin/ruff format --check espfast control tests bench
	shellcheck .ci/run .ci/freshroot

# control/ is installed as espfast.control; mypy checks it under that name through a
# tree of symlinks that mirrors the installed layout.
typecheck: venv
	rm -rf $(BUILD)/typecheck && mkdir -p $(BUILD)/typecheck
	cp -rs $(CURDIR)/espfast $(BUILD)/typecheck/espfast
	cp -rs $(CURDIR)/control $(BUILD)/typecheck/espfast/control
	cd $(BUILD)/typecheck && $(CURDIR)/$(VENV)/bin/mypy --config-file $(CURDIR)/pyproject.toml \
	  --cache-dir $(CURDIR)/$(BUILD)/mypy-cache -p espfast

# The C unit tests: once optimized, once under AddressSanitizer + UBSan.
ctest: $(BUILD)/ctest $(BUILD)/ctest-san
	$(BUILD)/ctest
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 $(BUILD)/ctest-san

$(BUILD)/ctest: $(CSRC) $(CHDR) $(CTESTS)
	mkdir -p $(BUILD)
	$(CC) $(CFLAGS_C) -Icsrc -o $@ $(CSRC) $(CTESTS) -lcrypto

$(BUILD)/ctest-san: $(CSRC) $(CHDR) $(CTESTS)
	mkdir -p $(BUILD)
	$(CC) $(CFLAGS_C) -O1 $(SAN) -Icsrc -o $@ $(CSRC) $(CTESTS) -lcrypto

# libFuzzer harnesses (csrc/fuzz/): the decap path, the offload paths and the plain-ESP
# framing (raw.c), under ASan and UBSan. The committed seeds (csrc/fuzz/corpus/, made by csrc/fuzz/make_corpus.py) are
# read-only; what the fuzzer adds goes to build/fuzz-corpus/. `make test` runs each for
# FUZZ_SMOKE_S seconds, `make fuzz` for FUZZ_S; a crash leaves build/fuzz-NAME-crash-*.
FUZZ_CC      := clang-14
FUZZ_CFLAGS  := -std=gnu11 -O1 -g $(CWARN) -D_GNU_SOURCE -pthread \
                -fsanitize=fuzzer,address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
FUZZERS      := decap offload raw
FUZZ_SMOKE_S ?= 5
FUZZ_S       ?= 600

$(BUILD)/fuzz-%: csrc/fuzz/fuzz_%.c $(CSRC) $(CHDR)
	mkdir -p $(BUILD)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Icsrc -o $@ $(CSRC) $< -lcrypto

define run_fuzzers
	for f in $(FUZZERS); do \
	  mkdir -p $(BUILD)/fuzz-corpus/$$f; \
	  echo "fuzz $$f: $(1) s"; \
	  $(BUILD)/fuzz-$$f -max_total_time=$(1) -print_final_stats=1 \
	    -artifact_prefix=$(BUILD)/fuzz-$$f- $(BUILD)/fuzz-corpus/$$f csrc/fuzz/corpus/$$f \
	    > $(BUILD)/fuzz-$$f.log 2>&1 || { tail -n 60 $(BUILD)/fuzz-$$f.log; exit 1; }; \
	  grep -E '^stat::number_of_executed_units' $(BUILD)/fuzz-$$f.log; \
	done
endef

fuzz-smoke: apt $(FUZZERS:%=$(BUILD)/fuzz-%)
	$(call run_fuzzers,$(FUZZ_SMOKE_S))

fuzz: apt $(FUZZERS:%=$(BUILD)/fuzz-%)
	$(call run_fuzzers,$(FUZZ_S))

pytest: deps ext
	$(PY) -m pytest -q --durations=30 $(PYTEST_ARGS)

# WIREGUARD_GO=/path: the wireguard-go binary to compare against (default: PATH's; see the
# README: Debian's build has none of the newest wireguard-go's offloads).
bench: EXTRA_APT = $(BENCH_APT_PKGS)
# Then the mobile reconnect (bench-roam) too, unless ROAM=no.
bench: deps ext
	WIREGUARD_GO="$(WIREGUARD_GO)" $(PY) -m bench $(BENCH_ARGS)
	if [ "$(ROAM)" != no ]; then WIREGUARD_GO="$(WIREGUARD_GO)" $(PY) -m bench roam $(ROAM_ARGS); fi

# The mobile reconnect: espfast (MOBIKE), wireguard-go and OpenVPN across uplink switches.
bench-roam: EXTRA_APT = $(BENCH_APT_PKGS)
bench-roam: deps ext
	WIREGUARD_GO="$(WIREGUARD_GO)" $(PY) -m bench roam $(ROAM_ARGS)

# 1,000 road warriors (and a few charons) on one gateway: bring-up, memory, per-packet cost.
bench-rwload: EXTRA_APT = $(BENCH_APT_PKGS)
bench-rwload: deps ext
	$(PY) -m bench rwload $(RWLOAD_ARGS)

clean:
	rm -rf $(BUILD) espfast/_dataplane*.so espfast/_dataplane.c
