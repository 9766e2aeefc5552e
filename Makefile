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

.PHONY: run test deps gen model lint-proto browser-deps clean bench-quality bench-speed

run: deps
	$(PY) -m service.launcher

test: deps lint-proto browser-deps
	$(PY) -m pytest $(PYTEST_ARGS)

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

# Fetches, checks (sha256) and caches the model outside the repo, then prepares its fastest
# variant (engine/models/variants.py: minutes the first time); fast when cached.
model: $(VENV)/.installed
	$(PY) -m engine.models.fetch
	$(PY) -m engine.classify.fetch
	$(PY) -m engine.models.variants

$(BUF):
	npm install --silent --no-audit --no-fund --prefix $(TOOLS) @bufbuild/buf@$(BUF_VERSION)

lint-proto: $(BUF) $(GEN)/.stamp
	$(BUF) lint '$(DESCRIPTOR)#format=binpb' --path clearbg

# The dashboard's browser tests (tests/e2e/test_dashboard_browser.py): Debian's Chromium, installed only
# when missing, and playwright-core + axe-core from the committed lock (npm's own cache keeps
# the tarballs; no browser download: the tests drive /usr/bin/chromium).
browser-deps: $(BROWSER_TESTS)/node_modules/.installed
	@test -x /usr/bin/chromium || { apt-get update && apt-get install -y chromium; }

$(BROWSER_TESTS)/node_modules/.installed: $(BROWSER_TESTS)/package-lock.json $(BROWSER_TESTS)/package.json
	npm ci --silent --no-audit --no-fund --prefix $(BROWSER_TESTS)
	touch $@

# Cut-out quality vs rembg on ../shared/quality, plus the colour check (issue 5): bench-results/quality.md.
# Extra flags through BENCH_ARGS, e.g. make bench-quality BENCH_ARGS="--limit 3 --sets grabcut50".
bench-quality: $(VENV)/.installed model
	nice -n 10 $(PY) -m bench.quality $(BENCH_ARGS)

# Speed through the REST path (Envoy + gRPC server) against rembg's own server on the same model
# file, plus the network alone per variant (issue 6): bench-results/speed.md. Bounded per cell;
# not under nice (both servers get the same share). BENCH_ARGS="--quick" for a short run.
bench-speed: deps
	$(PY) -m bench.speed $(BENCH_ARGS)

clean:
	rm -rf $(GEN) $(BUILD) $(TOOLS) $(VENV) $(BROWSER_TESTS)/node_modules
