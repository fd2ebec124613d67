"""A real Composer server on loopback for the tests that need one (started and stopped here).

Contract: `copy_home(ocean, home)` copies the demo ocean's registry and store safely (see
there). `server_settings(home, allowed, **overrides)` is the `Settings` every test server
runs with: the API key `KEY`, `allowed` as the one allowed root for server-side paths, 64
new tokens at most, 2 torch threads, then the overrides (`SMALL_LIMITS` are the hardening
tests' limits, small enough to be reached). `ray_server(ocean, root, **overrides)` is a
context manager: it copies the demo ocean's registry and store into `root/home` (so tests
may register and delete), makes `root/allowed` the allowed root, starts `composer serve` on
embedded Ray (its files in a short /tmp dir, auth disabled: nothing written to $HOME) with
those settings, and yields {"url", "home", "allowed", "ocean", "settings"}; on exit Serve
and Ray are shut down and the Ray dir removed. `assert_error(r, status, *words)` checks the
error contract: that status, a JSON `{"error": {type, message}}` naming `words`, and no
stack trace or server path in the message.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from contextlib import contextmanager
from pathlib import Path

from composer.serving.ports import free_port

KEY = "test-key-123"
AUTH = {"Authorization": f"Bearer {KEY}"}
# the hardening tests' limits: 2 MiB uploads, 16 requests in flight, a 30 s deadline, 4 experts per request
SMALL_LIMITS = {
    "max_upload_mb": 2,
    "max_queue": 16,
    "request_timeout_s": 30,
    "max_experts": 4,
    "max_prompt_chars": 4000,
}


def server_settings(home: Path, allowed: Path, **overrides):
    from composer.settings import Settings

    return Settings(
        **{
            "home": str(home),
            "api_key": KEY,
            "allowed_roots": (str(allowed),),
            "max_tokens": 64,
            "threads": 2,
            **overrides,
        }
    )


def copy_home(ocean, home: Path, demo: bool = False) -> Path:
    """A private copy of the ocean's registry home. The database goes through SQLite's backup
    API: copying a live database's files with plain open/close would drop this process's
    SQLite locks on it (POSIX locks are per process), and another process could then
    checkpoint its WAL under the open connections ("disk I/O error")."""
    shutil.copytree(
        ocean.home, home, ignore=shutil.ignore_patterns(*(() if demo else ("demo",)), "registry.db*")
    )
    src, dst = sqlite3.connect(ocean.home / "registry.db"), sqlite3.connect(home / "registry.db")
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    return home


@contextmanager
def ray_server(ocean, root: Path, **overrides):
    from ray_cluster.launch import serve, shutdown

    home = copy_home(ocean, root / "home")
    allowed = root / "allowed"
    allowed.mkdir()
    ray_tmp = Path("/tmp") / f"rt{os.getpid()}"  # short: Ray's socket paths have a length limit
    saved = {k: os.environ.get(k) for k in ("RAY_TMPDIR", "RAY_AUTH_MODE")}
    os.environ.update(RAY_TMPDIR=str(ray_tmp), RAY_AUTH_MODE="disabled")
    settings = server_settings(home, allowed, **overrides)
    try:
        url = serve(settings, "127.0.0.1", free_port(), block=False, num_cpus=2)
        try:
            yield {"url": url, "home": home, "allowed": allowed, "ocean": ocean, "settings": settings}
        finally:
            shutdown(True)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(ray_tmp, ignore_errors=True)


def assert_error(r, status: int, *words: str) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["type"] and err["message"]
    for leak in ("Traceback", "/tmp/", "/root/", "/home/", str(Path.home())):
        assert leak not in err["message"], err["message"]
    for w in words:
        assert w in err["message"], (w, err["message"])
    return err
