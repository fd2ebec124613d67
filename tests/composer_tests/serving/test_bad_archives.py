"""Bad adapter submissions to the REST API: 49 malformed archives (configs, weights,
shapes, names, zip-slip, links, bombs...) and malformed JSON registrations, each a 4xx JSON
error naming the problem, after which the registry rows, the store's files, the uploads dir
and a normal request's answers are exactly as before (fixtures in conftest.py: the app in
this process behind TestClient). The same server on Ray under load and faults:
tests/ray_cluster_tests/test_load.py, test_faults.py.
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
from helpers.api import snapshot
from helpers.server import AUTH, assert_error

from composer.serving.archive import pack

EXAMPLES = ["Write these letters backwards: d o g"]


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
        "only Linear and Conv1D layers",
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
    assert snapshot(server["home"], http) == before


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
    assert snapshot(server["home"], http) == before
