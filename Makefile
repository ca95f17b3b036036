# Two commands do all the set-up on a fresh machine: `make demo` runs the product, `make test` the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SAM_VENV ?= .sam-venv
export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY = 0

.PHONY: install browser test lint typecheck demo dev template sam-check bench soak chaos screenshot moto-parity clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

# Debian's chromium and chromium-driver for the dashboard's browser tests (tests/browser), installed when
# missing and apt-get can run (root on Debian, as on CI); elsewhere those tests skip and say why.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	else echo "note: chromium/chromium-driver missing and apt-get needs root: the browser tests will skip"; fi

# ruff, then the import layers of pyproject.toml ([tool.importlinter]): a new cycle or forbidden import fails.
lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy shared/polos infra functions/api functions/worker functions/timers bench

# pytest exits 5 when no test ran; make treats that as the failure it is. Test files are spread over the
# machine's cores (pytest-xdist; a file's tests stay on one worker, sharing its module fixtures); the tests
# that time a real `polos dev` or browser (marked `serial` by tests/conftest.py) run after, alone, so no
# other test's load moves their clocks. The slowest tests are listed, so a suite creeping past its budget
# shows where.
PYTEST_WORKERS ?= auto
test: lint typecheck browser
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile -m "not serial" --durations=15
	$(BIN)/pytest -m serial --durations=10

demo: install
	$(BIN)/polos demo

dev: install
	$(BIN)/polos dev

template: install
	$(BIN)/polos template

# Benchmarks (not part of `make test`; their smoke-sized runs are): prints one table, writes docs/benchmarks.md.
bench: install
	$(BIN)/python -m bench

# moto's own DynamoDB and SQS tests (from the installed version's sdist), run with moto as it is and with the
# local stack's patches of it (infra/local/moto_*.py); fails on any difference or failure.
moto-parity: install
	$(BIN)/python -m infra.local.moto_parity

# The reliability suite at full size: 10,000-event load test, the whole crash matrix, and every crash point
# of the waits crash tests (the suite visits 12 of each, spread evenly).
soak: install
	POLOS_SOAK=1 $(BIN)/pytest tests/reliability tests/waits tests/flow tests/fanout -o timeout=3600

# The reliability, waits, end-to-end, flow-control, queue, fan-out and recovery tiers again under AWS's
# faults (infra/local/faults), side by side then the timed ones alone as in `make test`: the stacks of
# polos.testing and the polos dev servers honour POLOS_AWS_FAULTS (default here: all) and POLOS_FAULTS_SEED
# (default: a random seed per stack, printed with a failure; set it to replay one).
CHAOS_TIERS = tests/reliability tests/waits tests/e2e tests/flow tests/queues tests/fanout tests/recovery
chaos: install
	POLOS_AWS_FAULTS=$${POLOS_AWS_FAULTS:-all} $(BIN)/pytest $(CHAOS_TIERS) -o timeout=1800 \
		-n $(PYTEST_WORKERS) --dist loadfile -m "not serial"
	POLOS_AWS_FAULTS=$${POLOS_AWS_FAULTS:-all} $(BIN)/pytest $(CHAOS_TIERS) -o timeout=1800 -m serial

# The README's pictures of the dashboard (docs/dashboard*.png), taken by its browser tests.
screenshot: install browser
	POLOS_SCREENSHOT=$(CURDIR)/docs/dashboard.png $(BIN)/pytest tests/browser \
	  -k "published_run_live or fresh_tab or failed_run_shows or phone_widths"

$(SAM_VENV)/.installed:
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/pip install --quiet aws-sam-cli
	touch $@

# `sam build` needs the runtime's interpreter (python3.12) on PATH; under pyenv, every installed version is
# made visible after the current one. No AWS call is made: validation is cfn-lint, the build is local
# (the layer's requirements come from PyPI). Then every module built must carry its python3.12 bytecode
# (infra/bytecode.py): Lambda cannot write it, and would compile the module on every cold start.
sam-check: install $(SAM_VENV)/.installed
	$(if $(shell command -v pyenv),PYENV_VERSION="$$(pyenv version-name):$$(pyenv versions --bare | paste -sd: -)") \
		sh -c '$(SAM_VENV)/bin/sam validate --lint && $(SAM_VENV)/bin/sam build'
	$(BIN)/python -m infra.bytecode .aws-sam/build

clean:
	rm -rf $(VENV) $(SAM_VENV) .sdk-venv .aws-sam .pytest_cache .mypy_cache .ruff_cache .moto-parity
