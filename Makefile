# The two quick-start commands of the README are `make main` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
OVERRIDES ?=

.PHONY: setup setup-gpu main serve test test-full lint lock bench clean

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

# fast tests (PostgreSQL tests start their own server)
test: setup
	$(BIN)/pytest -m "not slow" -q --durations=20

test-full: setup
	$(BIN)/pytest -q

# ruff (format, lint with complexity limits), then mypy on src/nextday (pyproject.toml)
lint: setup
	$(BIN)/ruff format --check . && $(BIN)/ruff check . && $(BIN)/mypy

# re-pin exact versions after changing dependencies in pyproject.toml
lock: setup
	$(BIN)/pip freeze --exclude-editable > requirements.lock

bench: setup
	$(BIN)/python scripts/bench_prepare.py
	$(BIN)/python scripts/bench_train.py
	$(BIN)/python scripts/bench_tune.py
	$(BIN)/python scripts/bench_backtest.py
	$(BIN)/python scripts/bench_load.py
	$(BIN)/python scripts/bench_forecast.py

clean:
	rm -rf data mlruns mlartifacts mlflow.db outputs models optuna.db
