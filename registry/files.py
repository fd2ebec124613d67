"""Low-level readers shared by the validators: JSON, safetensors, meta-device models.

Contract: every failure is a one-line ``ValidationError`` naming the file or tensor.
- ``read_json_object(path)``: the file must exist and hold a JSON object.
- ``refuse_pickles(dir, files, want)``: always raises; says "pickle weights are refused"
  when pickle-format files are present, "<want> is missing" otherwise.
- ``meta_model(dir)``: ``AutoModelForCausalLM.from_config`` on the meta device (no weights,
  no memory; never ``trust_remote_code``), cached per config.json.
- ``open_safetensors(file)`` / ``finite_tensor(f, key, file)``: ``safe_open`` only (never
  ``torch.load``); a tensor with NaN/Inf is refused.
"""

from __future__ import annotations

import json
import threading
from functools import lru_cache
from pathlib import Path

from .errors import ValidationError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
_META_LOCK = threading.Lock()


def one_line(e: BaseException) -> str:
    s = str(e).strip().splitlines()
    return f"{type(e).__name__}: {s[0] if s else ''}"


def read_json_object(path: Path) -> dict:
    if not path.is_file():
        raise ValidationError(f"{path.name} is missing in {path.parent}")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ValidationError(f"{path.name} in {path.parent} is not valid JSON ({one_line(e)})") from e
    if not isinstance(obj, dict):
        raise ValidationError(f"{path.name} in {path.parent} must be a JSON object, got {type(obj).__name__}")
    return obj


def refuse_pickles(path: Path, files: list[Path], want: str) -> None:
    pickles = sorted(p.name for p in files if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise ValidationError(
            f"pickle weights are refused ({', '.join(pickles[:3])} in {path}); convert to safetensors "
            f"(load it and save_pretrained(dir, safe_serialization=True)), then register again"
        )
    raise ValidationError(f"{want} is missing in {path}")


@lru_cache(maxsize=4)
def _meta_model_cached(path: str, _stamp: tuple):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(path)
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(config)
    except Exception as e:
        raise ValidationError(f"cannot build a causal LM from {path}/config.json ({one_line(e)})") from e


def meta_model(model_dir: str | Path):
    """The architecture of ``model_dir`` on the meta device (cached per config.json)."""
    p = Path(model_dir).resolve()
    st = (p / "config.json").stat()
    with _META_LOCK:
        return _meta_model_cached(str(p), (st.st_mtime_ns, st.st_size))


def open_safetensors(file: Path):
    from safetensors import safe_open

    try:
        return safe_open(str(file), framework="pt")
    except Exception as e:
        raise ValidationError(f"{file.name} is not a valid safetensors file ({one_line(e)})") from e


def finite_tensor(f, key: str, file: Path):
    import torch

    t = f.get_tensor(key)
    if not (t.is_floating_point() or t.is_complex()):
        return t
    ok = torch.isfinite(
        t if t.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64) else t.float()
    ).all()
    if not bool(ok):
        raise ValidationError(f"tensor {key!r} in {file.name} contains NaN or Inf values")
    return t
