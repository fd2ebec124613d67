"""GLIDER's global part: one task embedding per expert, fitted post-hoc at registration.

Contract: `task_embedding(record, encoder, writer=None)` -> (unit vector [dim], meta).
With a writer, the expert's first five example prompts (at least three when it has them)
go to the writer and its one-sentence instruction is embedded; without one, the registered
description and examples stand in: normalise(e(description) + mean(e(example prompts))).
`TASK_EMBEDDING` is the per-expert artifact (fitter "glider", glider/<encoder>.npy);
`load_task_embedding(ctx, record)` reads it (cached per version; None when the expert has
none). The local part reuses PHATGOOSE's gates.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from routers.artifacts import Artifact, load


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


def _fit(ctx, record, path: Path) -> tuple[bytes, dict]:
    v, meta = task_embedding(record, ctx.encoder, ctx.writer)
    buf = io.BytesIO()
    np.save(buf, v, allow_pickle=False)
    return buf.getvalue(), {"format": "npy", "encoder": ctx.encoder.name, **meta}


TASK_EMBEDDING = Artifact("glider", "glider", lambda ctx: f"{ctx.encoder.name}.npy", _fit)


def load_task_embedding(ctx, record) -> np.ndarray | None:
    def read():
        data = load(ctx, record, TASK_EMBEDDING)
        return None if data is None else np.load(io.BytesIO(data), allow_pickle=False)

    return ctx.memo(("glider", record.name, record.version), read)
