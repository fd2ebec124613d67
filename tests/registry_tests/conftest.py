"""Fixtures of the registry tests: real databases, real tiny Llama models, real PEFT adapters.

`fx` builds (offline, once per session) a hidden-32 base with a WordLevel tokenizer, a LoRA
and a DoRA adapter for it, and a LoRA for a hidden-48 model (wrong shapes). `reg` is a
registry with that base registered as "tiny", on both backends (`db_url`): "sqlite" (the
default ``<home>/registry.db`` file) and "postgresql" (a throwaway server started once per
session by ``tests/helpers/postgres.py``, a fresh database per test; skipped, with the
reason, where it cannot start). Shared helpers are in `tests/helpers/tiny.py`.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from helpers import postgres
from helpers.tiny import adapter_dir, tiny_model_dir

from registry import (
    Registry,
)


@pytest.fixture(scope="session")
def fx(tmp_path_factory):
    root = tmp_path_factory.mktemp("fixtures")
    base = tiny_model_dir(root / "tiny-base", 32)
    base48 = tiny_model_dir(root / "tiny-base-48", 48)
    return SimpleNamespace(
        base=base,
        lora=adapter_dir(base, root / "lora"),
        dora=adapter_dir(base, root / "dora", use_dora=True),
        lora48=adapter_dir(base48, root / "lora48"),
    )


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for k in ("COMPOSER_HOME", "COMPOSER_DB_URL", "COMPOSER_STORE"):
        monkeypatch.delenv(k, raising=False)


@pytest.fixture(scope="session")
def pg_server():
    try:
        server = postgres.start()
    except postgres.Unavailable as e:
        pytest.skip(str(e))
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request):
    """None for SQLite (the registry's default file), else a fresh PostgreSQL database's URL."""
    if request.param == "sqlite":
        yield None
        return
    server = request.getfixturevalue("pg_server")
    url = server.create_database()
    yield url
    server.drop_database(url)


@pytest.fixture
def reg(tmp_path, fx, db_url):
    r = Registry(home=tmp_path / "home", db_url=db_url)
    r.register(fx.base, "tiny", kind="base", description="tiny llama", tags=["test"])
    yield r
    r.close()
