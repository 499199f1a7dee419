# cioaudience: `make demo` runs the product, `make test` runs the whole suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test venv lint check chromium bench clean

$(BIN)/.installed: requirements.txt requirements-dev.txt
	@scripts/bootstrap-venv.sh "$(PYTHON)" "$(VENV)"
	@touch $@

venv: $(BIN)/.installed

demo: venv
	@scripts/demo.sh

chromium:
	@scripts/ensure-chromium.sh

test: venv chromium
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/python manage.py makemigrations --check --dry-run

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache test-artifacts
