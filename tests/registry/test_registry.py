"""Registry tests: real databases, real tiny Llama models, real PEFT adapters; no mocks.

Fixtures build (offline, once per session) a hidden-32 base with a WordLevel tokenizer,
a LoRA and a DoRA adapter for it, and a LoRA for a hidden-48 model (wrong shapes).
Every test of a registry (``reg``) runs on both backends: "sqlite" (the default
``<home>/registry.db`` file) and "postgresql" (a throwaway server started once per session by
``tests/helpers/postgres.py``, a fresh database per test; skipped, with the reason, where it cannot start).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers import postgres
from helpers.adapter_edits import (
    config,
    edit_json,
    pickle_only,
    poison,
    remove,
    rename_modules,
    weights,
    write,
)

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
WORDS = ["[UNK]", "[PAD]", "<s>", "</s>", "the", "a", "cat", "dog", "sat", "on", "mat", "add", "two", "plus"]


def _tiny_model_dir(d: Path, hidden: int) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(hidden)
    cfg = LlamaConfig(
        vocab_size=64,
        hidden_size=hidden,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
    )
    LlamaForCausalLM(cfg).save_pretrained(d)  # safetensors is the only format transformers 5 writes
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", bos_token="<s>", eos_token="</s>"
    ).save_pretrained(d)
    return d


def _adapter_dir(base_dir: Path, out: Path, **lora_kw) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(base_dir)
    peft_model = get_peft_model(
        model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False, **lora_kw)
    )
    peft_model.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def fx(tmp_path_factory):
    root = tmp_path_factory.mktemp("fixtures")
    base = _tiny_model_dir(root / "tiny-base", 32)
    base48 = _tiny_model_dir(root / "tiny-base-48", 48)
    return SimpleNamespace(
        base=base,
        lora=_adapter_dir(base, root / "lora"),
        dora=_adapter_dir(base, root / "dora", use_dora=True),
        lora48=_adapter_dir(base48, root / "lora48"),
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


def snapshot(reg: Registry):
    root = reg.store.root
    files = sorted(p.relative_to(root).as_posix() + ("/" if p.is_dir() else "") for p in root.rglob("*"))
    rows = [(r.name, r.version, r.status) for r in reg.list(include_removed=True)]
    return reg.counts(), files, rows


def copy_of(src: Path, tmp_path: Path, name: str = "case") -> Path:
    dst = tmp_path / name
    shutil.copytree(src, dst)
    return dst


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


# ------------------------------------------------------------------------------ validation
def _lora_case(edit=None, **kw):
    def make(fx, tmp_path, reg):
        d = copy_of(fx.lora, tmp_path)
        if edit:
            edit(d)
        return d, {"base": "tiny", **kw}

    return make


def _model_case(edit):
    def make(fx, tmp_path, reg):
        d = copy_of(fx.base, tmp_path)
        edit(d)
        return d, {"kind": "model"}

    return make


def _taken(fx, tmp_path, reg):
    reg.register(fx.lora, "taken", base="tiny")
    return fx.lora, {"name": "taken", "base": "tiny"}


def _symlink_out(d):
    (d / "secret").symlink_to("/etc/hostname")


LM_HEAD = "base_model.model.lm_head.weight"
CASES = {
    "missing-config": (_lora_case(remove("adapter_config.json")), "adapter_config.json is missing in"),
    "unparseable-config": (_lora_case(write("adapter_config.json", "{r: 4,")), "is not valid JSON"),
    "non-object-config": (
        _lora_case(write("adapter_config.json", "[1, 2]")),
        "must be a JSON object, got list",
    ),
    "peft-type": (_lora_case(config(peft_type="IA3")), "peft_type is 'IA3'"),
    "r-zero": (_lora_case(config(r=0)), "r must be an integer in 1..4096, got 0"),
    "r-huge": (_lora_case(config(r=1_000_000)), "r must be an integer in 1..4096"),
    "r-above-layer": (_lora_case(config(r=64)), "r=64 exceeds min(in, out)=32"),
    "alpha-nan": (
        _lora_case(
            write(
                "adapter_config.json",
                '{"peft_type": "LORA", "r": 4, "lora_alpha": NaN, "target_modules": ["q_proj"]}',
            )
        ),
        "lora_alpha must be a finite number",
    ),
    "modules-to-save": (_lora_case(config(modules_to_save=["lm_head"])), "modules_to_save is set"),
    "pickle-weights": (
        _lora_case(pickle_only("adapter_model.safetensors", "adapter_model.bin")),
        "pickle weights are refused (adapter_model.bin",
    ),
    "missing-weights": (
        _lora_case(remove("adapter_model.safetensors")),
        "adapter_model.safetensors is missing",
    ),
    "corrupt-weights": (_lora_case(write("adapter_model.safetensors", "garbage")), "not a valid safetensors"),
    "empty-weights": (_lora_case(weights(lambda t: {})), "holds no tensors"),
    "shape-mismatch": (lambda fx, tmp_path, reg: (fx.lora48, {"base": "tiny"}), "shape mismatch for"),
    "module-absent": (
        _lora_case(
            lambda d: (
                weights(rename_modules("q_proj", "zz_proj"))(d),
                config(target_modules=["zz_proj", "v_proj"])(d),
            )
        ),
        "'model.layers.0.self_attn.zz_proj', which is not in the base model",
    ),
    "not-linear": (
        _lora_case(weights(rename_modules("self_attn.q_proj", "input_layernorm"))),
        "(LlamaRMSNorm); only Linear layers are supported",
    ),
    "target-without-tensors": (
        _lora_case(config(target_modules=["q_proj", "v_proj", "k_proj"])),
        "'k_proj' is listed in adapter_config.json but",
    ),
    "unexpected-tensor": (
        _lora_case(weights(lambda t: {**t, LM_HEAD: torch.ones(2)})),
        "unexpected tensor 'base_model.model.lm_head.weight'",
    ),
    "lora-A-only": (
        _lora_case(
            weights(
                lambda t: {k: v for k, v in t.items() if "layers.1.self_attn.q" not in k or "lora_A" in k}
            )
        ),
        "has lora_A but no lora_B",
    ),
    "nan-weight": (_lora_case(weights(poison(float("nan")))), "contains NaN or Inf"),
    "inf-weight": (_lora_case(weights(poison(float("inf")))), "contains NaN or Inf"),
    "dora": (lambda fx, tmp_path, reg: (fx.dora, {"base": "tiny"}), "DoRA"),
    "dora-tensors": (
        _lora_case(
            weights(
                lambda t: {
                    **t,
                    "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector": torch.ones(32),
                }
            )
        ),
        "DoRA",
    ),
    "base-not-registered": (
        _lora_case(base="nope"),
        (
            "base model 'nope' is not registered; register it first with: "
            "composer register PATH --kind base --name nope"
        ),
    ),
    "base-unknown-path": (
        _lora_case(config(base_model_name_or_path="/models/Other-7B"), base=None),
        (
            "base model '/models/Other-7B' is not registered; register it first with: "
            "composer register PATH --kind base --name other-7b"
        ),
    ),
    "base-is-not-base": (
        lambda fx, tmp_path, reg: (
            reg.register(fx.lora, "l1", base="tiny") and fx.lora,
            {"base": "l1", "name": "l2"},
        ),
        "not a base model",
    ),
    "symlink-outside": (_lora_case(_symlink_out), "points outside"),
    "not-a-directory": (lambda fx, tmp_path, reg: (tmp_path / "nowhere", {}), "is not a directory"),
    "bad-kind": (_lora_case(kind="adapter"), "kind must be one of"),
    "bad-example": (_lora_case(examples=[{"prompt": ""}]), "example 0: prompt must be a non-empty string"),
    "description-nul": (
        _lora_case(description="a\x00b"),
        "description must be a string without NUL characters",
    ),
    "name-space": (_lora_case(name="Bad Name"), "invalid name 'Bad Name'"),
    "name-dash": (_lora_case(name="-x"), "invalid name '-x'"),
    "name-long": (_lora_case(name="a" * 65), "invalid name"),
    "name-traversal": (_lora_case(name="../x"), "invalid name '../x'"),
    "name-taken": (_taken, "expert 'taken' already exists (version 1)"),
    "model-remote-code": (
        _model_case(lambda d: edit_json(d / "config.json", auto_map={"AutoModel": "x.Y"})),
        "requires remote code; trust_remote_code is never set",
    ),
    "model-unknown-type": (
        _model_case(lambda d: edit_json(d / "config.json", model_type="mystery")),
        "'mystery' is unknown to transformers",
    ),
    "model-pickle": (
        _model_case(pickle_only("model.safetensors", "pytorch_model.bin")),
        "pickle weights are refused (pytorch_model.bin",
    ),
    "model-no-config": (_model_case(remove("config.json")), "config.json is missing in"),
    "model-no-tokenizer": (
        _model_case(lambda d: (remove("tokenizer.json")(d), remove("tokenizer_config.json")(d))),
        "no tokenizer in",
    ),
    "model-shape": (
        _model_case(lambda d: edit_json(d / "config.json", intermediate_size=96)),
        "shape mismatch for 'model.layers.0.mlp.down_proj.weight'",
    ),
    "model-nan": (_model_case(weights(poison(float("nan")), "model.safetensors")), "contains NaN or Inf"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_validation_rejects(case, reg, fx, tmp_path):
    make, message = CASES[case]
    path, kw = make(fx, tmp_path, reg)
    kw = {"name": "candidate", **kw}
    before = snapshot(reg)
    exc = ConflictError if case == "name-taken" else ValidationError
    with pytest.raises(exc) as info:
        reg.register(path, **kw)
    msg = str(info.value)
    assert message in msg and "\n" not in msg and ".staging" not in msg
    assert snapshot(reg) == before
    reg.recover(grace_s=0)
    assert snapshot(reg) == before


# ------------------------------------------------------------------------------ atomicity
def _boom(*a, **k):
    raise RuntimeError("injected failure")


def _fit_ok(staged, draft):
    assert (staged / "adapter_model.safetensors").is_file() and draft.status == "registering"
    return [("phatgoose", "gates", b"\x00" * 16, {"format": "npy"})]


@pytest.mark.parametrize("where", ["fit", "commit", "artifact-write", "db-finalize"])
def test_failure_mid_registration_leaves_nothing(where, reg, fx, monkeypatch):
    before = snapshot(reg)
    fit = _boom if where == "fit" else _fit_ok
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
    rec = reg.register(fx.lora, "atomic", base="tiny", fit=_fit_ok)
    assert rec.version == 1 and [a.key for a in reg.artifacts("atomic")] == ["gates"]


def test_crash_then_recover(reg, fx, monkeypatch):
    before = snapshot(reg)
    with monkeypatch.context() as m:  # no cleanup at all: as if the process died after the rename
        m.setattr(reg, "_undo", lambda *a: None)
        m.setattr(reg, "_finalize", _boom)
        with pytest.raises(RuntimeError):
            reg.register(fx.lora, "crashy", base="tiny", fit=_fit_ok)
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


# ------------------------------------------------------------------------------ artifacts
def test_artifacts(reg, fx):
    rec = reg.register(fx.lora, "math", base="tiny", fit=_fit_ok)
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
