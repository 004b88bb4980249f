# Two commands a newcomer needs: `make demo` (install, backtest a generated trace, then run the
# real daemon on an embedded simulator) and `make test` (install, lint, type-check, run every test).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Native thread pools spin badly on small shared machines; one thread each is faster there.
export OMP_NUM_THREADS ?= 1
export OPENBLAS_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1

.PHONY: demo test lint install

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# The backtest replays config/local.yaml's own simulator trace with its target's settings, the
# whole 28 days with the first week as warm-up: the very demand, settings and scored span the
# daemon then plays (it starts a week in), so the summary's numbers are the ones you watch.
demo: install
	mkdir -p demo-out
	$(BIN)/elasticd backtest --config config/local.yaml --target checkout --since 28d \
	    --unit requests/s --trace-out demo-out/trace.csv --decisions-out demo-out/decisions.csv \
	    --report-out demo-out/report.json --plot-out demo-out/plot.png
	@echo "starting the daemon on the embedded simulator (config/local.yaml); Ctrl-C stops it"
	@echo "status page: http://127.0.0.1:9464/ (metrics: /metrics)"
	$(BIN)/elasticd run --config config/local.yaml

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: install lint
	sh tests/install-servers.sh
	$(BIN)/pytest
