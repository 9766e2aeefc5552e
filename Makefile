# Two commands matter: `make run` and `make test`. Each installs what is missing first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
GEN := gen
BUILD := build
DESCRIPTOR := $(BUILD)/clearbg.pb
PROTOS := $(shell find proto -name '*.proto')
TOOLS := .tools
BUF := $(TOOLS)/node_modules/.bin/buf
BUF_VERSION := 1.75.0
BROWSER_TESTS := tests/e2e/browser

.PHONY: run test soak fuzz debs sdk-venv test-node test-sdk-python test-ruby test-php test-dotnet rest-sdk-deps browser-deps deps gen model lint-proto stubs stubs-deps clean bench-quality bench-tune bench-speed bench-gpu bench-gpu-bundle

run: deps
	$(PY) -m service.launcher

# Every fuzz target (fuzz/targets.py) for FUZZ_SECONDS each (make test runs them for seconds);
# what they find that is new is kept in build/fuzz/ for the next run, crashes in build/fuzz-crashes/.
FUZZ_SECONDS ?= 300
fuzz: deps
	$(PY) -m fuzz.run --seconds $(FUZZ_SECONDS) --keep $(BUILD)/fuzz

# The suite runs on TEST_WORKERS processes (pytest-xdist, each test file on one of them): most of
# its time is spent waiting on servers, browsers and subprocesses, so more workers than cores pay
# (README's table). Then the tests marked serial, alone, and the Python SDK's own suite. The
# slowest are printed on every run: CI's log then shows where the suite's time goes on each CPU.
# What runs before the suite is independent once the venv and Debian's packages are in (one
# apt-get for all, as two at once would meet dpkg's lock), so it runs side by side (-j), each
# step's output printed whole when it ends.
TEST_WORKERS ?= 4
test: deps debs
	$(MAKE) --no-print-directory -j4 --output-sync=target lint-proto test-node test-ruby test-php test-dotnet browser-deps stubs sdk-venv
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadscope -m "not serial" --durations=15 $(PYTEST_ARGS)
	@# Exit status 5: PYTEST_ARGS chose no serial test.
	$(PY) -m pytest -m serial --durations=5 $(PYTEST_ARGS) || [ $$? -eq 5 ]
	$(MAKE) test-sdk-python

# Every Debian package the steps above ask for, in one apt-get, only for what dpkg says is missing.
# $(call apt_missing,packages): apt-get installs those dpkg does not know, nothing when none.
apt_missing = @missing=$$(for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then echo "installing:" $$missing; apt-get update && apt-get install -y $$missing; fi

debs:
	$(call apt_missing,$(REST_SDK_DEBS) $(STUBS_DEBS) chromium)

# The Python SDK (clients/python) installed as a user installs it, into a venv of its own, and
# its own tests run from there: unit tests against fake servers, end to end against the real
# service (which they start with this checkout's .venv, hence deps).
SDK_VENV := .venv-sdk
SDK_FILES := clients/python/setup.py clients/python/pyproject.toml $(shell find clients/python/src -name '*.py' -o -name py.typed)
test-sdk-python: deps sdk-venv
	cd clients/python && ../../$(SDK_VENV)/bin/python -m pytest $(SDK_PYTEST_ARGS)

sdk-venv: $(SDK_VENV)/.installed

$(SDK_VENV)/.installed: $(SDK_FILES) $(PROTOS)
	test -x $(SDK_VENV)/bin/python || $(PYTHON) -m venv $(SDK_VENV)
	$(SDK_VENV)/bin/python -m pip install --quiet './clients/python[grpc,test]'
	touch $@

# The Node SDK `clearbg` and CLI `clearbg-cli` (clients/, one npm workspace): dev dependencies from
# its lockfile (from npm's cache once fetched), both built, their unit tests against a fake server.
# Their end-to-end tests against the real stack are pytest's (tests/clients/node/).
test-node:
	cd clients && npm ci --prefer-offline --no-audit --no-fund && npm run build --workspaces && npm test --workspaces

# The Ruby, PHP and .NET SDKs (clients/ruby, clients/php, clients/dotnet): Debian's toolchains and
# test frameworks, installed only when missing; each SDK's unit tests against its fake server.
# Their end-to-end tests against the real stack are pytest's (tests/clients/rest_sdks/).
REST_SDK_DEBS := ruby rake ruby-minitest ruby-whitequark-parser php-cli php-curl php-mbstring php-xml \
	php-guzzlehttp-guzzle php-parser phpunit composer mono-devel nunit-console libnunit-cil-dev
DOTNET_BUILD := clients/dotnet/build
MCS_REFS := -r:System.Net.Http.dll -r:System.Runtime.Serialization.dll -r:System.Xml.Linq.dll -r:System.Xml.dll

rest-sdk-deps:
	$(call apt_missing,$(REST_SDK_DEBS))

test-ruby: rest-sdk-deps
	cd clients/ruby && rake test

test-php: rest-sdk-deps
	cd clients/php && composer validate --strict --quiet && composer dump-autoload --dev --quiet && phpunit

# Mono's C# compiler and NUnit 2.6 (no .NET SDK installs here): the library, then its tests.
test-dotnet: rest-sdk-deps
	rm -rf $(DOTNET_BUILD) && mkdir -p $(DOTNET_BUILD)
	mcs -target:library -warnaserror -out:$(DOTNET_BUILD)/ClearBG.dll $(MCS_REFS) clients/dotnet/src/ClearBG/*.cs
	mcs -target:library -warnaserror -out:$(DOTNET_BUILD)/ClearBG.Tests.dll -r:$(DOTNET_BUILD)/ClearBG.dll \
		-r:/usr/lib/cli/nunit.framework-2.6.3/nunit.framework.dll $(MCS_REFS) clients/dotnet/tests/*.cs
	cd $(DOTNET_BUILD) && nunit-console ClearBG.Tests.dll -nologo

deps: $(VENV)/.installed $(GEN)/.stamp model

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@# onnxruntime and onnxruntime-openvino write the same files: a venv that held the other one
	@# (an older checkout, another platform's choice) keeps only the one pyproject.toml asks for.
	@if [ "$$($(PY) -m pip list --format=freeze 2>/dev/null | grep -c -E '^onnxruntime(-openvino)?==')" -gt 1 ]; then \
		$(PY) -m pip uninstall --quiet -y onnxruntime onnxruntime-openvino && $(PY) -m pip install --quiet -e '.[test]'; fi
	$(PY) -c "import onnxruntime as ort; print('onnxruntime', ort.__version__, ort.get_available_providers())"
	touch $@

# Python code and the Envoy descriptor set, generated from proto/ (never edited by hand).
$(GEN)/.stamp: $(PROTOS) $(VENV)/.installed
	rm -rf $(GEN) && mkdir -p $(GEN) $(BUILD)
	$(PY) -m service.protogen --out $(GEN) --descriptor $(DESCRIPTOR)
	touch $@

gen: $(GEN)/.stamp

# Fetches, checks (sha256) and caches the models outside the repo, prepares the variants (minutes
# the first time), measures which runs fastest here within the agreement bound and writes the
# manifest the server reads (modelprep/); prints the table. Fast when cached.
model: $(VENV)/.installed
	$(PY) -m modelprep

$(BUF):
	npm install --silent --no-audit --no-fund --prefix $(TOOLS) @bufbuild/buf@$(BUF_VERSION)

# buf lint, then buf breaking against the previous commit (or the commit recording a deliberate
# break: proto/BREAKING_CHANGES.md, service/protobreaking.py).
lint-proto: $(BUF) $(GEN)/.stamp
	$(BUF) lint '$(DESCRIPTOR)#format=binpb' --path clearbg
	$(PY) -m service.protobreaking --buf $(BUF) --image $(DESCRIPTOR)

# gRPC stubs for other languages from proto/ (clients/grpc/generate.py; never committed):
# build/stubs/{python,node,ruby,php,csharp}. tests/clients/grpc runs clients/grpc/README.md's
# examples with them. Generators: Debian's protoc and gRPC plugins (and libprotoc-dev, g++ to
# build gRPC's C# plugin once, cached), the Node packages from clients/grpc's lockfile; run
# times: Debian's Ruby gems and PHP protobuf. apt-get runs only for what dpkg says is missing.
STUBS := $(BUILD)/stubs
STUBS_DEBS := protobuf-compiler protobuf-compiler-grpc libprotoc-dev g++ ruby ruby-grpc ruby-google-protobuf \
	ruby-googleapis-common-protos-types php-cli php-google-protobuf
GRPC_NODE := clients/grpc/node_modules/.installed

stubs: $(STUBS)/.stamp

$(STUBS)/.stamp: $(PROTOS) clients/grpc/generate.py $(GRPC_NODE) $(VENV)/.installed | stubs-deps
	$(PY) clients/grpc/generate.py --out $(STUBS)
	touch $@

stubs-deps:
	$(call apt_missing,$(STUBS_DEBS))

$(GRPC_NODE): clients/grpc/package-lock.json clients/grpc/package.json
	npm ci --silent --no-audit --no-fund --prefix clients/grpc
	touch $@

# The dashboard's browser tests (tests/e2e/test_dashboard_browser.py): Debian's Chromium, installed only
# when missing, and playwright-core + axe-core from the committed lock (npm's own cache keeps
# the tarballs; no browser download: the tests drive /usr/bin/chromium).
browser-deps: $(BROWSER_TESTS)/node_modules/.installed
	@test -x /usr/bin/chromium || { apt-get update && apt-get install -y chromium; }

$(BROWSER_TESTS)/node_modules/.installed: $(BROWSER_TESTS)/package-lock.json $(BROWSER_TESTS)/package.json
	npm ci --silent --no-audit --no-fund --prefix $(BROWSER_TESTS)
	touch $@

# Cut-out quality vs rembg on ../shared/quality and the sets generated from it (wide and tall
# frames, small subjects; made once into the cache), each split into a tuned and a held-out part,
# plus the colour check (issues 5, 15): bench-results/quality.md. Extra flags through BENCH_ARGS,
# e.g. make bench-quality BENCH_ARGS="--sets grabcut50,composites-grabcut --parts held-out --limit 3".
bench-quality: $(VENV)/.installed model
	nice -n 10 $(PY) -m bench.quality $(BENCH_ARGS)

# The engine's data-chosen settings swept on the tuned part only (issue 15): bench-results/tune.md.
# BENCH_ARGS="--edges" sweeps the edge settings too; "--edges-only" those alone, from the committed view settings.
bench-tune: $(VENV)/.installed model
	nice -n 10 $(PY) -m bench.quality.tune $(BENCH_ARGS)

# Speed through the REST path (Envoy + gRPC server) against rembg's own server on the same model
# file, plus the network alone per variant (issue 6): bench-results/speed.md. Bounded per cell;
# not under nice (both servers get the same share). BENCH_ARGS="--quick" for a short run.
bench-speed: deps
	$(PY) -m bench.speed $(BENCH_ARGS)

# The GPU path where a GPU is (issue 20): PyTorch in the venv (pip install '.[gpu]'), `make model`
# measures the torch candidates, then the net alone, agreement with fp32, the engine and REST:
# bench-results/gpu.md. BENCH_ARGS e.g. "--budget 600 --processes 8".
bench-gpu: deps
	$(PY) -m bench.gpu $(BENCH_ARGS)

# What the lent GPU machine lacks (model, packages, generated code, a few photos), in pieces one
# device call each can carry: .device/partN (bench/GPU_RUN.md says how to use them).
bench-gpu-bundle: deps
	nice -n 10 $(PY) -m bench.gpu_bundle $(BENCH_ARGS)

# An hour of mixed calls at about capacity (bench/soak.py): the server's RSS over time, and its
# growth after the first 10 minutes (target < 5 %), also in bench-results/soak.md. Shorter:
# make soak BENCH_ARGS="--minutes 3".
soak: deps
	$(PY) -m bench.soak $(BENCH_ARGS)

clean:
	rm -rf $(GEN) $(BUILD) $(TOOLS) $(VENV) $(SDK_VENV) clients/python/build $(BROWSER_TESTS)/node_modules \
		$(DOTNET_BUILD) clients/php/vendor clients/grpc/node_modules
