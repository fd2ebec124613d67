"""Killing the server in the middle of a registration loses nothing and leaves nothing behind.

A real `composer serve --in-process` (the same app and registration code as on Ray, in one
process we can SIGKILL) on a copy of the fast demo ocean. An adapter upload is posted; as
soon as its 'registering' row is in the database (the files are being copied, validated and
fitted), the server is killed with SIGKILL. After a restart: no registering row, the same
experts, byte-identical store files, no upload leftovers; the same registration then
succeeds and the new expert answers.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from helpers.server import AUTH, KEY, copy_home, free_port

from composer.serving.archive import pack

pytestmark = pytest.mark.slow


def start(home: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "COMPOSER_HOME": str(home), "COMPOSER_API_KEY": KEY, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "composer"),
            "serve",
            "--in-process",
            "--port",
            str(port),
            "--threads",
            "2",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("the server did not start")


# The database is read with sqlite3, not `Registry`: opening a Registry recovers dead
# registrations, which would clean up the very state this test looks for.
def registering_rows(home: Path) -> int:
    with sqlite3.connect(home / "registry.db", timeout=10) as db:
        return db.execute("SELECT count(*) FROM experts WHERE status = 'registering'").fetchone()[0]


def state(home: Path) -> tuple:
    with sqlite3.connect(home / "registry.db", timeout=10) as db:
        rows = sorted(db.execute("SELECT name, version, status, digest FROM experts").fetchall())
        artifacts = db.execute("SELECT count(*) FROM artifacts").fetchone()[0]
    store = home / "store"
    files = sorted(
        (p.relative_to(store).as_posix(), p.stat().st_size) for p in store.rglob("*") if p.is_file()
    )
    uploads = sorted(p.name for p in (home / "uploads").glob("*"))
    return rows, artifacts, files, uploads


def test_server_killed_during_registration_leaves_no_half_expert(demo_ocean, tmp_path):
    home = copy_home(demo_ocean, tmp_path / "home")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    archive = pack(demo_ocean.out / "experts" / "length")
    meta = json.dumps({"name": "fresh", "examples": ["Count the letters in this word: p a r i s"]})

    def register() -> httpx.Response:
        return httpx.post(
            url + "/v1/experts",
            files={"archive": ("a.zip", archive, "application/zip")},
            data={"metadata": meta},
            headers=AUTH,
            timeout=300,
        )

    proc = start(home, port)
    try:
        before = state(home)
        outcome: list = []
        poster = threading.Thread(target=lambda: outcome.append(_try(register)))
        poster.start()
        deadline = time.monotonic() + 120
        while registering_rows(home) == 0:
            assert time.monotonic() < deadline and not outcome, f"the registration never started: {outcome}"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        poster.join(60)
        assert outcome and isinstance(outcome[0], httpx.HTTPError)  # the client saw the connection die
        assert registering_rows(home) == 1  # the crash left a half registration behind...

        proc = start(home, port)  # ...which the restarted server removes before serving
        assert registering_rows(home) == 0
        assert state(home) == before
        r = register()
        assert r.status_code == 201, r.text
        assert r.json()["name"] == "fresh" and r.json()["version"] == 1
        answer = httpx.post(
            url + "/v1/chat/completions",
            timeout=120,
            json={
                "model": "fresh",
                "max_tokens": 16,
                "messages": [{"role": "user", "content": "Count the letters in this word: p a r i s"}],
            },
        )
        assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"]
        assert state(home)[3] == []  # the upload dir of the finished registration is gone too
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def _try(fn):
    try:
        return fn()
    except httpx.HTTPError as e:
        return e
