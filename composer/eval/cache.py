"""Evaluation outputs kept per (example, execution, decoding settings), so sweeps reuse them.

Contract: `OutputCache(path)` is a SQLite table of JSON values; `key(prompt, kind,
choices, execution, settings)` is a sha256 over what determines an output: the prompt,
the task kind and choices, the *execution* (what the host runs: mode, experts with their
weights and file digests, gate spec; see `runner.execution`) and the decoding settings.
Two routers that send an example to the same expert share its output, as RouteLLM caches
expert answers. `get_many(keys)` / `put_many({key: value})`; `hits`/`misses` count lookups.
Safe for several processes (Ray actors) on one machine.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path


def key(prompt: str, kind: str, choices, execution: dict, settings: dict) -> str:
    blob = json.dumps(
        [prompt, kind, list(choices), execution, settings], sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(blob.encode()).hexdigest()


class OutputCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.hits = self.misses = 0
        with self._db() as db:
            db.execute("create table if not exists outputs (key text primary key, value text not null)")

    def _db(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=60)
        db.execute("pragma journal_mode=wal")
        return db

    def get_many(self, keys: list[str]) -> dict[str, dict]:
        found: dict[str, dict] = {}
        with self._lock, self._db() as db:
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                marks = ",".join("?" * len(chunk))
                for k, v in db.execute(f"select key, value from outputs where key in ({marks})", chunk):
                    found[k] = json.loads(v)
        self.hits += len(found)
        self.misses += len(set(keys)) - len(found)
        return found

    def put_many(self, values: dict[str, dict]) -> None:
        with self._lock, self._db() as db:
            db.executemany(
                "insert or replace into outputs values (?, ?)",
                [(k, json.dumps(v)) for k, v in values.items()],
            )
