"""A throw-away PostgreSQL server for the tests: initdb into a temporary folder, start it on a free
loopback port, hand out a SQLAlchemy URL, stop and delete it afterwards.

The binaries come from Debian's ``postgresql`` package (``.ci/run`` installs it when missing).
PostgreSQL refuses to run as root, so under root the server runs as the package's ``postgres``
user, in a folder that user owns.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SERVER_USER = "postgres"  # created by Debian's package
DB_USER = "relkd"
DB_NAME = "relkd_test"


def bin_dir() -> Path:
    """The newest PostgreSQL server binaries; AssertionError (not a skip) when there are none."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    assert found, (
        "no PostgreSQL server binaries (initdb): install Debian's postgresql package "
        "(.ci/run does: apt-get install -y postgresql)"
    )
    return Path(found).resolve().parent


def _version(path: str) -> int:
    part = Path(path).parents[1].name
    return int(part) if part.isdigit() else 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_server_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", SERVER_USER, "--", *cmd] if os.geteuid() == 0 else cmd


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yield ``postgresql+psycopg://relkd@127.0.0.1:PORT/relkd_test`` of a fresh server."""
    bins = bin_dir()
    root = Path(tempfile.mkdtemp(prefix="relkd-pg-"))
    data, log = root / "data", root / "server.log"
    if os.geteuid() == 0:
        shutil.chown(root, user=SERVER_USER)
    port = _free_port()
    run = lambda cmd: subprocess.run(  # noqa: E731
        _as_server_user(cmd), check=True, capture_output=True, text=True
    )
    try:
        run([str(bins / "initdb"), "-D", str(data), "-A", "trust", "-U", DB_USER, "--no-sync"])
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        run([str(bins / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "start"])
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(
                    host="127.0.0.1", port=port, user=DB_USER, dbname="postgres", autocommit=True
                ) as conn:
                    conn.execute(f"CREATE DATABASE {DB_NAME}")
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield f"postgresql+psycopg://{DB_USER}@127.0.0.1:{port}/{DB_NAME}"
    except subprocess.CalledProcessError as exc:
        server_log = log.read_text() if log.exists() else ""
        raise AssertionError(f"{exc.cmd} failed: {exc.stderr}\n{server_log}") from None
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                _as_server_user([str(bins / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                capture_output=True,
            )
        shutil.rmtree(root, ignore_errors=True)
