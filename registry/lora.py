"""The PEFT LoRA adapter format as stored: one reader for every consumer (host, fitters).

Contract: `read_lora(path)` returns a `LoraWeights` (config dict, scale, and a mapping
module path → (A [r, d_in], B [d_out, r])) with module paths relative to the bare HF model
(`model.layers.0.self_attn.q_proj`), the names `model.named_modules()` yields. The scale
follows PEFT: lora_alpha / r, or lora_alpha / sqrt(r) with rsLoRA. Only safetensors are
read; anything the registry's validation refuses (DoRA, rank patterns, ...) is refused here
too, so a path that did not come through the registry cannot smuggle it in.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.[^.]+)?\.weight$")
_UNSUPPORTED = ("use_dora", "rank_pattern", "alpha_pattern", "modules_to_save", "layers_pattern")


@dataclass
class LoraWeights:
    config: dict
    scale: float
    modules: dict[str, tuple[torch.Tensor, torch.Tensor]]


def read_lora(path: str | Path) -> LoraWeights:
    path = Path(path)
    cfg_file, weights_file = path / "adapter_config.json", path / "adapter_model.safetensors"
    if not cfg_file.is_file() or not weights_file.is_file():
        raise ValueError(
            f"{path}: not a PEFT LoRA directory (adapter_config.json + adapter_model.safetensors)"
        )
    cfg = json.loads(cfg_file.read_text())
    if cfg.get("peft_type", "LORA") != "LORA":
        raise ValueError(f"{path}: peft_type {cfg.get('peft_type')!r} is not LORA")
    for key in _UNSUPPORTED:
        if cfg.get(key):
            raise ValueError(f"{path}: {key} is not supported by the mixture-of-LoRA host")
    r, alpha = int(cfg["r"]), float(cfg.get("lora_alpha", cfg["r"]))
    scale = alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, t in load_file(str(weights_file)).items():
        m = _KEY.match(key)
        if not m:
            raise ValueError(f"{path}: unexpected tensor {key!r} (only lora_A/lora_B weights are served)")
        parts.setdefault(m["module"], {})[m["ab"]] = t
    modules = {}
    for name, ab in parts.items():
        if set(ab) != {"A", "B"}:
            raise ValueError(f"{path}: module {name} lacks lora_{'B' if 'A' in ab else 'A'}")
        modules[name] = (ab["A"], ab["B"])
    return LoraWeights(cfg, scale, modules)
