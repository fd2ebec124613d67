"""The PEFT LoRA adapter format as stored: one description for the validator and every reader.

Contract:
- `parse_key(key)` -> `(module, part)` or None: PEFT's tensor keys (an optional
  `base_model.model.` prefix) name a module path as `model.named_modules()` yields it and a
  part: "A" / "B" (`lora_A.weight` [r, in], `lora_B.weight` [out, r]), "lora_bias"
  (`lora_B.bias` [out], `lora_bias=True`), "magnitude" (`lora_magnitude_vector` [out],
  DoRA) or "bias" (`base_layer.bias` / `bias` [out]: the module's own bias as trained with
  `bias="lora_only"` or `"all"`, which the expert replaces — adapted or not, LayerNorms too).
- `module_rank(cfg, module)` and `module_scale(cfg, module)` follow PEFT: `rank_pattern` /
  `alpha_pattern` keys match a module when the key is a suffix of its path at a dot
  boundary (first matching key wins); scale = alpha / r, or alpha / sqrt(r) with rsLoRA.
- `REFUSED`: adapter_config.json fields whose effect is not served, each with the reason.
- `LORA_TYPES`: the module types a LoRA may adapt (`nn.Linear`, transformers' `Conv1D`,
  whose weight is [in, out]); `features(module)` -> (in, out).
- `read_lora(path)` -> `LoraWeights(config, modules, biases)`: per adapted module a
  `ModuleDelta(A, B, scale, lora_bias, magnitude)`; `biases`: module path -> the trained
  bias it replaces. Only safetensors are read; a refused config field or a stray key is a
  `ValueError`, so a path that did not come through the registry cannot smuggle one in.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

REFUSED = {
    "modules_to_save": "whole-module copies; merge them into the base, register a model",
    "target_parameters": "LoRA on raw parameters",
    "trainable_token_indices": "trainable token embeddings",
    "layer_replication": "layer replication",
    "alora_invocation_tokens": "activated LoRA",
}
_KEY = re.compile(
    r"^(?:base_model\.model\.)?(?P<module>.+?)\."
    r"(?:lora_(?P<ab>[AB])(?:\.[^.]+)?\.(?P<what>weight|bias)|lora_magnitude_vector(?:\.weight)?"
    r"|(?:base_layer\.)?(?P<bias>bias))$"
)


def parse_key(key: str) -> tuple[str, str] | None:
    m = _KEY.match(key)
    if m is None:
        return None
    if m["ab"]:
        if m["what"] == "bias":
            return (m["module"], "lora_bias") if m["ab"] == "B" else None
        return m["module"], m["ab"]
    return m["module"], "bias" if m["bias"] else "magnitude"


def _pattern(patterns: dict | None, module: str):
    for key, value in (patterns or {}).items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return None


def module_rank(cfg: dict, module: str) -> int:
    r = _pattern(cfg.get("rank_pattern"), module)
    return int(r if r is not None else cfg["r"])


def module_scale(cfg: dict, module: str) -> float:
    alpha = _pattern(cfg.get("alpha_pattern"), module)
    alpha = float(alpha if alpha is not None else cfg.get("lora_alpha", cfg["r"]))
    r = module_rank(cfg, module)
    return alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r


def lora_types() -> tuple[type, ...]:
    from torch import nn
    from transformers.pytorch_utils import Conv1D

    return (nn.Linear, Conv1D)


def features(module) -> tuple[int, int]:
    """(in, out) of a LoRA-able module: Linear's, or Conv1D's weight [in, out]."""
    if hasattr(module, "in_features"):
        return module.in_features, module.out_features
    return tuple(module.weight.shape)


@dataclass
class ModuleDelta:
    A: object  # torch.Tensor [r, in]
    B: object  # torch.Tensor [out, r]
    scale: float
    lora_bias: object = None  # [out] (lora_B's bias; scaled like B)
    magnitude: object = None  # [out] DoRA magnitude


@dataclass
class LoraWeights:
    config: dict
    modules: dict[str, ModuleDelta]
    biases: dict[str, object] = field(default_factory=dict)  # module -> the bias it replaces

    @property
    def dora(self) -> bool:
        return any(d.magnitude is not None for d in self.modules.values())


def check_config(cfg: dict, where: str) -> None:
    if cfg.get("peft_type", "LORA") != "LORA":
        raise ValueError(f"{where}: peft_type {cfg.get('peft_type')!r} is not LORA")
    for key, what in REFUSED.items():
        if cfg.get(key):
            raise ValueError(f"{where}: {key} is set ({what}); this is not supported")


def read_lora(path: str | Path) -> LoraWeights:
    from safetensors.torch import load_file

    path = Path(path)
    cfg_file, weights_file = path / "adapter_config.json", path / "adapter_model.safetensors"
    if not cfg_file.is_file() or not weights_file.is_file():
        raise ValueError(
            f"{path}: not a PEFT LoRA directory (adapter_config.json + adapter_model.safetensors)"
        )
    cfg = json.loads(cfg_file.read_text())
    check_config(cfg, str(path))
    parts: dict[str, dict] = {}
    biases = {}
    for key, t in load_file(str(weights_file)).items():
        found = parse_key(key)
        if found is None:
            raise ValueError(f"{path}: unexpected tensor {key!r}")
        module, part = found
        if part == "bias":
            biases[module] = t
        else:
            parts.setdefault(module, {})[part] = t
    modules = {}
    for name, p in parts.items():
        if "A" not in p or "B" not in p:
            raise ValueError(f"{path}: module {name} lacks lora_{'B' if 'A' in p else 'A'}")
        modules[name] = ModuleDelta(
            p["A"], p["B"], module_scale(cfg, name), p.get("lora_bias"), p.get("magnitude")
        )
    return LoraWeights(cfg, modules, biases)
