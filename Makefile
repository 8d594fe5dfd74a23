# The two quick-start commands of the README are `make main` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
OVERRIDES ?=

.PHONY: setup setup-gpu main serve test test-fast lint lock bench clean

$(BIN)/nextday: pyproject.toml requirements.lock
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements.lock -e ".[dev]"
	touch $@

setup: $(BIN)/nextday

# on a machine with an NVIDIA GPU: onnxruntime-gpu instead of onnxruntime (the two conflict)
setup-gpu: setup
	$(BIN)/pip uninstall -q -y onnxruntime onnxruntime-gpu
	$(BIN)/pip install -q "onnxruntime-gpu>=1.31,<1.32"
	$(BIN)/python -c "import onnxruntime as o; print(o.get_available_providers())"

# the whole pipeline on the built-in market; MLflow tracking in ./mlflow.db, artifacts in ./mlartifacts
main: setup
	$(BIN)/python -m nextday main $(OVERRIDES)

# serve a registered model: make serve MODEL=earnings PORT=5001 (mlflow execs uvicorn from PATH)
MODEL ?= normal
PORT ?= 5001
serve: setup
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/mlflow models serve -m models:/nextday-$(MODEL)@production \
		--env-manager local -h 127.0.0.1 -p $(PORT)

# every test, on TEST_WORKERS pytest-xdist workers (auto: one a core, at most 4). Each module
# stays on one worker (--dist loadfile, tests/conftest.py), the slow ones start first, and
# the quick pipeline the modules read is built once (PostgreSQL tests start their own server)
TEST_WORKERS ?= auto
test: setup
	$(BIN)/pytest -n $(TEST_WORKERS) --maxprocesses=4 --dist loadfile --no-loadscope-reorder \
		-q --durations=20

# the unit tier, after each edit: no MLflow store, database, server or training run (about a
# minute on two cores, on the same workers as `test`); `integration` is the rest
# (pyproject.toml, tests/conftest.py)
test-fast: setup
	$(BIN)/pytest -m "not integration" -n $(TEST_WORKERS) --maxprocesses=4 --dist loadfile \
		-q --durations=10

# ruff (format, lint with complexity limits), then mypy on src/nextday (pyproject.toml)
lint: setup
	$(BIN)/ruff format --check . && $(BIN)/ruff check . && $(BIN)/mypy

# re-pin exact versions after changing dependencies in pyproject.toml
lock: setup
	$(BIN)/pip freeze --exclude-editable > requirements.lock

bench: setup
	$(BIN)/python scripts/bench_prepare.py
	$(BIN)/python scripts/bench_train.py
	$(BIN)/python scripts/bench_baselines.py
	$(BIN)/python scripts/bench_tune.py
	$(BIN)/python scripts/bench_backtest.py
	$(BIN)/python scripts/bench_load.py
	$(BIN)/python scripts/bench_forecast.py

clean:
	rm -rf data mlruns mlartifacts mlflow.db outputs models optuna.db
