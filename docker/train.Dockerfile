# The nextday image for running steps: `python -m nextday <step> [hydra overrides]`.
# Build from the repository root:
#   docker build -f docker/train.Dockerfile -t nextday .
#   docker run --rm -e MLFLOW_TRACKING_URI=http://mlflow:5000 nextday prepare experiment=quick
# docker/compose.yaml builds it for the `train` job and the `mlflow` tracking server (which
# then runs the MLflow pinned in requirements.lock, with psycopg2 and boto3).
# Secrets (NEXTDAY_PG_PASSWORD, S3 keys) come from the environment at run time, never the image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GIT_PYTHON_REFRESH=quiet

WORKDIR /app
# Dependencies first, with a stub package in place of src/, so that their layer survives
# source edits (and is shared with serve.Dockerfile, which starts with the same lines).
COPY pyproject.toml requirements.lock README.md ./
RUN mkdir -p src/nextday && touch src/nextday/__init__.py \
    && pip install -c requirements.lock -e .
# Editable: the package stays in /app/src, where its conf link (src/nextday/conf ->
# ../../conf) points at /app/conf; a wheel install would carry its own copy instead.
COPY MLproject conda.yaml ./
COPY conf ./conf
COPY src ./src
RUN pip install --no-deps -c requirements.lock -e .

# paths.root (data/, outputs/, local MLflow files when no tracking server is set) is a
# folder the unprivileged user owns; mount a volume there to keep it.
RUN useradd --create-home --uid 10001 --user-group nextday \
    && mkdir -p /var/lib/nextday && chown nextday:nextday /var/lib/nextday
ENV NEXTDAY_ROOT=/var/lib/nextday
WORKDIR /var/lib/nextday
USER nextday

ENTRYPOINT ["python", "-m", "nextday"]
CMD ["main"]
