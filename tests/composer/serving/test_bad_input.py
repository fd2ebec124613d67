"""Bad input to the REST API: every malformed submission or request is a 4xx JSON error
naming the problem, and changes nothing.

The app runs in this process over the in-process backend (`LocalBackend`), behind FastAPI's
TestClient: the HTTP layer, the request policy, registration and the models are the same
code as on Ray, without starting Ray (seconds, not minutes). One app for the module, on a
private copy of the fast demo ocean, with small limits so that they are reachable (2 MiB
uploads, 64 new tokens, 4 experts, 4000 prompt characters, 16 requests in flight, 30 s).
- 49 malformed adapter archives, 38 malformed requests, versions the registry cannot hold
  and malformed JSON registrations: each the documented status and a message naming
  the problem; afterwards the registry rows, the store's files, the uploads dir and a
  normal request's answers are exactly as before (`snapshot`), and nothing is in flight.
The same server on Ray under load and faults: test_load.py, test_faults.py.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest
import torch
from helpers.adapter_edits import both, config, pickle_only, poison, remove, rename_modules, weights, write
from helpers.api import REVERSE, metric, snapshot
from helpers.local import local_server
from helpers.server import AUTH, SMALL_LIMITS, assert_error

from composer.serving.archive import pack

EXAMPLES = ["Write these letters backwards: d o g"]


@pytest.fixture(scope="module")
def server(demo_ocean, tmp_path_factory):
    with local_server(demo_ocean, tmp_path_factory.mktemp("bad-input"), **SMALL_LIMITS) as s:
        yield s


@pytest.fixture(scope="module")
def http(server):
    return server["client"]


def state(server, http) -> tuple:
    """What must not change: registry rows (all statuses), every file of the store, uploads, answers."""
    return snapshot(server["home"], http)


# ---------------------------------------------------------------------------- adapter archives
def adapter_copy(server, tmp: Path, name: str = "reverse") -> Path:
    d = tmp / "adapter"
    shutil.copytree(server["ocean"].out / "experts" / name, d)
    return d


def zip_of(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for n, data in entries.items():
            z.writestr(n, data)
    return buf.getvalue()


def tar_with_link(target: str, hard: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        cfg = b'{"peft_type": "LORA"}'
        info = tarfile.TarInfo("adapter/adapter_config.json")
        info.size = len(cfg)
        t.addfile(info, io.BytesIO(cfg))
        link = tarfile.TarInfo("adapter/adapter_model.safetensors")
        link.type, link.linkname = (tarfile.LNKTYPE if hard else tarfile.SYMTYPE), target
        t.addfile(link)
    return buf.getvalue()


def zip_with_symlink(target: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("adapter/adapter_config.json", "{}")
        info = zipfile.ZipInfo("adapter/adapter_model.safetensors")
        info.external_attr = 0o120777 << 16  # a symlink, as zip -y stores one
        z.writestr(info, target)
    return buf.getvalue()


def fifo_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("adapter/pipe")
        info.type = tarfile.FIFOTYPE
        t.addfile(info)
    return buf.getvalue()


SHAPE = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"
# name: (edit of a copy of the 'reverse' adapter | raw archive bytes, metadata changes, status, words in the message)
ARCHIVES = {
    "missing-config": (remove("adapter_config.json"), {}, 400, "adapter_config.json is missing"),
    "unparseable-config": (write("adapter_config.json", "{r: 8,"), {}, 400, "not valid JSON"),
    "config-not-object": (write("adapter_config.json", "[1, 2]"), {}, 400, "must be a JSON object"),
    "unknown-peft-type": (config(peft_type="IA3"), {}, 400, "peft_type is 'IA3'"),
    "peft-type-garbage": (config(peft_type=42), {}, 400, "peft_type"),
    "rank-zero": (config(r=0), {}, 400, "r must be an integer in 1..4096, got 0"),
    "rank-absurd": (config(r=10**9), {}, 400, "r must be an integer in 1..4096"),
    "rank-negative": (config(r=-8), {}, 400, "r must be an integer"),
    "rank-above-layer": (config(r=512), {}, 400, "exceeds min(in, out)"),
    "rank-not-matching-tensors": (config(r=4), {}, 400, "shape mismatch"),
    "alpha-nan": (
        write(
            "adapter_config.json",
            '{"peft_type": "LORA", "r": 8, "lora_alpha": NaN, "target_modules": ["q_proj"]}',
        ),
        {},
        400,
        "lora_alpha must be a finite number",
    ),
    "modules-to-save": (config(modules_to_save=["lm_head"]), {}, 400, "modules_to_save"),
    "dora": (config(use_dora=True), {}, 400, "DoRA"),
    "missing-weights": (remove("adapter_model.safetensors"), {}, 400, "adapter_model.safetensors is missing"),
    "pickle-weights": (
        pickle_only("adapter_model.safetensors", "adapter_model.bin"),
        {},
        400,
        "pickle weights are refused",
    ),
    "pickle-pt-weights": (
        pickle_only("adapter_model.safetensors", "adapter.pt"),
        {},
        400,
        "pickle weights are refused",
    ),
    "corrupt-weights": (write("adapter_model.safetensors", "garbage"), {}, 400, "not a valid safetensors"),
    "truncated-weights": (
        lambda d: (d / "adapter_model.safetensors").write_bytes(
            (d / "adapter_model.safetensors").read_bytes()[:5000]
        ),
        {},
        400,
        "safetensors",
    ),
    "empty-weights": (weights(lambda t: {}), {}, 400, "holds no tensors"),
    "shape-mismatch": (weights(lambda t: {**t, SHAPE: torch.zeros(64, 8)}), {}, 400, "shape mismatch"),
    "transposed": (weights(lambda t: {**t, SHAPE: t[SHAPE].T.contiguous()}), {}, 400, "shape mismatch"),
    "nan-weight": (weights(poison(float("nan"))), {}, 400, "contains NaN or Inf"),
    "inf-weight": (weights(poison(float("inf"))), {}, 400, "contains NaN or Inf"),
    "module-absent": (
        both(weights(rename_modules("q_proj", "zz_proj")), config(target_modules=["zz_proj", "v_proj"])),
        {},
        400,
        "not in the base model",
    ),
    "not-linear": (
        weights(rename_modules("self_attn.q_proj", "input_layernorm")),
        {},
        400,
        "only Linear layers",
    ),
    "layer-out-of-range": (
        weights(rename_modules("layers.0.", "layers.99.")),
        {},
        400,
        "not in the base model",
    ),
    "target-without-tensors": (
        config(target_modules=["q_proj", "v_proj", "lm_head"]),
        {},
        400,
        "listed in adapter_config.json but",
    ),
    "unexpected-tensor": (
        weights(lambda t: {**t, "base_model.model.lm_head.weight": torch.ones(2)}),
        {},
        400,
        "unexpected tensor",
    ),
    "lora-A-only": (
        weights(lambda t: {k: v for k, v in t.items() if "layers.1.self_attn.q_proj.lora_B" not in k}),
        {},
        400,
        "has lora_A but no lora_B",
    ),
    "wrong-base": (None, {"base": "no-such-base"}, 400, "base model 'no-such-base' is not registered"),
    "base-is-an-adapter": (None, {"base": "countdown"}, 400, "not a base model"),
    "kind-model-of-adapter": (None, {"kind": "model"}, 400, "config.json is missing"),
    "duplicate-name": (None, {"name": "reverse"}, 409, "expert 'reverse' already exists"),
    "name-with-space": (None, {"name": "Bad Name"}, 400, "invalid name"),
    "name-traversal": (None, {"name": "../x"}, 400, "invalid name"),
    "name-too-long": (None, {"name": "a" * 65}, 400, "invalid name"),
    "empty-example": (None, {"examples": [""]}, 400, "prompt must be a non-empty string"),
    "zip-slip": (zip_of({"../evil/adapter_config.json": b"{}"}), {}, 400, "escapes the archive"),
    "zip-slip-nested": (zip_of({"adapter/../../evil.json": b"{}"}), {}, 400, "escapes the archive"),
    "absolute-path": (zip_of({"/etc/cron.d/evil": b"x"}), {}, 400, "absolute path"),
    "windows-absolute": (zip_of({"C:\\evil\\adapter_config.json": b"{}"}), {}, 400, "absolute path"),
    "tar-symlink-escape": (tar_with_link("/etc/passwd"), {}, 400, "link or special file"),
    "tar-hardlink": (tar_with_link("../../etc/passwd", hard=True), {}, 400, "link or special file"),
    "zip-symlink-escape": (zip_with_symlink("/etc/passwd"), {}, 400, "link or special file"),
    "tar-fifo": (fifo_tar(), {}, 400, "link or special file"),
    "archive-bomb": (
        zip_of({"adapter/adapter_config.json": b"{}", "adapter/zeros.bin": bytes(3 << 20)}),
        {},
        413,
        "unpacks to more than",
    ),
    "oversized-upload": (os.urandom(3 << 20), {}, 413, "limit"),
    "not-an-archive": (b"this is not an archive", {}, 400, "neither a zip nor a tar"),
    "empty-archive": (zip_of({}), {}, 400, "empty"),
}


@pytest.fixture(scope="module")
def before(server, http):
    return state(server, http)


@pytest.mark.parametrize("case", list(ARCHIVES))
def test_malformed_adapter_submission_is_refused_and_changes_nothing(case, server, http, before, tmp_path):
    edit, meta_changes, status, words = ARCHIVES[case]
    if isinstance(edit, bytes):
        archive = edit
    else:
        d = adapter_copy(server, tmp_path)
        if edit:
            edit(d)
        archive = pack(d)
    meta = {"name": "candidate", "base": "demo-base", "examples": EXAMPLES, **meta_changes}
    r = http.post(
        "/v1/experts",
        files={"archive": ("expert.zip", archive, "application/zip")},
        data={"metadata": json.dumps(meta)},
        headers=AUTH,
    )
    assert_error(r, status, words)
    assert state(server, http) == before


def test_malformed_json_registrations_are_refused(server, http, before):
    inside = server["allowed"] / "link-out"
    inside.symlink_to(server["ocean"].out / "experts" / "reverse")  # resolves outside the allowed root
    adapter = str(server["ocean"].out / "experts" / "reverse")
    cases = [
        ({"name": "x", "path": adapter}, 403, "outside the allowed roots"),
        ({"name": "x", "path": str(server["allowed"] / ".." / "..")}, 403, "outside the allowed roots"),
        ({"name": "x", "path": str(inside)}, 403, "outside the allowed roots"),
        ({"name": "x", "path": str(server["allowed"] / "missing")}, 400, "not a directory"),
        ({"name": "x"}, 400, "archive upload"),
        ({"name": "x", "path": adapter, "shell": "rm -rf /"}, 400, "shell"),
        ({"name": 7, "path": adapter}, 400, "name"),
        ({"path": adapter}, 400, "name"),
    ]
    for body, status, words in cases:
        assert_error(http.post("/v1/experts", json=body, headers=AUTH), status, words)
    upload = {"archive": ("a.zip", pack(adapter), "application/zip")}
    assert_error(
        http.post("/v1/experts", files=upload, data={"metadata": "{not json"}, headers=AUTH), 400, "JSON"
    )
    assert_error(http.post("/v1/experts", files=upload, headers=AUTH), 400, "metadata")
    assert_error(
        http.post("/v1/experts", data={"metadata": json.dumps({"name": "x"})}, headers=AUTH), 415
    )  # a form
    assert_error(
        http.post("/v1/experts", files={"metadata": (None, json.dumps({"name": "x"}))}, headers=AUTH),
        400,
        "archive",
    )
    assert_error(
        http.post(
            "/v1/experts",
            files=upload,
            data={"metadata": json.dumps({"name": "x", "path": adapter})},
            headers=AUTH,
        ),
        400,
        "not both",
    )
    assert_error(
        http.post("/v1/experts", content=b"name=x", headers={**AUTH, "content-type": "text/plain"}), 415
    )
    inside.unlink()
    assert state(server, http) == before


# ---------------------------------------------------------------------------- malformed requests
MSG = [{"role": "user", "content": REVERSE}]


def ask(content: str = REVERSE, model: str = "composer", **kw) -> dict:
    """A chat completion body with one user message."""
    return {"model": model, "messages": [{"role": "user", "content": content}], **kw}


ROW = {"id": "r1", "prompt": REVERSE, "task": "reverse", "split": "held-in", "answer": "t a c"}


def glider_alpha(raw: bytes) -> bytes:  # Python's json parses NaN, Infinity and 1e999 (inf) as floats
    return (
        b'{"model": "composer", "messages": [{"role": "user", "content": "hi"}], "routing": '
        b'{"router": "glider", "alpha": ' + raw + b"}}"
    )


LONG = " ".join(["Write these letters backwards: c a t"] * 30)  # ~200 tokens: beyond the demo's 128 context
REQUESTS = {
    "invalid-json": ("/v1/chat/completions", b'{"model": "composer", "messages": [', 400, "not valid JSON"),
    "json-not-object": ("/v1/chat/completions", b"[1, 2]", 400, "body"),
    "model-wrong-type": ("/v1/chat/completions", {"model": 7, "messages": MSG}, 400, "model"),
    "messages-wrong-type": ("/v1/chat/completions", {"model": "composer", "messages": "hi"}, 400, "messages"),
    "max-tokens-wrong-type": (
        "/v1/chat/completions",
        {"model": "composer", "messages": MSG, "max_tokens": "ten"},
        400,
        "max_tokens",
    ),
    "temperature-out-of-range": (
        "/v1/chat/completions",
        {"model": "composer", "messages": MSG, "temperature": 9},
        400,
        "temperature",
    ),
    "unknown-router-alias": ("/v1/chat/completions", ask(model="composer:nope"), 404, "no router 'nope'"),
    "unknown-router": (
        "/v1/chat/completions",
        {"model": "composer", "messages": MSG, "routing": {"router": "nope"}},
        400,
        "nope",
    ),
    "unknown-expert": (
        "/v1/chat/completions",
        {"model": "no-such-expert", "messages": MSG},
        404,
        "no-such-expert",
    ),
    "unknown-expert-in-merge": (
        "/v1/chat/completions",
        {"model": "composer", "messages": MSG, "routing": {"router": "uniform", "experts": ["ghost"]}},
        400,
        "ghost",
    ),
    "negative-top-k": (
        "/v1/chat/completions",
        {"model": "composer", "messages": MSG, "routing": {"router": "loraretriever", "top_k": -1}},
        400,
        "top_k",
    ),
    "huge-top-k": (
        "/v1/chat/completions",
        {"model": "composer", "messages": MSG, "routing": {"router": "phatgoose", "top_k": 10**12}},
        400,
        "top_k",
    ),
    "top-k-beyond-experts-limit": (
        "/v1/chat/completions",
        {"model": "composer", "messages": MSG, "routing": {"router": "loraretriever", "top_k": 5}},
        400,
        "COMPOSER_MAX_EXPERTS",
    ),
    "merge-beyond-experts-limit": (
        "/v1/chat/completions",
        {"model": "composer:uniform", "messages": MSG},
        400,
        "COMPOSER_MAX_EXPERTS",
    ),
    "alpha-nan": ("/v1/chat/completions", glider_alpha(b"NaN"), 400, "finite"),
    "alpha-infinity": ("/v1/chat/completions", glider_alpha(b"Infinity"), 400, "finite"),
    "alpha-overflow": ("/v1/chat/completions", glider_alpha(b"1e999"), 400, "finite"),
    "temperature-nan": (
        "/v1/chat/completions",
        b'{"model": "composer", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}',
        400,
        "temperature",
    ),
    "max-tokens-beyond-limit": (
        "/v1/chat/completions",
        {"model": "composer", "messages": MSG, "max_tokens": 65},
        400,
        "COMPOSER_MAX_TOKENS",
    ),
    "max-tokens-zero": (
        "/v1/chat/completions",
        {"model": "composer", "messages": MSG, "max_tokens": 0},
        400,
        "max_tokens",
    ),
    "empty-messages": ("/v1/chat/completions", {"model": "composer", "messages": []}, 400, "messages"),
    "blank-user-message": ("/v1/chat/completions", ask(" "), 400, "non-empty user message"),
    "bad-role": (
        "/v1/chat/completions",
        {"model": "composer", "messages": [{"role": "root", "content": "x"}]},
        400,
        "role",
    ),
    "prompt-beyond-context": ("/v1/chat/completions", ask(LONG), 400, "maximum context length is 128 tokens"),
    "prompt-plus-max-tokens-beyond-context": (
        "/v1/chat/completions",
        ask(" ".join([REVERSE] * 8), "reverse", max_tokens=64),
        400,
        "maximum context length",
    ),
    "stream-beyond-context": (
        "/v1/completions",
        {"model": "reverse", "prompt": LONG, "stream": True},
        400,
        "maximum context length",
    ),
    "prompt-beyond-char-limit": (
        "/v1/completions",
        {"model": "composer", "prompt": "x " * 2500},
        400,
        "COMPOSER_MAX_PROMPT_CHARS",
    ),
    "too-many-prompts": ("/v1/route", {"prompt": ["a b"] * 65}, 400, "COMPOSER_MAX_PROMPTS"),
    "empty-prompt": ("/v1/completions", {"model": "composer", "prompt": ""}, 400, "prompt"),
    "unknown-field": (
        "/v1/chat/completions",
        {"model": "composer", "messages": MSG, "logit_bias": {"1": 2}},
        400,
        "logit_bias",
    ),
    "unknown-nested-field": (
        "/v1/chat/completions",
        {"model": "composer", "messages": [{"role": "user", "content": "x", "mood": "angry"}]},
        400,
        "mood",
    ),
    "unknown-router-config-field": (
        "/v1/route",
        {"prompt": "x", "routing": {"router": "retrieval", "deepness": 3}},
        400,
        "deepness",
    ),
    "n-two": ("/v1/chat/completions", {"model": "composer", "messages": MSG, "n": 2}, 400, "n"),
    "seed-overflow": (
        "/v1/chat/completions",
        {"model": "composer", "messages": MSG, "seed": 2**80},
        400,
        "seed",
    ),
    "evaluation-unknown-router": ("/v1/evaluations", {"examples": [ROW], "routers": ["nope"]}, 400, "nope"),
    "evaluation-bad-limit": ("/v1/evaluations", {"examples": [ROW], "limit": -3}, 400, "limit"),
    "evaluation-bad-row": ("/v1/evaluations", {"examples": [{**ROW, "split": "sideways"}]}, 400, "split"),
    "evaluation-too-many-examples": (
        "/v1/evaluations",
        {"examples": [ROW] * 10_001},
        400,
        "COMPOSER_MAX_EVAL_EXAMPLES",
    ),
}


@pytest.mark.parametrize("case", list(REQUESTS))
def test_malformed_request_is_a_4xx_naming_the_problem(case, server, http, before):
    path, body, status, words = REQUESTS[case]
    headers = {**AUTH, "content-type": "application/json"}
    r = http.post(path, content=body if isinstance(body, bytes) else json.dumps(body), headers=headers)
    assert_error(r, status, words)
    assert state(server, http) == before


@pytest.mark.parametrize("method", ["GET", "DELETE"])
@pytest.mark.parametrize("version", ["0", "-1", str(2**31), str(2**63), "one"])
def test_expert_version_outside_what_is_stored_is_a_400(method, version, server, http, before):
    """A version the registry cannot hold (schemathesis found 2**63 was a 500 from SQLite)."""
    r = http.request(method, "/v1/experts/reverse", params={"version": version}, headers=AUTH)
    assert_error(r, 400, "version")
    assert state(server, http) == before


def test_nothing_changed_after_the_malformed_requests(server, http, before):
    assert state(server, http) == before
    assert metric(http, "composer_requests_in_flight") == 0  # every admitted request gave its place back
