"""A team's shared MLflow tracking server on one machine: PostgreSQL + S3-compatible storage.

    python scripts/team_stack.py up FOLDER       # start everything, write FOLDER/stack.env
    source FOLDER/stack.env
    python -m nextday main experiment=quick store=postgres
    python scripts/team_stack.py status FOLDER   # what answers
    python scripts/team_stack.py down FOLDER     # stop everything `up` started

`up` starts, all on 127.0.0.1 only:
- PostgreSQL (scripts/local_postgres.py, cluster in FOLDER/pg) with the databases `mlflow`
  (MLflow's backend store, owned by role `mlflow`), `nextday` (the project's store) and
  `optuna` (shared tuning studies), both owned by role `nextday`; trust authentication, so no
  passwords;
- moto's S3 server with the bucket `nextday-artifacts` (dummy credentials);
- `mlflow server`, its runs and registry in PostgreSQL and its artifacts proxied to
  s3://nextday-artifacts/mlartifacts: clients need only MLFLOW_TRACKING_URI.

The servers run detached, each in its own process group, logs in FOLDER/logs; their pids and
ports are in FOLDER/stack.json, which `down` and `status` read. Runs and the store persist in
FOLDER/pg across `down`/`up`, but moto keeps the bucket in memory: `down` discards the
artifacts. This is for a team sharing one machine and for the tests (`up(folder)` and
`down(folder)` are importable); for production use docker/compose.yaml.

As root, PostgreSQL runs as the `postgres` user, which must be able to enter FOLDER and its
parents (`mkdir -m 755 /tmp/nextday-team` works; a folder under /root does not).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
import local_postgres

log = logging.getLogger("team_stack")

HOST = "127.0.0.1"
BUCKET = "nextday-artifacts"
PREFIX = "mlartifacts"
# database -> the role that owns it
DATABASES = {"mlflow": "mlflow", "nextday": "nextday", "optuna": "nextday"}
# dummy credentials: moto accepts any; real AWS credentials must never reach it
DUMMY_KEY = "testing"
REGION = "us-east-1"
# a word in the command line of each detached server: `down` signals only processes that still
# carry it, never whatever process later got the same pid
MARKERS = {"s3": "moto.server", "mlflow": "mlflow"}
STACK_JSON = "stack.json"
STACK_ENV = "stack.env"


@dataclass
class Stack:
    """Where a running stack answers, and the environment a client needs to use it."""

    folder: str
    ports: dict[str, int]
    pids: dict[str, int]
    tracking_uri: str  # the MLflow server
    backend_store_uri: str  # the server's PostgreSQL database
    store_url: str  # the project's store (NEXTDAY_PG_URL)
    optuna_url: str  # for tune.storage: workers that share it share a study
    admin_url: str  # the PostgreSQL superuser, for administration and tests
    s3_endpoint: str
    artifacts_destination: str
    env: dict[str, str]

    @property
    def path(self) -> Path:
        return Path(self.folder)


def aws_env(folder: Path, endpoint: str) -> dict[str, str]:
    """Dummy credentials for the loopback S3 server; no AWS profile or config file is read."""
    return {
        "MLFLOW_S3_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": DUMMY_KEY,
        "AWS_SECRET_ACCESS_KEY": DUMMY_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(folder / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(folder / "no-aws-credentials"),
    }


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment without MLflow's and AWS's variables, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
    env.update(extra)
    return env


def s3_client(stack: Stack):
    """A boto3 S3 client for the stack's server that reads no AWS file of this machine."""
    import boto3
    import botocore.session

    session = botocore.session.Session()
    session.set_config_variable("config_file", stack.env["AWS_CONFIG_FILE"])
    session.set_config_variable("credentials_file", stack.env["AWS_SHARED_CREDENTIALS_FILE"])
    return boto3.session.Session(botocore_session=session).client(
        "s3",
        endpoint_url=stack.s3_endpoint,
        aws_access_key_id=DUMMY_KEY,
        aws_secret_access_key=DUMMY_KEY,
        region_name=REGION,
    )


def up(
    folder: Path,
    pg_port: int | None = None,
    s3_port: int | None = None,
    mlflow_port: int | None = None,
) -> Stack:
    """Start PostgreSQL, moto's S3 server and the MLflow server, wait until each answers,
    write FOLDER/stack.json and FOLDER/stack.env; return the Stack.

    Ports not given are those of the stack that ran in `folder` before, while free (so that an
    old stack.env still works), else free ones.

    If a server fails to start, what was started is stopped again before the error is raised.
    """
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / STACK_JSON).exists() and any(status(folder).values()):
        raise RuntimeError(f"a stack is already up in {folder}: run `down {folder}` first")
    _check_postgres_can_enter(folder)
    (folder / "logs").mkdir(exist_ok=True)
    before = load(folder).ports if (folder / STACK_JSON).exists() else {}
    given = {"postgresql": pg_port, "s3": s3_port, "mlflow": mlflow_port}
    ports = {
        name: port or _free_or_none(before.get(name)) or local_postgres.free_port()
        for name, port in given.items()
    }
    pg = f"postgresql+psycopg2://{{role}}@{HOST}:{ports['postgresql']}/{{database}}"
    endpoint = f"http://{HOST}:{ports['s3']}"
    stack = Stack(
        folder=str(folder),
        ports=ports,
        pids={},
        tracking_uri=f"http://{HOST}:{ports['mlflow']}",
        backend_store_uri=pg.format(role="mlflow", database="mlflow"),
        store_url=pg.format(role="nextday", database="nextday"),
        optuna_url=pg.format(role="nextday", database="optuna"),
        admin_url=pg.format(role="postgres", database="postgres"),
        s3_endpoint=endpoint,
        artifacts_destination=f"s3://{BUCKET}/{PREFIX}",
        env={},
    )
    aws = aws_env(folder, endpoint)
    stack.env = {
        "MLFLOW_TRACKING_URI": stack.tracking_uri,
        "NEXTDAY_PG_URL": stack.store_url,
        **aws,
    }
    try:
        log.info("PostgreSQL on %s:%d (cluster in %s)", HOST, ports["postgresql"], folder / "pg")
        local_postgres.start(folder / "pg", ports["postgresql"])
        _save(stack)
        _create_databases(stack.admin_url)
        log.info("S3 (moto) on %s, MLflow server on %s", endpoint, stack.tracking_uri)
        # both at once: the MLflow server touches the bucket only when artifacts move
        stack.pids["s3"] = _spawn(
            [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(ports["s3"])],
            clean_env(aws),
            folder,
            "s3",
        )
        _save(stack)
        stack.pids["mlflow"] = _spawn(
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--backend-store-uri",
                stack.backend_store_uri,
                "--artifacts-destination",
                stack.artifacts_destination,
                "--host",
                HOST,
                "--port",
                str(ports["mlflow"]),
                "--workers",
                "1",
            ],
            # no job runner: its workers serve MLflow's GenAI jobs, which nextday does not use
            clean_env({**aws, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}),
            folder,
            "mlflow",
        )
        _save(stack)
        _wait_until_up(f"{endpoint}/moto-api/", stack, "s3")
        s3_client(stack).create_bucket(Bucket=BUCKET)
        _wait_until_up(f"{stack.tracking_uri}/health", stack, "mlflow")
    except BaseException:
        down(folder)
        raise
    _write_env(stack)
    return stack


def down(folder: Path) -> None:
    """Stop what `up` started in `folder` (the servers by their process groups, PostgreSQL by
    pg_ctl); data in FOLDER/pg stays, the bucket's contents are gone."""
    folder = Path(folder).resolve()
    if (folder / STACK_JSON).exists():
        stack = load(folder)
        for name in ("mlflow", "s3"):
            if name in stack.pids:
                _stop_group(stack.pids[name], MARKERS[name])
                log.info("stopped %s (pid %d)", name, stack.pids[name])
    if (folder / "pg" / "data").exists():
        local_postgres.stop(folder / "pg")
        log.info("stopped PostgreSQL")
    (folder / STACK_ENV).unlink(missing_ok=True)


@contextlib.contextmanager
def running(folder: Path, **ports: int | None) -> Iterator[Stack]:
    """`up(folder)` for the duration of a `with` block, and `down(folder)` after it."""
    stack = up(folder, **ports)
    try:
        yield stack
    finally:
        down(folder)


def load(folder: Path) -> Stack:
    """The Stack described by FOLDER/stack.json."""
    return Stack(**json.loads((Path(folder) / STACK_JSON).read_text()))


def status(folder: Path) -> dict[str, bool]:
    """Which of the stack's parts answer: postgresql, s3, mlflow."""
    stack = load(folder)
    return {
        "postgresql": _postgres_answers(stack.admin_url),
        "s3": _answers(f"{stack.s3_endpoint}/moto-api/"),
        "mlflow": _answers(f"{stack.tracking_uri}/health"),
    }


def _check_postgres_can_enter(folder: Path) -> None:
    if os.geteuid() != 0:
        return
    entered = subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(folder)])
    if entered.returncode != 0:
        raise PermissionError(
            f"PostgreSQL runs as the postgres user, which cannot enter {folder}: "
            "make it and its parents enterable (chmod o+x) or choose another folder"
        )


def _free_or_none(port: int | None) -> int | None:
    """`port` if nothing listens on it now."""
    if port is None:
        return None
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind
        try:
            sock.bind((HOST, port))
        except OSError:
            return None
    return port


def _create_databases(admin_url: str) -> None:
    """The roles and databases of DATABASES, unless they exist (a cluster used before)."""
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            for database, role in DATABASES.items():
                exists = sa.text("SELECT 1 FROM pg_roles WHERE rolname = :name")
                if not connection.execute(exists, {"name": role}).first():
                    connection.execute(sa.text(f'CREATE ROLE "{role}" LOGIN'))
                exists = sa.text("SELECT 1 FROM pg_database WHERE datname = :name")
                if not connection.execute(exists, {"name": database}).first():
                    connection.execute(sa.text(f'CREATE DATABASE "{database}" OWNER "{role}"'))
    finally:
        engine.dispose()


def _spawn(command: list[str], env: dict[str, str], folder: Path, name: str) -> int:
    """Start `command` in `folder`, detached: its own session and process group, its output
    in FOLDER/logs/NAME.log."""
    with open(folder / "logs" / f"{name}.log", "ab") as handle:  # the child keeps its own copy
        process = subprocess.Popen(
            command,
            env=env,
            cwd=folder,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return process.pid


def _running(pid: int, marker: str) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is this process's own child that exited
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()  # empty for a zombie
    except (FileNotFoundError, ProcessLookupError):
        return False
    return marker.encode() in command


def _stop_group(pid: int, marker: str, timeout: float = 15) -> None:
    """SIGTERM to the process group led by `pid`, SIGKILL if it is still there after `timeout`."""
    if not _running(pid, marker):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + timeout
        while _running(pid, marker) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not _running(pid, marker):
            break
    with contextlib.suppress(ProcessLookupError):  # workers the leader left behind
        os.killpg(pid, signal.SIGKILL)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _postgres_answers(url: str) -> bool:
    engine = sa.create_engine(url, connect_args={"connect_timeout": 2})
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        return True
    except sa.exc.OperationalError:
        return False
    finally:
        engine.dispose()


def _wait_until_up(url: str, stack: Stack, name: str, timeout: float = 120) -> None:
    log_file = stack.path / "logs" / f"{name}.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _answers(url):
            return
        if not _running(stack.pids[name], MARKERS[name]):
            raise RuntimeError(f"{name} server exited; its log ends:\n{_tail(log_file)}")
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s:\n{_tail(log_file)}")


def _tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def _save(stack: Stack) -> None:
    (stack.path / STACK_JSON).write_text(json.dumps(asdict(stack), indent=2) + "\n")


def _write_env(stack: Stack) -> None:
    lines = [
        f"# nextday team stack in {stack.folder} (scripts/team_stack.py); source it in a shell.",
        "# The AWS keys are dummies for the loopback S3 server (moto), not real credentials.",
        "unset AWS_PROFILE AWS_SESSION_TOKEN MLFLOW_REGISTRY_URI",
        *(f"export {name}={shlex.quote(value)}" for name, value in stack.env.items()),
    ]
    (stack.path / STACK_ENV).write_text("\n".join(lines) + "\n")


def _usage(stack: Stack) -> str:
    folder = shlex.quote(stack.folder)
    return f"""\
MLflow tracking server: {stack.tracking_uri} (open it in a browser for the UI)
  runs and registry in PostgreSQL: {stack.backend_store_uri}
  artifacts: {stack.artifacts_destination} on {stack.s3_endpoint} (moto, in memory)
nextday store: {stack.store_url}
shared Optuna studies: tune.storage={stack.optuna_url}
logs: {stack.folder}/logs

Use it:
  source {folder}/{STACK_ENV}
  python -m nextday main experiment=quick store=postgres
Stop it (the artifacts go with it; runs and the store stay in {stack.folder}/pg):
  python scripts/team_stack.py down {folder}"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("up", help="start the stack in FOLDER")
    start.add_argument("folder", type=Path)
    start.add_argument("--pg-port", type=int)
    start.add_argument("--s3-port", type=int)
    start.add_argument("--mlflow-port", type=int)
    commands.add_parser("down", help="stop the stack in FOLDER").add_argument("folder", type=Path)
    commands.add_parser("status", help="what answers").add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "up":
        try:
            stack = up(args.folder, args.pg_port, args.s3_port, args.mlflow_port)
        except (RuntimeError, PermissionError) as error:
            parser.exit(1, f"team_stack up: {error}\n")
        print(_usage(stack))
    elif args.command == "down":
        down(args.folder)
    else:
        if not (args.folder / STACK_JSON).exists():
            print(f"no stack in {args.folder}")
            return 1
        answers = status(args.folder)
        stack = load(args.folder)
        for name, answered in answers.items():
            print(f"{name:<10} {HOST}:{stack.ports[name]:<6} {'up' if answered else 'DOWN'}")
        return 0 if all(answers.values()) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
