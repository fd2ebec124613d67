"""A throwaway PostgreSQL server for tests: initdb + pg_ctl in a temp dir, one database per test.

Contract:
- ``start()`` -> ``Server``: finds ``initdb``/``pg_ctl`` (PATH, then the newest
  ``/usr/lib/postgresql/*/bin``), creates a trust-auth cluster (superuser ``composer``, no locale,
  UTF8) under a short ``/tmp/composer-pg-*`` dir and starts it listening on a unix socket in that
  dir only (no TCP), fsync off. Run as root, the server runs as the ``postgres`` user (initdb and
  postgres refuse root). Raises ``Unavailable`` when PostgreSQL, psycopg or that user is missing,
  or the server does not start; ``str(e)`` is a clear reason for ``pytest.skip`` (the fix to run,
  or the server log's tail).
- ``Server.create_database()`` -> the SQLAlchemy URL (psycopg 3) of a fresh empty database;
  ``Server.drop_database(url)`` drops it, closing connections still open to it.
- ``Server.stop()`` stops the server (immediate mode) and deletes its directory.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

USER = "composer"
PORT = 5432  # only names the socket file: the socket dir is private and there is no TCP listener
INSTALL_HINT = "apt-get install postgresql"
SERVER_OPTS = (
    "-c listen_addresses='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off "
    "-c max_connections=200"
)


class Unavailable(RuntimeError):
    """PostgreSQL cannot run here; the message says why (and how to fix it)."""


def _version(d: Path) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", d.parent.name))


def find_bin_dir() -> Path:
    """The directory holding both initdb and pg_ctl (PATH first, then /usr/lib/postgresql/*/bin)."""
    on_path = shutil.which("initdb")
    dirs = [Path(on_path).resolve().parent] if on_path else []
    dirs += sorted(
        (Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")), key=_version, reverse=True
    )
    for d in dirs:
        if (d / "initdb").is_file() and (d / "pg_ctl").is_file() and (d / "postgres").is_file():
            return d
    raise Unavailable(
        "PostgreSQL is not installed (no initdb, pg_ctl and postgres on PATH or in "
        f"/usr/lib/postgresql/*/bin): {INSTALL_HINT}"
    )


def _server_user() -> dict:
    """subprocess kwargs that run the server binaries as 'postgres' when we are root."""
    if os.geteuid() != 0:
        return {}
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        raise Unavailable(
            "running as root, which PostgreSQL refuses, and there is no 'postgres' user "
            f"to run the server as ({INSTALL_HINT} creates it)"
        ) from None
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


def _tail(text: str, lines: int = 15) -> str:
    return " | ".join(line for line in text.strip().splitlines()[-lines:] if line.strip())


class Server:
    def __init__(self, bin_dir: Path, root: Path, as_user: dict):
        self.bin_dir, self.root, self.as_user = bin_dir, root, as_user
        self.data, self.log = root / "data", root / "server.log"
        self._ids = itertools.count(1)

    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg://{USER}@/{dbname}?host={self.root}&port={PORT}"

    def _pg(self, tool: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        env = {**os.environ, "HOME": str(self.root), "LC_ALL": "C", "PGTZ": "UTC"}
        return subprocess.run(
            [str(self.bin_dir / tool), *args],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **self.as_user,
        )

    def _start(self) -> None:
        try:
            r = self._pg(
                "initdb",
                "-D",
                str(self.data),
                "-A",
                "trust",
                "-U",
                USER,
                "--no-locale",
                "-E",
                "UTF8",
                "--no-sync",
            )
            if r.returncode:
                raise Unavailable(
                    f"PostgreSQL initdb failed (exit {r.returncode}): {_tail(r.stdout + r.stderr)}"
                )
            r = self._pg(
                "pg_ctl",
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-w",
                "-t",
                "60",
                "-o",
                f"-k {self.root} -p {PORT} {SERVER_OPTS}",
                "start",
            )
        except (OSError, subprocess.SubprocessError) as e:
            raise Unavailable(f"PostgreSQL could not be run from {self.bin_dir}: {e}") from None
        if r.returncode:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            raise Unavailable(
                f"PostgreSQL did not start (pg_ctl exit {r.returncode}): {_tail(log or r.stdout + r.stderr)}"
            )

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(
            host=str(self.root), port=PORT, user=USER, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(sql)

    def create_database(self) -> str:
        name = f"t_{next(self._ids)}"
        self._admin(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.split("@/", 1)[1].split("?", 1)[0]
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._pg("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=60)
        except (OSError, subprocess.SubprocessError):
            pass
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def start() -> Server:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise Unavailable("psycopg is not installed: pip install 'psycopg[binary]'") from None
    bin_dir = find_bin_dir()
    as_user = _server_user()
    base = "/tmp" if os.path.isdir("/tmp") else None  # short: a unix socket path is at most ~107 bytes
    root = Path(tempfile.mkdtemp(prefix="composer-pg-", dir=base))
    if as_user:
        os.chown(root, as_user["user"], as_user["group"])
    server = Server(bin_dir, root, as_user)
    try:
        server._start()
    except BaseException:
        server.stop()
        raise
    return server
