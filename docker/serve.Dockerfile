# Serves a registered nextday model over HTTP with `mlflow models serve`:
#   models:/nextday-${NEXTDAY_MODEL:-earnings}@production on port 5001 (POST /invocations,
#   GET /ping). The model is fetched at start from the MLflow server named by
#   MLFLOW_TRACKING_URI; its code imports nextday, so the package is installed here.
# Build from the repository root:
#   docker build -f docker/serve.Dockerfile -t nextday-serve .
#   docker run --rm -p 5001:5001 -e MLFLOW_TRACKING_URI=http://mlflow:5000 \
#       -e NEXTDAY_MODEL=normal nextday-serve
# With NEXTDAY_PREDICTION_LOG_URL (a store URL without password) and NEXTDAY_PG_PASSWORD set,
# the model logs each prediction to the store's model_predictions table.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GIT_PYTHON_REFRESH=quiet

WORKDIR /app
# The same first lines as train.Dockerfile: the dependency layer is built once for both.
COPY pyproject.toml requirements.lock README.md ./
RUN mkdir -p src/nextday && touch src/nextday/__init__.py \
    && pip install -c requirements.lock -e .
COPY MLproject conda.yaml ./
COPY conf ./conf
COPY src ./src
RUN pip install --no-deps -c requirements.lock -e .

RUN useradd --create-home --uid 10001 --user-group nextday
WORKDIR /home/nextday
USER nextday

# which registered model to serve: nextday-<NEXTDAY_MODEL> (normal or earnings)
ENV NEXTDAY_MODEL=earnings
EXPOSE 5001
# the model is downloaded and its ONNX sessions built before /ping answers
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=4 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5001/ping', timeout=4)"]
# mlflow execs uvicorn from PATH: pip put it in /usr/local/bin, which is on PATH.
# A shell expands NEXTDAY_MODEL at start; exec hands signals to mlflow.
ENTRYPOINT ["/bin/sh", "-c", "exec mlflow models serve -m \"models:/nextday-${NEXTDAY_MODEL:-earnings}@production\" --env-manager local -h 0.0.0.0 -p 5001"]
