# cioaudience: `make demo` runs the product, `make test` runs the whole suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test venv lint check chromium bench clean mutation

$(BIN)/.installed: requirements.txt requirements-dev.txt
	@scripts/bootstrap-venv.sh "$(PYTHON)" "$(VENV)"
	@touch $@

venv: $(BIN)/.installed

demo: venv
	@VENV="$(VENV)" scripts/demo.sh

chromium:
	@scripts/ensure-chromium.sh

test: venv chromium
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Mutation testing (mutmut) of the contract's modules, each against its own few test files;
# slow, so not in CI. MODULES=attributes limits ... picks some; MINUTES is the time box per module.
MINUTES ?= 30
mutation: venv
	$(BIN)/python scripts/mutation.py --minutes $(MINUTES) $(MODULES)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/python manage.py makemigrations --check --dry-run

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache test-artifacts
