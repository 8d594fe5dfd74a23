"""Start a throwaway PostgreSQL server on a free loopback port (tests and benchmarks).

PostgreSQL refuses to run as root, so as root its tools run as the `postgres` user.
    python scripts/local_postgres.py /tmp/pg   # prints the URL, leaves the server running
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

BIN_FOLDERS = ["/usr/lib/postgresql/15/bin", "/usr/local/bin", "/usr/bin"]


def tool(name: str) -> str:
    for folder in BIN_FOLDERS:
        if (Path(folder) / name).exists():
            return str(Path(folder) / name)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"PostgreSQL's {name} is not installed")
    return found


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(folder: Path, port: int | None = None) -> str:
    """initdb (unless `folder` holds a cluster already) + start in `folder`, on `port` or a
    free one; return the SQLAlchemy URL of its `postgres` database. Starting a stopped
    cluster again on its old port is a database restart, as clients see it.

    As root, `folder` and its parents must be enterable by the postgres user.
    """
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    data, port = folder / "data", port or free_port()
    if not (data / "PG_VERSION").exists():
        subprocess.run(
            _as_postgres([tool("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]),
            check=True,
            capture_output=True,
        )
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        _as_postgres(
            [
                tool("pg_ctl"),
                "-D",
                str(data),
                "-o",
                options,
                "-l",
                str(folder / "log"),
                "-w",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
    )
    return f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"


def stop(folder: Path) -> None:
    subprocess.run(
        _as_postgres([tool("pg_ctl"), "-D", str(folder / "data"), "-m", "immediate", "stop"]),
        capture_output=True,
    )


if __name__ == "__main__":
    print(start(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/nextday-pg")))
