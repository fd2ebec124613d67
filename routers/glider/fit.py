"""GLIDER's global part: one task embedding per expert, fitted post-hoc at registration.

Contract: `task_embedding(record, encoder, writer=None)` -> (unit vector [dim], meta).
With a writer, the expert's first five example prompts (at least three when it has them)
go to the writer and its one-sentence instruction is embedded; without one, the registered
description and examples stand in: normalise(e(description) + mean(e(example prompts))).
Registered as the post-hoc fitter "glider", writing glider/<encoder>.npy on the expert.
The local part reuses PHATGOOSE's gates.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from routers.posthoc import posthoc, stored

ROUTER = "glider"


def key(encoder) -> str:
    return f"{encoder.name}.npy"


def task_embedding(record, encoder, writer=None) -> tuple[np.ndarray, dict]:
    prompts = [ex["prompt"] for ex in record.examples[:5]]
    if writer is not None and prompts:
        instruction = writer.write(prompts)
        v = encoder.encode([instruction])[0]
        meta = {"writer": writer.name, "instruction": instruction}
    else:
        parts = []
        if record.description:
            parts.append(encoder.encode([record.description])[0])
        examples = [ex["prompt"] for ex in record.examples[:1000]]
        if examples:
            parts.append(encoder.encode(examples).mean(0))
        v = np.sum(parts, axis=0) if parts else encoder.encode([record.name])[0]
        meta = {"writer": None, "instruction": None, "from": "description+examples"}
    return (v / np.linalg.norm(v)).astype(np.float32), meta


@posthoc("glider")
def _fit(ctx, record, path: Path) -> list:
    if record.kind != "lora":
        return []
    v, meta = task_embedding(record, ctx.encoder, ctx.writer)
    buf = io.BytesIO()
    np.save(buf, v, allow_pickle=False)
    return [(ROUTER, key(ctx.encoder), buf.getvalue(), {"format": "npy", "encoder": ctx.encoder.name, **meta})]


def load_task_embedding(ctx, record) -> np.ndarray:
    return np.load(io.BytesIO(stored(ctx, record, "glider", ROUTER, key(ctx.encoder))), allow_pickle=False)
