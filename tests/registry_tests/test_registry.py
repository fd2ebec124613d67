"""The registry: round trips, versions, listing from memory, any SQLAlchemy database,
and router artifacts (fixtures in conftest.py; every `reg` test runs on SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers.tiny import copy_of, fit_ok, snapshot

from registry import (
    NAME_RE,
    ArtifactRecord,
    ConflictError,
    ExpertRecord,
    NotFoundError,
    Registry,
    RegistryError,
    ValidationError,
)

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # transformers/peft deprecations


# ------------------------------------------------------------------------------ round trip
def _recomputed(path: Path) -> dict:
    return {
        p.relative_to(path).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def test_round_trip(reg, fx, tmp_path):
    # base resolved from adapter_config.json's base_model_name_or_path == the base's source
    lora = reg.register(
        fx.lora,
        "math",
        description="adds",
        tags="math",
        domains=["arith"],
        examples=["two plus two", {"prompt": "add a cat", "completion": "dog"}],
    )
    model = reg.register(fx.base, "whole", kind="model")
    assert isinstance(lora, ExpertRecord) and lora.status == "ready" and lora.version == 1
    assert lora.base_model == "tiny" and lora.kind == "lora" and lora.tags == ["math"]
    assert lora.examples == [
        {"prompt": "two plus two", "completion": None},
        {"prompt": "add a cat", "completion": "dog"},
    ]
    assert lora.config["r"] == 4 and lora.config["lora_alpha"] == 8 and lora.config["scaling"] == 2.0
    assert lora.config["target_modules"] == ["q_proj", "v_proj"] and len(lora.config["modules"]) == 4
    assert model.config["model_type"] == "llama" and model.config["hidden_size"] == 32
    for rec in (reg.get("tiny"), lora, model):
        assert rec.path == reg.path(rec) and rec.path.is_dir() and reg.store.root in rec.path.parents
        assert rec.sha256 == _recomputed(rec.path)
        lines = "".join(f"{h}  {p}\n" for p, h in sorted(rec.sha256.items()))
        assert rec.digest == hashlib.sha256(lines.encode()).hexdigest()
        json.dumps(rec.to_dict())
    assert "adapter_model.safetensors" in lora.sha256 and "model.safetensors" in model.sha256
    assert [r.name for r in reg.list()] == ["math", "tiny", "whole"]
    assert [r.name for r in reg.list(kind="lora")] == ["math"]
    assert [r.name for r in reg.list(base="tiny")] == ["math"]
    assert reg.get("math") == lora

    with pytest.raises(ConflictError, match="already exists"):
        reg.register(fx.lora, "math", base="tiny")
    with pytest.raises(ConflictError, match="kind"):
        reg.register(fx.base, "math", kind="model", new_version=True)
    v2 = reg.register(fx.lora, "math", base="tiny", new_version=True, description="v2")
    assert v2.version == 2 and v2.path != lora.path
    assert reg.get("math").version == 2 and reg.get("math", version=1).description == "adds"
    assert [(r.name, r.version) for r in reg.list(kind="lora")] == [("math", 2)]
    assert [r.version for r in reg.versions("math")] == [1, 2]

    with pytest.raises(ConflictError, match="used by 1 adapter"):
        reg.remove("tiny")
    removed = reg.remove("math", version=1)
    assert removed.status == "removed" and not lora.path.exists() and reg.get("math").version == 2
    reg.remove("math")
    assert not v2.path.exists() and "math" not in [r.name for r in reg.list()]
    assert [r.status for r in reg.versions("math")] == ["removed", "removed"]
    assert ("math", 1, "removed") in snapshot(reg)[2]
    for beyond in (
        0,
        -1,
        2**31,
        2**63,
    ):  # not a storable version (SQLite: 64-bit, PostgreSQL: 32-bit INTEGER)
        with pytest.raises(NotFoundError, match=f"version {beyond} is not registered"):
            reg.get("tiny", version=beyond)
        with pytest.raises(NotFoundError):
            reg.remove("tiny", version=beyond)
    with pytest.raises(NotFoundError, match="'math' is not registered"):
        reg.get("math")
    with pytest.raises(NotFoundError):
        reg.remove("math")
    again = reg.register(fx.lora, "math", base="tiny")
    assert again.version == 3 and again.status == "ready" and again.sha256 == _recomputed(again.path)
    assert not list((reg.store.root / ".staging").iterdir())


def test_scores_and_env_defaults(reg, fx, tmp_path, monkeypatch):
    rec = reg.set_scores("tiny", {"gsm": 0.5, "mmlu": {"acc": 0.3}})
    rec = reg.set_scores("tiny", {"gsm": None, "bbh": 1})
    assert rec.scores == {"mmlu": {"acc": 0.3}, "bbh": 1} == reg.get("tiny").scores
    with pytest.raises(ValidationError, match="finite"):
        reg.set_scores("tiny", {"x": float("nan")})
    from composer.settings import Settings

    monkeypatch.setenv("COMPOSER_HOME", str(tmp_path / "envhome"))
    monkeypatch.setenv("COMPOSER_STORE", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("COMPOSER_DB_URL", f"sqlite:///{tmp_path / 'envhome' / 'other.db'}")
    assert Settings.from_env().home_dir == tmp_path / "envhome"
    r = Settings.from_env().registry()  # the registry itself reads no environment: entry points pass it
    assert (tmp_path / "envhome" / "other.db").is_file() and not (
        tmp_path / "envhome" / "registry.db"
    ).exists()
    assert r.store.root == (tmp_path / "elsewhere").resolve()
    assert Registry(home=tmp_path / "plain").store.root == (tmp_path / "plain" / "store").resolve()
    assert NAME_RE.match("a.b_c-1") and not NAME_RE.match("A")


def test_list_answers_from_memory_until_any_client_writes(reg, fx, db_url):
    """Routing lists the experts on every request: while nothing changed that costs one query
    for the revision token and no read of the experts; a write by another client of the same
    database (another process, another node) is seen at the next call."""
    from sqlalchemy import event

    reg.register(fx.lora, "math", base="tiny")
    other = Registry(home=reg.home, db_url=db_url)
    statements: list[str] = []
    event.listen(reg.engine, "before_cursor_execute", lambda conn, cur, sql, *rest: statements.append(sql))
    warm = reg.list(kind="lora", base="tiny")
    assert any("FROM experts" in sql for sql in statements)
    token = reg.revision()
    statements.clear()
    assert reg.list(kind="lora", base="tiny") == warm and [r.name for r in warm] == ["math"]
    assert len(statements) == 1 and "registry_info" in statements[0], statements
    assert reg.revision() == token  # reads leave it alone

    other.set_scores("math", {"bench": 0.5})
    assert reg.revision() != token and reg.list(kind="lora", base="tiny")[0].scores == {"bench": 0.5}
    other.register(fx.lora, "extra", base="tiny")
    assert [r.name for r in reg.list(kind="lora", base="tiny")] == ["extra", "math"]
    other.put_artifact("extra", "demo", "k", b"x", {})
    token = reg.revision()
    other.remove("extra")
    assert reg.revision() != token and [r.name for r in reg.list(kind="lora")] == ["math"]
    assert [(r.name, r.status) for r in reg.list(include_removed=True) if r.name == "extra"] == [
        ("extra", "removed")
    ]
    other.close()


def test_a_snapshot_reads_the_token_once_and_sees_its_own_writes(reg, fx, db_url):
    """Inside `snapshot()` (one request), reads share one token read: another client's write
    shows after the block, this thread's own write at once; other threads are not pinned."""
    import threading

    from sqlalchemy import event

    reg.register(fx.lora, "math", base="tiny")
    other = Registry(home=reg.home, db_url=db_url)
    statements: list[str] = []
    event.listen(reg.engine, "before_cursor_execute", lambda conn, cur, sql, *rest: statements.append(sql))
    reg.list(kind="lora")
    statements.clear()
    with reg.snapshot():
        for _ in range(5):
            assert [r.name for r in reg.list(kind="lora")] == ["math"] and reg.quarantined() == {}
        assert len([s for s in statements if "registry_info" in s]) == 1, statements
        other.register(fx.lora, "extra", base="tiny")
        with reg.snapshot():  # nested: still the outer snapshot
            assert [r.name for r in reg.list(kind="lora")] == ["math"]
        seen: list = []
        worker = threading.Thread(target=lambda: seen.append([r.name for r in reg.list(kind="lora")]))
        worker.start()
        worker.join()
        assert seen == [["extra", "math"]]  # another thread reads the database as it is
        reg.quarantine("math", 1, "own write")
        assert list(reg.quarantined()) == [("math", 1)]  # its own write: seen at once
        assert [r.name for r in reg.list(kind="lora")] == ["extra", "math"]
    other.remove("extra")
    assert [r.name for r in reg.list(kind="lora")] == ["math"]  # after the block: every read follows
    other.close()


def test_any_sqlalchemy_url(tmp_path, fx):
    url = f"sqlite:///{tmp_path}/elsewhere/other.db"
    r1 = Registry(home=tmp_path / "h", db_url=url, store_dir=tmp_path / "objects")
    r1.register(fx.base, "tiny", kind="base")
    assert (tmp_path / "elsewhere" / "other.db").is_file() and not (tmp_path / "h" / "registry.db").exists()
    assert r1.get("tiny").path.is_relative_to(tmp_path / "objects")
    r2 = Registry(home=tmp_path / "h2", db_url=url, store_dir=tmp_path / "objects")  # a second client
    assert [r.name for r in r2.list()] == ["tiny"] and r2.counts() == {"experts": 1, "artifacts": 0}
    assert r1.owns_store and r2.owns_store
    # a different database pointed at the same store never sweeps the files it does not know
    r3 = Registry(
        home=tmp_path / "h3", db_url=f"sqlite:///{tmp_path}/third.db", store_dir=tmp_path / "objects"
    )
    assert not r3.owns_store and r3.recover(grace_s=0)["files"] == [] and r1.get("tiny").path.is_dir()
    assert r1.recover(grace_s=0)["files"] == [] and r1.get("tiny").sha256 == _recomputed(r1.get("tiny").path)


def test_shared_postgresql_database(pg_server, tmp_path, fx):
    url, other = pg_server.create_database(), pg_server.create_database()
    r1 = Registry(home=tmp_path / "h", db_url=url, store_dir=tmp_path / "objects")
    r2 = Registry(home=tmp_path / "h2", db_url=url, store_dir=tmp_path / "objects")  # a second client
    r1.register(fx.base, "tiny", kind="base")
    assert [r.name for r in r2.list()] == ["tiny"] and r2.counts() == {"experts": 1, "artifacts": 0}
    assert r1.owns_store and r2.owns_store and not (tmp_path / "h" / "registry.db").exists()
    r3 = Registry(home=tmp_path / "h3", db_url=other, store_dir=tmp_path / "objects")
    assert not r3.owns_store and r3.recover(grace_s=0)["files"] == [] and r1.get("tiny").path.is_dir()
    for r in (r1, r2, r3):
        r.close()
    pg_server.drop_database(url)
    pg_server.drop_database(other)


def test_symlink_inside_is_copied(reg, fx, tmp_path):
    d = copy_of(fx.lora, tmp_path)
    (d / "README.md").unlink()
    (d / "README.md").symlink_to(d / "adapter_config.json")
    rec = reg.register(d, "linked", base="tiny")
    assert not (rec.path / "README.md").is_symlink() and (rec.path / "README.md").read_text()
    # Hugging Face hub cache layout: snapshots/<rev>/<file> -> ../../blobs/<hash>
    repo = tmp_path / "hub" / "models--org--tiny"
    (repo / "blobs").mkdir(parents=True)
    snap = repo / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    for f in fx.base.iterdir():
        shutil.copyfile(f, repo / "blobs" / f.name)
        (snap / f.name).symlink_to(Path("../../blobs") / f.name)
    hub = reg.register(snap, "hub-model", kind="model", source="org/tiny")
    assert hub.source == "org/tiny" and hub.sha256 == _recomputed(fx.base)


# ------------------------------------------------------------------------------ artifacts
def test_artifacts(reg, fx):
    rec = reg.register(fx.lora, "math", base="tiny", fit=fit_ok)
    assert [(a.router, a.key) for a in reg.artifacts("math")] == [("phatgoose", "gates")]
    data = os.urandom(256)
    a = reg.put_artifact("math", "arrow", "q_proj", data, meta={"layers": 2})
    assert isinstance(a, ArtifactRecord) and a.expert == "math" and a.expert_id == rec.id
    assert a.sha256 == hashlib.sha256(data).hexdigest() and a.path.read_bytes() == data
    got, blob = reg.get_artifact("math", "arrow", "q_proj")
    assert blob == data and got == a and got.meta == {"layers": 2}
    json.dumps(got.to_dict())
    b = reg.put_artifact("math", "arrow", "q_proj", b"new")  # upsert: new file, old one deleted
    assert b.id == a.id and not a.path.exists() and reg.get_artifact("math", "arrow", "q_proj")[1] == b"new"
    reg.put_artifact("tiny", "arrow", "proto", b"p")
    assert [x.key for x in reg.artifacts(router="arrow")] == ["proto", "q_proj"]
    assert len(reg.artifacts()) == 3 and reg.counts()["artifacts"] == 3
    with pytest.raises(NotFoundError, match="no artifact arrow/nope"):
        reg.get_artifact("math", "arrow", "nope")
    with pytest.raises(ValidationError, match="artifact key"):
        reg.put_artifact("math", "arrow", "../evil", b"x")
    b.path.write_bytes(b"tampered")
    with pytest.raises(RegistryError, match="corrupt"):
        reg.get_artifact("math", "arrow", "q_proj")
    assert reg.delete_artifacts("tiny", router="arrow") == 1 and reg.counts()["artifacts"] == 2
    files = [x.path for x in reg.artifacts("math")]
    reg.remove("math")
    assert reg.counts()["artifacts"] == 0 and not any(p.exists() for p in files)
    assert not list((reg.store.root / "artifacts").iterdir())


def test_quarantine_is_shared_released_and_goes_with_the_expert(reg, fx, db_url, tmp_path):
    reg.register(fx.lora, "math", base="tiny")
    v2 = reg.register(fx.lora, "math", base="tiny", new_version=True)
    other = Registry(home=reg.home, db_url=db_url)  # another process of the same database
    assert other.quarantined() == {}
    reg.quarantine("math", 2, "a host could not load it")
    reg.quarantine("math", 2, "stored files changed")  # again: the reason is updated, not duplicated
    held = other.quarantined()
    assert list(held) == [("math", 2)] and held[("math", 2)]["reason"] == "stored files changed"
    assert [r.version for r in reg.list(kind="lora")] == [v2.version]  # still listed: routing filters it
    with pytest.raises(NotFoundError):
        reg.quarantine("nope", 1, "x")
    assert other.release("math", 1) == 0 and other.release("math") == 1
    assert reg.quarantined() == {}
    reg.quarantine("math", 2, "again")
    reg.remove("math")
    assert reg.quarantined() == {} and other.quarantined() == {}


def test_artifact_router_and_key_up_to_128_chars(reg):
    # the documented limit of both (SLUG_RE): PostgreSQL enforces column lengths, SQLite does not
    router, key = "r" * 128, "k" * 128
    a = reg.put_artifact("tiny", router, key, b"x", meta={"n": 1})
    assert (a.router, a.key) == (router, key) and reg.get_artifact("tiny", router, key)[1] == b"x"
    with pytest.raises(ValidationError, match="1-128 chars"):
        reg.put_artifact("tiny", "r" * 129, "k", b"x")
    assert reg.counts()["artifacts"] == 1


def test_clients_opening_a_fresh_database_at_once(db_url, tmp_path):
    """Several processes may share one database: their first opens create its tables concurrently."""
    with ThreadPoolExecutor(4) as pool:
        regs = list(pool.map(lambda _: Registry(home=tmp_path / "h", db_url=db_url), range(4)))
    assert [r.counts()["experts"] for r in regs] == [0] * 4 and len({r.store.root for r in regs}) == 1
    for r in regs:
        r.close()
