"""Atomic registration: a failure or a crash at any step leaves no half expert, recovery
removes dead registrations and stray files, and concurrent registrations do not collide
(fixtures in conftest.py; SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers.tiny import fit_ok, snapshot

from registry import (
    ConflictError,
    ExpertRecord,
    NotFoundError,
    Registry,
)

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # transformers/peft deprecations


# ------------------------------------------------------------------------------ atomicity
def _boom(*a, **k):
    raise RuntimeError("injected failure")


@pytest.mark.parametrize("where", ["fit", "commit", "artifact-write", "db-finalize"])
def test_failure_mid_registration_leaves_nothing(where, reg, fx, monkeypatch):
    before = snapshot(reg)
    fit = _boom if where == "fit" else fit_ok
    with monkeypatch.context() as m:
        if where == "commit":
            m.setattr(reg.store, "commit_dir", _boom)
        elif where == "artifact-write":
            m.setattr(reg.store, "write_file_atomic", _boom)
        elif where == "db-finalize":
            m.setattr(reg, "_finalize", _boom)
        with pytest.raises(RuntimeError, match="injected failure"):
            reg.register(fx.lora, "atomic", base="tiny", fit=fit)
    assert snapshot(reg) == before
    reg.recover(grace_s=0)
    assert snapshot(reg) == before
    rec = reg.register(fx.lora, "atomic", base="tiny", fit=fit_ok)
    assert rec.version == 1 and [a.key for a in reg.artifacts("atomic")] == ["gates"]


def test_crash_then_recover(reg, fx, monkeypatch):
    before = snapshot(reg)
    with monkeypatch.context() as m:  # no cleanup at all: as if the process died after the rename
        m.setattr(reg, "_undo", lambda *a: None)
        m.setattr(reg, "_finalize", _boom)
        with pytest.raises(RuntimeError):
            reg.register(fx.lora, "crashy", base="tiny", fit=fit_ok)
    assert reg.counts()["experts"] == before[0]["experts"] + 1  # the 'registering' row
    assert "crashy" not in [r.name for r in reg.list(include_removed=True)]
    with pytest.raises(NotFoundError):
        reg.get("crashy")
    # default grace + owner alive: an in-flight registration is kept
    Registry(home=reg.home, db_url=reg.db_url).close()
    assert reg.counts()["experts"] == before[0]["experts"] + 1
    assert reg.recover(grace_s=0)["rows"] == 1
    assert snapshot(reg) == before
    assert reg.register(fx.lora, "crashy", base="tiny").version == 1


def test_killed_process_is_recovered(reg, fx):
    before = snapshot(reg)
    code = textwrap.dedent(f"""
        import os
        from registry import Registry
        def fit(staged, draft):
            os._exit(3)
        reg = Registry(home={str(reg.home)!r}, db_url={reg.db_url!r})
        reg.register({str(fx.lora)!r}, "killed", base="tiny", fit=fit)
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    assert subprocess.run([sys.executable, "-c", code], env=env, timeout=120, check=False).returncode == 3
    assert reg.counts()["experts"] == before[0]["experts"] + 1 and snapshot(reg)[1] != before[1]
    # the owner pid is dead: recovered without waiting for the grace
    Registry(home=reg.home, db_url=reg.db_url).close()
    assert snapshot(reg) == before
    assert reg.register(fx.lora, "killed", base="tiny").version == 1


def test_sweep_removes_strays_after_grace(reg):
    before = snapshot(reg)
    root = reg.store.root
    (root / "objects/lora/ghost/v1-deadbeef").mkdir(parents=True)
    (root / "objects/lora/ghost/v1-deadbeef/x.bin").write_bytes(b"x")
    (root / "artifacts/999/r").mkdir(parents=True)
    (root / "artifacts/999/r/k.1234.bin").write_bytes(b"x")
    reg.store.stage_dir()
    assert reg.recover()["files"] == [] and snapshot(reg) != before  # young: kept
    assert len(reg.recover(grace_s=0)["files"]) == 3
    assert snapshot(reg) == before


def test_concurrent_registrations(reg, fx):
    names = ["c0", "c1", "c2", "dup", "dup"]

    def one(name):
        try:
            return reg.register(fx.lora, name, base="tiny")
        except ConflictError as e:
            return e

    with ThreadPoolExecutor(4) as pool:
        out = list(pool.map(one, names))
    assert all(isinstance(o, ExpertRecord) for o in out[:3])
    assert sorted(type(o).__name__ for o in out[3:]) == ["ConflictError", "ExpertRecord"]
    assert [r.name for r in reg.list(kind="lora")] == ["c0", "c1", "c2", "dup"]
