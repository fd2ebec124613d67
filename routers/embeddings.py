"""Expert embeddings: the post-hoc artifact every semantic router shares.

Contract: `expert_texts(record)` is what represents an expert: its description and up to
`MAX_EXAMPLES` example prompts. `fit_embeddings(record, encoder)` embeds them and returns
one registry artifact (router "embeddings", key "<encoder name>.npy", rows in the order of
`expert_texts`); `load_embeddings(registry, record, encoder)` reads it back, fitting and
storing it first for experts registered without it. Only this expert's data is used, so
registering an expert never refits another.
"""
from __future__ import annotations

import io

import numpy as np

from registry import NotFoundError, Registry
from registry.records import ExpertRecord
from routers.encoders import Encoder

ROUTER = "embeddings"
MAX_EXAMPLES = 1000  # as in Jang et al. / PHATGOOSE's retrieval baseline


def expert_texts(record: ExpertRecord) -> list[str]:
    texts = [record.description] if record.description else []
    return texts + [ex["prompt"] for ex in record.examples[:MAX_EXAMPLES]]


def _key(encoder: Encoder) -> str:
    return f"{encoder.name}.npy"


def fit_embeddings(record: ExpertRecord, encoder: Encoder) -> list[tuple[str, str, bytes, dict]]:
    texts = expert_texts(record) or [record.name]
    buf = io.BytesIO()
    np.save(buf, encoder.encode(texts).astype(np.float32), allow_pickle=False)
    meta = {"format": "npy", "encoder": encoder.name, "rows": len(texts),
            "has_description": bool(record.description)}
    return [(ROUTER, _key(encoder), buf.getvalue(), meta)]


def load_embeddings(registry: Registry, record: ExpertRecord, encoder: Encoder) -> np.ndarray:
    try:
        _, data = registry.get_artifact(record.name, ROUTER, _key(encoder), version=record.version)
    except NotFoundError:
        (router, key, data, meta), = fit_embeddings(record, encoder)
        registry.put_artifact(record.name, router, key, data, meta, version=record.version)
    return np.load(io.BytesIO(data), allow_pickle=False)
