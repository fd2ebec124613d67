"""Validation of expert directories: pure functions that raise ``ValidationError``.

Contract:
- ``validate_name(name)``: ``NAME_RE`` (lowercase, 1-64 chars, no path separators).
- ``validate_lora_dir(path, base_model_dir) -> dict``: a PEFT LoRA adapter directory in the
  format of ``registry.lora``: every tensor finite and of the shape its module implies —
  ``lora_A`` [r, in] / ``lora_B`` [out, r] for an ``nn.Linear`` or ``Conv1D`` of the base
  model (r per module: ``rank_pattern``), ``lora_B.bias`` [out], DoRA magnitudes [out]
  (only with ``use_dora``), and trained module biases (only with ``bias`` != "none", for a
  module that has a bias of that shape); returns a JSON-safe config summary.
- ``validate_model_dir(path) -> dict``: a Hugging Face causal-LM directory (config.json,
  safetensors weights whose shapes match the architecture, finite tensors, a tokenizer);
  returns a JSON-safe config summary.
- ``check_lora_files`` / ``check_model_files``: the cheap part of each (configs, which weight
  files exist; no tensor read), run on the source before anything is copied.
- Weights are only read with ``safetensors.safe_open``; pickle files are refused, never
  loaded. The base architecture is instantiated on the meta device (no weights, no memory).
  ``trust_remote_code`` is never set; configs that need remote code are refused.
- Messages are one line and name the file / key / module at fault.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from . import lora
from .errors import ValidationError
from .files import finite_tensor, meta_model, open_safetensors, read_json_object, refuse_pickles

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
MAX_RANK = 4096
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
BIAS_MODES = ("none", "lora_only", "all")


def validate_name(name: object) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValidationError(
            f"invalid name {name!r}: use 1-64 chars of a-z 0-9 . _ - starting with a letter or digit"
        )
    return name


def read_adapter_config(path: str | Path) -> dict:
    return read_json_object(Path(path) / "adapter_config.json")


def _rank(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_RANK:
        raise ValidationError(
            f"adapter_config.json: {what} must be an integer in 1..{MAX_RANK}, got {value!r}"
        )
    return value


def _alpha(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValidationError(f"adapter_config.json: {what} must be a finite number, got {value!r}")
    return value


def check_lora_files(path: str | Path) -> dict:
    """The cheap part of ``validate_lora_dir`` (no tensor is read): returns adapter_config."""
    path = Path(path)
    cfg = read_adapter_config(path)
    if cfg.get("peft_type") != "LORA":
        raise ValidationError(
            f"adapter_config.json: peft_type is {cfg.get('peft_type')!r}; only 'LORA' is supported"
        )
    try:
        lora.check_config(cfg, "adapter_config.json")
    except ValueError as e:
        raise ValidationError(str(e)) from None
    if cfg.get("bias", "none") not in BIAS_MODES:
        raise ValidationError(
            f"adapter_config.json: bias={cfg['bias']!r} is not one of {', '.join(BIAS_MODES)}"
        )
    _rank(cfg.get("r"), "r")
    _alpha(cfg.get("lora_alpha"), "lora_alpha")
    for field, check in (("rank_pattern", _rank), ("alpha_pattern", _alpha)):
        pattern = cfg.get(field) or {}
        if not isinstance(pattern, dict):
            raise ValidationError(f"adapter_config.json: {field} must be an object (module pattern -> value)")
        for key, value in pattern.items():
            check(value, f"{field}[{key!r}]")
    targets = cfg.get("target_modules")
    if not targets or not isinstance(targets, (str, list)):
        raise ValidationError("adapter_config.json: target_modules is missing or empty")
    if not (path / "adapter_model.safetensors").is_file():
        refuse_pickles(path, [p for p in path.iterdir() if p.is_file()], "adapter_model.safetensors")
    return cfg


def _expected_shape(key: str, part: str, mod: str, layer, cfg: dict) -> tuple:
    """The shape tensor `key` (part of module `mod`) must have, or a ValidationError why it cannot exist."""
    if part == "bias":
        if cfg.get("bias", "none") == "none":
            raise ValidationError(
                f"tensor {key!r} is a trained bias but adapter_config.json says bias='none'"
            )
        bias = getattr(layer, "bias", None)
        if not hasattr(bias, "shape"):
            raise ValidationError(
                f"tensor {key!r} is a bias of {mod!r} ({type(layer).__name__}), which has none"
            )
        return tuple(bias.shape)
    if not isinstance(layer, lora.lora_types()):
        raise ValidationError(
            f"tensor {key!r} targets {mod!r} ({type(layer).__name__}); only Linear and Conv1D layers are supported"
        )
    fi, fo = lora.features(layer)
    r = lora.module_rank(cfg, mod)
    if r > min(fi, fo):
        raise ValidationError(f"r={r} exceeds min(in, out)={min(fi, fo)} of base module {mod!r}")
    if part == "magnitude" and not cfg.get("use_dora"):
        raise ValidationError(
            f"tensor {key!r} is a DoRA magnitude vector but adapter_config.json lacks use_dora"
        )
    return {"A": (r, fi), "B": (fo, r), "lora_bias": (fo,), "magnitude": (fo,)}[part]


def validate_lora_dir(path: str | Path, base_model_dir: str | Path) -> dict:
    path = Path(path)
    cfg = check_lora_files(path)
    r, alpha, targets = cfg["r"], cfg["lora_alpha"], cfg["target_modules"]
    weights = path / "adapter_model.safetensors"
    modules = dict(meta_model(base_model_dir).named_modules())
    found: dict[str, set] = {}
    n_params, dtypes = 0, set()
    with open_safetensors(weights) as f:
        keys = sorted(f.keys())
        if not keys:
            raise ValidationError("adapter_model.safetensors holds no tensors")
        for k in keys:
            if "lora_embedding_" in k:
                raise ValidationError(
                    f"tensor {k!r} adapts an embedding; only Linear and Conv1D layers are supported"
                )
            parsed = lora.parse_key(k)
            if parsed is None:
                raise ValidationError(
                    f"unexpected tensor {k!r} in adapter_model.safetensors (expected <module>.lora_A.weight / "
                    "lora_B.weight, and lora_B.bias, lora_magnitude_vector or bias where the config asks for them)"
                )
            mod, part = parsed
            layer = modules.get(mod)
            if layer is None:
                raise ValidationError(f"tensor {k!r} targets module {mod!r}, which is not in the base model")
            want = _expected_shape(k, part, mod, layer, cfg)
            got = tuple(f.get_slice(k).get_shape())
            if got != want:
                raise ValidationError(
                    f"shape mismatch for {k!r}: expected {list(want)} (base module {mod!r}, "
                    f"{type(layer).__name__}; r={lora.module_rank(cfg, mod)}), got {list(got)}"
                )
            t = finite_tensor(f, k, weights)
            if not t.is_floating_point():
                raise ValidationError(
                    f"tensor {k!r} has dtype {t.dtype}; adapter weights must be floating point"
                )
            n_params += t.numel()
            dtypes.add(str(t.dtype).removeprefix("torch."))
            found.setdefault(mod, set()).add(part)
    adapted = _check_parts(found, cfg)
    _check_coverage(targets, adapted)
    return {
        "peft_type": "LORA",
        "r": r,
        "lora_alpha": alpha,
        "use_rslora": bool(cfg.get("use_rslora")),
        "scaling": alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r,
        "rank_pattern": cfg.get("rank_pattern") or {},
        "alpha_pattern": cfg.get("alpha_pattern") or {},
        "use_dora": bool(cfg.get("use_dora")),
        "bias": cfg.get("bias", "none"),
        "lora_bias": bool(cfg.get("lora_bias")),
        "target_modules": targets if isinstance(targets, str) else sorted(targets),
        "modules": adapted,
        "biases": sorted(m for m, parts in found.items() if "bias" in parts),
        "lora_dropout": cfg.get("lora_dropout", 0.0),
        "fan_in_fan_out": bool(cfg.get("fan_in_fan_out")),
        "task_type": cfg.get("task_type"),
        "base_model_name_or_path": cfg.get("base_model_name_or_path"),
        "peft_version": cfg.get("peft_version"),
        "num_params": n_params,
        "dtype": sorted(dtypes),
    }


def _check_parts(found: dict[str, set], cfg: dict) -> list[str]:
    """Every adapted module has lora_A and lora_B (and a magnitude under DoRA); returns them."""
    adapted = []
    for mod, parts in sorted(found.items()):
        lora_parts = parts - {"bias"}
        if not lora_parts:
            continue  # only a trained bias (bias="all"): not an adapted module
        if not {"A", "B"} <= lora_parts:
            have, miss = ("A", "B") if "A" in lora_parts else ("B", "A")
            raise ValidationError(
                f"module {mod!r} has lora_{have} but no lora_{miss} in adapter_model.safetensors"
            )
        if cfg.get("use_dora") and "magnitude" not in lora_parts:
            raise ValidationError(
                f"DoRA adapter (use_dora=true) without a lora_magnitude_vector for module {mod!r}"
            )
        adapted.append(mod)
    if not adapted:
        raise ValidationError("adapter_model.safetensors adapts no module (no lora_A/lora_B tensors)")
    return adapted


def _check_coverage(targets: str | list, found: list[str]) -> None:
    """Every listed target has tensors, and every tensor's module is a listed target."""
    if isinstance(targets, str):
        if targets == "all-linear":
            return
        stray = [m for m in found if not re.fullmatch(targets, m)]
        if stray:
            raise ValidationError(f"tensors for module {stray[0]!r} do not match target_modules {targets!r}")
        return
    for t in targets:
        if not any(m == t or m.endswith("." + t) for m in found):
            raise ValidationError(
                f"target module {t!r} is listed in adapter_config.json but "
                "adapter_model.safetensors has no tensors for it"
            )
    stray = [m for m in found if not any(m == t or m.endswith("." + t) for t in targets)]
    if stray:
        raise ValidationError(f"tensors for module {stray[0]!r} but target_modules does not list it")


def _model_shards(path: Path) -> list[Path]:
    index = path / "model.safetensors.index.json"
    if index.is_file():
        wmap = read_json_object(index).get("weight_map")
        if not isinstance(wmap, dict) or not wmap:
            raise ValidationError("model.safetensors.index.json has no weight_map")
        shards = sorted({path / str(v) for v in wmap.values()})
        for s in shards:
            if not s.is_file() or s.parent != path:
                raise ValidationError(f"shard {s.name} listed in model.safetensors.index.json is missing")
        return shards
    shards = sorted(path.glob("*.safetensors"))
    if not shards:
        refuse_pickles(path, [p for p in path.iterdir() if p.is_file()], "*.safetensors weights")
    return shards


def check_model_files(path: str | Path) -> tuple[dict, list[Path]]:
    """The cheap part of ``validate_model_dir`` (no tensor is read): config.json and shards."""
    from transformers import __version__ as tf_version
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    path = Path(path)
    cfg = read_json_object(path / "config.json")
    if "auto_map" in cfg:
        raise ValidationError(
            f"config.json in {path} has auto_map: this model requires remote code; "
            "trust_remote_code is never set"
        )
    mt = cfg.get("model_type")
    if not isinstance(mt, str) or not mt:
        raise ValidationError(f"config.json in {path} has no model_type")
    if mt not in CONFIG_MAPPING:
        raise ValidationError(
            f"model_type {mt!r} is unknown to transformers {tf_version}: it requires "
            "remote code; trust_remote_code is never set"
        )
    shards = _model_shards(path)
    if not any((path / t).is_file() for t in TOKENIZER_FILES):
        raise ValidationError(f"no tokenizer in {path} (expected tokenizer.json or tokenizer_config.json)")
    return cfg, shards


def validate_model_dir(path: str | Path) -> dict:
    path = Path(path)
    cfg, shards = check_model_files(path)
    mt = cfg["model_type"]
    expected = {k: tuple(v.shape) for k, v in meta_model(path).state_dict().items()}
    matched, n_params, n_tensors, dtypes = set(), 0, 0, set()
    for shard in shards:
        with open_safetensors(shard) as f:
            keys = f.keys()
            for k in keys:
                got = tuple(f.get_slice(k).get_shape())
                if k in expected:
                    if got != expected[k]:
                        raise ValidationError(
                            f"shape mismatch for {k!r} in {shard.name}: config.json "
                            f"implies {list(expected[k])}, got {list(got)}"
                        )
                    matched.add(k)
                t = finite_tensor(f, k, shard)
                n_params, n_tensors = n_params + t.numel(), n_tensors + 1
                dtypes.add(str(t.dtype).removeprefix("torch."))
    if not matched:
        raise ValidationError(
            f"no tensor in {path} matches a parameter of the {mt} model that config.json describes"
        )
    keys = (
        "architectures",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "vocab_size",
        "max_position_embeddings",
        "tie_word_embeddings",
    )
    return {
        "model_type": mt,
        **{k: cfg[k] for k in keys if k in cfg},
        "num_params": n_params,
        "num_tensors": n_tensors,
        "dtype": sorted(dtypes),
        "weights": [s.name for s in shards],
        "missing_tensors": sorted(set(expected) - matched)[:20],
        "tokenizer": [t for t in TOKENIZER_FILES if (path / t).is_file()],
    }
