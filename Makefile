# Two commands do all the set-up on a fresh machine: `make demo` runs the product, `make test` the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SAM_VENV ?= .sam-venv
export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY = 0

.PHONY: install test lint typecheck demo dev template sam-check bench soak clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy shared/polos infra functions/api functions/authorizer functions/worker

# pytest exits 5 when no test ran; make treats that as the failure it is.
test: lint typecheck
	$(BIN)/pytest

demo: install
	$(BIN)/polos demo

dev: install
	$(BIN)/polos dev

template: install
	$(BIN)/polos template

clean:
	rm -rf $(VENV) $(SAM_VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache
