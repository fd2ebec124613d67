"""Validation: every malformed expert directory is refused with a message naming the problem,
and nothing is stored (fixtures in conftest.py; SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
import torch
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
from helpers.tiny import copy_of, snapshot

from registry import (
    ConflictError,
    ValidationError,
)

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # transformers/peft deprecations


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
        "(LlamaRMSNorm); only Linear and Conv1D layers are supported",
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
    "dora-without-magnitudes": (
        _lora_case(config(use_dora=True)),
        "DoRA adapter (use_dora=true) without a lora_magnitude_vector",
    ),
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
