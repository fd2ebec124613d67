"""Edits that break a copy of a PEFT adapter (or model) directory, for the validation tests.

Contract: `edit_json(path, **changes)` and `edit_tensors(path, fn)` rewrite one file;
`rename_modules(old, new)` and `poison(value)` are tensor-dict transforms for
`edit_tensors`. The directory edits return `edit(d: Path)`: `remove(name)`, `write(name,
text_or_bytes)`, `config(**changes)` (adapter_config.json), `weights(fn, name)`,
`pickle_only(weights, pickle_name)` (pickle bytes instead of the safetensors, never
unpickled: refused by name) and `both(*edits)`.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file, save_file


def edit_json(path: Path, **changes) -> None:
    cfg = json.loads(path.read_text())
    cfg.update(changes)
    path.write_text(json.dumps(cfg))


def edit_tensors(path: Path, fn) -> None:
    tensors = fn(dict(load_file(path)))
    save_file(tensors, path, metadata={"format": "pt"})


def rename_modules(old: str, new: str):
    return lambda t: {k.replace(old, new): v for k, v in t.items()}


def poison(value: float):
    def fn(t):
        k = min(t)
        t[k] = t[k].clone()
        t[k].view(-1)[0] = value
        return t

    return fn


def remove(name: str):
    return lambda d: (d / name).unlink()


def write(name: str, data: str | bytes):
    return lambda d: (d / name).write_bytes(data.encode() if isinstance(data, str) else data)


def config(**changes):
    return lambda d: edit_json(d / "adapter_config.json", **changes)


def weights(fn, name: str = "adapter_model.safetensors"):
    return lambda d: edit_tensors(d / name, fn)


def pickle_only(weights_name: str, pickle_name: str):
    return both(remove(weights_name), write(pickle_name, b"\x80\x04pickle"))


def both(*edits):
    def edit(d: Path):
        for e in edits:
            e(d)

    return edit
