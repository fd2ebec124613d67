"""Expert embeddings: the per-expert artifact every semantic router shares.

Contract: `expert_texts(record)` is what represents an expert: its description and up to
`MAX_EXAMPLES` example prompts. `EMBEDDINGS` is the artifact (fitter "embeddings", router
"embeddings", key "<encoder name>.npy", rows in the order of `expert_texts`, for LoRA and
whole-model experts), fitted at registration from this expert's data only.
`read_embeddings(data)` decodes it.
"""

from __future__ import annotations

import io

import numpy as np

from registry.records import ExpertRecord
from routers.artifacts import Artifact

MAX_EXAMPLES = 1000  # as in Jang et al. / PHATGOOSE's retrieval baseline


def expert_texts(record: ExpertRecord) -> list[str]:
    texts = [record.description] if record.description else []
    return texts + [ex["prompt"] for ex in record.examples[:MAX_EXAMPLES]]


def _fit(ctx, record: ExpertRecord, path) -> tuple[bytes, dict]:
    texts = expert_texts(record) or [record.name]
    buf = io.BytesIO()
    np.save(buf, ctx.encoder.encode(texts).astype(np.float32), allow_pickle=False)
    meta = {
        "format": "npy",
        "encoder": ctx.encoder.name,
        "rows": len(texts),
        "has_description": bool(record.description),
    }
    return buf.getvalue(), meta


def read_embeddings(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


EMBEDDINGS = Artifact(
    "embeddings",
    "embeddings",
    lambda ctx: f"{ctx.encoder.name}.npy",
    _fit,
    kinds=("lora", "model", "endpoint"),
)
