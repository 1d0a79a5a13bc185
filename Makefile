# llama-operator developer tasks. `make help` lists them.
# Everything runs from a local virtualenv (.venv) that `make setup` creates, so a fresh
# machine needs only python3 (>= 3.11) and network access to PyPI.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help setup demo plan render generate verify lint format typecheck imports drift \
        test test-unit test-contract test-e2e bench run clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml constraints.txt hack/get_helm.py hack/wheelhouse.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,dev]'
	$(BIN)/python hack/get_helm.py .cache/bin
	$(BIN)/python hack/wheelhouse.py .cache/wheelhouse
	@touch $(STAMP)

# What only the tests need. The source of every vLLM release engines.yaml was checked
# against (tests/engines/test_vllm_source.py; ~240 MB per wheel, only the .py files kept).
ENGINE_SOURCES := .cache/engines/.fetched
$(ENGINE_SOURCES): $(STAMP) hack/get_engine_sources.py operator/llama_operator/data/engines.yaml
	$(BIN)/python hack/get_engine_sources.py .cache/engines
	@touch $@

# Debian's vendored Rust crates (and cargo, when the machine has none) for
# tests/engines/test_tgi_log_filter.py, which builds a small program against a real
# tracing-subscriber offline: there is no crates.io here. Installed when running as root
# with apt-get; otherwise the command to run is printed and that test says so too.
RUST_CRATES := librust-tracing-subscriber-dev librust-tracing-dev
RUST_DEPS := .cache/rust-crates.installed
$(RUST_DEPS):
	@packages="$(RUST_CRATES)"; command -v cargo >/dev/null || packages="$$packages cargo"; \
	if dpkg -s $(RUST_CRATES) >/dev/null 2>&1 && command -v cargo >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing $$packages (Debian) for tests/engines/test_tgi_log_filter.py"; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$packages >/dev/null; \
	else \
	  echo "warning: tests/engines/test_tgi_log_filter.py needs: sudo apt-get install $$packages"; \
	  exit 0; \
	fi; mkdir -p .cache && touch $@

# Debian's prometheus package: promtool checks and unit-tests the chart's alert rules, and
# tests/observability runs the real server on 127.0.0.1 against fake engine pods. Installed
# when running as root with apt-get (CI); otherwise the command to run is printed, and those
# tests fail saying so.
PROMETHEUS_DEPS := .cache/prometheus.installed
$(PROMETHEUS_DEPS):
	@if command -v promtool >/dev/null && command -v prometheus >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing prometheus (Debian) for tests/observability"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	else \
	  echo "warning: tests/observability needs: sudo apt-get install --no-install-recommends prometheus"; \
	  exit 0; \
	fi; mkdir -p .cache && touch $@

setup: $(STAMP) $(ENGINE_SOURCES) $(RUST_DEPS) $(PROMETHEUS_DEPS) ## create .venv, install the operator with test and dev tools, fetch helm, the engines' source and prometheus

demo: $(STAMP) ## plan and render the bundled examples (no cluster needed)
	$(BIN)/llama-operator plan -f manifests/examples/
	$(BIN)/llama-operator render -f manifests/examples/chat-8b.yaml

plan: $(STAMP) ## plan FILE=path (default: every bundled example), OUTPUT=text|json|yaml
	$(BIN)/llama-operator plan -f $(or $(FILE),manifests/examples/) -o $(or $(OUTPUT),text)

render: $(STAMP) ## render FILE=path: every object the operator would create
	$(BIN)/llama-operator render -f $(or $(FILE),manifests/examples/)

generate: $(STAMP) ## regenerate crds/, the chart's CRD and dashboard, manifests/, reference docs
	$(BIN)/llama-operator crds > crds/llamadeployments.llamaops.dev.yaml
	$(BIN)/python -c "from llama_operator.api import crd; import pathlib; \
	  pathlib.Path('docs/reference/api.md').write_text(crd.reference_markdown())"
	$(BIN)/python hack/generate_chart.py
	$(BIN)/python hack/generate_argocd.py
	$(BIN)/python hack/generate_values_doc.py
	$(BIN)/python hack/generate_dashboard.py

drift: $(STAMP) ## fail when a generated file differs from what the generators produce
	@tmp=$$(mktemp -d) && \
	$(BIN)/llama-operator crds > $$tmp/crd.yaml && \
	$(BIN)/python -c "from llama_operator.api import crd; import sys; \
	  sys.stdout.write(crd.reference_markdown())" > $$tmp/api.md && \
	diff -u crds/llamadeployments.llamaops.dev.yaml $$tmp/crd.yaml && \
	diff -u docs/reference/api.md $$tmp/api.md && \
	$(BIN)/python hack/generate_chart.py --check && \
	$(BIN)/python hack/generate_argocd.py --check && \
	$(BIN)/python hack/generate_values_doc.py --check && \
	$(BIN)/python hack/generate_dashboard.py --check && \
	echo "generated files are up to date" || \
	{ echo "generated files drifted: run 'make generate' and commit"; exit 1; }

lint: $(STAMP) ## ruff lint and format check
	$(BIN)/ruff check operator tests benchmarks hack
	$(BIN)/ruff format --check operator tests benchmarks hack

format: $(STAMP) ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix operator tests benchmarks hack
	$(BIN)/ruff format operator tests benchmarks hack

typecheck: $(STAMP) ## mypy --strict with the pydantic plugin
	$(BIN)/mypy

imports: $(STAMP) ## import-linter layer contracts
	$(BIN)/lint-imports

verify: lint typecheck imports drift ## every static check CI runs

test: $(STAMP) $(ENGINE_SOURCES) $(RUST_DEPS) $(PROMETHEUS_DEPS) ## run the whole test suite (unit, contract against kmock, engine source, chart, alert rules with promtool and Prometheus)
	$(BIN)/pytest

test-unit: $(STAMP) ## only the fast unit tests
	$(BIN)/pytest tests/unit

test-contract: $(STAMP) ## only the Kopf-against-kmock contract tests
	$(BIN)/pytest tests/contract

test-e2e: $(STAMP) ## opt-in: the e2e tier against the current kube context (a test cluster)
	$(BIN)/pytest --with-e2e tests/e2e

bench: $(STAMP) ## benchmarks: planner vs brute force, memory model vs real engine logs, planned vs observed KV cache, autoscaling policy and loop, canary rollouts and what they count as failed, reconcile cost, the plan cost of LoRA adapters, footprint
	$(BIN)/python benchmarks/bench_planner.py
	$(BIN)/python benchmarks/bench_memory_model.py
	$(BIN)/python benchmarks/bench_observed_capacity.py
	$(BIN)/python benchmarks/bench_autoscaler.py
	$(BIN)/python benchmarks/bench_scaler_loop.py
	$(BIN)/python benchmarks/bench_rollout.py
	$(BIN)/python benchmarks/bench_canary_outcomes.py
	$(BIN)/python benchmarks/bench_failover.py
	$(BIN)/python benchmarks/bench_adapters.py
	$(BIN)/python benchmarks/bench_reconcile.py
	$(BIN)/python benchmarks/bench_footprint.py

run: $(STAMP) ## run the operator against the current kubeconfig (all namespaces)
	$(BIN)/llama-operator run --all-namespaces

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .import_linter_cache
